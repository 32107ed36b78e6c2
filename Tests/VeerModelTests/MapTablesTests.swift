import Testing
@testable import VeerModel

/// The tables `MapState` holds must behave as the dictionaries and set they replace (the planner
/// and the tests compare states with them), walk in ascending order, and keep value semantics.
@Suite("MapState's tables")
struct MapTablesTests {
    @Test func idTableAgreesWithADictionary() {
        var rng = SystemRandomNumberGenerator()
        var plain: [UInt32: Int] = [:]
        var table = IDTable<Int>()
        // Dense ids, a few past the dense limit (a foreign writer's), and chunks left empty.
        let ids: [UInt32] = Array(0..<3_000) + [9_000, 40_000, denseIDLimit, denseIDLimit + 7, .max]
        for step in 0..<20_000 {
            let id = ids.randomElement(using: &rng)!
            if step % 3 == 0 { table[id] = nil; plain[id] = nil } else { table[id] = step; plain[id] = step }
        }
        #expect(table.count == plain.count && table.isEmpty == plain.isEmpty)
        #expect(table.keys == plain.keys.sorted())
        #expect(table.map(\.value) == plain.sorted { $0.key < $1.key }.map(\.value))
        for id in ids { #expect(table[id] == plain[id]) }
        var other = IDTable<Int>()
        for (id, value) in plain.shuffled() { other[id] = value }
        #expect(other == table && other.hashValue == table.hashValue)
        other[ids[0]] = -1
        #expect(other != table)
    }

    @Test func idTableCopyKeepsWhatItHeld() {
        var table: IDTable<String> = [1: "a", 5_000: "b"]
        let snapshot = table
        table[1] = nil
        table[9_000] = "c"
        #expect(snapshot.keys == [1, 5_000] && snapshot[1] == "a" && snapshot[9_000] == nil)
        #expect(table.keys == [5_000, 9_000] && table.count == 2)
        // A high id makes its own chunk only: the walk skips the empty ones below it.
        var high = IDTable<Int>()
        high[3_000_000] = 1
        #expect(Array(high).map(\.key) == [3_000_000] && high.count == 1)
    }

    @Test func slotTableAgreesWithADictionary() {
        var rng = SystemRandomNumberGenerator()
        var plain: [UInt16: UInt32] = [:]
        var slots = SlotTable()
        for step in 0..<5_000 {
            let slot = UInt16.random(in: 1...40, using: &rng)
            if step % 4 == 0 { slots[slot] = nil; plain[slot] = nil } else { slots[slot] = UInt32(step); plain[slot] = UInt32(step) }
        }
        #expect(slots.count == plain.count && slots.isEmpty == plain.isEmpty)
        #expect(slots.keys == plain.keys.sorted())
        #expect(slots.values == plain.sorted { $0.key < $1.key }.map(\.value))
        for slot in UInt16(0)...41 { #expect(slots[slot] == plain[slot]) }
        let literal: SlotTable = [2: 20, 1: 10]
        #expect(literal.keys == [1, 2] && literal == [1: 10, 2: 20] && literal != [1: 10])
    }

    @Test func memberTableAgreesWithASet() {
        var rng = SystemRandomNumberGenerator()
        var plain = Set<MemberKey>()
        var members = MemberTable()
        for step in 0..<20_000 {
            let m = MemberKey(revNatID: .random(in: 1...50, using: &rng), backendID: .random(in: 1...60, using: &rng))
            if step % 3 == 0 {
                #expect((members.remove(m) != nil) == (plain.remove(m) != nil))
            } else {
                #expect(members.insert(m).inserted == plain.insert(m).inserted)
            }
        }
        #expect(members.count == plain.count)
        #expect(Array(members) == plain.sorted())
        for rn in UInt32(0)...51 {
            #expect(members.backendIDs(ofRevNat: rn) == plain.filter { $0.revNatID == rn }.map(\.backendID).sorted())
        }
        for m in plain { #expect(members.contains(m)) }
        #expect(!members.contains(MemberKey(revNatID: 51, backendID: 1)))
        #expect(MemberTable(plain.shuffled()) == members)
        let snapshot = members
        if let first = plain.first { members.remove(first) }
        #expect(snapshot.count == plain.count && Array(snapshot) == plain.sorted())
    }
}
