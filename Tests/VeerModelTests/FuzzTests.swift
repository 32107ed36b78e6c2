import Foundation
import Testing
import VeerKube
@testable import VeerModel
import VeerTestSupport

@Suite("Fuzz: mutated real manifests never crash or hang")
struct FuzzTests {
    @Test(arguments: Fixture.all)
    func mutatedManifests(_ file: String) throws {
        let original = try Fixture.text(file)
        var rng = SplitMix64(seed: 0x5EED_0000 &+ UInt64(file.utf8.reduce(0) { $0 &* 31 &+ Int($1) } & 0xFFFF))
        let node = NodeContext(nodeName: "ip-192-168-1-98.ap-northeast-2.compute.internal", zone: "ap-northeast-2a",
                               addresses: [IPAddress("192.168.1.98")!])
        var store = ServiceStore()
        var decoded = 0
        let start = ContinuousClock.now
        for _ in 0..<250 {
            let text = mutate(original, &rng)
            let parsed = ManifestParser.parse(text, origin: file)
            for event in parsed.events {
                let change = store.apply(event)
                if change.rejected.isEmpty { decoded += 1 }
            }
            let r = Selector.select(store, node: node)
            // Invariants a user relies on, whatever the input.
            #expect(Set(r.frontends.map(\.address)).count == r.frontends.count)
            #expect(r.decisions.count == r.frontends.count)
            for f in r.frontends { #expect(Set(f.backends.map(\.address)).count == f.backends.count) }
        }
        // The original still decodes after all that, and the run stayed fast.
        #expect(!ManifestParser.parse(original).objects.isEmpty)
        #expect(decoded > 0)
        #expect(ContinuousClock.now - start < .seconds(30))
    }

    @Test func randomBytesNeverCrash() {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<300 {
            let n = Int.random(in: 0..<200, using: &rng)
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let prefix = ["", "{", "[", "kind: Service\n", "{\"type\":\"ADDED\",\"object\":"].randomElement(using: &rng)!
            _ = ManifestParser.parse(Data(prefix.utf8) + Data(bytes))
        }
    }

    @Test func deepNestingIsRefusedNotACrash() {
        let deepJSON = String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)
        _ = ManifestParser.parse(deepJSON)
        let deepYAML = String(repeating: "- ", count: 3000) + "x"
        let r = ManifestParser.parse(deepYAML)
        #expect(r.objects.isEmpty)
    }
}
