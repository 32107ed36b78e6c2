import Testing
@testable import VeerModel

/// The shared tables a scrape or the state-file writer holds: they must behave as a dictionary
/// (or an array by id) and keep value semantics, so a snapshot never sees the agent's later writes.
@Suite("Sharded and chunked tables")
struct ShardedDictionaryTests {
    @Test func agreesWithADictionaryOverRandomOperations() {
        var rng = SystemRandomNumberGenerator()
        var plain: [Int: Int] = [:]
        var sharded = ShardedDictionary<Int, Int>()
        for step in 0..<20_000 {
            let key = Int.random(in: 0..<3_000, using: &rng)
            switch step % 5 {
            case 0: #expect(sharded.removeValue(forKey: key) == plain.removeValue(forKey: key))
            case 1: sharded[key] = nil; plain[key] = nil
            case 2: sharded[key, default: 0] += 1; plain[key, default: 0] += 1
            default: sharded[key] = step; plain[key] = step
            }
        }
        #expect(sharded.count == plain.count)
        #expect(sharded.isEmpty == plain.isEmpty)
        #expect(Set(sharded.keys) == Set(plain.keys))
        #expect(Dictionary(uniqueKeysWithValues: sharded.map { ($0.key, $0.value) }) == plain)
        for key in 0..<3_000 { #expect(sharded[key] == plain[key]) }
        sharded.removeAll()
        #expect(sharded.isEmpty && sharded.count == 0 && sharded.keys.isEmpty)
    }

    @Test func aCopyKeepsWhatItHeld() {
        var table = ShardedDictionary<String, Int>()
        for i in 0..<1_000 { table["k\(i)"] = i }
        let snapshot = table
        table["k1"] = -1
        table["new"] = 7
        table.removeValue(forKey: "k2")
        #expect(snapshot["k1"] == 1 && snapshot["new"] == nil && snapshot["k2"] == 2 && snapshot.count == 1_000)
        #expect(table["k1"] == -1 && table["new"] == 7 && table["k2"] == nil && table.count == 1_000)
        // Equal and hashing alike when they hold the same entries, whatever the order of writes.
        var a = ShardedDictionary<String, Int>(), b = ShardedDictionary<String, Int>()
        for i in 0..<500 { a["k\(i)"] = i }
        for i in (0..<500).reversed() { b["k\(i)"] = i }
        #expect(a == b && a.hashValue == b.hashValue)
        b["k3"] = 0
        #expect(a != b)
    }

    @Test func chunkedRowsByID() {
        var rows = ChunkedRows<String>()
        #expect(rows[0] == nil && rows[100_000] == nil && rows.capacity == 0)
        rows[5] = "five"
        rows[10_000] = "ten thousand"
        #expect(rows[5] == "five" && rows[10_000] == "ten thousand" && rows[6] == nil)
        let snapshot = rows
        rows[5] = nil
        rows[20_000] = "twenty thousand"
        #expect(snapshot[5] == "five" && snapshot[20_000] == nil)
        #expect(rows[5] == nil && rows[20_000] == "twenty thousand")
        // Clearing past the end makes nothing.
        let capacity = rows.capacity
        rows[1 << 20] = nil
        #expect(rows.capacity == capacity)
    }
}
