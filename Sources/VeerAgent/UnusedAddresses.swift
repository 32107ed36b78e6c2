import VeerDatapath
import VeerModel

/// Addresses no frontend serves, as kube-proxy's nftables mode treats them: a ClusterIP on a
/// port its Service does not expose is refused, an address of a service CIDR no Service holds is
/// dropped (ServiceAddresses in VeerModel). The agent keeps the ClusterIPs counted per frontend
/// as the syncs change them, so a sync that adds or removes no ClusterIP writes nothing here.
extension Agent {
    /// After a sync wrote `changed`: a ClusterIP counts while one of its frontends is programmed
    /// (a Service rejected for a full map is not, so its address stays untouched).
    func trackClusterIPs(_ changed: Set<L4Address>) {
        for address in changed {
            let ip = address.ip
            let programmed = index.desired(address)?.kind == .clusterIP && running?.state.masters[address] != nil
            var set = serviceAddresses.clusterIPRefs[ip] ?? []
            let before = !set.isEmpty
            if programmed { set.insert(address) } else { set.remove(address) }
            serviceAddresses.clusterIPRefs[ip] = set.isEmpty ? nil : set
            if before != !set.isEmpty { serviceAddresses.clusterIPChanges[ip] = !set.isEmpty }
        }
    }

    func rebuildClusterIPs() {
        serviceAddresses.clusterIPRefs = [:]
        index.forEachDesired { address, f in
            if f.kind == .clusterIP && running?.state.masters[address] != nil {
                serviceAddresses.clusterIPRefs[address.ip, default: []].insert(address)
            }
        }
        serviceAddresses.clusterIPChanges = [:]
        serviceAddresses.written = nil
    }

    /// The ranges in force: the API's ServiceCIDR objects when it has any, else --service-cidr.
    var serviceCIDRs: [IPPrefix] {
        if let api = serviceAddresses.apiServiceCIDRs, !api.isEmpty { return api }
        return config.serviceCIDRs
    }

    /// From `ServiceCIDRSource`: the union of the ServiceCIDR objects' `spec.cidrs`, or nil when the
    /// API does not serve them. A range that does not parse is skipped with a logged reason.
    public func serviceCIDRsFromAPI(_ texts: [String]?) {
        var parsed: [IPPrefix]?
        if let texts {
            let (good, problems) = ServiceAddresses.parse(texts)
            for p in problems { logger.warning("ServiceCIDR: \(p)") }
            parsed = good
        }
        let before = serviceCIDRs
        serviceAddresses.apiServiceCIDRs = parsed
        guard serviceCIDRs != before else { return }
        logger.info("service CIDRs: \(serviceCIDRs.map(\.description).joined(separator: ", ")) (from \(serviceAddresses.apiServiceCIDRs?.isEmpty == false ? "ServiceCIDR objects" : "--service-cidr"))")
        // Rewritten whole with the next sync; at once if the first sync is done.
        serviceAddresses.written = nil
        if programmed { syncServiceAddresses() }
    }

    /// The whole table: the service CIDRs, ClusterIPs from the frontends.
    private var wantedServiceAddresses: Set<ServiceAddressEntry> {
        var out = Set(serviceCIDRs.map { ServiceAddressEntry(prefix: $0, rule: .drop) })
        for ip in serviceAddresses.clusterIPRefs.keys { out.insert(ServiceAddressEntry(prefix: IPPrefix(address: ip, length: 128), rule: .refuse)) }
        return out
    }

    func syncServiceAddresses() {
        programmed = true
        // After a failed write (a full trie), wait before reading it back and rewriting it
        // whole: at 100,000 ClusterIPs that is seconds, and every sync would pay it again.
        if let retryAt = serviceAddresses.retryAt, ContinuousClock.now < retryAt { return }
        serviceAddresses.retryAt = nil
        do {
            if var written = serviceAddresses.written {
                guard !serviceAddresses.clusterIPChanges.isEmpty else { return }
                var add: [ServiceAddressEntry] = [], remove: [IPPrefix] = []
                for (ip, present) in serviceAddresses.clusterIPChanges {
                    let e = ServiceAddressEntry(prefix: IPPrefix(address: ip, length: 128), rule: .refuse)
                    if present, written.insert(e).inserted { add.append(e) }
                    if !present, written.remove(e) != nil { remove.append(e.prefix) }
                }
                try maps.updateServiceAddresses(add: add, remove: remove, nonEmpty: !written.isEmpty)
                serviceAddresses.written = written
            } else {
                let wanted = wantedServiceAddresses
                try maps.writeServiceAddresses(wanted)
                serviceAddresses.written = wanted
            }
            serviceAddresses.clusterIPChanges = [:]
        } catch {
            // A full trie: the addresses already there keep working; read back and retry next sync.
            serviceAddresses.errors += 1
            serviceAddresses.written = nil
            serviceAddresses.retryAt = ContinuousClock.now + ServiceAddressState.retryPause
            logger.error("writing the service address table failed (unexposed ports and unallocated service addresses may not fail fast): \(error)")
        }
    }

    func writeServiceAddressMetrics(into out: inout PrometheusText) {
        out.family("veer_service_address_entries", .gauge,
                   help: "Entries of the table for addresses no frontend serves, by rule (refuse: ClusterIPs, drop: service CIDRs).")
        let written = serviceAddresses.written ?? []
        out.sample("veer_service_address_entries", ["rule": "refuse"], Double(written.filter { $0.rule == .refuse }.count))
        out.sample("veer_service_address_entries", ["rule": "drop"], Double(written.filter { $0.rule == .drop }.count))
        out.family("veer_service_address_errors_total", .counter, help: "Failed writes of that table (a full map, see --max-service-ips), retried 30 s later.")
        out.sample("veer_service_address_errors_total", [], Double(serviceAddresses.errors))
    }
}

/// What the agent keeps for the service_ips trie.
struct ServiceAddressState {
    /// The programmed ClusterIP frontends of each ClusterIP.
    var clusterIPRefs: [IPAddress: Set<L4Address>] = [:]
    /// ClusterIPs that appeared (true) or went (false) since the trie was last written.
    var clusterIPChanges: [IPAddress: Bool] = [:]
    /// What the trie holds; nil: unknown, read it back and rewrite it whole.
    var written: Set<ServiceAddressEntry>?
    var errors: UInt64 = 0
    /// No rewrite before this, after a failed one.
    var retryAt: ContinuousClock.Instant?
    static let retryPause = Duration.seconds(30)
    /// ServiceCIDR objects' ranges, nil until the API answered (or when it has none to give).
    var apiServiceCIDRs: [IPPrefix]?
}
