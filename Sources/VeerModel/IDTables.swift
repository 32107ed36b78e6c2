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
