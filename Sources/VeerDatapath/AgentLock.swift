import Foundation
import Glibc

/// One agent per pin directory. Two veerd processes writing the same maps would each plan
/// against the other's half-written state and delete what the other just wrote, so a second
/// agent must not start at all. The lock is `flock` on a file in the state directory (bpffs
/// holds only BPF objects); the kernel drops it when the holder exits, even on `kill -9`, so a
/// restarted agent never finds a stale lock.
public final class AgentLock: Sendable {
    public let path: String
    private let fd: Int32

    public struct Held: Error, CustomStringConvertible {
        public let path: String
        public let holder: String
        public var description: String {
            "another veerd (\(holder)) already runs for these pins; it holds \(path). Exiting without touching the datapath."
        }
    }

    public static func path(_ pins: PinLayout) -> String { "\(NamesFile.directory(pins))/veerd.lock" }

    /// Takes the lock or throws `Held` at once (never waits).
    public init(pins: PinLayout) throws {
        path = Self.path(pins)
        try ensureStateDirectory(pins)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw DatapathError.syscall(operation: "open \(path)", errno: errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let err = errno
            defer { close(fd) }
            guard err == EWOULDBLOCK else { throw DatapathError.syscall(operation: "flock \(path)", errno: err) }
            // The holder writes its pid just after locking: give it a moment (agents started together).
            var pid = ""
            for _ in 0..<50 {
                var buf = [UInt8](repeating: 0, count: 32)
                let n = pread(fd, &buf, buf.count, 0)
                let text = String(decoding: buf.prefix(max(0, n)), as: UTF8.self)
                if text.hasSuffix("\n") { pid = text.trimmingCharacters(in: .whitespacesAndNewlines); break }
                usleep(10_000)
            }
            throw Held(path: path, holder: pid.isEmpty ? "pid unknown" : "pid \(pid)")
        }
        // The holder's pid, for the message the next one prints.
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        self.fd = fd
    }

    deinit { close(fd) }

    /// "pid N" of the veerd holding the lock for these pins, nil when none runs. Uninstalling
    /// under a running agent would leave it serving nothing while it reports itself healthy.
    public static func holder(_ pins: PinLayout) -> String? {
        let path = path(pins)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            _ = flock(fd, LOCK_UN)
            return nil
        }
        guard errno == EWOULDBLOCK else { return nil }
        var buf = [UInt8](repeating: 0, count: 32)
        let n = pread(fd, &buf, buf.count, 0)
        let pid = String(decoding: buf.prefix(max(0, n)), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return pid.isEmpty ? "pid unknown" : "pid \(pid)"
    }
}

/// The state directory, root-only: it names every Service and pod this node serves.
func ensureStateDirectory(_ pins: PinLayout) throws {
    let dir = NamesFile.directory(pins)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                            attributes: [.posixPermissions: 0o700])
    // An older veerd created it 0755: tighten it.
    guard chmod(dir, 0o700) == 0 else { throw DatapathError.syscall(operation: "chmod \(dir)", errno: errno) }
}
