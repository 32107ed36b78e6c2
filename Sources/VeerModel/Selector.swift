/// Chooses, for every frontend of a service on one node, exactly the endpoints kube-proxy would.
///
/// Pure: a function of the service, its slices and the node context. The rules and their sources are
/// in docs/selection.md and ../shared/reference/kube-proxy-semantics.md (§ numbers below refer to it).
public enum Selector {
    /// Every service of the store (or only `only`), with cross-service frontend conflicts resolved.
    public static func select(_ store: ServiceStore, node: NodeContext, only: Set<ObjectKey>? = nil,
                              explain: Bool = true) -> SelectionResult {
        merge(store.serviceKeys.filter { only?.contains($0) ?? true }.map { select(store, service: $0, node: node, explain: explain) })
    }

    /// One service of the store; empty if the store does not have it (deleted).
    /// Agents that re-select only `StoreChange.services` keep these per service and `merge` them.
    public static func select(_ store: ServiceStore, service key: ObjectKey, node: NodeContext,
                              explain: Bool = true) -> SelectionResult {
        guard let service = store.services[key] else { return SelectionResult() }
        return select(service: service, slices: store.slices(for: key), node: node, explain: explain)
    }

    /// These services, each as `select(_:service:node:explain:)` selects it, in the same order,
    /// split into `parts` runs selected at once: a start selects every service of the store, and
    /// services do not depend on one another.
    public static func select(_ store: ServiceStore, services keys: [ObjectKey], node: NodeContext,
                              explain: Bool = true, parts: Int = concurrentParts) -> [SelectionResult] {
        var results = [SelectionResult](repeating: SelectionResult(), count: keys.count)
        let parts = keys.count < 1024 ? 1 : parts
        results.withUnsafeMutableBufferPointer { out in
            concurrently(parts) { p in
                for i in (keys.count * p / parts)..<(keys.count * (p + 1) / parts) {
                    out[i] = select(store, service: keys[i], node: node, explain: explain)
                }
            }
        }
        return results
    }

    /// Concatenates per-service results, resolving frontends claimed by two services, sorted.
    public static func merge(_ results: [SelectionResult]) -> SelectionResult {
        var merged = SelectionResult()
        for r in results {
            merged.frontends += r.frontends
            merged.decisions += r.decisions
            merged.skipped += r.skipped
        }
        var out = resolveConflicts(merged)
        out.skipped.sort { ($0.service, $0.kind, $0.object, $0.reason) < ($1.service, $1.kind, $1.object, $1.reason) }
        return out
    }

    /// One service. `slices` are the service's EndpointSlices (sorted by name gives deterministic
    /// duplicate resolution; the store's `slices(for:)` returns them so).
    ///
    /// `explain: false` leaves out the decisions (`decisions` is empty); frontends, backends and
    /// skipped objects are the same. Only `veerctl explain` reads decisions, and it gets them from
    /// a selection made again when they are read: the agent's own selections, one per service,
    /// held them for nothing (at 10,000 services × 10 endpoints the verdicts were most of what the
    /// selections held, and then the rest of each decision, its strings, a tenth of the agent).
    public static func select(service: Service, slices: [EndpointSlice], node: NodeContext,
                              explain: Bool = true) -> SelectionResult {
        var result = SelectionResult()
        let key = service.key
        func skip(_ rule: SkipRule, _ reason: String, kind: String = "Service", object: String? = nil) {
            result.skipped.append(SkipReason(kind: kind, object: object ?? key.description, service: key, rule: rule, reason: reason))
        }

        // §3/§4: services kube-proxy never programs.
        if let v = service.meta.labels[KubeLabel.serviceProxyName] {
            skip(.serviceProxyName, "label \(KubeLabel.serviceProxyName)=\(v): another proxy owns this service")
            return result
        }
        if service.meta.labels[KubeLabel.headless] != nil {
            skip(.headlessLabel, "label \(KubeLabel.headless): headless service")
            return result
        }
        // The API always sets clusterIP = clusterIPs[0]; hand-written manifests may give only one.
        let primary = service.clusterIP ?? service.clusterIPs.first
        if primary == nil || primary == "" || primary == "None" {
            if service.type == .externalName {
                skip(.externalName, "type ExternalName: DNS only, nothing to proxy")
            } else {
                skip(.headless, "clusterIP \(primary ?? "unset"): headless service, DNS only")
            }
            return result
        }
        if service.type == .externalName {
            skip(.externalName, "type ExternalName: DNS only, nothing to proxy (even with a clusterIP)")
            return result
        }
        // §4 GetClusterIPByFamily: kube-proxy runs one proxier per family; a service takes part in
        // each family it has a cluster IP of, and in no other.
        let clusterIPs = clusterIPsByFamily(service)
        if clusterIPs.isEmpty {
            skip(.noClusterIP, "no usable cluster IP (\(([service.clusterIP].compactMap { $0 } + service.clusterIPs).joined(separator: ","))) for families \(service.ipFamilies.isEmpty ? "(unset)" : service.ipFamilies.joined(separator: ","))")
            return result
        }
        func served(_ family: IPFamily) -> Bool { clusterIPs[family] != nil }
        func notServed(_ family: IPFamily) -> String {
            "the service has no \(family.rawValue) cluster IP, so kube-proxy's \(family.rawValue) proxier skips it"
        }

        // §3: which slices count, per family.
        var usable: [IPFamily: [EndpointSlice]] = [:]
        for slice in slices {
            let s = slice.key.description
            if slice.serviceName == nil {
                skip(.sliceWithoutServiceName, "no \(KubeLabel.serviceName) label", kind: "EndpointSlice", object: s)
            } else if slice.serviceKey != key {
                skip(.sliceOfOtherService, "labelled for service \(slice.serviceName ?? "")", kind: "EndpointSlice", object: s)
            } else if slice.meta.labels[KubeLabel.serviceProxyName] != nil {
                skip(.serviceProxyName, "label \(KubeLabel.serviceProxyName): another proxy owns it", kind: "EndpointSlice", object: s)
            } else if slice.meta.labels[KubeLabel.headless] != nil {
                skip(.headlessLabel, "label \(KubeLabel.headless)", kind: "EndpointSlice", object: s)
            } else if slice.addressType == .fqdn {
                skip(.fqdnSlice, "addressType FQDN: kube-proxy ignores FQDN slices", kind: "EndpointSlice", object: s)
            } else if let family = slice.addressType.family {
                if served(family) {
                    usable[family, default: []].append(slice)
                } else {
                    skip(.familyNotServed, "addressType \(family.rawValue): \(notServed(family))", kind: "EndpointSlice", object: s)
                }
            } else {
                skip(.unknownAddressType, "addressType \(slice.addressType): neither IPv4 nor IPv6", kind: "EndpointSlice", object: s)
            }
        }

        // §1.2, §4: the service's external addresses; each family's proxier keeps its own.
        var externalIPs: [IPAddress] = []
        for text in service.externalIPs {
            guard let ip = IPAddress(text) else {
                skip(.invalidAddress, "externalIP \(text) is not an IP address", kind: "Frontend", object: text)
                continue
            }
            if served(ip.family) { externalIPs.append(ip) } else {
                skip(.familyNotServed, "externalIP \(text): \(notServed(ip.family))", kind: "Frontend", object: text)
            }
        }
        var lbIPs: [IPAddress] = []
        for ingress in service.loadBalancerIngress {
            guard let text = ingress.ip else {
                skip(.loadBalancerHostnameOnly, "load-balancer ingress \(ingress.hostname ?? "") has no IP", kind: "Frontend", object: ingress.hostname ?? "")
                continue
            }
            if ingress.ipMode == "Proxy" {
                skip(.loadBalancerProxyMode, "load-balancer IP \(text) has ipMode Proxy: traffic goes to the load balancer", kind: "Frontend", object: text)
            } else if let ip = IPAddress(text) {
                if served(ip.family) { lbIPs.append(ip) } else {
                    skip(.familyNotServed, "load-balancer IP \(text): \(notServed(ip.family))", kind: "Frontend", object: text)
                }
            } else {
                skip(.invalidAddress, "load-balancer IP \(text) is not an IP address", kind: "Frontend", object: text)
            }
        }
        // NodePorts on the node's addresses of each served family; on loopback only 127.0.0.1
        // (kube-proxy's localhostNodePorts is IPv4 only, never ::1).
        let nodeIPs = uniqueSorted(node.addresses.filter { served($0.family) && !$0.isLoopback && !$0.isUnspecified })
            + (node.nodePortOnLoopback && served(.ipv4) ? [IPAddress(ipv4: 0x7F00_0001)] : [])

        let affinity: UInt32? = service.sessionAffinity == .clientIP ? service.affinityTimeoutSeconds : nil
        let iTPLocal = service.internalTrafficPolicy == .local
        // pkg/api/v1/service/util.go ExternalPolicyLocal.
        let eTPLocal = service.externalTrafficPolicy == .local
            && (service.type == .nodePort || service.type == .loadBalancer || !service.externalIPs.isEmpty)

        var seen: Set<L4Address> = []
        for port in service.ports {
            let spn = ServicePortName(namespace: key.namespace, name: key.name, port: port.name, proto: port.proto)
            // Only a frontend that uses the Local set reads it (see `emit`): without one, its
            // verdicts (a reason string per endpoint) are not built at all.
            let needsLocal = iTPLocal || eTPLocal
            let selections = clusterIPs.keys.map {
                ($0, selectPort(port, slices: usable[$0] ?? [], family: $0, node: node, local: needsLocal, explain: explain))
            }
            let byFamily = Dictionary(uniqueKeysWithValues: selections)
            let decisionBase = (service: key, port: port.name, proto: port.proto.description)

            func emit(_ ip: IPAddress, _ portNumber: UInt16, _ kind: FrontendKind, external: Bool) {
                guard let sel = byFamily[ip.family] else { return }
                let address = L4Address(ip: ip, port: portNumber, proto: port.proto)
                // The node's own addresses and loopback: a cluster or external IP there would
                // capture the node's own connections (ssh, the kubelet) at the socket, the
                // socket-level form of CVE-2020-8554; anyone who may create a Service can set
                // them. Loopback is only ever a NodePort. The node's address may also be the LB
                // IP of a LoadBalancer Service: only a controller with status rights writes that,
                // and k3s' ServiceLB does exactly this.
                let nodeOwned = node.addresses.contains(ip)
                if kind != .nodePort && (ip.isLoopback || (nodeOwned && !(kind == .loadBalancer && service.type == .loadBalancer))) {
                    skip(.nodeLocalAddress, "\(address) is this node's own address; only a NodePort\(ip.isLoopback ? "" : " or a LoadBalancer Service's LB IP") may use it",
                         kind: "Frontend", object: address.description)
                    return
                }
                guard seen.insert(address).inserted else {
                    skip(.frontendConflict, "\(address) is already a frontend of this service", kind: "Frontend", object: address.description)
                    return
                }
                let useLocal: Bool
                let rule: SetRule
                let why: String
                if !external {
                    useLocal = iTPLocal
                    rule = iTPLocal ? .internalPolicyLocal : .internalPolicyCluster
                    why = iTPLocal ? "internalTrafficPolicy Local: only endpoints on this node"
                        : "internalTrafficPolicy Cluster: endpoints on all nodes"
                } else if !eTPLocal {
                    useLocal = false
                    rule = .externalPolicyCluster
                    why = "externalTrafficPolicy Cluster: endpoints on all nodes"
                } else if node.externalLocalForLocalClients {
                    useLocal = true
                    rule = .externalPolicyLocal
                    why = "externalTrafficPolicy Local with a no-op local detector (configured): only endpoints on this node"
                } else {
                    useLocal = false
                    rule = .externalPolicyLocalShortCircuit
                    why = "externalTrafficPolicy Local, but connections made on this node are short-circuited to the Cluster set"
                }
                func append(_ address: L4Address, useLocal: Bool, rule: SetRule, why: String, preserve: Bool) {
                    let set = useLocal ? sel.local : sel.cluster
                    let whenEmpty: EmptyBehavior = useLocal && sel.hasAny ? .drop : .reject
                    var emptyReason: String?
                    if set.backends.isEmpty {
                        emptyReason = sel.hasAny
                            ? "endpoints exist, but none on this node under policy Local: connections are dropped (time out)"
                            : "no usable endpoint anywhere: connections are refused"
                    }
                    result.frontends.append(DesiredFrontend(address: address, kind: kind, service: spn, backends: set.backends,
                                                            whenEmpty: whenEmpty, affinityTimeout: affinity,
                                                            preservesClientAddress: preserve))
                    guard explain else { return }
                    result.decisions.append(FrontendDecision(
                        service: decisionBase.service, port: decisionBase.port, proto: decisionBase.proto,
                        frontend: address.description, kind: kind.rawValue, set: useLocal ? .local : .cluster,
                        setRule: rule, setReason: why, topology: useLocal ? nil : sel.topology,
                        whenEmpty: whenEmpty.rawValue, emptyReason: emptyReason, backends: set.backends.count,
                        affinityTimeout: affinity, endpoints: set.verdicts))
                }
                append(address, useLocal: useLocal, rule: rule, why: why, preserve: external && eTPLocal && useLocal)
                // eTP=Local while the node's own connections short-circuit to the Cluster set:
                // clients outside the node get their own entry (the packet path looks it up
                // first) with the Local set and their address preserved. Never on loopback: no
                // packet from outside arrives there.
                if external && eTPLocal && !useLocal && !ip.isLoopback {
                    append(address.scoped(.external), useLocal: true, rule: .externalPolicyLocal,
                           why: "externalTrafficPolicy Local, clients outside the node: only endpoints on this node, client address preserved",
                           preserve: true)
                }
            }

            for ip in clusterIPs.values.sorted() { emit(ip, port.port, .clusterIP, external: false) }
            if let nodePort = port.nodePort {
                // The API server refuses nodePort on other types; a stray one opens no port here.
                if let range = node.nodePortRange, !range.contains(nodePort) {
                    skip(.nodePortOutOfRange, "nodePort \(nodePort) is outside the node port range \(range.lowerBound)-\(range.upperBound)",
                         kind: "Frontend", object: "\(port.name):\(nodePort)")
                } else if service.type == .nodePort || service.type == .loadBalancer {
                    for ip in nodeIPs { emit(ip, nodePort, .nodePort, external: true) }
                } else {
                    skip(.nodePortWithoutType, "nodePort \(nodePort) on a \(service.type) Service is not served",
                         kind: "Frontend", object: "\(port.name):\(nodePort)")
                }
            }
            for ip in externalIPs { emit(ip, port.port, .externalIP, external: true) }
            for ip in lbIPs { emit(ip, port.port, .loadBalancer, external: true) }
        }
        return sorted(result)
    }

    // MARK: - Helpers

    /// §4 GetClusterIPByFamily, for both families: `clusterIPs[i]` where `ipFamilies[i]` names the
    /// family; objects without `ipFamilies` (legacy, hand-written) use each cluster IP's own family.
    static func clusterIPsByFamily(_ s: Service) -> [IPFamily: IPAddress] {
        let ips = s.clusterIPs.isEmpty ? [s.clusterIP].compactMap { $0 } : s.clusterIPs
        var out: [IPFamily: IPAddress] = [:]
        if s.ipFamilies.isEmpty {
            for ip in ips.compactMap({ IPAddress($0) }) where out[ip.family] == nil { out[ip.family] = ip }
            return out
        }
        for (i, name) in s.ipFamilies.enumerated() where i < ips.count {
            guard let family = IPFamily(rawValue: name), out[family] == nil,
                  let ip = IPAddress(ips[i]), ip.family == family else { continue }
            out[family] = ip
        }
        return out
    }

    private static func uniqueSorted(_ ips: [IPAddress]) -> [IPAddress] { Array(Set(ips)).sorted() }

    private static func sorted(_ r: SelectionResult) -> SelectionResult {
        var out = r
        let order = r.frontends.indices.sorted { r.frontends[$0].address < r.frontends[$1].address }
        out.frontends = order.map { r.frontends[$0] }
        out.decisions = r.decisions.isEmpty ? [] : order.map { r.decisions[$0] }
        return out
    }

    /// Two services claiming one address: the one that `precedes` serves it; the loser is reported.
    static func resolveConflicts(_ r: SelectionResult) -> SelectionResult {
        // Keyed by the address without its scope: a frontend's external-scope entry stands or
        // falls with its cluster-scope one.
        var winner: [L4Address: Int] = [:]
        for (i, f) in r.frontends.enumerated() {
            let key = f.address.scoped(.cluster)
            if let w = winner[key] {
                let a = r.frontends[w]
                if f.precedes(a) { winner[key] = i }
            } else {
                winner[key] = i
            }
        }
        var out = SelectionResult(skipped: r.skipped)
        // Decisions only where every result merged had them (selected with explain).
        let decided = r.decisions.count == r.frontends.count
        for (i, f) in r.frontends.enumerated() {
            guard let w = winner[f.address.scoped(.cluster)] else { continue }
            if r.frontends[w].service == f.service && r.frontends[w].kind == f.kind {
                out.frontends.append(f)
                if decided { out.decisions.append(r.decisions[i]) }
            } else {
                let k = r.frontends[w]
                out.skipped.append(SkipReason(kind: "Frontend", object: f.address.description,
                                              service: ObjectKey(namespace: f.service.namespace, name: f.service.name),
                                              rule: .frontendConflict,
                                              reason: "\(f.address) (\(f.kind.rawValue)) is already the \(k.kind.rawValue) frontend of \(k.service)"))
            }
        }
        return sorted(out)
    }
}
