/// Tables keyed by the ids the planner hands out (backend and rev_nat ids, lowest free first,
/// so dense from 1): an array indexed by id, where a dictionary cost a hash per lookup and
/// 16 bytes or more per bucket at a fill of a half to three quarters. An id past `denseLimit`
/// (maps a foreign writer filled, or capacities raised past it) goes to a dictionary instead.
let denseIDLimit: UInt32 = 1 << 22

/// A count per id; 0 for an id never counted.
struct IDCounts: Sendable {
    private var dense: [UInt32] = []
    private var sparse: [UInt32: Int] = [:]

    init() {}

    subscript(id: UInt32) -> Int {
        get {
            guard id < denseIDLimit else { return sparse[id] ?? 0 }
            return Int(id) < dense.count ? Int(dense[Int(id)]) : 0
        }
        set {
            guard id < denseIDLimit else {
                sparse[id] = newValue == 0 ? nil : newValue
                return
            }
            if Int(id) >= dense.count {
                guard newValue != 0 else { return }
                dense.append(contentsOf: repeatElement(0, count: Int(id) + 1 - dense.count))
            }
            dense[Int(id)] = UInt32(newValue)
        }
    }
}

/// A set of ids, as a bitmap.
struct IDSet: Sendable {
    private var words: [UInt64] = []
    private var sparse: Set<UInt32> = []

    init() {}

    init(_ ids: some Sequence<UInt32>) {
        for id in ids { insert(id) }
    }

    func contains(_ id: UInt32) -> Bool {
        guard id < denseIDLimit else { return sparse.contains(id) }
        let w = Int(id >> 6)
        return w < words.count && words[w] & (1 << UInt64(id & 63)) != 0
    }

    mutating func insert(_ id: UInt32) {
        guard id < denseIDLimit else {
            sparse.insert(id)
            return
        }
        let w = Int(id >> 6)
        if w >= words.count { words.append(contentsOf: repeatElement(0, count: w + 1 - words.count)) }
        words[w] |= 1 << UInt64(id & 63)
    }

    mutating func remove(_ id: UInt32) {
        guard id < denseIDLimit else {
            sparse.remove(id)
            return
        }
        let w = Int(id >> 6)
        if w < words.count { words[w] &= ~(1 << UInt64(id & 63)) }
    }
}

/// A small set of ids per id: the rev_nat ids whose members name each backend id. An array by
/// id of inline sets (16 bytes each; nearly every backend has one frontend), where a table
/// keyed by the backend's address cost a 56-byte bucket at a fill of a third to three quarters.
struct IDSetsByID: Sendable {
    private var dense: [CompactSet<UInt32>] = []
    private var sparse: [UInt32: CompactSet<UInt32>] = [:]

    init() {}

    mutating func reserveCapacity(_ n: Int) { dense.reserveCapacity(n) }

    subscript(id: UInt32) -> CompactSet<UInt32> {
        guard id < denseIDLimit else { return sparse[id] ?? CompactSet() }
        return Int(id) < dense.count ? dense[Int(id)] : CompactSet()
    }

    mutating func insert(_ value: UInt32, at id: UInt32) {
        guard id < denseIDLimit else { return sparse[id, default: CompactSet()].insert(value) }
        if Int(id) >= dense.count { dense.append(contentsOf: repeatElement(CompactSet(), count: Int(id) + 1 - dense.count)) }
        dense[Int(id)].insert(value)
    }

    mutating func remove(_ value: UInt32, at id: UInt32) {
        guard id < denseIDLimit else {
            sparse[id]?.remove(value)
            if sparse[id]?.isEmpty == true { sparse[id] = nil }
            return
        }
        if Int(id) < dense.count { dense[Int(id)].remove(value) }
    }
}

/// Backend ids by backend address: the running copy's index of the maps (`IndexedMapState`)
/// with its backends table, shared, or ids of its own (names read from names.json). Tables kept
/// by backend id elsewhere (`ProgrammedNames`) find a backend's row by its address here.
public struct BackendIDs: Sendable {
    private var index = AddressIndex()
    private var maps: IDTable<BackendEntry>?
    private var own = IDTable<L4Address>()

    public init() {}

    init(index: AddressIndex, backends: IDTable<BackendEntry>) {
        self.index = index
        maps = backends
    }

    private func address(of id: UInt32) -> L4Address? { maps.map { $0[id]?.address } ?? own[id] }

    /// The id of the lowest backend entry holding this address.
    public subscript(_ address: L4Address) -> UInt32? { index.lowest(address, address(of:)) }

    /// Gives an address an id of its own (ids of its own only).
    mutating func insert(_ id: UInt32, for address: L4Address) {
        precondition(maps == nil, "the maps' ids are the running copy's")
        index.insert(id, for: address) { own[$0] }
        own[id] = address
    }

    /// Every address with its lowest id, by ascending id.
    func forEach(_ body: (L4Address, UInt32) throws -> Void) rethrows {
        for k in 0..<partCount { try forEach(part: k, body) }
    }

    /// The ids in parts (`IDTable.partCount`), for names.json written a part at a time.
    var partCount: Int { maps?.partCount ?? own.partCount }

    /// The addresses whose lowest id is in part `k`, with that id.
    func forEach(part k: Int, _ body: (L4Address, UInt32) throws -> Void) rethrows {
        if let maps {
            try maps.forEach(part: k) { id, entry in
                if index.duplicates == 0 || self[entry.address] == id { try body(entry.address, id) }
            }
        } else {
            try own.forEach(part: k) { id, address in
                if index.duplicates == 0 || self[address] == id { try body(address, id) }
            }
        }
    }
}

/// Every id of a map's table with the address its entry holds, for a reader off the agent's
/// actor (a /metrics scrape): the running copy's own table, shared, not copied (its rows are in
/// chunks, so the agent's next write copies one chunk, where sharing a dictionary of 500,000
/// backends made it copy all of them on its actor at 50,000 services).
public struct AddressesByID: Sendable {
    private enum Table: Sendable {
        case frontends(IDTable<L4Address>)
        case backends(IDTable<BackendEntry>)
    }

    private let table: Table

    /// The rev_nat table's frontends by id.
    public init(_ table: IDTable<L4Address>) { self.table = .frontends(table) }

    /// The backends table's addresses by id.
    public init(_ table: IDTable<BackendEntry>) { self.table = .backends(table) }

    public var count: Int {
        switch table {
        case let .frontends(t): t.count
        case let .backends(t): t.count
        }
    }

    /// The address entry `id` holds (a scrape's patch of its kept layout reads the few ids a sync changed).
    public subscript(id: UInt32) -> L4Address? {
        switch table {
        case let .frontends(t): t[id]
        case let .backends(t): t[id]?.address
        }
    }

    /// Every (id, address) pair, by ascending id.
    public func forEach(_ body: (UInt32, L4Address) throws -> Void) rethrows {
        switch table {
        case let .frontends(t): for (id, address) in t { try body(id, address) }
        case let .backends(t): for (id, entry) in t { try body(id, entry.address) }
        }
    }

    /// Every (id, address) pair as two arrays, row by row, by ascending id: walked once.
    public var columns: (ids: [UInt32], addresses: [L4Address]) {
        var ids: [UInt32] = [], addresses: [L4Address] = []
        ids.reserveCapacity(count)
        addresses.reserveCapacity(count)
        forEach { id, address in
            ids.append(id)
            addresses.append(address)
        }
        return (ids, addresses)
    }
}

/// Values by id, for ids handed out lowest free first (dense from 1): an array of optionals,
/// with ids past `denseIDLimit` in a dictionary.
/// The rows are in chunks (`ChunkedRows`): the names a scrape or the state-file writer holds
/// share them, and the agent's next change copies one chunk, not every row.
struct IDRows<Value: Sendable>: Sendable {
    private var dense = ChunkedRows<Value>()
    private var sparse: [UInt32: Value] = [:]

    init() {}

    /// Room for ids up to `maxID`, made at once (a full sync's names).
    mutating func reserveCapacity(maxID: UInt32) { dense.grow(to: Int(min(maxID, denseIDLimit - 1)) + 1) }

    subscript(id: UInt32) -> Value? {
        get { id < denseIDLimit ? dense[Int(id)] : sparse[id] }
        set {
            guard id < denseIDLimit else { return sparse[id] = newValue }
            dense[Int(id)] = newValue
        }
    }
}
