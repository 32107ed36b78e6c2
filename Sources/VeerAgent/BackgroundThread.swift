import Foundation
import Glibc

/// Work the agent hands off its reconcile path (a /metrics render, the state files): on a thread
/// of its own at a lower priority (nice 10; on Linux the nice value is per thread). At 50,000
/// services either takes a second or more of CPU; on one of the two threads of a 2-core node's
/// concurrency pool it held the watch stream and the syncs back, and here the scheduler prefers them.
enum BackgroundThread {
    static func run<T: Sendable>(named name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<T, any Error>) in
            let thread = Thread {
                _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
                done.resume(with: Result { try body() })
            }
            thread.name = name
            thread.start()
        }
    }

}
