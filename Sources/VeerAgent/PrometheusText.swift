import NIOCore

/// Prometheus text exposition format (version 0.0.4), written by hand: the kernel's
/// counters are read at scrape time, which a push-style metrics registry does not model.
///
/// Written straight into one NIO ByteBuffer, which the listener sends as it is: a scrape at
/// 100,000 endpoints is 200,000 samples (130 MB at 50,000 services), and building a String per
/// label and per value was most of its cost, copying the text into the response's buffer a tenth
/// of it. The hot path (`HitSeries.swift`) writes pre-escaped label fragments and integers
/// through a raw pointer (`appendRaw`); the few other families use `sample(_:_:_:)`.
public struct PrometheusText: Sendable {
    public enum Kind: String, Sendable { case counter, gauge, histogram }

    /// The text so far.
    public private(set) var buffer: ByteBuffer

    public init(reservingCapacity capacity: Int = 0) {
        buffer = ByteBufferAllocator().buffer(capacity: capacity)
    }

    /// A text handed on in chunks of about `chunkBytes` as it is written (a scrape's response
    /// body), never held whole: its writers call `flushIfFull()` between series, and `flush()`
    /// at the end. `emit` gets each chunk and returns false once its receiver is gone; the
    /// text is then abandoned (`isAbandoned`) and its writers may stop.
    public init(streamingChunksOf chunkBytes: Int, _ emit: @escaping @Sendable (ByteBuffer) -> Bool) {
        // Room for a chunk and the one port or family that may take it past its size.
        buffer = ByteBufferAllocator().buffer(capacity: chunkBytes + chunkBytes / 4)
        self.chunkBytes = chunkBytes
        self.emit = emit
    }

    private var chunkBytes = Int.max
    private var emit: (@Sendable (ByteBuffer) -> Bool)?
    /// The receiver of a streamed text is gone: what is written from here on is dropped.
    public private(set) var isAbandoned = false
    /// Bytes handed on so far (a streamed text).
    public private(set) var bytesEmitted = 0

    /// Hands the text so far on if it is a chunk's worth (a streamed text; else nothing).
    @inline(__always)
    public mutating func flushIfFull() {
        if buffer.readableBytes >= chunkBytes { flush() }
    }

    /// Hands the text so far on (a streamed text; else nothing). The buffer is then reused:
    /// its storage is still the chunk's until the chunk is sent, so it is a new one of the
    /// same size (`clear`), and the chunks in flight bound the memory a stream takes.
    public mutating func flush() {
        guard let emit, buffer.readableBytes > 0 else { return }
        if !isAbandoned {
            bytesEmitted += buffer.readableBytes
            isAbandoned = !emit(buffer)
        }
        buffer.clear()
    }

    /// The text as bytes (a copy: the small tables rendered on the agent's actor, tests).
    public var bytes: [UInt8] { Array(buffer.readableBytesView) }

    public mutating func family(_ name: String, _ kind: Kind, help: String) {
        append("# HELP ")
        append(name)
        append(" ")
        append(help)
        append("\n# TYPE ")
        append(name)
        append(" ")
        append(kind.rawValue)
        append("\n")
    }

    public mutating func sample(_ name: String, _ labels: KeyValuePairs<String, String> = [:], _ value: Double) {
        sample(name, labels.map { ($0.key, $0.value) }, value)
    }

    public mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Double) {
        append(name)
        if !labels.isEmpty {
            append("{")
            for (i, (key, labelValue)) in labels.enumerated() {
                if i > 0 { append(",") }
                append(key)
                append("=\"")
                appendEscaped(labelValue)
                append("\"")
            }
            append("}")
        }
        append(" ")
        appendValue(value)
        append("\n")
    }

    /// The text as a String (tests, and the small tables rendered on the agent's actor).
    public var output: String { String(buffer: buffer) }

    // MARK: - Building blocks of the hot path

    @inline(__always)
    public mutating func append(_ s: String) {
        buffer.writeString(s)
    }

    @inline(__always)
    public mutating func append(_ other: some Collection<UInt8>) {
        buffer.writeBytes(other)
    }

    @inline(__always)
    public mutating func append(byte: UInt8) {
        buffer.writeInteger(byte)
    }

    /// Appends what `body` writes through a raw pointer, at most `capacity` bytes (every write is
    /// checked against them): many short fragments without a capacity check each. The room is
    /// the buffer's own spare capacity, neither zeroed nor copied.
    mutating func appendRaw(capacity: Int, _ body: (inout RawWriter) -> Void) {
        guard capacity > 0 else { return }
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { raw in
            let base = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            var w = RawWriter(base, end: base + capacity)
            body(&w)
            return w.position - base
        }
    }

    /// A label value, escaped as the format requires: backslash, double quote and line feed.
    public mutating func appendEscaped(_ s: String) {
        appendRaw(capacity: 2 * s.utf8.count) { $0.putEscaped(s) }
    }

    static func appendEscaped(_ s: String, to bytes: inout [UInt8]) {
        escape(s, whole: { bytes.append(contentsOf: $0) }, byte: { bytes.append($0) })
    }

    /// The format's escaping of a label value (backslash, double quote, line feed), the one
    /// statement of it: `whole` gets the value as it is when nothing needs escaping (almost
    /// always: one scan, then one copy), else `byte` gets each byte of the escaped value.
    @inline(__always)
    static func escape(_ s: String, whole: (UnsafeBufferPointer<UInt8>) -> Void, byte: (UInt8) -> Void) {
        var s = s
        s.withUTF8 { escape($0, whole: whole, byte: byte) }
    }

    /// The same, of UTF-8 bytes.
    @inline(__always)
    static func escape(_ utf8: UnsafeBufferPointer<UInt8>, whole: (UnsafeBufferPointer<UInt8>) -> Void, byte: (UInt8) -> Void) {
        guard utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\n") }) else {
            whole(utf8)
            return
        }
        for b in utf8 {
            switch b {
            case UInt8(ascii: "\\"): byte(UInt8(ascii: "\\")); byte(UInt8(ascii: "\\"))
            case UInt8(ascii: "\""): byte(UInt8(ascii: "\\")); byte(UInt8(ascii: "\""))
            case UInt8(ascii: "\n"): byte(UInt8(ascii: "\\")); byte(UInt8(ascii: "n"))
            default: byte(b)
            }
        }
    }

    /// An integer in decimal, without a String in between.
    public mutating func append(_ value: UInt64) {
        appendRaw(capacity: 20) { $0.put(value) }
    }

    private mutating func appendValue(_ v: Double) {
        if v >= 0, v < 1e15, v == v.rounded() {
            append(UInt64(v))
        } else {
            append(Self.format(v))
        }
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

/// A cursor into room `PrometheusText.appendRaw` reserved; a write past its end traps.
struct RawWriter {
    private(set) var position: UnsafeMutablePointer<UInt8>
    private let end: UnsafeMutablePointer<UInt8>

    init(_ start: UnsafeMutablePointer<UInt8>, end: UnsafeMutablePointer<UInt8>) {
        position = start
        self.end = end
    }

    @inline(__always)
    mutating func put(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let source = bytes.baseAddress else { return }
        let n = bytes.count
        precondition(end - position >= n, "raw write past the reserved room")
        if n > 128 {
            position.update(from: source, count: n)
        } else if n >= 8 {
            // A label fragment or a line's prefix: eight bytes at a time, the last word
            // overlapping, inline (a memmove call per fragment was a sixth of a scrape).
            let from = UnsafeRawPointer(source), to = UnsafeMutableRawPointer(position)
            var i = 0
            while i + 8 <= n {
                to.storeBytes(of: from.loadUnaligned(fromByteOffset: i, as: UInt64.self), toByteOffset: i, as: UInt64.self)
                i += 8
            }
            if i < n {
                to.storeBytes(of: from.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self), toByteOffset: n - 8, as: UInt64.self)
            }
        } else {
            for i in 0..<n { position[i] = source[i] }
        }
        position += n
    }

    @inline(__always)
    mutating func put(_ s: StaticString) {
        put(UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    @inline(__always)
    mutating func put(byte: UInt8) {
        precondition(position < end, "raw write past the reserved room")
        position.pointee = byte
        position += 1
    }

    /// A label value, escaped (`PrometheusText.escape`).
    mutating func putEscaped(_ s: String) {
        PrometheusText.escape(s, whole: { put($0) }, byte: { put(byte: $0) })
    }

    /// An integer in decimal.
    mutating func put(_ value: UInt64) {
        var digits = 1, n = value
        while n >= 10 { n /= 10; digits += 1 }
        precondition(end - position >= digits, "raw write past the reserved room")
        n = value
        var p = position + digits
        repeat {
            p -= 1
            p.pointee = UInt8(ascii: "0") + UInt8(n % 10)
            n /= 10
        } while n > 0
        position += digits
    }
}
