import Foundation

/// RFC 3339 timestamps ("2026-12-07T08:01:02.123456Z", "…+09:00"), read by hand. The
/// EndpointSlice controller's trigger time comes with every slice change, on the agent's actor:
/// Foundation's ISO8601DateFormatter cost a formatter (ICU's, created per call, twice for a stamp
/// with a fraction) and kept only milliseconds of the fraction. Accepts what Go's `time.Parse`
/// accepts for RFC 3339: `T` or `t`, `Z` or `z` or a ±hh:mm offset, a fraction of any length.
enum RFC3339 {
    static func date(_ text: String) -> Date? {
        var text = text
        return text.withUTF8 { seconds($0) }.map { Date(timeIntervalSince1970: $0) }
    }

    /// Seconds since 1970 (UTC), or nil when `b` is not an RFC 3339 timestamp.
    static func seconds(_ b: UnsafeBufferPointer<UInt8>) -> Double? {
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= b.count else { return nil }
            var v = 0
            for k in i..<(i + n) {
                guard b[k] >= UInt8(ascii: "0"), b[k] <= UInt8(ascii: "9") else { return nil }
                v = v * 10 + Int(b[k] - UInt8(ascii: "0"))
            }
            i += n
            return v
        }
        func take(_ c: UInt8, or other: UInt8? = nil) -> Bool {
            guard i < b.count, b[i] == c || b[i] == other else { return false }
            i += 1
            return true
        }
        let dash = UInt8(ascii: "-"), colon = UInt8(ascii: ":")
        guard let year = digits(4), take(dash), let month = digits(2), take(dash), let day = digits(2),
              take(UInt8(ascii: "T"), or: UInt8(ascii: "t")),
              let hour = digits(2), take(colon), let minute = digits(2), take(colon), let second = digits(2)
        else { return nil }
        // Nanoseconds at most, as Go keeps; further digits are read and dropped.
        var fraction = 0.0
        if take(UInt8(ascii: ".")) {
            var value = 0, places = 0
            let start = i
            while i < b.count, b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") {
                if places < 9 {
                    value = value * 10 + Int(b[i] - UInt8(ascii: "0"))
                    places += 1
                }
                i += 1
            }
            guard i > start else { return nil }
            var divisor = 1.0
            for _ in 0..<places { divisor *= 10 }
            fraction = Double(value) / divisor
        }
        var offset = 0
        if !take(UInt8(ascii: "Z"), or: UInt8(ascii: "z")) {
            guard i < b.count, b[i] == UInt8(ascii: "+") || b[i] == dash else { return nil }
            let sign = b[i] == dash ? -1 : 1
            i += 1
            guard let hh = digits(2), take(colon), let mm = digits(2), hh < 24, mm < 60 else { return nil }
            offset = sign * (hh * 3600 + mm * 60)
        }
        guard i == b.count, (1...12).contains(month), day >= 1, day <= daysIn(month, of: year),
              hour < 24, minute < 60, second < 60 else { return nil }
        let days = daysSince1970(year: year, month: month, day: day)
        return Double(days * 86_400 + hour * 3600 + minute * 60 + second - offset) + fraction
    }

    static func daysIn(_ month: Int, of year: Int) -> Int {
        switch month {
        case 2: year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days from 1970-01-01 to this date of the proleptic Gregorian calendar (Howard Hinnant's
    /// days_from_civil).
    static func daysSince1970(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}

extension Agent {
    static func ms(_ d: Duration) -> String { String(format: "%.1f", d.seconds * 1000) }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
