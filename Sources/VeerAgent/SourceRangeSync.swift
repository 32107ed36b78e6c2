import VeerDatapath
import VeerModel

/// loadBalancerSourceRanges (SourceRanges in VeerModel): after each sync the agent recomputes the
/// entries of the services the sync touched (all of them after a full sync) from their
/// LoadBalancer frontends as programmed, keyed by each frontend's id, and writes the difference.
extension Agent {
    func syncSourceRanges(_ touched: Set<ObjectKey>?) {
        let node = store.nodes[config.nodeName]
        let addresses = config.addressOverride ?? node?.ipAddresses ?? []
        let podCIDRs = node?.podCIDRs ?? []
        var fresh = sourceRanges.entries
        let keys: [ObjectKey]
        if let touched {
            keys = Array(touched)
        } else {
            fresh = [:]
            keys = store.services.compactMap { $0.value.type == .loadBalancer && !$0.value.loadBalancerSourceRanges.isEmpty ? $0.key : nil }
        }
        for key in keys {
            guard let service = store.services[key], !service.loadBalancerSourceRanges.isEmpty else { fresh[key] = nil; continue }
            let (ranges, problems) = ServiceAddresses.parse(service.loadBalancerSourceRanges)
            for p in problems { logger.warning("service \(key): spec.loadBalancerSourceRanges: \(p)") }
            var entries = Set<SourceRangeEntry>()
            for f in index.selections[key]?.frontends ?? [] where f.kind == .loadBalancer {
                guard index.desired(f.address)?.service.serviceKey == key,
                      let id = running?.state.masters[f.address]?.revNatID else { continue }
                entries.formUnion(SourceRanges.entries(revNatID: id, family: f.address.ip.family, ranges: ranges,
                                                       nodeAddresses: addresses, podCIDRs: podCIDRs))
            }
            fresh[key] = entries.isEmpty ? nil : entries
        }
        let wanted = Set(fresh.values.flatMap { $0 })
        do {
            let have = try sourceRanges.written ?? maps.readSourceRanges()
            if wanted != have || sourceRanges.written == nil {
                // Same key, other verdict: an add overwrites it.
                let add = wanted.subtracting(have)
                let remove = have.subtracting(wanted)
                try maps.updateSourceRanges(add: Array(add), remove: Array(remove), nonEmpty: !wanted.isEmpty)
            }
            sourceRanges.written = wanted
            sourceRanges.entries = fresh
        } catch {
            sourceRanges.errors += 1
            sourceRanges.written = nil
            sourceRanges.entries = fresh
            logger.error("writing loadBalancerSourceRanges failed (retried on the next sync): \(error)")
        }
    }

    func writeSourceRangeMetrics(into out: inout PrometheusText) {
        out.family("veer_source_range_entries", .gauge,
                   help: "Entries of the loadBalancerSourceRanges table (ranges, catch-alls and unbound-socket verdicts of restricted LB frontends).")
        out.sample("veer_source_range_entries", [], Double(sourceRanges.written?.count ?? 0))
        out.family("veer_source_range_errors_total", .counter, help: "Failed writes of the loadBalancerSourceRanges table (a full map), retried on the next sync.")
        out.sample("veer_source_range_errors_total", [], Double(sourceRanges.errors))
    }
}

/// What the agent keeps for the source_ranges trie.
struct SourceRangeState {
    /// loadBalancerSourceRanges entries per service.
    var entries: [ObjectKey: Set<SourceRangeEntry>] = [:]
    /// What the trie holds; nil: read it back.
    var written: Set<SourceRangeEntry>?
    var errors: UInt64 = 0
}
