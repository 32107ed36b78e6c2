import Foundation

// Seeded input mutation, shared by the model fuzzers and the cluster's watch-stream fuzzer.

/// SplitMix64: deterministic, so a failure replays with the same seed.
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

public enum Mutation: CaseIterable {
    case flipByte, truncate, deleteLine, duplicateLine, swapLines, insertJunk, replaceDigits
}

public func mutate(_ text: String, _ rng: inout SplitMix64) -> String {
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

