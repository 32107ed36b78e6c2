import Testing
@testable import VeerModel

@Suite("The planner's id tables")
struct IDTableTests {
    /// The lowest id holding an address is the one a plan reuses; freeing it hands the role to the next.
    @Test func lowestIDFollowsInsertsAndRemoves() {
        let a = L4Address("10.0.0.1:80/tcp")!, b = L4Address("10.0.0.2:80/tcp")!
        var ids = LowestIDs<L4Address>()
        for id: UInt32 in [5, 3, 7, 3] { ids.insert(id, for: a) }
        ids.insert(9, for: b)
        #expect(ids[a] == 3 && ids[b] == 9)
        ids.remove(3, for: a)
        #expect(ids[a] == 5)
        ids.remove(7, for: a)
        ids.remove(42, for: a)  // not held: nothing changes
        #expect(ids[a] == 5)
        ids.remove(5, for: a)
        #expect(ids[a] == nil && ids[b] == 9)
        ids.insert(2, for: a)
        #expect(ids[a] == 2)
    }

    /// L4Address's table hash agrees with ==: equal addresses hash alike, under any seed.
    @Test func addressHashAgreesWithEquality() {
        let x = L4Address("10.0.0.1:80/tcp")!, y = L4Address(ip: IPAddress(ipv4: 0x0A00_0001), port: 80, proto: .tcp)
        for seed in [0, 1, -1, 0x1234_5678] { #expect(x._rawHashValue(seed: seed) == y._rawHashValue(seed: seed)) }
        let many = Set((0..<4096).map { L4Address(ip: IPAddress(ipv4: 0x0A00_0000 | UInt32($0)), port: 8080, proto: .tcp) })
        #expect(many.count == 4096)
        #expect(many.contains(L4Address("10.0.15.255:8080/tcp")!))
        #expect(!many.contains(L4Address("10.0.15.255:8080/udp")!))
    }
}
