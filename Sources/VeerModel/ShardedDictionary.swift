/// A dictionary split into 64 shards by key. The agent's large tables are values shared with
/// the readers that take them off its actor (a /metrics scrape, the state-file writer), and the
/// agent's next write copies what it changes: a plain dictionary of 500,000 backends copied
/// whole, 20-40 ms on the actor for one change (the agent bench's change → maps p99 at 50,000
/// services). Here that write copies the shard list (64 references) and one shard.
public struct ShardedDictionary<Key: Hashable, Value>: Sequence {
    public static var shardCount: Int { 64 }
    private var shards: [[Key: Value]]

    public init() { shards = Array(repeating: [:], count: Self.shardCount) }

    @inline(__always)
    private static func shard(_ key: Key) -> Int { key.hashValue & (shardCount - 1) }

    public subscript(key: Key) -> Value? {
        get { shards[Self.shard(key)][key] }
        set { shards[Self.shard(key)][key] = newValue }
    }

    public subscript(key: Key, default value: @autoclosure () -> Value) -> Value {
        get { shards[Self.shard(key)][key] ?? value() }
        set { shards[Self.shard(key)][key] = newValue }
    }

    @discardableResult
    public mutating func removeValue(forKey key: Key) -> Value? { shards[Self.shard(key)].removeValue(forKey: key) }

    public mutating func removeAll() { shards = Array(repeating: [:], count: Self.shardCount) }

    /// Room for `n` entries in all, spread evenly.
    public mutating func reserveCapacity(_ n: Int) {
        let each = (n + Self.shardCount - 1) / Self.shardCount
        for i in shards.indices { shards[i].reserveCapacity(each) }
    }

    /// One shard's entries, for a reader that takes one part at a time (names.json).
    public func forEach(shard k: Int, _ body: (Key, Value) throws -> Void) rethrows {
        for (key, value) in shards[k] { try body(key, value) }
    }

    public var count: Int { shards.reduce(0) { $0 + $1.count } }
    public var isEmpty: Bool { shards.allSatisfy(\.isEmpty) }
    public var keys: [Key] { shards.flatMap(\.keys) }
    public var values: [Value] { shards.flatMap(\.values) }

    public func makeIterator() -> FlattenSequence<[[Key: Value]]>.Iterator { shards.joined().makeIterator() }
}

extension ShardedDictionary: Sendable where Key: Sendable, Value: Sendable {}

extension ShardedDictionary: Equatable where Value: Equatable {
    // Equal keys land in equal shards, so shard by shard is the whole comparison.
    public static func == (a: Self, b: Self) -> Bool { a.shards == b.shards }
}

extension ShardedDictionary: Hashable where Value: Hashable {
    public func hash(into hasher: inout Hasher) { hasher.combine(shards) }
}

extension ShardedDictionary: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (Key, Value)...) {
        self.init()
        for (k, v) in elements { self[k] = v }
    }
}

extension ShardedDictionary: CustomStringConvertible {
    public var description: String { "\(Dictionary(map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a }))" }
}

/// Values by id in chunks of 4,096: a shared table's write copies the chunk list and one chunk.
/// A chunk is made when a row in it is first set: a plan's few entries with high ids (a
/// change's target) cost their own chunks, not every chunk below them.
struct ChunkedRows<Value> {
    static var chunkBits: Int { 12 }
    private static var chunkSize: Int { 1 << chunkBits }
    private var chunks: [[Value?]] = []

    init() {}

    var capacity: Int { chunks.count << Self.chunkBits }

    /// Room for ids below `n` (whole chunks, made now).
    mutating func grow(to n: Int) {
        while capacity < n { chunks.append(Array(repeating: nil, count: Self.chunkSize)) }
    }

    /// Whether the chunk holding this index has no row set (nor ever had): a walk skips it.
    func chunkIsEmpty(_ index: Int) -> Bool {
        let c = index >> Self.chunkBits
        return c >= chunks.count || chunks[c].isEmpty
    }

    subscript(index: Int) -> Value? {
        get {
            let c = index >> Self.chunkBits
            guard c < chunks.count, !chunks[c].isEmpty else { return nil }
            return chunks[c][index & (Self.chunkSize - 1)]
        }
        set {
            let c = index >> Self.chunkBits
            if c >= chunks.count || chunks[c].isEmpty {
                guard newValue != nil else { return }
                while chunks.count <= c { chunks.append([]) }
                chunks[c] = Array(repeating: nil, count: Self.chunkSize)
            }
            chunks[c][index & (Self.chunkSize - 1)] = newValue
        }
    }
}

extension ChunkedRows: Sendable where Value: Sendable {}
