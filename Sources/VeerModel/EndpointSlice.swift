// An EndpointSlice as the selector reads it (decoded and validated in `KubeDecoding.swift`;
// the other objects are in `KubeTypes.swift`).

public struct AddressType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let ipv4 = AddressType(rawValue: "IPv4")
    public static let ipv6 = AddressType(rawValue: "IPv6")
    public static let fqdn = AddressType(rawValue: "FQDN")

    /// The IP family of an IPv4 or IPv6 slice; nil for FQDN and unknown types.
    public var family: IPFamily? { IPFamily(rawValue: rawValue) }

    public var description: String { rawValue }
}

public struct EndpointConditions: Hashable, Sendable {
    /// nil means ready (kube-proxy).
    public var ready: Bool?
    /// nil means serving.
    public var serving: Bool?
    /// nil means not terminating.
    public var terminating: Bool?

    public init(ready: Bool? = nil, serving: Bool? = nil, terminating: Bool? = nil) {
        self.ready = ready
        self.serving = serving
        self.terminating = terminating
    }

    public var isReady: Bool { ready ?? true }
    public var isServing: Bool { serving ?? true }
    public var isTerminating: Bool { terminating ?? false }
}

public struct ObjectReference: Hashable, Sendable {
    public var kind: String?
    public var namespace: String?
    public var name: String?

    public init(kind: String? = nil, namespace: String? = nil, name: String? = nil) {
        self.kind = kind
        self.namespace = namespace
        self.name = name
    }
}

public struct Endpoint: Hashable, Sendable {
    public var addresses: [String]
    public var conditions: EndpointConditions
    public var nodeName: String?
    /// Never read by kube-proxy; kept for names.
    public var zone: String?
    /// `hints.forZones[].name`
    public var zoneHints: [String]?
    /// `hints.forNodes[].name`
    public var nodeHints: [String]?
    public var targetRef: ObjectReference?

    public init(addresses: [String], conditions: EndpointConditions = .init(), nodeName: String? = nil,
                zone: String? = nil, zoneHints: [String]? = nil, nodeHints: [String]? = nil,
                targetRef: ObjectReference? = nil) {
        self.addresses = addresses
        self.conditions = conditions
        self.nodeName = nodeName
        self.zone = zone
        self.zoneHints = zoneHints
        self.nodeHints = nodeHints
        self.targetRef = targetRef
    }
}

public struct EndpointPort: Hashable, Sendable {
    /// "" when omitted (API defaulting).
    public var name: String
    public var proto: L4Protocol
    /// nil or 0: the port contributes nothing (kube-proxy).
    public var port: UInt16?

    public init(name: String = "", proto: L4Protocol = .tcp, port: UInt16?) {
        self.name = name
        self.proto = proto
        self.port = port
    }
}

public struct EndpointSlice: Hashable, Sendable {
    public var meta: ObjectMeta
    public var addressType: AddressType
    public var endpoints: [Endpoint]
    public var ports: [EndpointPort]

    public init(meta: ObjectMeta, addressType: AddressType = .ipv4, endpoints: [Endpoint] = [],
                ports: [EndpointPort] = []) {
        self.meta = meta
        self.addressType = addressType
        self.endpoints = endpoints
        self.ports = ports
    }

    public var key: ObjectKey { meta.key }

    /// The `kubernetes.io/service-name` label, nil when missing or empty.
    public var serviceName: String? {
        guard let name = meta.labels[KubeLabel.serviceName], !name.isEmpty else { return nil }
        return name
    }

    /// The service this slice belongs to, if labelled.
    public var serviceKey: ObjectKey? { serviceName.map { ObjectKey(namespace: meta.namespace, name: $0) } }
}
