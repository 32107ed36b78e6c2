// Small pieces of the API source, separate so they can be tested alone: the newline framer for
// watch streams, the reconnect backoff, and a lock box.
import Foundation

/// Splits a watch stream into lines. Chunks are not events: a line may span many chunks, and one
/// chunk may hold many lines. A partial line longer than `maxLineBytes` is an error (the caller
/// restarts the watch) rather than unbounded memory.
struct LineFramer {
    struct LineTooLong: Error, CustomStringConvertible {
        var limit: Int
        var description: String { "a watch event is longer than \(limit) bytes" }
    }

    let maxLineBytes: Int
    private(set) var pending: [UInt8] = []

    init(maxLineBytes: Int) { self.maxLineBytes = maxLineBytes }

    /// Appends `bytes` and returns every line completed by them (without the newline; blank lines dropped).
    mutating func append<C: Collection>(_ bytes: C) throws -> [Data] where C.Element == UInt8 {
        // A WatchList brings the whole state through here: find newlines with memchr, copy each line once.
        if let lines = try bytes.withContiguousStorageIfAvailable({ try append(contiguous: $0) }) { return lines }
        var lines: [Data] = []
        var start = bytes.startIndex
        var i = bytes.startIndex
        while i != bytes.endIndex {
            if bytes[i] == UInt8(ascii: "\n") {
                var line = pending
                pending.removeAll(keepingCapacity: true)
                line.append(contentsOf: bytes[start..<i])
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                if !line.isEmpty { lines.append(Data(line)) }
                start = bytes.index(after: i)
            }
            i = bytes.index(after: i)
        }
        pending.append(contentsOf: bytes[start..<bytes.endIndex])
        if pending.count > maxLineBytes {
            pending.removeAll()
            throw LineTooLong(limit: maxLineBytes)
        }
        return lines
    }

    private mutating func append(contiguous buffer: UnsafeBufferPointer<UInt8>) throws -> [Data] {
        var lines: [Data] = []
        guard let base = buffer.baseAddress else { return lines }
        let count = buffer.count
        var start = 0
        while start < count, let hit = memchr(base + start, Int32(UInt8(ascii: "\n")), count - start) {
            let end = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            if pending.isEmpty {
                var stop = end
                if stop > start && base[stop - 1] == UInt8(ascii: "\r") { stop -= 1 }
                if stop > start { lines.append(Data(bytes: base + start, count: stop - start)) }
            } else {
                pending.append(contentsOf: UnsafeBufferPointer(start: base + start, count: end - start))
                if pending.last == UInt8(ascii: "\r") { pending.removeLast() }
                if !pending.isEmpty { lines.append(Data(pending)) }
                pending.removeAll(keepingCapacity: true)
            }
            start = end + 1
        }
        pending.append(contentsOf: UnsafeBufferPointer(start: base + start, count: count - start))
        if pending.count > maxLineBytes {
            pending.removeAll()
            throw LineTooLong(limit: maxLineBytes)
        }
        return lines
    }

    /// What is left when the stream ends: a final event the server did not terminate with "\n".
    mutating func finish() -> Data? {
        defer { pending.removeAll() }
        let trimmed = pending.drop { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }
        return trimmed.isEmpty ? nil : Data(trimmed)
    }
}

/// client-go's reflector backoff: steps of initial·2ⁿ capped at `maximum`, each jittered to a
/// uniform pick in [step, 2·step); back to `initial` after `resetAfter` without a backoff.
struct Backoff {
    let initial: Duration
    let maximum: Duration
    let resetAfter: Duration
    private var step: Duration?
    private var lastUse: ContinuousClock.Instant?

    init(initial: Duration, maximum: Duration, resetAfter: Duration) {
        self.initial = initial
        self.maximum = maximum
        self.resetAfter = resetAfter
    }

    mutating func next(now: ContinuousClock.Instant = .now) -> Duration {
        if let lastUse, now - lastUse > resetAfter { step = nil }
        lastUse = now
        let s = step.map { min($0 * 2, maximum) } ?? initial
        step = s
        return s * Double.random(in: 1.0..<2.0)
    }
}

final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
