import CVeer

/// Hands the heap's free pages back to the kernel after a response of megabytes (a /metrics
/// scrape at thousands of services). glibc keeps what such a response and its rendering freed:
/// each scrape raises its mmap threshold to the largest block freed (up to 32 MB), and it trims
/// the heap only past twice that. Measured with `veer-bench pipeline 10000 10`: 33–51 MB stayed
/// resident after 5 scrapes without it (see docs/benchmarks.md).
public enum HeapRelease {
    /// Responses from this size on are followed by a trim; small ones are not worth its walk.
    public static let threshold = 1 << 20

    /// malloc_trim(0): takes each arena's lock in turn, a few milliseconds at a few hundred MB.
    public static func now() { veer_heap_release() }

    /// The same on a thread of its own, for the agent's actor: the walk never delays a sync.
    static func inBackground() {
        Task.detached { try? await BackgroundThread.run(named: "veer-heap-release") { now() } }
    }
}
