import Testing
@testable import VeerModel

@Suite("The planner's id tables")
struct IDTableTests {
    /// The lowest id holding an address is the one a plan reuses; freeing it hands the role to the next.
    @Test func lowestIDFollowsInsertsAndRemoves() {
        let a = L4Address("10.0.0.1:80/tcp")!, b = L4Address("10.0.0.2:80/tcp")!
        var table = IDTable<L4Address>(), ids = AddressIndex()
        func insert(_ id: UInt32, _ address: L4Address) {
            ids.insert(id, for: address) { table[$0] }
            table[id] = address
        }
        func remove(_ id: UInt32) {
            guard let address = table[id] else { return }
            ids.remove(id, for: address) { table[$0] }
            table[id] = nil
        }
        func lowest(_ address: L4Address) -> UInt32? { ids.lowest(address) { table[$0] } }
        for id: UInt32 in [5, 3, 7] { insert(id, a) }
        insert(9, b)
        #expect(lowest(a) == 3 && lowest(b) == 9 && ids.duplicates == 2)
        remove(3)
        #expect(lowest(a) == 5)
        remove(7)
        remove(42)  // not held: nothing changes
        #expect(lowest(a) == 5 && ids.duplicates == 0)
        remove(5)
        #expect(lowest(a) == nil && lowest(b) == 9)
        insert(2, a)
        insert(.max, a)  // the one id a slot cannot hold
        #expect(lowest(a) == 2 && Set(ids.ids(a) { table[$0] }) == [2, .max] && ids.duplicates == 1)
        remove(2)
        #expect(lowest(a) == .max && ids.duplicates == 0)
    }

    /// The index agrees with a scan of the table over random inserts, moves and removes: many
    /// addresses (probe runs, growth, backward-shift removal) and some held by several ids.
    @Test func addressIndexAgreesWithAScan() {
        var rng = SystemRandomNumberGenerator()
        var table = IDTable<L4Address>(), ids = AddressIndex()
        let addresses = (0..<700).map { L4Address(ip: IPAddress(ipv4: 0x0A00_0000 | UInt32($0 % 600)), port: 80, proto: .tcp) }
        for _ in 0..<30_000 {
            let id = UInt32.random(in: 1...2_000, using: &rng)
            if let old = table[id] {
                ids.remove(id, for: old) { table[$0] }
                table[id] = nil
            }
            if Bool.random(using: &rng) {
                let address = addresses.randomElement(using: &rng)!
                ids.insert(id, for: address) { table[$0] }
                table[id] = address
            }
        }
        var byAddress: [L4Address: [UInt32]] = [:]
        for (id, address) in table { byAddress[address, default: []].append(id) }
        for address in Set(addresses) {
            #expect(ids.lowest(address) { table[$0] } == byAddress[address]?.min())
            #expect(ids.ids(address) { table[$0] }.sorted() == (byAddress[address] ?? []))
        }
        #expect(ids.duplicates == byAddress.values.reduce(0) { $0 + $1.count - 1 })
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
