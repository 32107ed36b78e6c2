import Foundation
import Testing
@testable import VeerModel

/// SplitMix64: deterministic, so a failure replays with the same seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum Mutation: CaseIterable {
    case flipByte, truncate, deleteLine, duplicateLine, swapLines, insertJunk, replaceDigits
}

func mutate(_ text: String, _ rng: inout SplitMix64) -> String {
    var bytes = Array(text.utf8)
    guard !bytes.isEmpty else { return text }
    let rounds = Int.random(in: 1...4, using: &rng)
    for _ in 0..<rounds {
        guard !bytes.isEmpty else { break }
        switch Mutation.allCases.randomElement(using: &rng)! {
        case .flipByte:
            let i = Int.random(in: 0..<bytes.count, using: &rng)
            bytes[i] ^= UInt8(1) << UInt8.random(in: 0...7, using: &rng)
        case .truncate:
            bytes = Array(bytes[0..<Int.random(in: 0..<bytes.count, using: &rng)])
        case .deleteLine, .duplicateLine, .swapLines:
            var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map(Array.init)
            guard lines.count > 1 else { break }
            let i = Int.random(in: 0..<lines.count, using: &rng)
            let j = Int.random(in: 0..<lines.count, using: &rng)
            switch Mutation.allCases.randomElement(using: &rng)! {
            case .deleteLine: lines.remove(at: i)
            case .duplicateLine: lines.insert(lines[i], at: j)
            default: lines.swapAt(i, j)
            }
            bytes = Array(lines.joined(separator: [0x0A]))
        case .insertJunk:
            let junk: [String] = ["{", "}", "[", "]", "\"", ":", "- ", "---\n", "\t", "null", "-1", "99999999999999999999",
                                  "1e400", ".nan", "&a", "*a", "!!binary", "\\u0000", "::", "0x1F", "~"]
            let i = Int.random(in: 0...bytes.count, using: &rng)
            bytes.insert(contentsOf: Array(junk.randomElement(using: &rng)!.utf8), at: i)
        case .replaceDigits:
            if let i = bytes.indices.filter({ bytes[$0] >= 0x30 && bytes[$0] <= 0x39 }).randomElement(using: &rng) {
                bytes[i] = UInt8.random(in: 0x30...0x39, using: &rng)
                bytes.insert(contentsOf: Array("9999".utf8), at: i)
            }
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}

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
