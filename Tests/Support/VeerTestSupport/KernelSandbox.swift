import Foundation
import Glibc
import VeerDatapath
import VeerModel

/// One kernel test's world: its own network namespace (no link to the host), its own
/// child cgroup under the cgroup2 mount, its own pin directory, and the processes it
/// started. `KernelSandbox.run` tears all of it down even when the test fails.
public final class KernelSandbox: @unchecked Sendable {
    public let name: String
    public let netnsPath: String
    public let cgroup: String
    public let pins: PinLayout
    private var servers: [Process] = []
    /// Further namespaces of this test (`addNamespace`), removed with it.
    private var extraNamespaces: [String] = []

    nonisolated(unsafe) private static var counter = 0
    private static let lock = NSLock()

    /// Why kernel tests cannot run here, or nil when they can.
    public static let unavailableReason: String? = {
        if geteuid() != 0 { return "kernel tests need root" }
        guard SystemCheck.cgroup2Mount() != nil else { return "kernel tests need a cgroup2 mount" }
        guard access("/sys/fs/bpf", F_OK) == 0 else { return "kernel tests need /sys/fs/bpf (bpffs)" }
        guard access(bpfObject, R_OK) == 0 else { return "BPF object \(bpfObject) missing: run `make test`" }
        guard access(probe, X_OK) == 0 else { return "test probe \(probe) missing: run `make test`" }
        guard run(["ip", "-V"]).status == 0 else { return "kernel tests need iproute2 (ip)" }
        return nil
    }()

    public static var repoRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().path
    }
    public static var bpfObject: String {
        ProcessInfo.processInfo.environment["VEER_BPF_OBJECT"] ?? "\(repoRoot)/.build/veer/veer_sock.bpf.o"
    }
    /// Where veerd and veerctl were built.
    public static var veerBinaries: String {
        ProcessInfo.processInfo.environment["VEER_BIN"] ?? "\(repoRoot)/.build/debug"
    }
    public static var probe: String {
        ProcessInfo.processInfo.environment["VEER_PROBE"] ?? "\(repoRoot)/.build/veer/veer-probe"
    }

    private init() throws {
        let n = Self.lock.withLock { Self.counter += 1; return Self.counter }
        name = "veer-t\(getpid())-\(n)"
        netnsPath = "/run/netns/\(name)"
        cgroup = "\(SystemCheck.cgroup2Mount()!)/\(name)"
        pins = PinLayout(root: "/sys/fs/bpf/\(name)")
        try sh(["ip", "netns", "add", name])
        try sh(["ip", "-n", name, "link", "set", "lo", "up"])
        guard mkdir(cgroup, 0o755) == 0 else { throw SandboxError("mkdir \(cgroup): \(String(cString: strerror(errno)))") }
    }

    /// Runs `body` in a fresh sandbox and always tears it down.
    public static func run<T>(_ body: (KernelSandbox) throws -> T) throws -> T {
        let sandbox = try KernelSandbox()
        defer { sandbox.teardown() }
        return try body(sandbox)
    }

    /// `run` for async bodies. Making and removing the sandbox block (ip, mkdir, rmdir), so they
    /// run on a thread of their own: the test runner's few threads stay free for async suites.
    public static func runAsync<T>(_ body: (KernelSandbox) async throws -> T) async throws -> T {
        let sandbox = try await onThread { try KernelSandbox() }
        do {
            let result = try await body(sandbox)
            await onThread { sandbox.teardown() }
            return result
        } catch {
            await onThread { sandbox.teardown() }
            throw error
        }
    }

    @discardableResult
    public func install(scope: TranslationScope = .allNamespaces) throws -> Datapath {
        try Datapath.install(object: Self.bpfObject, cgroup: cgroup, pins: pins, scope: scope)
    }

    /// Another network namespace of this test (a pod beside the sandbox's "host"), with lo
    /// up and no link anywhere; returns its path. Removed at teardown.
    public func addNamespace() throws -> String {
        let other = "\(name)-\(extraNamespaces.count + 1)"
        try sh(["ip", "netns", "add", other])
        extraNamespaces.append(other)
        try sh(["ip", "-n", other, "link", "set", "lo", "up"])
        return "/run/netns/\(other)"
    }

    /// Puts `ips` on a namespace's loopback (default: the sandbox's), where the servers
    /// listen. IPv6 ones without duplicate address detection, so they are usable at once.
    public func addAddresses(_ ips: [String], netns: String? = nil) throws {
        let ns = netns.map { String($0.split(separator: "/").last!) } ?? name
        for ip in ips {
            if ip.contains(":") {
                try sh(["ip", "-n", ns, "-6", "addr", "add", "\(ip)/128", "dev", "lo", "nodad"])
            } else {
                try sh(["ip", "-n", ns, "addr", "add", "\(ip)/32", "dev", "lo"])
            }
        }
    }

    /// A server in a namespace (default: the sandbox's; outside the cgroup) answering with `reply`.
    public func startServer(_ proto: L4Protocol, _ ip: String, _ port: UInt16, reply: String, netns: String? = nil) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.probe)
        p.arguments = ["--netns", netns ?? netnsPath, proto == .udp ? "serve-udp" : "serve-tcp", ip, "\(port)", reply]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        servers.append(p)
        let ready = out.fileHandleForReading.readLine()
        guard ready == "ready" else { throw SandboxError("server \(reply) on \(ip):\(port) did not start") }
    }

    public func stopServer(at index: Int) {
        let p = servers[index]
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    /// Runs a probe client inside the cgroup and a namespace (default: the sandbox's);
    /// returns its result lines.
    public func client(_ args: [String], netns: String? = nil) throws -> [ProbeResult] {
        let result = Self.run([Self.probe, "--cgroup", cgroup, "--netns", netns ?? netnsPath] + args)
        guard result.status == 0 else { throw SandboxError("probe \(args) exited \(result.status): \(result.stderr)") }
        return result.stdout.split(separator: "\n").map { ProbeResult(String($0)) }
    }

    /// Starts a probe client without waiting; collect it with `finish`.
    public func startClient(_ args: [String]) throws -> (Process, Pipe) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.probe)
        p.arguments = ["--cgroup", cgroup, "--netns", netnsPath] + args
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        return (p, out)
    }

    public func finish(_ client: (Process, Pipe)) -> [ProbeResult] {
        let data = client.1.fileHandleForReading.readDataToEndOfFile()
        client.0.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map { ProbeResult(String($0)) }
    }

    public func teardown() {
        for p in servers where p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        for layout in [pins] + pins.otherVersions { _ = try? Datapath.uninstall(pins: layout) }
        _ = rmdir(pins.root)
        if rmdir(cgroup) != 0 && errno != ENOENT {
            // A client still exiting keeps the cgroup busy for a moment.
            for _ in 0..<50 where rmdir(cgroup) != 0 { usleep(20_000) }
        }
        _ = Self.run(["ip", "netns", "del", name])
        for other in extraNamespaces { _ = Self.run(["ip", "netns", "del", other]) }
    }

    private func sh(_ args: [String]) throws {
        let r = Self.run(args)
        guard r.status == 0 else { throw SandboxError("\(args.joined(separator: " ")): \(r.stderr)") }
    }

    public static func run(_ args: [String]) -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = (env["PATH"] ?? "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        do { try p.run() } catch { return (127, "", "\(error)") }
        // Read stderr on another thread so neither pipe can fill and block the child.
        nonisolated(unsafe) var errData = Data()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errData = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }
}

public struct SandboxError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One line of probe output: "ok NAME PEER T_NS" or "err ERRNO T_NS".
public struct ProbeResult: Hashable, Sendable {
    public var ok: Bool
    public var reply: String   // server name, or errno name
    public var peer: String
    public var startNS: UInt64

    public init(_ line: String) {
        let f = line.split(separator: " ").map(String.init)
        ok = f.first == "ok"
        reply = f.count > 1 ? f[1] : ""
        peer = ok && f.count > 2 ? f[2] : ""
        startNS = UInt64(f.last ?? "") ?? 0
    }
}

extension FileHandle {
    /// Reads one line byte by byte (the server keeps the pipe open).
    public func readLine() -> String? {
        var bytes: [UInt8] = []
        while true {
            let d = readData(ofLength: 1)
            guard let b = d.first else { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
            if b == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(b)
        }
    }
}

public func monotonicNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Runs blocking work (subprocesses, BPF loads) on a thread of its own, off the cooperative
/// pool, which on a 2-core machine has two threads for every async test in the process.
public func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

public func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: body()) }.start()
    }
}
