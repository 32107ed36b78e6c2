import Foundation

extension Agent {
    /// RFC 3339, with or without a fraction. Foundation's formatter keeps only milliseconds of
    /// a fraction, so the rest of it (the EndpointSlice controller writes microseconds) is
    /// added back: network programming latency is measured in fractions of a millisecond.
    static func rfc3339(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        if let d = f.date(from: text) { return d }
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let d = f.date(from: text) else { return nil }
        guard let dot = text.firstIndex(of: ".") else { return d }
        let digits = text[text.index(after: dot)...].prefix { $0.isASCII && $0.isNumber }
        guard digits.count > 3, let rest = Double("0.000" + digits.dropFirst(3)) else { return d }
        return d.addingTimeInterval(rest)
    }
}

extension Agent {
    static func ms(_ d: Duration) -> String { String(format: "%.1f", d.seconds * 1000) }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
