import Foundation

// The one way tests wait: on a condition, polled, never a fixed sleep. The machine is shared and
// slow, so timeouts are generous; a quick machine finishes at the first poll that holds.

/// Polls `condition` every `every` until it holds, or throws naming `what` after `timeout` seconds.
/// A condition that throws counts as not holding yet (a map or file not there yet).
/// Disfavoured: in async code the overload below, which frees its thread, is the one chosen.
@_disfavoredOverload
public func waitFor(_ what: String, timeout: Double = 30, every: Duration = .milliseconds(20),
                    _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if (try? condition()) == true { return }
        let (s, atto) = every.components
        usleep(useconds_t(s * 1_000_000 + atto / 1_000_000_000_000))
    }
    if (try? condition()) == true { return }
    throw SandboxError("timed out after \(timeout) s waiting for \(what)")
}

/// The same in async code: the poll frees its thread (the test runner has one per core).
public func waitFor(_ what: String, timeout: Double = 30, every: Duration = .milliseconds(20),
                    _ condition: () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if (try? await condition()) == true { return }
        try await Task.sleep(for: every)
    }
    if (try? await condition()) == true { return }
    throw SandboxError("timed out after \(timeout) s waiting for \(what)")
}
