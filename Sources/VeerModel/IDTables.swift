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

/// The ids holding each key (a backend or frontend address), answering "the lowest one" at
/// once. Nearly every address has one id: the lowest sits in `lowest` (4 bytes a bucket beside
/// the key), any others in `others`. At 10,000 services x 10 endpoints the backend table has
/// 262,144 buckets, where an inline set of ids per bucket took 16 bytes (about 3 MB more).
struct LowestIDs<Key: Hashable>: Sendable where Key: Sendable {
    /// Sharded: the names a scrape or the state-file writer holds share this table.
    private var lowest = ShardedDictionary<Key, UInt32>()
    private var others: [Key: Set<UInt32>] = [:]

    init() {}

    mutating func reserveCapacity(_ n: Int) { lowest.reserveCapacity(n) }

    subscript(_ key: Key) -> UInt32? { lowest[key] }

    /// The lowest id of every key.
    var entries: ShardedDictionary<Key, UInt32> { lowest }

    /// The ids holding this key besides the lowest (nearly always none).
    func others(_ key: Key) -> [UInt32] { others[key].map(Array.init) ?? [] }

    /// Every id held, the lowest and the others.
    var count: Int { others.values.reduce(lowest.count) { $0 + $1.count } }

    /// Every (id, key) pair, in no order.
    func forEach(_ body: (UInt32, Key) throws -> Void) rethrows {
        for (key, id) in lowest { try body(id, key) }
        for (key, ids) in others { for id in ids { try body(id, key) } }
    }

    mutating func insert(_ id: UInt32, for key: Key) {
        guard let low = lowest[key] else {
            lowest[key] = id
            return
        }
        if id < low {
            lowest[key] = id
            others[key, default: []].insert(low)
        } else if id != low {
            others[key, default: []].insert(id)
        }
    }

    mutating func remove(_ id: UInt32, for key: Key) {
        if lowest[key] == id {
            if var rest = others.removeValue(forKey: key), let next = rest.min() {
                rest.remove(next)
                lowest[key] = next
                if !rest.isEmpty { others[key] = rest }
            } else {
                lowest[key] = nil
            }
        } else if others[key]?.remove(id) != nil, others[key]?.isEmpty == true {
            others[key] = nil
        }
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

/// Backend ids by backend address, as the maps hold them (`IndexedMapState.backendIDs`), for
/// tables kept by backend id elsewhere (`ProgrammedNames`) to find a backend by its address.
public struct BackendIDs: Sendable {
    var table = LowestIDs<L4Address>()

    public init() {}

    init(_ table: LowestIDs<L4Address>) { self.table = table }

    /// The id of the lowest backend entry holding this address.
    public subscript(_ address: L4Address) -> UInt32? { table[address] }
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
