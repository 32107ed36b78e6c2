/// What the maps hold, with the indexes that let the planner plan a few frontends in time
/// proportional to those frontends, not to the maps: backend ids by address, members by
/// backend (`MapState.members` is by rev_nat id already), entry counts and free ids. The agent keeps one, updated with
/// every operation it writes, instead of reading the maps back for every change.
public struct IndexedMapState: Sendable {
    public private(set) var state: MapState
    /// Backend ids by the address their entry holds; of several, the lowest is the one reused
    /// (as a full plan does).
    private var backendIndex = AddressIndex()
    /// rev_nat ids by the frontend they hold. A failed write can leave one with no master
    /// yet (rev_nat is written before the master): the next plan reuses it, not a new id.
    private var revNatIndex = AddressIndex()
    /// The rev_nat ids of the members naming each backend id: how many frontends use a backend,
    /// and which (`frontends(usingBackend:)`).
    private(set) var membersByBackend = IDSetsByID()
    public private(set) var serviceEntryCount = 0
    private(set) var backendIDs: IDPool
    private(set) var revNatIDs: IDPool

    public init(_ state: MapState = MapState()) {
        self.state = state
        // Sized up front: growing them a step at a time was a large part of building one.
        backendIndex.reserveCapacity(state.backends.count)
        revNatIndex.reserveCapacity(state.revNat.count)
        membersByBackend.reserveCapacity(state.backends.count + 1)
        for (id, entry) in state.backends { backendIndex.insert(id, for: entry.address) { state.backends[$0]?.address } }
        for (id, address) in state.revNat { revNatIndex.insert(id, for: address) { state.revNat[$0] } }
        for m in state.members { membersByBackend.insert(m.revNatID, at: m.backendID) }
        serviceEntryCount = state.serviceEntryCount
        backendIDs = IDPool(used: state.backends.keys)
        revNatIDs = IDPool(used: Array(state.revNat.keys) + state.masters.values.map(\.revNatID))
    }

    /// The backend ids by address (shared, not copied): `ProgrammedNames` finds its rows by them.
    public var backendIDTable: BackendIDs { BackendIDs(index: backendIndex, backends: state.backends) }

    /// The backend entries' addresses by id, and the rev_nat entries' (shared, not copied): what
    /// a /metrics scrape resolves the hit counters' ids with.
    public var backendAddresses: AddressesByID { AddressesByID(state.backends) }
    public var revNatAddresses: AddressesByID { AddressesByID(state.revNat) }

    /// The id a plan reuses for this backend address: the lowest that holds it.
    public func backendID(_ address: L4Address) -> UInt32? { backendIndex.lowest(address) { state.backends[$0]?.address } }

    /// Every backend id holding this address (several while a plan moves it between ids).
    public func backendIDs(holding address: L4Address) -> [UInt32] { backendIndex.ids(address) { state.backends[$0]?.address } }

    /// The lowest rev_nat id holding this frontend address, master or not.
    public func revNatID(_ address: L4Address) -> UInt32? { revNatIndex.lowest(address) { state.revNat[$0] } }

    /// Members naming this backend id (frontends using it).
    func memberCount(_ id: UInt32) -> Int { membersByBackend[id].count }

    /// The programmed frontends whose members name a backend entry holding this address: those
    /// whose plan must be redone with a frontend changing its use of it (a shared backend's
    /// terminating flag depends on every frontend using it). By the maps' own ids, so the agent
    /// keeps no table by backend address of its own.
    public func frontends(usingBackend address: L4Address) -> [L4Address] {
        var out: [L4Address] = []
        for id in backendIndex.ids(address, { state.backends[$0]?.address }) {
            for rn in membersByBackend[id] { if let f = state.revNat[rn] { out.append(f) } }
        }
        return out
    }

    public mutating func apply(_ operations: [MapOperation]) {
        for op in operations { apply(op) }
    }

    /// Applies one operation, as the kernel maps would, keeping the indexes.
    public mutating func apply(_ op: MapOperation) {
        switch op {
        case let .upsertBackend(id, entry):
            if let old = state.backends[id] { dropBackendAddress(old.address, id) }
            let backends = state.backends
            backendIndex.insert(id, for: entry.address) { backends[$0]?.address }
            backendIDs.use(id)
        case let .deleteBackend(id):
            if let old = state.backends[id] {
                dropBackendAddress(old.address, id)
                backendIDs.free(id)
            }
        case let .upsertRevNat(id, address):
            if let old = state.revNat[id] { dropRevNatAddress(old, id) }
            let revNat = state.revNat
            revNatIndex.insert(id, for: address) { revNat[$0] }
            revNatIDs.use(id)
        case let .upsertMaster(address, master):
            revNatIDs.use(master.revNatID)
            if state.masters[address] == nil { serviceEntryCount += 1 }
        case let .deleteRevNat(id):
            // Plans delete a frontend's master before its rev_nat entry: the id is free now.
            if let old = state.revNat[id] {
                dropRevNatAddress(old, id)
                revNatIDs.free(id)
            }
        case let .upsertMember(m):
            if !state.members.contains(m) { membersByBackend.insert(m.revNatID, at: m.backendID) }
        case let .deleteMember(m):
            if state.members.contains(m) { membersByBackend.remove(m.revNatID, at: m.backendID) }
        case let .upsertSlot(address, slot, _, _):
            if state.slots[address]?[slot] == nil { serviceEntryCount += 1 }
        case let .deleteSlot(address, slot):
            if state.slots[address]?[slot] != nil { serviceEntryCount -= 1 }
        case let .deleteMaster(address):
            if state.masters[address] != nil { serviceEntryCount -= 1 }
        }
        state.apply(op)
    }

    private mutating func dropRevNatAddress(_ address: L4Address, _ id: UInt32) {
        let revNat = state.revNat
        revNatIndex.remove(id, for: address) { revNat[$0] }
    }

    private mutating func dropBackendAddress(_ address: L4Address, _ id: UInt32) {
        let backends = state.backends
        backendIndex.remove(id, for: address) { backends[$0]?.address }
    }
}

/// Which ids are free, answering "the lowest free id" without scanning the used ones again:
/// every id below `frontier` is used or in `holes`.
struct IDPool: Sendable {
    private(set) var used: IDSet
    private(set) var holes: Set<UInt32> = []
    private(set) var frontier: UInt32 = 1

    init(used: some Sequence<UInt32>) {
        self.used = IDSet(used)
        advance()
    }

    mutating func use(_ id: UInt32) {
        used.insert(id)
        holes.remove(id)
        if id == frontier { advance() }
    }

    mutating func free(_ id: UInt32) {
        used.remove(id)
        if id < frontier { holes.insert(id) }
    }

    private mutating func advance() {
        while used.contains(frontier) { frontier += 1 }
    }

    /// Hands out the lowest free ids in order, for one plan (which never frees an id).
    struct Allocator {
        private let pool: IDPool
        private let holes: [UInt32]
        private var next = 0
        private var cursor: UInt32

        init(_ pool: IDPool) {
            self.pool = pool
            holes = pool.holes.sorted()
            cursor = pool.frontier
        }

        mutating func take() -> UInt32 {
            if next < holes.count { next += 1; return holes[next - 1] }
            while pool.used.contains(cursor) { cursor += 1 }
            defer { cursor += 1 }
            return cursor
        }
    }
}
