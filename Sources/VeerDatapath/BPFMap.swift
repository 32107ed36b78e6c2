import CVeer
import Glibc
import Synchronization
import VeerModel

/// A BPF map opened by fd, with keys and values typed by the structs in veer_maps.h.
/// Sizes are checked against the kernel's map info when opened, so a Swift struct that
/// drifted from the header fails loudly instead of corrupting entries.
final class BPFMap<Key: BitwiseCopyable, Value: BitwiseCopyable>: @unchecked Sendable {
    let name: String
    let fd: Int32
    let info: bpf_map_info
    let perCPU: Bool
    private let cpus: Int

    init(pinned path: String, name: String) throws {
        let fd = bpf_obj_get(path)
        guard fd >= 0 else { throw DatapathError.syscall(operation: "open pinned map \(path)", errno: errno) }
        var info = bpf_map_info()
        var len = UInt32(MemoryLayout<bpf_map_info>.size)
        guard bpf_obj_get_info_by_fd(fd, &info, &len) == 0 else {
            let err = errno
            close(fd)
            throw DatapathError.syscall(operation: "read info of map \(path)", errno: err)
        }
        self.name = name
        self.fd = fd
        self.info = info
        let type = bpf_map_type(rawValue: info.type)
        perCPU = type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY
        cpus = Int(libbpf_num_possible_cpus())
        // A per-CPU value is read as one 8-byte-aligned copy per possible CPU.
        let valueSize = perCPU ? MemoryLayout<UInt64>.size : MemoryLayout<Value>.size
        guard info.key_size == MemoryLayout<Key>.size, info.value_size == valueSize else {
            close(fd)
            throw DatapathError.layoutMismatch(
                map: name,
                detail: "kernel key/value \(info.key_size)/\(info.value_size) bytes, Swift \(MemoryLayout<Key>.size)/\(valueSize)")
        }
    }

    deinit { close(fd) }

    var capacity: Int { Int(info.max_entries) }

    func lookup(_ key: Key) throws -> Value? {
        var key = key
        var value = unsafeBitCast0(Value.self)
        if bpf_map_lookup_elem(fd, &key, &value) == 0 { return value }
        if errno == ENOENT { return nil }
        throw DatapathError.syscall(operation: "lookup in \(name)", errno: errno)
    }

    func update(_ key: Key, _ value: Value, flags: Int = Int(BPF_ANY)) throws {
        var key = key
        var value = value
        guard bpf_map_update_elem(fd, &key, &value, UInt64(flags)) == 0 else { throw mapError("update", errno) }
    }

    /// Writes entries with BPF_MAP_UPDATE_BATCH (BPF_ANY), `chunk` entries per syscall. A large
    /// run is split into parts written at once, each in order: a part starts only after an
    /// entry for which `partsStartAfter` holds (every entry when nil), so entries between two
    /// such points are written in order (see `Datapath.apply`). On a failure the entries before
    /// the failing one in its part are written. Falls back to one update each, in order, where
    /// the map type cannot batch.
    func updateBatch(_ keys: [Key], _ values: [Value], chunk: Int = 8192,
                     partsStartAfter boundary: ((Key) -> Bool)? = nil) throws {
        precondition(keys.count == values.count)
        try keys.withUnsafeBufferPointer { k in
            try values.withUnsafeBufferPointer { v in
                try writeBatches(count: keys.count, chunk: chunk, boundary: boundary.map { b in { b(k[$0]) } }) { start, count in
                    bpf_map_update_batch(fd, k.baseAddress! + start, v.baseAddress! + start, count, nil)
                } fallback: {
                    for i in keys.indices { try update(keys[i], values[i]) }
                }
            }
        }
    }

    /// Returns false when the key was not there.
    @discardableResult
    func delete(_ key: Key) throws -> Bool {
        var key = key
        if bpf_map_delete_elem(fd, &key) == 0 { return true }
        if errno == ENOENT { return false }
        throw DatapathError.syscall(operation: "delete from \(name)", errno: errno)
    }

    func keys() throws -> [Key] {
        let batch = perCPU
            ? try batchRead(UInt64(0), valuesPerKey: cpus, chunk: 1024).map(\.keys)
            : try batchRead(unsafeBitCast0(Value.self), valuesPerKey: 1, chunk: 4096).map(\.keys)
        if let batch { return batch }
        var keys: [Key] = []
        var next = unsafeBitCast0(Key.self)
        var rc = bpf_map_get_next_key(fd, nil, &next)
        while rc == 0 {
            keys.append(next)
            var current = next
            rc = bpf_map_get_next_key(fd, &current, &next)
        }
        guard errno == ENOENT else { throw DatapathError.syscall(operation: "iterate \(name)", errno: errno) }
        return keys
    }

    /// Every entry, read in batches (one syscall per few thousand entries: reading 100,000
    /// slots one key at a time would take 200,000 syscalls per sync). Falls back to key by key
    /// where the kernel has no batch support for the map type.
    func entries() throws -> [(Key, Value)] {
        if !perCPU, let batch = try batchRead(unsafeBitCast0(Value.self), valuesPerKey: 1, chunk: 4096) {
            return Array(zip(batch.keys, batch.values))
        }
        return try keys().compactMap { key in try lookup(key).map { (key, $0) } }
    }

    /// Reads the whole map with BPF_MAP_LOOKUP_BATCH: `valuesPerKey` values of type V per key
    /// (one per CPU for a per-CPU map). nil where this map type cannot batch.
    private func batchRead<V: BitwiseCopyable>(_ zero: V, valuesPerKey: Int, chunk: Int) throws -> (keys: [Key], values: [V])? {
        var result: (keys: [Key], values: [V]) = ([], [])
        let batched = try lookupBatches(zero, valuesPerKey: valuesPerKey, chunk: chunk) { keys, values in
            result.keys.append(contentsOf: keys)
            result.values.append(contentsOf: values)
        }
        return batched ? result : nil
    }

    /// Walks the whole map with BPF_MAP_LOOKUP_BATCH, `chunk` keys a syscall into buffers reused
    /// from one syscall to the next, and hands each chunk's keys and values (`valuesPerKey` per
    /// key) to `body`. False, having read nothing, where this map type cannot batch.
    private func lookupBatches<V: BitwiseCopyable>(_ zero: V, valuesPerKey: Int, chunk: Int,
                                                   _ body: (ArraySlice<Key>, ArraySlice<V>) -> Void) throws -> Bool {
        var keys = [Key](repeating: unsafeBitCast0(Key.self), count: chunk)
        var values = [V](repeating: zero, count: chunk * valuesPerKey)
        // The batch token is opaque (a bucket index for hash maps): give it room.
        var inBatch = [UInt8](repeating: 0, count: 64)
        var outBatch = [UInt8](repeating: 0, count: 64)
        var first = true
        while true {
            var count = UInt32(chunk)
            let rc: Int32 = first
                ? bpf_map_lookup_batch(fd, nil, &outBatch, &keys, &values, &count, nil)
                : bpf_map_lookup_batch(fd, &inBatch, &outBatch, &keys, &values, &count, nil)
            let err = errno
            if rc != 0 && err != ENOENT {
                // EINVAL/ENOTSUPP on the first call: this map type cannot batch.
                if first && (err == EINVAL || err == ENOTSUP || err == 524 /* ENOTSUPP */) { return false }
                throw DatapathError.syscall(operation: "batch read of \(name)", errno: err)
            }
            body(keys[..<Int(count)], values[..<(Int(count) * valuesPerKey)])
            if rc != 0 { return true } // ENOENT: the end of the map
            inBatch = outBatch
            first = false
        }
    }

    // MARK: counters: one UInt64, per CPU (summed) in a per-CPU map

    /// UInt64s a value is read as: one per possible CPU in a per-CPU map.
    private var counterSlots: Int { perCPU ? cpus : 1 }

    func counter(_ key: Key) throws -> UInt64? {
        var key = key
        var values = [UInt64](repeating: 0, count: counterSlots)
        if bpf_map_lookup_elem(fd, &key, &values) == 0 { return values.reduce(0, &+) }
        if errno == ENOENT { return nil }
        throw DatapathError.syscall(operation: "lookup in \(name)", errno: errno)
    }

    /// Every entry's count, read in batches: a scrape at 100,000 members costs a few
    /// dozen syscalls, not 100,000.
    func counters() throws -> [(Key, UInt64)] {
        let read = try counterColumns()
        return Array(zip(read.keys, read.counts))
    }

    /// Every entry's key and count (summed over CPUs in a per-CPU map), read in batches into one
    /// reused chunk and summed there: no per-CPU copy of the whole map, and no (key, count) pair
    /// per entry (a scrape at 500,000 members reads them all).
    func counterColumns() throws -> (keys: [Key], counts: [UInt64]) {
        // Fewer, larger syscalls; the per-CPU values of one chunk stay a few megabytes on hosts
        // with hundreds of possible CPUs.
        let n = counterSlots, chunk = min(4096, max(256, 65_536 / n))
        var result: (keys: [Key], counts: [UInt64]) = ([], [])
        let batched = try lookupBatches(UInt64(0), valuesPerKey: n, chunk: chunk) { keys, values in
            result.keys.append(contentsOf: keys)
            values.withUnsafeBufferPointer { v in
                for i in 0..<keys.count {
                    var sum: UInt64 = 0
                    for c in 0..<n { sum &+= v[i * n + c] }
                    result.counts.append(sum)
                }
            }
        }
        if batched { return result }
        // This map type (or kernel) cannot batch: key by key.
        for key in try self.keys() {
            if let c = try counter(key) { result.keys.append(key); result.counts.append(c) }
        }
        return result
    }

    /// Creates the entry with a zero count; an existing entry keeps its count.
    func insertZeroCounter(_ key: Key) throws {
        var key = key
        var values = [UInt64](repeating: 0, count: counterSlots)
        if bpf_map_update_elem(fd, &key, &values, UInt64(BPF_NOEXIST)) == 0 || errno == EEXIST { return }
        throw mapError("insert into", errno)
    }

    /// Creates these entries with a zero count, in batches: a start at 100,000 members is
    /// a dozen syscalls, not 100,000. Unlike `insertZeroCounter` an existing entry is zeroed
    /// too: callers pass only keys the map does not hold (the planner upserts a member only
    /// when the state it read lacks it, and rereads the maps after any failed write).
    func insertZeroCounters(batch keys: [Key], chunk: Int = 4096) throws {
        guard keys.count >= 2 else {
            for key in keys { try insertZeroCounter(key) }
            return
        }
        let zeros = [UInt64](repeating: 0, count: min(chunk, keys.count) * counterSlots)
        try keys.withUnsafeBufferPointer { k in
            try zeros.withUnsafeBufferPointer { v in
                try writeBatches(count: keys.count, chunk: chunk) { start, count in
                    bpf_map_update_batch(fd, k.baseAddress! + start, v.baseAddress!, count, nil)
                } fallback: {
                    for key in keys { try insertZeroCounter(key) }
                }
            }
        }
    }

    /// Runs `write(start, &count)` over `count` entries, `chunk` at a time. The first chunk goes
    /// alone (it finds out whether the map can batch at all: if not, `fallback` writes them
    /// all); the rest is split into one contiguous part per CPU, up to four, written at once,
    /// each part starting after an index where `boundary` holds. The kernel's hash-map inserts
    /// take a per-bucket lock and per-CPU allocation caches, so they scale with CPUs.
    private func writeBatches(count total: Int, chunk: Int, boundary: ((Int) -> Bool)? = nil,
                              _ write: (Int, UnsafeMutablePointer<UInt32>) -> Int32,
                              fallback: () throws -> Void) throws {
        func part(_ range: Range<Int>) -> DatapathError? {
            var done = range.lowerBound
            while done < range.upperBound {
                let n = min(chunk, range.upperBound - done)
                var count = UInt32(n)
                if write(done, &count) != 0 { return mapError("update", errno) }
                done += n
            }
            return nil
        }
        let first = min(chunk, total)
        var count = UInt32(first)
        if write(0, &count) != 0 {
            let err = errno
            if count == 0 && (err == EINVAL || err == ENOTSUP || err == 524 /* ENOTSUPP */) {
                // This map type (or kernel) cannot batch: one update each.
                try fallback()
                return
            }
            throw mapError("update", err)
        }
        let rest = total - first
        let parts = rest < 4 * chunk ? 1 : min(concurrentParts, rest / chunk)
        guard parts > 1 else {
            if let error = part(first..<total) { throw error }
            return
        }
        let cuts = batchCuts(first..<total, parts: parts, startsAfter: boundary)
        let errors = Mutex<[DatapathError]>([])
        concurrently(cuts.count - 1) { p in
            if let error = part(cuts[p]..<cuts[p + 1]) { errors.withLock { $0.append(error) } }
        }
        if let error = errors.withLock({ $0.first }) { throw error }
    }

    private func mapError(_ what: String, _ err: Int32) -> DatapathError {
        // A full hash map answers E2BIG on insert.
        err == E2BIG ? .mapFull(map: name) : .syscall(operation: "\(what) \(name)", errno: err)
    }
}

/// Where parallel parts of a batched write begin: `range` cut into `parts` about equal parts,
/// each cut moved forward to just after an index where `startsAfter` holds (any index when
/// nil). Returns the cuts, `range`'s bounds included; parts may come out empty.
func batchCuts(_ range: Range<Int>, parts: Int, startsAfter boundary: ((Int) -> Bool)?) -> [Int] {
    var cuts = [range.lowerBound]
    for p in 1..<max(parts, 1) {
        var i = max(cuts[p - 1], range.lowerBound + range.count * p / parts)
        if let boundary { while i < range.upperBound && !boundary(i - 1) { i += 1 } }
        cuts.append(i)
    }
    cuts.append(range.upperBound)
    return cuts
}

/// A zero value of a plain C struct (all of veer_maps.h's types are).
@inline(__always)
func unsafeBitCast0<T: BitwiseCopyable>(_: T.Type) -> T {
    withUnsafeTemporaryAllocation(of: T.self, capacity: 1) { buffer in
        let raw = UnsafeMutableRawPointer(buffer.baseAddress!)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.size)
        return raw.load(as: T.self)
    }
}
