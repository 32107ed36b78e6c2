import Foundation
import Testing
@testable import VeerAgent
import VeerTestSupport

// The EndpointSlice controller's trigger time (RFC 3339, microseconds or nanoseconds) starts
// every network-programming latency the agent reports: read by hand, it must give what
// Foundation's parser gives for the whole seconds, and the fraction exactly.
@Suite("RFC 3339 trigger times")
struct RFC3339Tests {
    /// Foundation's reading: the text without its fraction, then the fraction added.
    static func oracle(_ text: String) -> Double? {
        var whole = text, fraction = 0.0
        if let dot = text.firstIndex(of: ".") {
            let digits = text[text.index(after: dot)...].prefix { $0.isASCII && $0.isNumber }
            fraction = Double("0." + digits.prefix(9)) ?? 0
            whole = String(text[..<dot]) + text[text.index(after: dot)...].dropFirst(digits.count)
        }
        return ISO8601DateFormatter().date(from: whole).map { $0.timeIntervalSince1970 + fraction }
    }

    @Test func agreesWithFoundationOverRandomTimestamps() throws {
        var rng = SplitMix64(seed: 3339)
        for _ in 0..<2000 {
            let seconds = Int.random(in: -2_000_000_000...5_000_000_000, using: &rng)
            let offset = [0, 3600, -3600, 9 * 3600, -(5 * 3600 + 30 * 60), 14 * 3600][Int.random(in: 0..<6, using: &rng)]
            let f = ISO8601DateFormatter()
            f.timeZone = TimeZone(secondsFromGMT: offset)
            var text = f.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
            let places = Int.random(in: 0...10, using: &rng)
            if places > 0 {
                let digits = (0..<places).map { _ in String(Int.random(in: 0...9, using: &rng)) }.joined()
                // Before the zone: "Z", or "+hh:mm" / "-hh:mm".
                let at = text.index(text.endIndex, offsetBy: text.hasSuffix("Z") ? -1 : -6)
                text.insert(contentsOf: "." + digits, at: at)
            }
            let expected = try #require(Self.oracle(text), "Foundation reads \(text)")
            let got = try #require(RFC3339.date(text), "reads \(text)")
            #expect(abs(got.timeIntervalSince1970 - expected) < 1e-5, "\(text)")
        }
    }

    @Test func readsTheControllersStamps() throws {
        let t = try #require(RFC3339.date("2026-12-07T08:01:02.123456Z"))
        #expect(abs(t.timeIntervalSince1970 - 1_796_630_462.123456) < 1e-6)
        #expect(RFC3339.date("2026-12-07t08:01:02.123456789z") != nil)
        #expect(RFC3339.date("2026-12-07T17:01:02+09:00") == RFC3339.date("2026-12-07T08:01:02Z"))
        #expect(RFC3339.date("2024-02-29T00:00:00Z") != nil)
    }

    @Test(arguments: [
        "", "2026-12-07", "2026-12-07T08:01:02", "2026-12-07T08:01:02.Z", "2026-12-07 08:01:02Z",
        "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-12-07T24:00:00Z",
        "2026-12-07T08:60:00Z", "2026-12-07T08:01:60Z", "2026-12-07T08:01:02Zjunk", "2026-12-07T08:01:02+0900",
        "2026-12-07T08:01:02+24:00", "20261207T080102Z", "２０２６-12-07T08:01:02Z",
    ])
    func refusesWhatIsNotRFC3339(_ text: String) {
        #expect(RFC3339.date(text) == nil)
    }
}
