/// Prometheus text exposition format (version 0.0.4), written by hand: the kernel's
/// counters are read at scrape time, which a push-style metrics registry does not model.
public struct PrometheusText: Sendable {
    public enum Kind: String, Sendable { case counter, gauge, histogram }

    private(set) var text = ""

    public init() {}

    public mutating func family(_ name: String, _ kind: Kind, help: String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(kind.rawValue)\n"
    }

    public mutating func sample(_ name: String, _ labels: KeyValuePairs<String, String> = [:], _ value: Double) {
        sample(name, labels.map { ($0.key, $0.value) }, value)
    }

    public mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Double) {
        text += name
        if !labels.isEmpty {
            text += "{" + labels.map { "\($0.0)=\"\(Self.escape($0.1))\"" }.joined(separator: ",") + "}"
        }
        text += " " + Self.format(value) + "\n"
    }

    public var output: String { text }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }

    static func format(_ v: Double) -> String {
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v.isNaN { return "NaN" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}

/// A fixed-bucket histogram of durations in seconds.
public struct Histogram: Sendable {
    public let buckets: [Double]
    private(set) var counts: [UInt64]
    private(set) var sum: Double = 0
    private(set) var count: UInt64 = 0

    public init(buckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]) {
        self.buckets = buckets
        counts = Array(repeating: 0, count: buckets.count)
    }

    public mutating func observe(_ seconds: Double) {
        for (i, bound) in buckets.enumerated() where seconds <= bound { counts[i] += 1 }
        sum += seconds
        count += 1
    }

    func write(_ name: String, into out: inout PrometheusText) {
        for (i, bound) in buckets.enumerated() {
            out.sample("\(name)_bucket", [("le", PrometheusText.format(bound))], Double(counts[i]))
        }
        out.sample("\(name)_bucket", [("le", "+Inf")], Double(count))
        out.sample("\(name)_sum", [], sum)
        out.sample("\(name)_count", [], Double(count))
    }
}
