import Foundation
import VeerDatapath
import VeerModel

/// The maps in memory, for the agent's own loop without the kernel: each operation is
/// `MapState.apply`, each map holds at most its capacity, and `failureRate` fails that
/// share of writes (seeded, so a run repeats). A failed write stops the batch where it is,
/// the operations before it applied, as a failed syscall leaves the kernel's maps.
public final class MemoryMapStore: MapStore, @unchecked Sendable {
    public struct InjectedFailure: Error, CustomStringConvertible {
        public let operation: MapOperation
        public var description: String { "injected failure: \(operation)" }
    }
    public struct MapFull: Error, CustomStringConvertible {
        public let operation: MapOperation
        public var description: String { "map full: \(operation)" }
    }

    public let capacities: MapCapacities
    private let lock = NSLock()
    private var state = MapState()
    private var failureRate: Double
    private var random: UInt64
    private var counts = (writes: 0, failures: 0)
    /// Entries in the services map (masters and slots), kept as operations apply: counting
    /// them for every write made a large sync quadratic.
    private var serviceEntries = 0

    /// The compiled defaults unless a test wants small maps: an entry costs memory only when it
    /// is used, here as in the kernel's BPF_F_NO_PREALLOC maps.
    public init(capacities: MapCapacities = .compiledDefaults,
                failureRate: Double = 0, seed: UInt64 = 1) {
        self.capacities = capacities
        self.failureRate = failureRate
        random = seed
    }

    /// Writes attempted and writes failed by injection so far.
    public var writes: (attempted: Int, failed: Int) { lock.withLock { (counts.writes, counts.failures) } }

    /// Stops (or starts) failing writes, e.g. to let a test converge.
    public func setFailureRate(_ rate: Double) { lock.withLock { failureRate = rate } }

    public func readState() -> MapState { lock.withLock { state } }

    public func apply(_ operations: [MapOperation]) throws {
        try lock.withLock {
            for op in operations {
                counts.writes += 1
                if failureRate > 0, nextUniform() < failureRate {
                    counts.failures += 1
                    throw InjectedFailure(operation: op)
                }
                guard fits(op) else { throw MapFull(operation: op) }
                let before = serviceEntries(op)
                switch op {
                case .upsertMember, .deleteMember, .upsertBackend, .deleteBackend, .upsertRevNat, .deleteRevNat: memberCounts = nil
                default: break
                }
                state.apply(op)
                serviceEntries += serviceEntries(op) - before
            }
        }
    }

    /// A new key in a full map fails, as the kernel's update does (E2BIG).
    private func fits(_ op: MapOperation) -> Bool {
        switch op {
        case let .upsertBackend(id, _): state.backends[id] != nil || state.backends.count < capacities.backends
        case let .upsertRevNat(id, _): state.revNat[id] != nil || state.revNat.count < capacities.revNat
        case let .upsertMember(m): state.members.contains(m) || state.members.count < capacities.members
        case let .upsertSlot(a, slot, _, _): state.slots[a]?[slot] != nil || serviceEntries < capacities.services
        case let .upsertMaster(a, _): state.masters[a] != nil || serviceEntries < capacities.services
        default: true
        }
    }

    /// The services map's entries of the frontend an operation touches (0 for other maps).
    private func serviceEntries(_ op: MapOperation) -> Int {
        switch op {
        case let .upsertSlot(a, _, _, _), let .upsertMaster(a, _), let .deleteSlot(a, _), let .deleteMaster(a):
            (state.masters[a] != nil ? 1 : 0) + (state.slots[a]?.count ?? 0)
        default: 0
        }
    }

    /// splitmix64: small, seeded, good enough to pick which writes fail.
    private func nextUniform() -> Double {
        random &+= 0x9E37_79B9_7F4A_7C15
        var z = random
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Double((z ^ (z >> 31)) >> 11) / Double(1 << 53)
    }

    private var hits: [FrontendBackend: UInt64] = [:]
    /// The members' counts as the kernel's members map holds them, a count in each member's
    /// entry: made from `hits` when they are set (the kernel counts at connect time, not when
    /// a scrape reads), again after a write changed the members. nil: to be made.
    private var memberCounts: MemberHits?

    /// What the kernel would have counted (tests of the metrics).
    public func setHits(_ hits: [FrontendBackend: UInt64]) {
        lock.withLock {
            self.hits = hits
            memberCounts = countsByMember()
        }
    }
    public func hitsByAddress(_ state: MapState) -> [FrontendBackend: UInt64] { lock.withLock { hits } }

    /// Every member's count, as the kernel's batch read gives them: the columns copied out.
    public func memberHits() -> MemberHits {
        lock.withLock {
            if memberCounts == nil { memberCounts = countsByMember() }
            let counted = memberCounts!
            return MemberHits(members: counted.members.withUnsafeBufferPointer { Array($0) },
                              counts: counted.counts.withUnsafeBufferPointer { Array($0) })
        }
    }

    /// Each member's count from the hits by address (0 where uncounted). Under the lock.
    private func countsByMember() -> MemberHits { MemberHits(state, hits: hits) }
    public func stats() -> [DatapathStat: UInt64] { [:] }
    public func fill() -> [(map: String, entries: Int, capacity: Int)] {
        let s = readState()
        return [("veer_services", s.serviceEntryCount, capacities.services), ("veer_backends", s.backends.count, capacities.backends),
                ("veer_rev_nat", s.revNat.count, capacities.revNat), ("veer_members", s.members.count, capacities.members)]
    }
    public var isAttached: Bool { true }

    private var serviceAddresses: Set<ServiceAddressEntry> = []
    private var sourceRanges: Set<SourceRangeEntry> = []
    public func readServiceAddresses() -> Set<ServiceAddressEntry> { lock.withLock { serviceAddresses } }
    public func writeServiceAddresses(_ wanted: Set<ServiceAddressEntry>) { lock.withLock { serviceAddresses = wanted } }
    public func updateServiceAddresses(add: [ServiceAddressEntry], remove: [IPPrefix], nonEmpty: Bool) {
        lock.withLock {
            serviceAddresses = serviceAddresses.filter { !remove.contains($0.prefix) }.union(add)
        }
    }
    public func readSourceRanges() -> Set<SourceRangeEntry> { lock.withLock { sourceRanges } }
    public func updateSourceRanges(add: [SourceRangeEntry], remove: [SourceRangeEntry], nonEmpty: Bool) {
        lock.withLock { sourceRanges = sourceRanges.subtracting(remove).union(add) }
    }
    public func terminateStaleSockets(protocols: Set<L4Protocol>, state: IndexedMapState?) -> SocketTermination { SocketTermination() }
}
