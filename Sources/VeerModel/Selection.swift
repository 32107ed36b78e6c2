/// What the Selector decided and why, as data: `veerctl explain` is built from these.
///
/// Every type here is Codable with plain shapes (strings, enums, arrays), so the agent can serve
/// them as JSON. Addresses are written as `L4Address` text ("10.96.0.10:80/tcp").

/// The node the selection is for.
public struct NodeContext: Hashable, Sendable {
    /// This node's name, matched exactly against `endpoint.nodeName` and node hints.
    public var nodeName: String
    /// This node's zone, matched against zone hints. nil = no zone label (zone hints then never match).
    public var zone: String?
    /// Addresses NodePorts are served on (besides loopback), of both families.
    public var addresses: [IPAddress]
    /// NodePort on 127.0.0.1, as iptables kube-proxy does by default (`localhostNodePorts`).
    public var nodePortOnLoopback: Bool
    /// The PreferSameTrafficDistribution gate (GA and locked on since 1.35): honour node hints.
    public var nodeHintsEnabled: Bool
    /// Emulate kube-proxy with a no-op local-traffic detector: eTP=Local external frontends use the
    /// Local set for connections made on this node instead of short-circuiting to the Cluster set.
    public var externalLocalForLocalClients: Bool
    /// The API server's `--service-node-port-range`, when the operator gives it: a nodePort
    /// outside it opens no port here (nil: any port is served, as kube-proxy does).
    public var nodePortRange: ClosedRange<UInt16>?

    public init(nodeName: String, zone: String? = nil, addresses: [IPAddress] = [],
                nodePortOnLoopback: Bool = true, nodeHintsEnabled: Bool = true,
                externalLocalForLocalClients: Bool = false, nodePortRange: ClosedRange<UInt16>? = nil) {
        self.nodeName = nodeName
        self.zone = zone
        self.addresses = addresses
        self.nodePortOnLoopback = nodePortOnLoopback
        self.nodeHintsEnabled = nodeHintsEnabled
        self.externalLocalForLocalClients = externalLocalForLocalClients
        self.nodePortRange = nodePortRange
    }

    /// From this node's Node object: zone from `topology.kubernetes.io/zone` unless `zoneOverride`
    /// is given, addresses from its InternalIP/ExternalIP addresses unless `addressOverride` is.
    public init(nodeName: String, node: Node?, zoneOverride: String? = nil, addressOverride: [IPAddress]? = nil,
                nodePortOnLoopback: Bool = true, nodePortRange: ClosedRange<UInt16>? = nil) {
        self.init(nodeName: nodeName, zone: zoneOverride ?? node?.zone,
                  addresses: addressOverride ?? node?.ipAddresses ?? [], nodePortOnLoopback: nodePortOnLoopback,
                  nodePortRange: nodePortRange)
    }
}

/// Why one endpoint is in or out of one frontend's set.
public enum EndpointRule: String, Hashable, Sendable, Codable, CaseIterable {
    // In
    /// Ready (a nil `ready` counts as ready), no topology filtering.
    case ready
    /// Ready; some endpoints carry hints but they are ignored (e.g. the safeguard: endpoint E has none).
    case readyHintsIgnored
    /// Ready, node hints are on and this endpoint is hinted for this node.
    case hintedForThisNode
    /// Ready, zone hints are on and this endpoint is hinted for this node's zone.
    case hintedForThisZone
    /// Serving and terminating, used because no endpoint of the port is ready anywhere.
    case terminatingFallback
    /// Policy Local: ready and on this node.
    case localReady
    /// Policy Local: serving+terminating on this node, used because no endpoint on this node is ready.
    case localTerminatingFallback

    // Out
    /// Not ready, and not serving+terminating (so not even a fallback).
    case notReady
    /// Serving+terminating, but ready endpoints exist, and terminating ones are never mixed in.
    case terminatingNotNeeded
    /// Node hints are on and this endpoint is hinted for other nodes.
    case hintedForOtherNode
    /// Zone hints are on and this endpoint is hinted for other zones.
    case hintedForOtherZone
    /// Policy Local and the endpoint is not on this node.
    case notOnThisNode
    /// Another copy of the same IP:port (from this or another slice) was kept.
    case duplicate
    /// The endpoint's slice has no port with this service port's name and protocol.
    case portMismatch
    /// The slice's matching port has no number (nil or 0).
    case portUnset
    /// The endpoint has no address.
    case noAddress
    /// The endpoint's first address is not of the slice's family.
    case wrongFamily

    public var included: Bool {
        switch self {
        case .ready, .readyHintsIgnored, .hintedForThisNode, .hintedForThisZone, .terminatingFallback, .localReady, .localTerminatingFallback: true
        default: false
        }
    }
}

public struct EndpointVerdict: Hashable, Sendable, Codable {
    /// The endpoint as the Selector saw it: a parsed address and port, formatted only when read
    /// (a full sync holds one verdict per endpoint per set; 100,000 "ip:port" strings were 6 MB),
    /// or the slice's own text when it gave no usable address.
    enum EndpointID: Hashable, Sendable {
        case address(IPAddress, UInt16)
        case text(String)

        /// Text that an address and port print as, exactly, is held as them: one endpoint, one value.
        init(_ text: String) {
            if let a = L4Address(text), !text.contains("/"), a.hostPort == text {
                self = .address(a.ip, a.port)
            } else {
                self = .text(text)
            }
        }

        var text: String {
            switch self {
            case .address(let ip, let port): L4Address(ip: ip, port: port, proto: .tcp).hostPort
            case .text(let t): t
            }
        }
    }

    var id: EndpointID
    /// "ip:port" (just the address when the slice gives no port).
    public var endpoint: String {
        get { id.text }
        set { id = EndpointID(newValue) }
    }
    /// "namespace/name" of the slice the endpoint came from.
    public var slice: String
    public var pod: String?
    public var node: String?
    public var included: Bool
    public var rule: EndpointRule
    /// One sentence, naming what decided it ("hinted for zone b, this node is in zone a").
    public var reason: String

    public init(endpoint: String, slice: String, pod: String?, node: String?, rule: EndpointRule, reason: String) {
        self.init(id: EndpointID(endpoint), slice: slice, pod: pod, node: node, rule: rule, reason: reason)
    }

    init(id: EndpointID, slice: String, pod: String?, node: String?, rule: EndpointRule, reason: String) {
        self.id = id
        self.slice = slice
        self.pod = pod
        self.node = node
        self.included = rule.included
        self.rule = rule
        self.reason = reason
    }

    // The same JSON as the synthesized coding of the plain fields (decisions.json is unchanged).
    enum CodingKeys: String, CodingKey {
        case endpoint, slice, pod, node, included, rule, reason
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = EndpointID(try c.decode(String.self, forKey: .endpoint))
        slice = try c.decode(String.self, forKey: .slice)
        pod = try c.decodeIfPresent(String.self, forKey: .pod)
        node = try c.decodeIfPresent(String.self, forKey: .node)
        included = try c.decode(Bool.self, forKey: .included)
        rule = try c.decode(EndpointRule.self, forKey: .rule)
        reason = try c.decode(String.self, forKey: .reason)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(endpoint, forKey: .endpoint)
        try c.encode(slice, forKey: .slice)
        try c.encodeIfPresent(pod, forKey: .pod)
        try c.encodeIfPresent(node, forKey: .node)
        try c.encode(included, forKey: .included)
        try c.encode(rule, forKey: .rule)
        try c.encode(reason, forKey: .reason)
    }
}

public enum TopologyMode: String, Hashable, Sendable, Codable {
    case none, preferSameNode, preferSameZone
}

/// Why topology filtering (the hints) is on or off for a port's Cluster set.
public enum TopologyRule: String, Hashable, Sendable, Codable {
    /// No endpoint is ready: hints are not looked at.
    case noReadyEndpoints
    /// Every ready endpoint has node hints and one names this node.
    case nodeHintsMatch
    /// A ready endpoint has no node hint (the safeguard): node hints ignored for everyone.
    case endpointWithoutNodeHint
    /// All ready endpoints have node hints, none names this node.
    case noNodeHintForThisNode
    /// Node hints are not honoured (PreferSameTrafficDistribution off).
    case nodeHintsDisabled
    /// Every ready endpoint has zone hints and one names this node's zone.
    case zoneHintsMatch
    /// A ready endpoint has no zone hint (the safeguard): zone hints ignored for everyone.
    case endpointWithoutZoneHint
    /// All ready endpoints have zone hints, none names this node's zone.
    case noZoneHintForThisZone
    /// This node has no zone, so no zone hint can match.
    case nodeHasNoZone
}

public struct TopologyDecision: Hashable, Sendable, Codable {
    public var mode: TopologyMode
    /// Node level first, then zone level (when the node level did not apply).
    public var rules: [TopologyRule]
    public var reason: String
}

/// Which of kube-proxy's two sets a frontend uses.
public enum EndpointSetKind: String, Hashable, Sendable, Codable {
    case cluster, local
}

public enum SetRule: String, Hashable, Sendable, Codable {
    /// ClusterIP, internalTrafficPolicy Cluster.
    case internalPolicyCluster
    /// ClusterIP, internalTrafficPolicy Local.
    case internalPolicyLocal
    /// External frontend, externalTrafficPolicy Cluster.
    case externalPolicyCluster
    /// External frontend, externalTrafficPolicy Local, but every connection Veer sees is made on this
    /// node: kube-proxy short-circuits such traffic to the Cluster set.
    case externalPolicyLocalShortCircuit
    /// External frontend, externalTrafficPolicy Local, emulating a no-op local detector: Local set.
    case externalPolicyLocal
}

public struct FrontendDecision: Hashable, Sendable, Codable {
    public var service: ObjectKey
    /// The service port's name ("" when unnamed).
    public var port: String
    /// "tcp", "udp", "sctp".
    public var proto: String
    /// "10.96.0.10:80/tcp"
    public var frontend: String
    /// `FrontendKind` raw value: clusterIP, nodePort, externalIP, loadBalancer.
    public var kind: String
    public var set: EndpointSetKind
    public var setRule: SetRule
    public var setReason: String
    /// Topology of the Cluster set (nil for a Local-set frontend: hints never touch it).
    public var topology: TopologyDecision?
    /// `EmptyBehavior` raw value: what a client gets when `backends` is empty.
    public var whenEmpty: String
    /// Why the set is empty, nil if it is not.
    public var emptyReason: String?
    /// Number of backends chosen.
    public var backends: Int
    public var affinityTimeout: UInt32?
    /// Every endpoint of the service considered for this port, in or out.
    public var endpoints: [EndpointVerdict]

    public var address: L4Address? { L4Address(frontend) }
}

/// Why something produced no frontend.
public enum SkipRule: String, Hashable, Sendable, Codable {
    /// `service.kubernetes.io/service-proxy-name` label: another proxy owns it (kube-proxy skips every value).
    case serviceProxyName
    /// `service.kubernetes.io/headless` label.
    case headlessLabel
    /// clusterIP None or unset.
    case headless
    case externalName
    /// No cluster IP of any family (none parses, or none matches `ipFamilies`).
    case noClusterIP
    case fqdnSlice
    /// A slice, externalIP or LB IP of a family the service has no cluster IP of: kube-proxy's
    /// proxier of that family skips the whole service.
    case familyNotServed
    case unknownAddressType
    case sliceWithoutServiceName
    case sliceOfOtherService
    /// LB ingress with ipMode Proxy: traffic must really go to the external load balancer.
    case loadBalancerProxyMode
    /// LB ingress with a hostname and no IP.
    case loadBalancerHostnameOnly
    /// An externalIP or LB IP that is not an IP address.
    case invalidAddress
    /// The same address:port/proto is already a frontend (of this or another service).
    case frontendConflict
    /// A cluster, external or LB IP on the node's own address or loopback (only NodePorts may use them).
    case nodeLocalAddress
    /// A nodePort on a Service whose type is neither NodePort nor LoadBalancer.
    case nodePortWithoutType
    /// A nodePort outside the node port range veerd was given (`--node-port-range`).
    case nodePortOutOfRange
}

public struct SkipReason: Hashable, Sendable, Codable, CustomStringConvertible {
    /// "Service", "EndpointSlice", "Frontend".
    public var kind: String
    /// "namespace/name", or the frontend address.
    public var object: String
    /// The service it concerns.
    public var service: ObjectKey
    public var rule: SkipRule
    public var reason: String

    public var description: String { "\(kind) \(object): \(reason)" }
}

public struct SelectionResult: Hashable, Sendable {
    /// Sorted by address, unique by address.
    public var frontends: [DesiredFrontend] = []
    /// One per frontend, same order; none when selected without `explain`.
    public var decisions: [FrontendDecision] = []
    public var skipped: [SkipReason] = []

    public init(frontends: [DesiredFrontend] = [], decisions: [FrontendDecision] = [], skipped: [SkipReason] = []) {
        self.frontends = frontends
        self.decisions = decisions
        self.skipped = skipped
    }

    public func frontend(_ address: L4Address) -> DesiredFrontend? { frontends.first { $0.address == address } }
    public func decision(_ address: L4Address) -> FrontendDecision? { decisions.first { $0.frontend == address.description } }
}

/// The agent's last decision, saved beside the pins so `veerctl explain` answers from the
/// selector's own reasons, also while the agent is down.
public struct SavedDecisions: Codable, Hashable, Sendable {
    public var node: String
    public var zone: String?
    public var decisions: [FrontendDecision]
    public var skipped: [SkipReason]

    public init(node: NodeContext, selection: SelectionResult) {
        self.node = node.nodeName
        zone = node.zone
        decisions = selection.decisions
        skipped = selection.skipped
    }
}
