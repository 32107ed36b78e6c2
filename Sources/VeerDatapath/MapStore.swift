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
    func stats() throws -> [DatapathStat: UInt64]
    /// (map name, entries, capacity) of each map.
    func fill() throws -> [(map: String, entries: Int, capacity: Int)]
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
