/// A pod's name in 16 bytes, with no heap copy of its own: its last bytes (up to 8) inline and
/// the rest in a box that the names beginning the same way share. A pod's name begins with its
/// owner's ("web-7d4b9c8f6d-" of "web-7d4b9c8f6d-x2k9p"), so a slice's endpoints hold one box
/// between them (`Sharing`). As a String, every name past 15 bytes was a heap copy of its own,
/// 64 bytes an endpoint, held by the store, the selections and the names alike.
///
/// The split is a function of the name alone, so equal names have equal parts: `==` and hashing
/// compare the parts' text, whichever box holds the head.
public struct PodName: Hashable, Sendable, CustomStringConvertible {
    /// The name's first bytes; nil when the whole name fits in `tail`.
    private let head: Head?
    /// The name's last bytes (at most 8, starting on a character boundary), from the low byte
    /// up, the unused bytes zero. Only a name with no NUL in its last 8 bytes is split;
    /// another is held whole in `head`.
    private let tail: UInt64

    final class Head: Sendable {
        let text: String
        init(_ text: String) { self.text = text }
    }

    private static let tailBytes = 8

    public init(_ name: String) {
        var sharing = Sharing()
        self = sharing.name(name)
    }

    private init(head: Head?, tail: UInt64) {
        self.head = head
        self.tail = tail
    }

    /// Where `name` splits: the length of its head and its tail packed. The tail is the last
    /// bytes up to 8, its start moved on to a character boundary so both parts are valid UTF-8.
    private static func split(_ utf8: String.UTF8View) -> (headCount: Int, tail: UInt64) {
        let count = utf8.count
        var start = utf8.index(utf8.endIndex, offsetBy: -min(tailBytes, count))
        while start != utf8.endIndex, utf8[start] & 0xC0 == 0x80 { start = utf8.index(after: start) }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        for b in utf8[start...] {
            guard b != 0 else { return (count, 0) }  // a NUL would read as the end: held whole
            tail |= UInt64(b) << shift
            shift += 8
        }
        return (utf8.distance(from: utf8.startIndex, to: start), tail)
    }

    /// Names made one after another with one of these share their heads when those are equal:
    /// a slice's endpoints, decoded in order. The last few heads are kept, for a slice that holds
    /// the pods of two ReplicaSets (a rollout) in any order.
    public struct Sharing {
        private var recent: [Head] = []
        private var next = 0
        private static let kept = 4

        public init() {}

        public mutating func name(_ name: String) -> PodName {
            let (headCount, tail) = PodName.split(name.utf8)
            guard headCount > 0 else { return PodName(head: nil, tail: tail) }
            let headText = headCount == name.utf8.count ? name : String(decoding: name.utf8.prefix(headCount), as: UTF8.self)
            if let head = recent.first(where: { $0.text == headText }) { return PodName(head: head, tail: tail) }
            let head = Head(headText)
            if recent.count < Self.kept { recent.append(head) } else { recent[next] = head }
            next = (next + 1) % Self.kept
            return PodName(head: head, tail: tail)
        }
    }

    public var description: String {
        var text = head?.text ?? ""
        var t = tail
        guard t != 0 else { return text }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.tailBytes)
        while t != 0 {
            bytes.append(UInt8(truncatingIfNeeded: t))
            t >>= 8
        }
        text += String(decoding: bytes, as: UTF8.self)
        return text
    }

    /// The name's UTF-8 bytes in two runs, head then tail, without making the String.
    public func withUTF8Parts<R>(_ body: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        var t = tail.littleEndian
        let tailCount = (UInt64.bitWidth - tail.leadingZeroBitCount + 7) / 8
        return try withUnsafeBytes(of: &t) { raw in
            let tailBuffer = UnsafeBufferPointer(start: raw.bindMemory(to: UInt8.self).baseAddress, count: tailCount)
            guard var text = head?.text else { return try body(UnsafeBufferPointer(start: nil, count: 0), tailBuffer) }
            return try text.withUTF8 { try body($0, tailBuffer) }
        }
    }

    /// Whether both hold their heads in one box (what decoding a slice should give).
    func sharesHead(with other: PodName) -> Bool { head != nil && head === other.head }

    public static func == (a: PodName, b: PodName) -> Bool {
        a.tail == b.tail && (a.head === b.head || a.head?.text == b.head?.text)
    }

    public func hash(into h: inout Hasher) {
        h.combine(head?.text)
        h.combine(tail)
    }
}
