/// Ids by the address their entry holds, for a table kept by id (`IDTable`): an open-addressing
/// hash of ids only, each compared through the table (`address(of:)`), so the address is not held
/// twice. At 100,000 services × 5 endpoints a `[L4Address: UInt32]` of the backends cost about
/// 58 bytes a backend, this about 8.
///
/// Nearly every address has one id; when several hold one (a foreign writer's maps) they are all
/// here, and `lowest` is the one reused, as a full plan does. In 64 shards, each its own array,
/// so a reader sharing the index (the names a scrape or the state-file writer holds) makes the
/// agent's next write copy one shard, not the whole index.
struct AddressIndex: Sendable {
    private static let shardBits = 6
    private static let empty = UInt32.max

    private struct Shard: Sendable {
        /// Ids by linear probing from their address's hash; `empty` marks a free slot.
        var slots: [UInt32] = []
        var count = 0
    }

    private var shards = [Shard](repeating: Shard(), count: 1 << shardBits)
    /// The address of the entry with id `UInt32.max`, which `empty` cannot hold in a slot.
    private var maxIDAddress: L4Address?
    /// Addresses that more ids than one hold, beyond the first: 0 lets a walk skip `lowest`.
    private(set) var duplicates = 0

    init() {}

    private static func place(_ address: L4Address) -> (shard: Int, home: Int) {
        let h = address.hashValue
        return (h & ((1 << shardBits) - 1), h >> shardBits)
    }

    /// Room for `n` ids in all, spread evenly.
    mutating func reserveCapacity(_ n: Int) {
        let each = (n + shards.count - 1) / shards.count
        var size = 8
        while size < each * 2 { size <<= 1 }
        for i in shards.indices where shards[i].slots.count < size && shards[i].count == 0 {
            shards[i].slots = [UInt32](repeating: Self.empty, count: size)
        }
    }

    /// Every id holding this address, in no order.
    func ids(_ address: L4Address, _ addressOf: (UInt32) -> L4Address?) -> [UInt32] {
        var out: [UInt32] = []
        forEachID(address, addressOf) { out.append($0) }
        return out
    }

    /// The lowest id holding this address.
    func lowest(_ address: L4Address, _ addressOf: (UInt32) -> L4Address?) -> UInt32? {
        var low: UInt32?
        forEachID(address, addressOf) { id in if low == nil || id < low! { low = id } }
        return low
    }

    private func forEachID(_ address: L4Address, _ addressOf: (UInt32) -> L4Address?, _ body: (UInt32) -> Void) {
        if maxIDAddress == address { body(.max) }
        let (s, home) = Self.place(address)
        let slots = shards[s].slots
        guard !slots.isEmpty else { return }
        let mask = slots.count - 1
        var i = home & mask
        while slots[i] != Self.empty {
            if addressOf(slots[i]) == address { body(slots[i]) }
            i = (i + 1) & mask
        }
    }

    /// Adds `id`, whose entry holds (or is about to hold) `address`. The id must not be here.
    mutating func insert(_ id: UInt32, for address: L4Address, _ addressOf: (UInt32) -> L4Address?) {
        if lowest(address, addressOf) != nil { duplicates += 1 }
        guard id != .max else { return maxIDAddress = address }
        let (s, home) = Self.place(address)
        if (shards[s].count + 1) * 2 > shards[s].slots.count { grow(s, addressOf) }
        let mask = shards[s].slots.count - 1
        var i = home & mask
        while shards[s].slots[i] != Self.empty { i = (i + 1) & mask }
        shards[s].slots[i] = id
        shards[s].count += 1
    }

    /// Removes `id`, whose entry holds `address`; the others' entries must still hold theirs.
    mutating func remove(_ id: UInt32, for address: L4Address, _ addressOf: (UInt32) -> L4Address?) {
        if id == .max {
            guard maxIDAddress == address else { return }
            maxIDAddress = nil
        } else {
            let (s, home) = Self.place(address)
            guard !shards[s].slots.isEmpty else { return }
            let mask = shards[s].slots.count - 1
            var i = home & mask
            while shards[s].slots[i] != id {
                guard shards[s].slots[i] != Self.empty else { return }
                i = (i + 1) & mask
            }
            // Backward shift: later ids of the probe run move into the hole when their own
            // home allows, so no tombstones are left to lengthen probes.
            var j = i
            while true {
                j = (j + 1) & mask
                let moved = shards[s].slots[j]
                guard moved != Self.empty else { break }
                guard let a = addressOf(moved) else { continue }
                let k = Self.place(a).home & mask
                // Moves unless its home lies cyclically in (i, j].
                let stays = i <= j ? (i < k && k <= j) : (i < k || k <= j)
                if !stays {
                    shards[s].slots[i] = moved
                    i = j
                }
            }
            shards[s].slots[i] = Self.empty
            shards[s].count -= 1
        }
        if lowest(address, addressOf) != nil { duplicates -= 1 }
    }

    private mutating func grow(_ s: Int, _ addressOf: (UInt32) -> L4Address?) {
        let old = shards[s].slots
        var slots = [UInt32](repeating: Self.empty, count: max(8, old.count * 2))
        let mask = slots.count - 1
        var count = 0
        for id in old where id != Self.empty {
            guard let a = addressOf(id) else { continue }
            var i = Self.place(a).home & mask
            while slots[i] != Self.empty { i = (i + 1) & mask }
            slots[i] = id
            count += 1
        }
        shards[s] = Shard(slots: slots, count: count)
    }
}
