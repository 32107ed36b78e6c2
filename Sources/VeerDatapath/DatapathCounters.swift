import VeerModel

// What a /metrics scrape reads from the kernel: the counters, in batches. The ids' addresses
// and the agent-written maps' sizes come from the agent's own copy of what it wrote.
extension Datapath {
    /// Every member's count, read with BPF_MAP_LOOKUP_BATCH (a few dozen syscalls at 100,000
    /// members), and the retired counts by address pair (parsed once per change of them).
    public func memberHits() throws -> MemberHits {
        let counted = try members.counterColumns()
        var result = MemberHits()
        result.members = counted.keys.map(\.member)
        result.counts = counted.counts
        result.retired = retiredLock.withLock {
            if let parsed = retiredPairs { return parsed }
            var parsed: [FrontendBackend: UInt64] = [:]
            parsed.reserveCapacity(retiredHits.count)
            for (text, count) in retiredHits {
                if let pair = RetiredHitsFile.pair(text) { parsed[pair, default: 0] += count }
            }
            retiredPairs = parsed
            return parsed
        }
        return result
    }

    /// The agent-written maps as the agent counted them; the sockets' and affinity maps, which
    /// the programs write, read from the kernel. Reading every key of the services, backends and
    /// members maps costs more than the rest of a scrape at 500,000 endpoints.
    public func fill(agentWritten counts: MapEntryCounts) throws -> [(map: String, entries: Int, capacity: Int)] {
        try fill(counted: counts)
    }
}

extension RetiredHitsFile {
    /// The address pair of a key `key(_:_:)` wrote: "FRONTEND BACKEND", the frontend possibly
    /// ending in " (external)", the backend never (backends have no scope).
    static func pair(_ key: String) -> FrontendBackend? {
        guard let space = key.lastIndex(of: " "), let backend = L4Address(key[key.index(after: space)...]) else { return nil }
        var frontendText = key[..<space]
        var scope = FrontendScope.cluster
        if frontendText.hasSuffix(" (external)") {
            frontendText = frontendText.dropLast(" (external)".count)
            scope = .external
        }
        guard let frontend = L4Address(frontendText) else { return nil }
        return FrontendBackend(frontend: frontend.scoped(scope), backend: backend)
    }
}
