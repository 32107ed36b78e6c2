import VeerModel

/// What the agent needs of the maps, and all it may do to them: know their capacities, read
/// what they hold, write ordered operations, read the kernel's counters, and end the sockets
/// left on removed backends.
///
/// `Datapath` is the kernel's. `MemoryMapStore` (VeerTestSupport) applies the same operations
/// to a `MapState`, optionally failing some writes, so the agent's own reconcile loop runs in
/// tests and benchmarks without root.
public protocol MapStore: AnyObject, Sendable {
    var capacities: MapCapacities { get }
    func readState() throws -> MapState
    /// Applies in order. On a failure it stops and throws: the maps hold a prefix of the plan.
    func apply(_ operations: [MapOperation]) throws
    /// Hits per (frontend, backend) address pair, earlier memberships of the pair included.
    func hitsByAddress(_ state: MapState) throws -> [FrontendBackend: UInt64]
    /// Every member's count by its ids, read in batches, and what earlier memberships counted:
    /// what a scrape reads from the kernel (the ids' addresses it knows from the agent).
    func memberHits() throws -> MemberHits
    func stats() throws -> [DatapathStat: UInt64]
    /// (map name, entries, capacity) of each map.
    func fill() throws -> [(map: String, entries: Int, capacity: Int)]
    /// As `fill()`, with the agent-written maps' entries as the agent counted what it wrote
    /// rather than read back key by key; the maps the programs write are read.
    func fill(agentWritten: MapEntryCounts) throws -> [(map: String, entries: Int, capacity: Int)]
    /// The programs that read the maps are still attached.
    var isAttached: Bool { get }
    /// Destroys connected sockets whose backend is no longer a member of their frontend,
    /// judged against `state` (what the maps hold) when given.
    func terminateStaleSockets(protocols: Set<L4Protocol>, state: IndexedMapState?) throws -> SocketTermination

    // The address tables beside the frontends (ServiceIPs.swift, SourceRanges.swift).
    func readServiceAddresses() throws -> Set<ServiceAddressEntry>
    /// Makes the service-address table hold exactly `wanted`.
    func writeServiceAddresses(_ wanted: Set<ServiceAddressEntry>) throws
    /// `nonEmpty`: whether the table holds entries afterwards.
    func updateServiceAddresses(add: [ServiceAddressEntry], remove: [IPPrefix], nonEmpty: Bool) throws
    func readSourceRanges() throws -> Set<SourceRangeEntry>
    func updateSourceRanges(add: [SourceRangeEntry], remove: [SourceRangeEntry], nonEmpty: Bool) throws
}

extension Datapath: MapStore {}

/// The hit counters as the kernel holds them: one count per member entry, by (rev_nat id,
/// backend id), and the counts of memberships since deleted, by address pair (added to the
/// pair's current member so a counter stays monotonic when a backend leaves and comes back).
public struct MemberHits: Sendable {
    public var members: [MemberKey] = []
    /// `counts[i]` is `members[i]`'s.
    public var counts: [UInt64] = []
    public var retired: [FrontendBackend: UInt64] = [:]

    /// Every member of `state` with its count from hits by address (0 where uncounted).
    public init(_ state: MapState, hits: [FrontendBackend: UInt64]) {
        members.reserveCapacity(state.members.count)
        counts.reserveCapacity(state.members.count)
        for member in state.members {
            var count: UInt64 = 0
            if let frontend = state.revNat[member.revNatID], let backend = state.backends[member.backendID]?.address {
                count = hits[FrontendBackend(frontend: frontend, backend: backend)] ?? 0
            }
            members.append(member)
            counts.append(count)
        }
    }

    public init(members: [MemberKey] = [], counts: [UInt64] = [], retired: [FrontendBackend: UInt64] = [:]) {
        precondition(members.count == counts.count)
        self.members = members
        self.counts = counts
        self.retired = retired
    }
}

/// Entries of each map the agent writes.
public struct MapEntryCounts: Sendable {
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

extension MapStore {
    /// From the maps' state and the hits by address: for stores that keep no per-member counts
    /// (the in-memory maps of tests and benchmarks). Every member is there, with 0 if uncounted.
    public func memberHits() throws -> MemberHits {
        let state = try readState()
        return MemberHits(state, hits: try hitsByAddress(state))
    }

    public func fill(agentWritten: MapEntryCounts) throws -> [(map: String, entries: Int, capacity: Int)] { try fill() }
}
