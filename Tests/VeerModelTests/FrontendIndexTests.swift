import Testing
@testable import VeerModel

/// The agent's per-service index answers "what serves this address" from the selections and
/// their claims: after any sequence of changes it must name the winner `Selector.merge` of all
/// selections names, contested and external-scope addresses included.
@Suite("FrontendIndex: winners from the claims")
struct FrontendIndexTests {
    @Test func winnersAgreeWithMergingEverySelection() {
        var rng = SystemRandomNumberGenerator()
        let kinds: [FrontendKind] = [.clusterIP, .nodePort, .externalIP, .loadBalancer]
        // Few addresses, many services: most addresses are contested at some point.
        let bases = (0..<6).map { L4Address(ip: IPAddress(ipv4: 0x0A60_0000 | UInt32($0 / 2)), port: 80 + UInt16($0 % 2), proto: .tcp) }
        func selection(_ key: ObjectKey) -> SelectionResult {
            var frontends: [DesiredFrontend] = []
            for base in bases.shuffled(using: &rng).prefix(Int.random(in: 0...3, using: &rng)) {
                let f = DesiredFrontend(address: base, kind: kinds.randomElement(using: &rng)!,
                                        service: ServicePortName(namespace: key.namespace, name: key.name, port: "", proto: .tcp),
                                        backends: [DesiredBackend(address: L4Address(ip: IPAddress(ipv4: 0x0AF4_0000 | UInt32.random(in: 1...9, using: &rng)), port: 8080, proto: .tcp))])
                frontends.append(f)
                if Bool.random(using: &rng) {
                    var external = f
                    external.address = base.scoped(.external)
                    external.preservesClientAddress = true
                    frontends.append(external)
                }
            }
            return SelectionResult(frontends: frontends.sorted { $0.address < $1.address })
        }
        let keys = (0..<8).map { ObjectKey(namespace: "ns", name: "svc-\($0)") }
        var all: [ObjectKey: SelectionResult] = [:]
        var index = FrontendIndex()
        for _ in 0..<300 {
            var changes: [(key: ObjectKey, selection: SelectionResult?)] = []
            for key in keys.shuffled(using: &rng).prefix(Int.random(in: 1...3, using: &rng)) {
                let new = Int.random(in: 0..<4, using: &rng) == 0 ? nil : selection(key)
                all[key] = new
                changes.append((key, new))
            }
            _ = index.update(changes, programmed: IndexedMapState())
            let merged = Selector.merge(all.sorted { $0.key < $1.key }.map(\.value))
            let expected = Dictionary(merged.frontends.map { ($0.address, $0) }, uniquingKeysWith: { a, _ in a })
            for base in bases {
                for address in [base, base.scoped(.external)] { #expect(index.desired(address) == expected[address]) }
            }
            var walked: [L4Address: DesiredFrontend] = [:]
            index.forEachDesired { walked[$0] = $1 }
            #expect(walked == expected)
        }
        // A full sync's index agrees with the one the changes built.
        let rebuilt = FrontendIndex(selections: all, merged: Selector.merge(all.sorted { $0.key < $1.key }.map(\.value)))
        for base in bases { #expect(rebuilt.desired(base) == index.desired(base)) }
    }
}
