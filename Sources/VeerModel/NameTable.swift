import Foundation

/// Names that repeat across thousands of objects (node names, zones, namespaces): each distinct
/// name is stored once, process-wide, and an object holds its 4-byte id instead of a 16-byte
/// String (and, past 15 bytes, its own heap copy).
///
/// Only names with few distinct values belong here: the table never forgets a name (a cluster's
/// nodes, zones and namespaces, a few kilobytes), so unique names such as pod names stay Strings.
/// Ids are dense from 1; 0 is "no name".
public final class NameTable: @unchecked Sendable {
    public static let shared = NameTable()

    // Chunks that never move once written, so a read needs no lock: an id reaches a reader only
    // through the value that holds it, which crossed to the reader's thread with synchronization
    // after the name was written.
    private static let chunkBits = 12
    private static let chunkSize = 1 << chunkBits
    private static let chunkCount = 1 << 12
    private let chunks: UnsafeMutablePointer<UnsafeMutablePointer<String>?>
    private let lock = NSLock()
    private var ids: [String: UInt32] = [:]
    private var next: UInt32 = 1

    init() {
        chunks = .allocate(capacity: Self.chunkCount)
        chunks.initialize(repeating: nil, count: Self.chunkCount)
    }

    deinit {
        // Only the shared table exists outside tests; a test's own table is freed whole.
        // Slots 1..<next hold names (slot 0, "no name", was never written).
        for id in 1..<Int(next) { (chunks[id >> Self.chunkBits]! + (id & (Self.chunkSize - 1))).deinitialize(count: 1) }
        for c in 0..<Self.chunkCount { chunks[c]?.deallocate() }
        chunks.deallocate()
    }

    /// The id of `name`, added if new; nil once the table is full (16M names: the caller keeps
    /// the String itself).
    public func id(_ name: String) -> UInt32? {
        lock.lock()
        defer { lock.unlock() }
        if let id = ids[name] { return id }
        let id = next
        let c = Int(id) >> Self.chunkBits
        guard c < Self.chunkCount else { return nil }
        if chunks[c] == nil { chunks[c] = .allocate(capacity: Self.chunkSize) }
        (chunks[c]! + (Int(id) & (Self.chunkSize - 1))).initialize(to: name)
        ids[name] = id
        next += 1
        return id
    }

    /// The name of an id this table gave out.
    public subscript(id: UInt32) -> String {
        chunks[Int(id) >> Self.chunkBits]![Int(id) & (Self.chunkSize - 1)]
    }

    /// `name` sharing the table's buffer: equal names decoded from many objects hold one copy.
    public func interned(_ name: String) -> String {
        // Up to 15 bytes a String holds its text inline: nothing to share.
        guard name.utf8.count > 15, let id = id(name) else { return name }
        return self[id]
    }

    /// How many names it holds.
    public var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return Int(next) - 1
    }
}

/// A name from `NameTable.shared`, or nil: 4 bytes where a `String?` takes 16.
struct SharedName: Hashable, Sendable {
    /// 0 for nil.
    let id: UInt32

    static let none = SharedName(id: 0)

    private init(id: UInt32) { self.id = id }

    /// nil when the table is full: the caller keeps the String.
    init?(_ name: String?) {
        guard let name else { self.id = 0; return }
        guard let id = NameTable.shared.id(name) else { return nil }
        self.id = id
    }

    /// For a name shown to users only (a backend's node or zone): nil once the table is full
    /// (16M distinct names, which no cluster's nodes and zones reach) rather than a String kept.
    init(orNone name: String?) { self = SharedName(name) ?? .none }

    var string: String? { id == 0 ? nil : NameTable.shared[id] }
}
