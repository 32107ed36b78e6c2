/// The endpoints of one service port (kube-proxy-semantics §1, §3): candidates from the slices,
/// duplicates resolved, then the Cluster and Local sets, each endpoint with its verdict.
extension Selector {
    struct EndpointSet {
        var backends: [DesiredBackend] = []
        var verdicts: [EndpointVerdict] = []
    }

    struct PortSelection {
        var cluster = EndpointSet()
        var local = EndpointSet()
        var topology: TopologyDecision
        /// kube-proxy's hasAnyEndpoints: something ready or serving+terminating exists anywhere.
        var hasAny: Bool
    }

    struct Candidate {
        var ip: IPAddress
        var port: UInt16
        var endpoint: Endpoint
        var slice: String

        init(ip: IPAddress, port: UInt16, endpoint: Endpoint, slice: String) {
            self.ip = ip
            self.port = port
            self.endpoint = endpoint
            self.slice = slice
        }

        /// The verdicts hold the address, not its text: "ip:port" is made when explain reads it.
        var id: EndpointVerdict.EndpointID { .address(ip, port) }
        /// For the reasons that name it.
        var text: String { L4Address(ip: ip, port: port, proto: .tcp).hostPort }

        /// What makes two candidates one endpoint (§3: one per IP:port).
        var address: L4Address { L4Address(ip: ip, port: port, proto: .tcp) }
        var ready: Bool { endpoint.conditions.isReady }
        var servingTerminating: Bool { endpoint.conditions.isServing && endpoint.conditions.isTerminating }
    }

    /// `slices` are the service's usable slices of `family`. `local: false` leaves the Local set
    /// empty, for a service none of whose frontends uses it. `explain: false` builds no verdicts
    /// (the sets are the same): the agent keeps selections for planning, and `veerctl explain`'s
    /// verdicts are derived again from the stored objects when they are read.
    static func selectPort(_ port: ServicePort, slices: [EndpointSlice], family: IPFamily, node: NodeContext,
                           local wantLocal: Bool = true, explain: Bool = true) -> PortSelection {
        var excluded: [EndpointVerdict] = []  // out of every set of this port
        var candidates: [Candidate] = []
        var index: [L4Address: Int] = [:]

        func verdict(_ e: Endpoint, _ id: EndpointVerdict.EndpointID, _ slice: String, _ rule: EndpointRule, _ reason: String) -> EndpointVerdict {
            EndpointVerdict(id: id, slice: slice, pod: e.targetRef?.name, node: e.nodeName, rule: rule, reason: reason)
        }
        // An endpoint out of every set: only its verdict records it, so without one nothing is built.
        func exclude(_ e: Endpoint, _ id: @autoclosure () -> EndpointVerdict.EndpointID, _ slice: String, _ rule: EndpointRule,
                     _ reason: @autoclosure () -> String) {
            if explain { excluded.append(verdict(e, id(), slice, rule, reason())) }
        }

        for slice in slices {
            let s = slice.key.description
            let match = slice.ports.first { $0.name == port.name && $0.proto == port.proto }
            for e in slice.endpoints {
                // The text only where a verdict names it; the usual path reads the parsed address.
                var first: String { e.addresses[0] }
                guard e.hasAddress else {
                    exclude(e, .text("(no address)"), s, .noAddress, "endpoint has no address")
                    continue
                }
                guard let match else {
                    let has = slice.ports.map { "\($0.name.isEmpty ? "\"\"" : $0.name)/\($0.proto.kubernetesName)" }.joined(separator: ", ")
                    exclude(e, EndpointVerdict.EndpointID(first), s, .portMismatch,
                                            "slice has no port named \"\(port.name)\" with protocol \(port.proto.kubernetesName) (it has \(has.isEmpty ? "none" : has))")
                    continue
                }
                guard let number = match.port, number != 0 else {
                    exclude(e, EndpointVerdict.EndpointID(first), s, .portUnset, "slice port \"\(port.name)\" has no port number")
                    continue
                }
                guard let ip = e.firstIP, ip.family == family else {
                    exclude(e, EndpointVerdict.EndpointID(first), s, .wrongFamily, "address \(first) is not \(family.rawValue), the slice's addressType")
                    continue
                }
                let c = Candidate(ip: ip, port: number, endpoint: e, slice: s)
                // §3: one endpoint per IP:port; a non-terminating copy replaces a terminating one,
                // otherwise the first seen (slices sorted by name) stays.
                if let at = index[c.address] {
                    let old = candidates[at]
                    if old.endpoint.conditions.terminating == true && e.conditions.terminating != true {
                        exclude(old.endpoint, old.id, old.slice, .duplicate,
                                                "duplicate of \(c.text) in slice \(s), which is not terminating and wins")
                        candidates[at] = c
                    } else {
                        exclude(e, c.id, s, .duplicate, "duplicate of \(c.text) in slice \(old.slice), which was kept")
                    }
                } else {
                    index[c.address] = candidates.count
                    candidates.append(c)
                }
            }
        }

        let ready = candidates.filter(\.ready)
        let hasAny = candidates.contains { $0.ready || $0.servingTerminating }
        let topology = topologyMode(ready: ready, node: node)
        let hintsPresent = ready.contains { !($0.endpoint.zoneHints ?? []).isEmpty || !($0.endpoint.nodeHints ?? []).isEmpty }
        let isLocal: (Candidate) -> Bool = { c in
            !node.nodeName.isEmpty && c.endpoint.nodeName == node.nodeName
        }

        // The reason text is built only for verdicts that are kept.
        func why(_ text: @autoclosure () -> String) -> String { explain ? text() : "" }

        // §1.3 Cluster set. Sized up front: these arrays live as long as the selection.
        var cluster = EndpointSet()
        if explain { cluster.verdicts.reserveCapacity(candidates.count + excluded.count) }
        cluster.backends.reserveCapacity(candidates.count)
        for c in candidates {
            let rule: EndpointRule
            let reason: String
            if !ready.isEmpty {
                if c.ready {
                    (rule, reason) = readyRule(c, topology: topology, hintsPresent: hintsPresent, node: node, explain: explain)
                } else if c.servingTerminating {
                    (rule, reason) = (.terminatingNotNeeded, "terminating; not used while ready endpoints exist")
                } else {
                    (rule, reason) = (.notReady, why(notReadyReason(c.endpoint)))
                }
            } else if c.servingTerminating {
                (rule, reason) = (.terminatingFallback, "serving and terminating; used because no endpoint is ready")
            } else {
                (rule, reason) = (.notReady, why(notReadyReason(c.endpoint)))
            }
            if explain { cluster.verdicts.append(verdict(c.endpoint, c.id, c.slice, rule, reason)) }
            if rule.included { cluster.backends.append(backend(c, port, terminating: rule == .terminatingFallback)) }
        }

        // §1.4 Local set: no topology; local terminating used when no local endpoint is ready.
        var local = EndpointSet()
        if wantLocal && explain { local.verdicts.reserveCapacity(candidates.count + excluded.count) }
        if wantLocal { local.backends.reserveCapacity(candidates.count) }
        let localReadyExists = candidates.contains { isLocal($0) && $0.ready }
        for c in candidates where wantLocal {
            let rule: EndpointRule
            let reason: String
            if !isLocal(c) {
                (rule, reason) = (.notOnThisNode, why("on node \(c.endpoint.nodeName ?? "(unset)"), not this node (\(node.nodeName)), under policy Local"))
            } else if c.ready {
                (rule, reason) = (.localReady, "ready, on this node")
            } else if c.servingTerminating {
                (rule, reason) = localReadyExists
                    ? (.terminatingNotNeeded, "terminating; not used while ready endpoints exist on this node")
                    : (.localTerminatingFallback, "serving and terminating on this node; used because no endpoint on this node is ready")
            } else {
                (rule, reason) = (.notReady, why(notReadyReason(c.endpoint)))
            }
            if explain { local.verdicts.append(verdict(c.endpoint, c.id, c.slice, rule, reason)) }
            if rule.included { local.backends.append(backend(c, port, terminating: rule == .localTerminatingFallback)) }
        }

        cluster.verdicts += excluded
        if wantLocal { local.verdicts += excluded }
        cluster.backends.sort { $0.address < $1.address }
        local.backends.sort { $0.address < $1.address }
        return PortSelection(cluster: cluster, local: local, topology: topology, hasAny: hasAny)
    }

    /// §1.5 topologyModeFromHints: only ready endpoints are inspected.
    static func backend(_ c: Candidate, _ port: ServicePort, terminating: Bool) -> DesiredBackend {
        DesiredBackend(address: L4Address(ip: c.ip, port: c.port, proto: port.proto), terminating: terminating,
                       pod: c.endpoint.pod, node: c.endpoint.sharedNode, zone: c.endpoint.sharedZone)
    }

    static func notReadyReason(_ e: Endpoint) -> String {
        let c = e.conditions
        return "not ready (ready=\(c.isReady), serving=\(c.isServing), terminating=\(c.isTerminating))"
    }

    static func list(_ names: [String]?) -> String {
        let n = names ?? []
        return n.isEmpty ? "nothing" : n.joined(separator: ",")
    }
}
