import Foundation
import Glibc
import Testing
import VeerDatapath
import VeerTestSupport

// A veerd start that fails on bad input changes nothing in the kernel: no program attached,
// nothing pinned. And uninstall clears the state directory even when the pins are gone.

private let veerdUnavailable: String? = {
    if let r = KernelSandbox.unavailableReason { return r }
    if access("\(KernelSandbox.veerBinaries)/veerd", X_OK) != 0 { return "veerd not built: run `make test`" }
    return nil
}()

/// Runs veerd to its exit (these starts must fail at once); a start that does not end
/// within the bound is killed and reported.
private func runVeerd(_ sb: KernelSandbox, _ args: [String]) throws -> (status: Int32, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "\(KernelSandbox.veerBinaries)/veerd")
    process.arguments = ["run", "--cgroup", sb.cgroup, "--bpffs", sb.pins.root, "--node-name", "node-a",
                         "--bpf-object", KernelSandbox.bpfObject] + args
    let err = Pipe()
    process.standardError = err
    process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
    try process.run()
    try? waitFor("veerd \(args) to exit", timeout: 30) { !process.isRunning }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        throw SandboxError("veerd \(args) did not exit: it should have refused to start")
    }
    let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    return (process.terminationStatus, text)
}

/// What a failed start must not leave: programs on the cgroup, pins, state files.
private func expectUntouched(_ sb: KernelSandbox, _ what: String) {
    let attached = KernelSandbox.run(["bpftool", "cgroup", "show", sb.cgroup])
    #expect(attached.status == 0 && attached.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty,
            "\(what): programs attached to the sandbox cgroup: \(attached.stdout)")
    #expect(access(sb.pins.root, F_OK) != 0, "\(what): \(sb.pins.root) was created")
}

/// A TCP listener on 127.0.0.1 held by the test, so veerd's metrics port is taken.
private func takenPort() throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) { ptr in
        ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, len) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &len) == 0
        }
    }
    guard ok else { close(fd); throw SandboxError("cannot hold a port on 127.0.0.1") }
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
}

@Suite("veerd start validation", .serialized, .disabled(if: veerdUnavailable != nil, Comment(rawValue: "skipped: \(veerdUnavailable ?? "")")))
struct StartupValidationTests {
    @Test("A missing manifest directory, BPF object or cgroup fails the start before the kernel is touched")
    func badPaths() throws {
        try KernelSandbox.run { sb in
            let manifests = NSTemporaryDirectory() + "veer-startup-\(getpid())"
            try FileManager.default.createDirectory(atPath: manifests, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: manifests) }
            let cases: [(args: [String], says: String)] = [
                (["--manifests", "/no/such/dir", "--metrics-address", "127.0.0.1:0"], "manifest directory /no/such/dir does not exist"),
                (["--manifests", manifests, "--metrics-address", "127.0.0.1:0", "--bpf-object", "/no/such/veer.bpf.o"],
                 "BPF object /no/such/veer.bpf.o is not a readable file"),
            ]
            for c in cases {
                let r = try runVeerd(sb, c.args)
                #expect(r.status != 0, "\(c.args)")
                #expect(r.stderr.contains(c.says), "\(c.args): \(r.stderr)")
                expectUntouched(sb, c.says)
            }
            // A cgroup that is not a cgroup2 directory: veerd never attaches to what it was not given.
            let r = KernelSandbox.run(["\(KernelSandbox.veerBinaries)/veerd", "run", "--manifests", manifests,
                                       "--cgroup", manifests, "--bpffs", sb.pins.root, "--bpf-object", KernelSandbox.bpfObject])
            #expect(r.status != 0 && r.stderr.contains("--cgroup"), "\(r)")
            expectUntouched(sb, "--cgroup on a plain directory")
        }
    }

    @Test("A metrics port in use fails the start with the address named, before the kernel is touched")
    func metricsPortInUse() throws {
        try KernelSandbox.run { sb in
            let manifests = NSTemporaryDirectory() + "veer-startup-\(getpid())"
            try FileManager.default.createDirectory(atPath: manifests, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: manifests) }
            let held = try takenPort()
            defer { close(held.fd) }
            let r = try runVeerd(sb, ["--manifests", manifests, "--metrics-address", "127.0.0.1:\(held.port)"])
            #expect(r.status != 0)
            #expect(r.stderr.contains("cannot listen on 127.0.0.1:\(held.port)"), "\(r.stderr)")
            expectUntouched(sb, "metrics port in use")
        }
    }

    @Test("uninstall removes the state directory (the lock file) even when the pins are already gone")
    func uninstallClearsState() throws {
        try KernelSandbox.run { sb in
            let state = NamesFile.directory(sb.pins)
            do { _ = try AgentLock(pins: sb.pins) } // takes and drops the lock: leaves veerd.lock behind
            #expect(access(AgentLock.path(sb.pins), F_OK) == 0)
            #expect(access(sb.pins.directory, F_OK) != 0)
            let r = KernelSandbox.run(["\(KernelSandbox.veerBinaries)/veerctl", "uninstall", "--bpffs", sb.pins.root])
            #expect(r.status == 0 && r.stdout.contains("nothing pinned"), "\(r)")
            #expect(access(state, F_OK) != 0, "\(state) is still there")
        }
    }
}
