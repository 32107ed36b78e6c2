/// The vocabulary between selection, planning and the kernel maps.
///
/// The Selector produces `DesiredFrontend`s; the datapath reads the pinned maps into a
/// `MapState`; the Planner turns the two into ordered `MapOperation`s, which the datapath
/// applies one by one. Field meanings follow bpf/include/veer_maps.h.

/// Which Service port a frontend belongs to: the names users see in veerctl and metrics.
public struct ServicePortName: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var namespace: String
    public var name: String
    /// The Service port's `name` ("" for an unnamed single port).
    public var port: String
    public var proto: L4Protocol

    public init(namespace: String, name: String, port: String, proto: L4Protocol) {
        self.namespace = namespace
        self.name = name
        self.port = port
        self.proto = proto
    }

    public var serviceKey: ObjectKey { ObjectKey(namespace: namespace, name: name) }
    public var description: String { port.isEmpty ? "\(namespace)/\(name)" : "\(namespace)/\(name):\(port)" }

    public static func < (a: Self, b: Self) -> Bool {
        (a.namespace, a.name, a.port, a.proto.rawValue) < (b.namespace, b.name, b.port, b.proto.rawValue)
    }
}

/// What a client gets from a frontend whose set is empty (kube-proxy's REJECT vs DROP).
public enum EmptyBehavior: String, Hashable, Sendable {
    /// No usable endpoint anywhere: kube-proxy REJECTs, the client gets ECONNREFUSED.
    case reject
    /// Endpoints exist but none in this frontend's Local set: kube-proxy DROPs.
    case drop
}

/// What kind of address a frontend is, for names and explanations.
public enum FrontendKind: String, Hashable, Sendable, CaseIterable {
    case clusterIP, nodePort, externalIP, loadBalancer
}

/// One endpoint chosen for a frontend.
public struct DesiredBackend: Hashable, Sendable {
    public var address: L4Address
    /// Chosen through the serving+terminating fallback.
    public var terminating: Bool
    /// For names only; never reaches the kernel. The stored endpoint's name, its head shared.
    public private(set) var pod: PodName?
    /// Node and zone names repeat across every endpoint of every selection: held as ids of the
    /// shared name table (4 bytes each where a `String?` took 16), 72 → 48 bytes a backend.
    private var node: SharedName
    private var zoneName: SharedName

    public var nodeName: String? {
        get { node.string }
        set { node = SharedName(orNone: newValue) }
    }

    public var zone: String? {
        get { zoneName.string }
        set { zoneName = SharedName(orNone: newValue) }
    }

    public var podName: String? {
        get { pod?.description }
        set { pod = newValue.map(PodName.init) }
    }

    public init(address: L4Address, terminating: Bool = false, podName: String? = nil,
                nodeName: String? = nil, zone: String? = nil) {
        self.init(address: address, terminating: terminating, pod: podName.map(PodName.init),
                  node: SharedName(orNone: nodeName), zone: SharedName(orNone: zone))
    }

    /// With the names as the stored endpoint holds them (the shared table's ids, the pod's name).
    init(address: L4Address, terminating: Bool, pod: PodName?, node: SharedName, zone: SharedName) {
        self.address = address
        self.terminating = terminating
        self.pod = pod
        self.node = node
        zoneName = zone
    }

    var sharedNode: SharedName { node }
    var sharedZone: SharedName { zoneName }
}

/// One frontend this node serves, with the exact backend set kube-proxy would use for it.
public struct DesiredFrontend: Hashable, Sendable {
    public var address: L4Address
    public var kind: FrontendKind
    public var service: ServicePortName
    /// Order carries no meaning; duplicates by address are not allowed.
    public var backends: [DesiredBackend]
    public var whenEmpty: EmptyBehavior
    /// sessionAffinity ClientIP timeout in seconds; nil when affinity is None.
    public var affinityTimeout: UInt32?
    /// externalTrafficPolicy Local: the packet path keeps the client's address (no SNAT).
    public var preservesClientAddress: Bool

    public init(address: L4Address, kind: FrontendKind, service: ServicePortName, backends: [DesiredBackend],
                whenEmpty: EmptyBehavior = .reject, affinityTimeout: UInt32? = nil,
                preservesClientAddress: Bool = false) {
        self.address = address
        self.kind = kind
        self.service = service
        self.backends = backends
        self.whenEmpty = whenEmpty
        self.affinityTimeout = affinityTimeout
        self.preservesClientAddress = preservesClientAddress
    }
}

extension DesiredFrontend {
    private static let kindRank: [FrontendKind: Int] = [.clusterIP: 0, .nodePort: 1, .externalIP: 2, .loadBalancer: 3]

    /// Which of two frontends claiming one address serves it: a ClusterIP beats a NodePort beats
    /// an externalIP beats an LB IP; then the first service by namespace/name. The one rule the
    /// Selector, the agent's `FrontendIndex` and the Planner apply.
    public func precedes(_ other: DesiredFrontend) -> Bool {
        (Self.kindRank[kind] ?? 9, service) < (Self.kindRank[other.kind] ?? 9, other.service)
    }
}

// MARK: - What the maps hold

/// A master entry (slot 0) of the services map.
public struct MasterEntry: Hashable, Sendable {
    public var count: UInt32
    public var revNatID: UInt32
    public var affinityTimeout: UInt32
    public var flags: UInt16

    public init(count: UInt32, revNatID: UInt32, affinityTimeout: UInt32 = 0, flags: UInt16 = 0) {
        self.count = count
        self.revNatID = revNatID
        self.affinityTimeout = affinityTimeout
        self.flags = flags
    }

    /// Mirrors VEER_SVC_F_* in veer_maps.h (checked by a test against the header).
    public static let flagAffinity: UInt16 = 0x1
    public static let flagEmptyDrop: UInt16 = 0x2
    /// VEER_SVC_F_EXT_LOCAL: external clients keep their address (eTP=Local).
    public static let flagExternalLocal: UInt16 = 0x4
}

/// A backends map entry.
public struct BackendEntry: Hashable, Sendable {
    public var address: L4Address
    public var flags: UInt8

    public init(address: L4Address, flags: UInt8 = 0) {
        self.address = address
        self.flags = flags
    }

    /// Mirrors VEER_BE_F_TERMINATING.
    public static let flagTerminating: UInt8 = 0x1
}

public struct MemberKey: Hashable, Comparable, Sendable {
    public var revNatID: UInt32
    public var backendID: UInt32

    public init(revNatID: UInt32, backendID: UInt32) {
        self.revNatID = revNatID
        self.backendID = backendID
    }

    public static func < (a: Self, b: Self) -> Bool { (a.revNatID, a.backendID) < (b.revNatID, b.backendID) }
}

/// The agent-written maps, as read back from the kernel (or as a plan leaves them).
public struct MapState: Hashable, Sendable {
    public var masters: [L4Address: MasterEntry] = [:]
    /// Slot entries (slot ≥ 1) per frontend: slot → backend id.
    public var slots: [L4Address: SlotTable] = [:]
    public var backends = IDTable<BackendEntry>()
    public var revNat = IDTable<L4Address>()
    public var members = MemberTable()

    public init() {}

    /// Entries in the services map: masters plus slots.
    public var serviceEntryCount: Int { masters.count + slots.values.reduce(0) { $0 + $1.count } }
}

/// Map sizes the planner must stay within (max_entries of each agent-written map).
public struct MapCapacities: Hashable, Sendable {
    public var services: Int
    public var backends: Int
    public var revNat: Int
    public var members: Int

    public init(services: Int, backends: Int, revNat: Int, members: Int) {
        self.services = services
        self.backends = backends
        self.revNat = revNat
        self.members = members
    }
}

/// One write to one map. The datapath applies these in order.
public enum MapOperation: Hashable, Sendable, CustomStringConvertible {
    case upsertBackend(id: UInt32, BackendEntry)
    case upsertRevNat(id: UInt32, L4Address)
    case upsertMember(MemberKey)
    case upsertSlot(L4Address, slot: UInt16, backendID: UInt32, revNatID: UInt32)
    case upsertMaster(L4Address, MasterEntry)
    case deleteSlot(L4Address, slot: UInt16)
    case deleteMaster(L4Address)
    case deleteMember(MemberKey)
    case deleteRevNat(id: UInt32)
    case deleteBackend(id: UInt32)

    public var description: String {
        switch self {
        case let .upsertBackend(id, b): "upsert backend \(id) = \(b.address) flags=\(b.flags)"
        case let .upsertRevNat(id, a): "upsert rev_nat \(id) = \(a)"
        case let .upsertMember(m): "upsert member \(m.revNatID)/\(m.backendID)"
        case let .upsertSlot(a, slot, be, rn): "upsert slot \(a)#\(slot) = backend \(be) (rev_nat \(rn))"
        case let .upsertMaster(a, m): "upsert master \(a) count=\(m.count) rev_nat=\(m.revNatID) flags=\(m.flags) affinity=\(m.affinityTimeout)s"
        case let .deleteSlot(a, slot): "delete slot \(a)#\(slot)"
        case let .deleteMaster(a): "delete master \(a)"
        case let .deleteMember(m): "delete member \(m.revNatID)/\(m.backendID)"
        case let .deleteRevNat(id): "delete rev_nat \(id)"
        case let .deleteBackend(id): "delete backend \(id)"
        }
    }
}

extension MapOperation {
    public var isDelete: Bool {
        switch self {
        case .deleteSlot, .deleteMaster, .deleteMember, .deleteRevNat, .deleteBackend: true
        default: false
        }
    }
}

extension MapState {
    /// Applies one operation, as the kernel maps would.
    public mutating func apply(_ op: MapOperation) {
        switch op {
        case let .upsertBackend(id, b): backends[id] = b
        case let .upsertRevNat(id, a): revNat[id] = a
        case let .upsertMember(m): members.insert(m)
        case let .upsertSlot(a, slot, be, _): slots[a, default: [:]][slot] = be
        case let .upsertMaster(a, m): masters[a] = m
        case let .deleteSlot(a, slot):
            slots[a]?[slot] = nil
            if slots[a]?.isEmpty == true { slots[a] = nil }
        case let .deleteMaster(a): masters[a] = nil
        case let .deleteMember(m): members.remove(m)
        case let .deleteRevNat(id): revNat[id] = nil
        case let .deleteBackend(id): backends[id] = nil
        }
    }
}
