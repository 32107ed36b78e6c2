import Foundation
import Glibc
import NIOConcurrencyHelpers

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

    /// Waits, on a thread of its own (in `run`'s body), for async work such as a call on the
    /// agent's actor. The thread is not the concurrency pool's, so blocking it holds nothing back.
    static func wait<T: Sendable>(for body: @escaping @Sendable () async -> T) -> T {
        let done = DispatchSemaphore(value: 0)
        let result = NIOLockedValueBox<T?>(nil)
        Task {
            let value = await body()
            result.withLockedValue { $0 = value }
            done.signal()
        }
        done.wait()
        return result.withLockedValue { $0! }
    }

}
