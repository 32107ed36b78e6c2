/// Topology Aware Routing (kube-proxy-semantics §1.5): whether a port's ready endpoints are
/// narrowed by their node or zone hints, and the verdict of each ready endpoint under that mode.
extension Selector {
    static func topologyMode(ready: [Candidate], node: NodeContext) -> TopologyDecision {
        guard !ready.isEmpty else {
            return TopologyDecision(mode: .none, rules: [.noReadyEndpoints], reason: "no endpoint is ready; hints are not used")
        }
        var rules: [TopologyRule] = []
        var reasons: [String] = []
        if node.nodeHintsEnabled {
            if let missing = ready.first(where: { ($0.endpoint.nodeHints ?? []).isEmpty }) {
                rules.append(.endpointWithoutNodeHint)
                reasons.append("node hints ignored because endpoint \(missing.text) has none")
            } else if ready.contains(where: { $0.endpoint.nodeHints?.contains(node.nodeName) == true }) {
                return TopologyDecision(mode: .preferSameNode, rules: [.nodeHintsMatch],
                                        reason: "every ready endpoint has node hints and some are for this node (\(node.nodeName))")
            } else {
                rules.append(.noNodeHintForThisNode)
                reasons.append("node hints ignored because none is for this node (\(node.nodeName))")
            }
        } else {
            rules.append(.nodeHintsDisabled)
            reasons.append("node hints disabled")
        }
        let zone = node.zone ?? ""
        if let missing = ready.first(where: { ($0.endpoint.zoneHints ?? []).isEmpty }) {
            rules.append(.endpointWithoutZoneHint)
            reasons.append("zone hints ignored because endpoint \(missing.text) has none")
        } else if ready.contains(where: { $0.endpoint.zoneHints?.contains(zone) == true }) {
            rules.append(.zoneHintsMatch)
            reasons.append("every ready endpoint has zone hints and some are for zone \(zone)")
            return TopologyDecision(mode: .preferSameZone, rules: rules, reason: reasons.joined(separator: "; "))
        } else if zone.isEmpty {
            rules.append(.nodeHasNoZone)
            reasons.append("zone hints ignored because this node has no zone")
        } else {
            rules.append(.noZoneHintForThisZone)
            reasons.append("zone hints ignored because none is for zone \(zone)")
        }
        return TopologyDecision(mode: .none, rules: rules, reason: reasons.joined(separator: "; "))
    }


    /// A ready endpoint's place in the Cluster set under the topology mode chosen for its port.
    /// `explain: false`: the rule only, with no reason text (no verdict is kept).
    static func readyRule(_ c: Candidate, topology: TopologyDecision, hintsPresent: Bool, node: NodeContext,
                          explain: Bool = true) -> (EndpointRule, String) {
        let zone = node.zone ?? ""
        func why(_ text: @autoclosure () -> String) -> String { explain ? text() : "" }
        switch topology.mode {
        case .none:
            return hintsPresent ? (.readyHintsIgnored, why("ready; \(topology.reason)")) : (.ready, "ready")
        case .preferSameNode:
            return c.endpoint.nodeHints?.contains(node.nodeName) == true
                ? (.hintedForThisNode, "ready, hinted for this node")
                : (.hintedForOtherNode, why("node hints on; hinted for \(list(c.endpoint.nodeHints)), not \(node.nodeName)"))
        case .preferSameZone:
            return c.endpoint.zoneHints?.contains(zone) == true
                ? (.hintedForThisZone, why("ready, hinted for zone \(zone)"))
                : (.hintedForOtherZone, why("zone hints on; hinted for \(list(c.endpoint.zoneHints)), this node is in zone \(zone)"))
        }
    }
}
