import Dispatch
import Foundation

/// Runs `body(0)`, …, `body(parts - 1)` at once, on the calling thread and up to `parts - 1`
/// others, and returns when all are done. For CPU-bound work over disjoint parts (a start's
/// selection, its map writes): each part must touch only its own results.
public func concurrently(_ parts: Int, _ body: (Int) -> Void) {
    guard parts > 1 else {
        if parts == 1 { body(0) }
        return
    }
    withoutActuallyEscaping(body) { body in
        let shared = UncheckedSendable(body)
        DispatchQueue.concurrentPerform(iterations: parts) { shared.value($0) }
    }
}

/// How many parts a start's CPU-bound work is split into: the CPUs this process may use, at most four.
public let concurrentParts = min(4, max(1, ProcessInfo.processInfo.activeProcessorCount))

/// A value handed to other threads by `concurrently`, whose callers keep the parts disjoint.
private struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
