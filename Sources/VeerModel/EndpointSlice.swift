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

/// One endpoint of a slice, stored compactly (there are ten or a hundred per service): the usual
/// single address parsed to binary, conditions in bits, node, zone and the pod's namespace as
/// shared names, and what is rare (several addresses, text that is not an address in its
/// canonical form, hints, a reference to something else than a pod) in one box, nil otherwise.
/// The properties read and write the same values as plain fields would; equal values are stored
/// equally, so `==` and hashing compare what the properties show.
public struct Endpoint: Hashable, Sendable {
    /// The one address when `flags` has `Flag.ip`.
    private var ip = IPAddress(high: 0, low: 0)
    /// `targetRef.name` when the reference is kept inline.
    private var podName: PodName?
    private var extras: Extras?
    private var node = SharedName.none
    private var zoneName = SharedName.none
    private var podNamespace = SharedName.none
    private var flags: UInt16 = 0

    private enum Flag {
        static let ip: UInt16 = 1 << 0
        /// targetRef is inline: kind nil, or "Pod" with `kindPod`.
        static let ref: UInt16 = 1 << 1
        static let kindPod: UInt16 = 1 << 2
        // Bits 3-8: ready, serving, terminating, two bits each (0 nil, 1 false, 2 true).
        static let conditionsShift: UInt16 = 3
    }

    /// Everything an endpoint seldom has.
    private final class Extras: Hashable, Sendable {
        let addresses: [String]?
        let zoneHints: [String]?
        let nodeHints: [String]?
        let targetRef: ObjectReference?
        /// Only when the name table is full.
        let nodeName: String?
        let zone: String?

        init(addresses: [String]?, zoneHints: [String]?, nodeHints: [String]?, targetRef: ObjectReference?,
             nodeName: String?, zone: String?) {
            self.addresses = addresses
            self.zoneHints = zoneHints
            self.nodeHints = nodeHints
            self.targetRef = targetRef
            self.nodeName = nodeName
            self.zone = zone
        }

        var isEmpty: Bool {
            addresses == nil && zoneHints == nil && nodeHints == nil && targetRef == nil && nodeName == nil && zone == nil
        }

        static func == (a: Extras, b: Extras) -> Bool {
            a.addresses == b.addresses && a.zoneHints == b.zoneHints && a.nodeHints == b.nodeHints
                && a.targetRef == b.targetRef && a.nodeName == b.nodeName && a.zone == b.zone
        }

        func hash(into h: inout Hasher) {
            h.combine(addresses)
            h.combine(zoneHints)
            h.combine(nodeHints)
            h.combine(targetRef)
            h.combine(nodeName)
            h.combine(zone)
        }
    }

    public init(addresses: [String], conditions: EndpointConditions = .init(), nodeName: String? = nil,
                zone: String? = nil, zoneHints: [String]? = nil, nodeHints: [String]? = nil,
                targetRef: ObjectReference? = nil) {
        var pods = PodName.Sharing()
        self.init(addresses: addresses, parsed: addresses.count == 1 ? IPAddress(addresses[0]) : nil, conditions: conditions,
                  nodeName: nodeName, zone: zone, zoneHints: zoneHints, nodeHints: nodeHints, targetRef: targetRef,
                  pods: &pods)
    }

    /// `parsed`: `IPAddress(addresses[0])` when there is one address, already parsed by the decoder.
    /// `pods`: shared by a slice's endpoints, whose pod names share their heads.
    init(addresses: [String], parsed: IPAddress?, conditions: EndpointConditions, nodeName: String?,
         zone: String?, zoneHints: [String]?, nodeHints: [String]?, targetRef: ObjectReference?,
         pods: inout PodName.Sharing) {
        var extraAddresses: [String]?
        if addresses.count == 1, let parsed, let ip = Self.canonical(parsed, addresses[0]) {
            self.ip = ip
            flags |= Flag.ip
        } else if !addresses.isEmpty {
            extraAddresses = addresses
        }
        var extraRef: ObjectReference?
        if let targetRef {
            if (targetRef.kind == nil || targetRef.kind == "Pod"), let ns = SharedName(targetRef.namespace) {
                podName = targetRef.name.map { pods.name($0) }
                podNamespace = ns
                flags |= Flag.ref | (targetRef.kind == nil ? 0 : Flag.kindPod)
            } else {
                extraRef = targetRef
            }
        }
        var extraNode: String?, extraZone: String?
        if let n = SharedName(nodeName) { node = n } else { extraNode = nodeName }
        if let z = SharedName(zone) { zoneName = z } else { extraZone = zone }
        self.conditions = conditions
        let extras = Extras(addresses: extraAddresses, zoneHints: zoneHints, nodeHints: nodeHints, targetRef: extraRef,
                            nodeName: extraNode, zone: extraZone)
        self.extras = extras.isEmpty ? nil : extras
    }

    /// The address when it is one IP written in its canonical form (what `IPAddress.description`
    /// prints), so the text read back is the text given.
    static func canonical(_ ip: IPAddress, _ text: String) -> IPAddress? {
        if ip.isIPv4 {
            // Dotted quad without leading zeros is its own canonical form.
            var octetStart = true, leadingZero = false
            for b in text.utf8 {
                if b == UInt8(ascii: ".") {
                    octetStart = true
                    leadingZero = false
                } else if b == UInt8(ascii: ":") {
                    return nil  // ::ffff:a.b.c.d prints as a.b.c.d
                } else {
                    if leadingZero { return nil }
                    leadingZero = octetStart && b == UInt8(ascii: "0")
                    octetStart = false
                }
            }
            return ip
        }
        return ip.description == text ? ip : nil
    }

    public var addresses: [String] {
        get {
            if flags & Flag.ip != 0 { return [ip.description] }
            return extras?.addresses ?? []
        }
        set { self = rebuilt(addresses: newValue) }
    }

    /// The first address, parsed: nil when there is none or it is not an IP address. What the
    /// selector reads, without making the text.
    public var firstIP: IPAddress? {
        if flags & Flag.ip != 0 { return ip }
        return extras?.addresses?.first.flatMap { IPAddress($0) }
    }

    /// Whether `addresses` is non-empty, without making it.
    public var hasAddress: Bool { flags & Flag.ip != 0 || extras?.addresses?.isEmpty == false }

    public var conditions: EndpointConditions {
        get {
            func read(_ shift: UInt16) -> Bool? {
                switch flags >> (Flag.conditionsShift + shift) & 3 {
                case 1: false
                case 2: true
                default: nil
                }
            }
            return EndpointConditions(ready: read(0), serving: read(2), terminating: read(4))
        }
        set {
            func bits(_ v: Bool?, _ shift: UInt16) -> UInt16 { (v.map { $0 ? 2 : 1 } ?? 0) << (Flag.conditionsShift + shift) }
            flags &= ~(UInt16(0x3F) << Flag.conditionsShift)
            flags |= bits(newValue.ready, 0) | bits(newValue.serving, 2) | bits(newValue.terminating, 4)
        }
    }

    public var nodeName: String? {
        get { node.id != 0 ? node.string : extras?.nodeName }
        set { self = rebuilt(nodeName: .some(newValue)) }
    }

    /// The node and zone names as ids of the shared table, for a selection to copy as they are
    /// (a name looked up again took the table's lock twice per endpoint, on every selecting thread).
    var sharedNode: SharedName { node.id != 0 ? node : SharedName(orNone: extras?.nodeName) }
    var sharedZone: SharedName { zoneName.id != 0 ? zoneName : SharedName(orNone: extras?.zone) }

    /// Never read by kube-proxy; kept for names.
    public var zone: String? {
        get { zoneName.id != 0 ? zoneName.string : extras?.zone }
        set { self = rebuilt(zone: .some(newValue)) }
    }

    /// `hints.forZones[].name`
    public var zoneHints: [String]? {
        get { extras?.zoneHints }
        set { self = rebuilt(zoneHints: .some(newValue)) }
    }

    /// `hints.forNodes[].name`
    public var nodeHints: [String]? {
        get { extras?.nodeHints }
        set { self = rebuilt(nodeHints: .some(newValue)) }
    }

    public var targetRef: ObjectReference? {
        get {
            if flags & Flag.ref != 0 {
                return ObjectReference(kind: flags & Flag.kindPod != 0 ? "Pod" : nil, namespace: podNamespace.string, name: podName?.description)
            }
            return extras?.targetRef
        }
        set { self = rebuilt(targetRef: .some(newValue)) }
    }

    /// The pod's name when the reference is to a pod (kind "Pod" or none), as stored: what a
    /// selected backend keeps, sharing the stored name's head.
    var pod: PodName? {
        if flags & Flag.ref != 0 { return podName }
        guard let ref = extras?.targetRef, ref.kind == nil || ref.kind == "Pod" else { return nil }
        return ref.name.map(PodName.init)
    }

    private func rebuilt(addresses: [String]? = nil, nodeName: String?? = nil, zone: String?? = nil,
                         zoneHints: [String]?? = nil, nodeHints: [String]?? = nil,
                         targetRef: ObjectReference?? = nil) -> Endpoint {
        Endpoint(addresses: addresses ?? self.addresses, conditions: conditions, nodeName: nodeName ?? self.nodeName,
                 zone: zone ?? self.zone, zoneHints: zoneHints ?? self.zoneHints, nodeHints: nodeHints ?? self.nodeHints,
                 targetRef: targetRef ?? self.targetRef)
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
