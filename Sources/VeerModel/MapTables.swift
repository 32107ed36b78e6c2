/// The tables `MapState` holds, shaped by what the maps hold rather than as general
/// dictionaries. At 100,000 services × 5 endpoints the agent keeps one `MapState` (its running
/// copy of the maps) with 500,000 backends and members: as a `[UInt32: BackendEntry]` and a
/// `Set<MemberKey>` (plus an index of members by frontend) those cost about 850 bytes a service,
/// mostly the empty half of power-of-two hash tables.

/// Entries by map id. Backend and rev_nat ids are handed out lowest free first, so dense from 1:
/// rows in chunks (`ChunkedRows`) indexed by id, walked in ascending id order. An id past
/// `denseIDLimit` (maps a foreign writer filled) goes to a dictionary instead.
public struct IDTable<Value: Hashable & Sendable>: Sendable {
    private var dense = ChunkedRows<Value>()
    private var sparse: [UInt32: Value] = [:]
    public private(set) var count = 0

    public init() {}

    public var isEmpty: Bool { count == 0 }

    /// Room for ids up to `maxID`, made at once.
    public mutating func reserveCapacity(maxID: UInt32) { dense.grow(to: Int(Swift.min(maxID, denseIDLimit - 1)) + 1) }

    public subscript(id: UInt32) -> Value? {
        get { id < denseIDLimit ? dense[Int(id)] : sparse[id] }
        set {
            let old: Value?
            if id < denseIDLimit {
                old = dense[Int(id)]
                dense[Int(id)] = newValue
            } else {
                old = sparse[id]
                sparse[id] = newValue
            }
            count += (newValue == nil ? 0 : 1) - (old == nil ? 0 : 1)
        }
    }

    /// The table in parts, for a reader that takes one part at a time (names.json): part k < the
    /// number of chunks holds ids [k × 4,096, (k + 1) × 4,096), the last any ids past the chunks.
    public var partCount: Int { (dense.capacity >> ChunkedRows<Value>.chunkBits) + (sparse.isEmpty ? 0 : 1) }

    /// The entries of part `k`, by ascending id.
    public func forEach(part k: Int, _ body: (UInt32, Value) throws -> Void) rethrows {
        let chunks = dense.capacity >> ChunkedRows<Value>.chunkBits
        if k < chunks {
            let start = k << ChunkedRows<Value>.chunkBits
            guard !dense.chunkIsEmpty(start) else { return }
            for id in start..<(start + (1 << ChunkedRows<Value>.chunkBits)) {
                if let value = dense[id] { try body(UInt32(id), value) }
            }
        } else if k == chunks {
            for (id, value) in sparse.sorted(by: { $0.key < $1.key }) { try body(id, value) }
        }
    }

    /// Every id held, ascending.
    public var keys: [UInt32] { map(\.key) }
    /// Every entry, by ascending id.
    public var values: [Value] { map(\.value) }
}

extension IDTable: Sequence {
    public typealias Element = (key: UInt32, value: Value)

    /// Ascending by id: the dense rows, then the few sparse ones sorted.
    public struct Iterator: IteratorProtocol {
        private var chunkSize: Int { 1 << ChunkedRows<Value>.chunkBits }
        fileprivate let table: IDTable
        fileprivate var row = 0
        fileprivate var sparse: [(key: UInt32, value: Value)]?

        public mutating func next() -> Element? {
            while row < table.dense.capacity {
                if row & (chunkSize - 1) == 0, table.dense.chunkIsEmpty(row) {
                    row += chunkSize
                    continue
                }
                defer { row += 1 }
                if let value = table.dense[row] { return (UInt32(row), value) }
            }
            if sparse == nil { sparse = table.sparse.sorted { $0.key > $1.key }.map { ($0.key, $0.value) } }
            return sparse!.popLast()
        }
    }

    public func makeIterator() -> Iterator { Iterator(table: self) }
    public var underestimatedCount: Int { count }
}

extension IDTable: Equatable {
    public static func == (a: Self, b: Self) -> Bool { a.count == b.count && a.elementsEqual(b) { $0 == $1 } }
}

extension IDTable: Hashable {
    public func hash(into hasher: inout Hasher) {
        hasher.combine(count)
        for (id, value) in self {
            hasher.combine(id)
            hasher.combine(value)
        }
    }
}

extension IDTable: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (UInt32, Value)...) {
        self.init()
        for (id, value) in elements { self[id] = value }
    }
}

extension IDTable: CustomStringConvertible {
    public var description: String { "[" + map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "]" }
}

/// One frontend's slot entries (slot ≥ 1 → backend id), sorted by slot. Planned slots run
/// 1...count, so a lookup is one index; a `[UInt16: UInt32]` per frontend cost a hash table of
/// its own, about 130 bytes at 5 slots.
public struct SlotTable: Hashable, Sendable {
    fileprivate struct Entry: Hashable, Sendable {
        var slot: UInt16
        var backendID: UInt32
    }

    private var entries: [Entry] = []

    public init() {}

    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }

    private func index(_ slot: UInt16) -> (found: Bool, at: Int) {
        let guess = Int(slot) - 1
        if guess >= 0, guess < entries.count, entries[guess].slot == slot { return (true, guess) }
        var lo = 0, hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[mid].slot < slot { lo = mid + 1 } else { hi = mid }
        }
        return (lo < entries.count && entries[lo].slot == slot, lo)
    }

    public subscript(slot: UInt16) -> UInt32? {
        get {
            let (found, i) = index(slot)
            return found ? entries[i].backendID : nil
        }
        set {
            let (found, i) = index(slot)
            switch (found, newValue) {
            case let (true, id?): entries[i].backendID = id
            case (true, nil): entries.remove(at: i)
            case let (false, id?): entries.insert(Entry(slot: slot, backendID: id), at: i)
            case (false, nil): break
            }
        }
    }

    public mutating func reserveCapacity(_ n: Int) { entries.reserveCapacity(n) }

    /// The slots held, ascending.
    public var keys: [UInt16] { entries.map(\.slot) }
    /// Their backend ids, by ascending slot.
    public var values: [UInt32] { entries.map(\.backendID) }
}

extension SlotTable: RandomAccessCollection {
    public typealias Element = (key: UInt16, value: UInt32)
    public var startIndex: Int { 0 }
    public var endIndex: Int { entries.count }
    public subscript(position: Int) -> Element { (entries[position].slot, entries[position].backendID) }
}

extension SlotTable: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (UInt16, UInt32)...) {
        self.init()
        for (slot, id) in elements { self[slot] = id }
    }
}

extension SlotTable: CustomStringConvertible {
    public var description: String { "[" + map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "]" }
}

/// The members map's keys, held as each rev_nat id's backend ids, sorted: the table of members
/// and the index by frontend the planner needs are one table, walked in (rev_nat, backend) order.
public struct MemberTable: Hashable, Sendable {
    private var byRevNat = IDTable<[UInt32]>()
    public private(set) var count = 0

    public init() {}

    public var isEmpty: Bool { count == 0 }

    /// Room for rev_nat ids up to `maxRevNatID`.
    public mutating func reserveCapacity(maxRevNatID: UInt32) { byRevNat.reserveCapacity(maxID: maxRevNatID) }

    /// The backend ids of this rev_nat id's members, ascending.
    public func backendIDs(ofRevNat id: UInt32) -> [UInt32] { byRevNat[id] ?? [] }

    public func contains(_ m: MemberKey) -> Bool {
        guard let ids = byRevNat[m.revNatID] else { return false }
        return Self.search(ids, m.backendID).found
    }

    @discardableResult
    public mutating func insert(_ m: MemberKey) -> (inserted: Bool, memberAfterInsert: MemberKey) {
        var ids = byRevNat[m.revNatID] ?? []
        // Appending in order (a plan's members, most reads) needs no search.
        if let last = ids.last, last >= m.backendID {
            let (found, i) = Self.search(ids, m.backendID)
            if found { return (false, m) }
            byRevNat[m.revNatID] = nil // unshared, so the insert below does not copy
            ids.insert(m.backendID, at: i)
        } else {
            byRevNat[m.revNatID] = nil
            ids.append(m.backendID)
        }
        byRevNat[m.revNatID] = ids
        count += 1
        return (true, m)
    }

    @discardableResult
    public mutating func remove(_ m: MemberKey) -> MemberKey? {
        guard var ids = byRevNat[m.revNatID] else { return nil }
        let (found, i) = Self.search(ids, m.backendID)
        guard found else { return nil }
        byRevNat[m.revNatID] = nil
        ids.remove(at: i)
        if !ids.isEmpty { byRevNat[m.revNatID] = ids }
        count -= 1
        return m
    }

    private static func search(_ ids: [UInt32], _ id: UInt32) -> (found: Bool, at: Int) {
        var lo = 0, hi = ids.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ids[mid] < id { lo = mid + 1 } else { hi = mid }
        }
        return (lo < ids.count && ids[lo] == id, lo)
    }
}

extension MemberTable: Sequence {
    /// Ascending by (rev_nat id, backend id).
    public struct Iterator: IteratorProtocol {
        fileprivate var rows: IDTable<[UInt32]>.Iterator
        fileprivate var revNatID: UInt32 = 0
        fileprivate var ids: [UInt32] = []
        fileprivate var position = 0

        public mutating func next() -> MemberKey? {
            while position == ids.count {
                guard let row = rows.next() else { return nil }
                (revNatID, ids, position) = (row.key, row.value, 0)
            }
            defer { position += 1 }
            return MemberKey(revNatID: revNatID, backendID: ids[position])
        }
    }

    public func makeIterator() -> Iterator { Iterator(rows: byRevNat.makeIterator()) }
    public var underestimatedCount: Int { count }
}

extension MemberTable: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: MemberKey...) {
        self.init(elements)
    }

    public init(_ members: some Sequence<MemberKey>) {
        self.init()
        for m in members { insert(m) }
    }
}

extension MemberTable: CustomStringConvertible {
    public var description: String { "[" + map { "\($0.revNatID)/\($0.backendID)" }.joined(separator: ", ") + "]" }
}
