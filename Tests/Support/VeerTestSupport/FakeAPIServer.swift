import AsyncHTTPClient
import Foundation
import NIOCore

/// The fake API server (Tests/VeerKubeTests/fake_apiserver.py: the real list/watch protocol,
/// checked against kubectl and the Python client), and the one driver every suite uses: the
/// API source tests, veerd's end-to-end tests and the multi-node harness (in a namespace).
///
/// Killed by pid; it also exits by itself when the test process dies (its stdin closes).
public final class FakeAPIServer: @unchecked Sendable {
    public static let script = "\(KernelSandbox.repoRoot)/Tests/VeerKubeTests/fake_apiserver.py"

    public let process = Process()
    public let port: Int
    public let scheme: String
    private let netns: String?
    private let host: String
    private let stdin = Pipe()

    public var url: String { "\(scheme)://\(host):\(port)" }
    public var isRunning: Bool { process.isRunning }

    /// `state`: {"services": […], "endpointslices": […], "nodes": […]}, read once at start.
    /// `netns`: run it (and every `post`) in that network namespace. `extraArguments` with
    /// `--tls-cert` makes it serve https.
    public init(netns: String? = nil, host: String = "127.0.0.1", state: [String: Any]? = nil, port: Int = 0,
                rvStart: Int = 1000, token: String? = nil, extraArguments: [String] = []) throws {
        self.netns = netns
        self.host = host
        scheme = extraArguments.contains("--tls-cert") ? "https" : "http"
        var args = [Self.script, "--host", host, "--port", "\(port)", "--rv-start", "\(rvStart)", "--exit-with-stdin"]
        var stateFile: String?
        // The server reads its state once at start; the file goes as soon as it listens.
        defer { if let stateFile { try? FileManager.default.removeItem(atPath: stateFile) } }
        if let state {
            let file = NSTemporaryDirectory() + "veer-fake-state-\(getpid())-\(UUID().uuidString.prefix(8)).json"
            stateFile = file
            try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: file))
            args += ["--state", file]
        }
        if let token { args += ["--token", token] }
        args += extraArguments
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = (netns.map { ["nsenter", "--net=\($0)"] } ?? []) + ["python3"] + args
        let out = Pipe()
        process.standardOutput = out
        process.standardInput = stdin
        try process.run()
        guard let line = out.fileHandleForReading.readLine(), line.hasPrefix("LISTENING "), let p = Int(line.dropFirst(10)) else {
            try? stdin.fileHandleForWriting.close()
            if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
            throw SandboxError("fake API server did not start")
        }
        self.port = p
    }

    deinit { stop() }

    public func stop() {
        // SIGKILL: a child of the test runner may inherit a signal mask that blocks SIGTERM.
        try? stdin.fileHandleForWriting.close()
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
    }

    // MARK: from synchronous tests (curl, in the server's namespace)

    /// A control action (see the script's docstring): apply, delete, drop_watches, delay, …
    /// Returns the server's JSON answer.
    @discardableResult
    public func post(_ action: String, _ body: [String: Any] = [:]) throws -> [String: Any] {
        let file = NSTemporaryDirectory() + "veer-fake-body-\(getpid())-\(UUID().uuidString.prefix(8)).json"
        try JSONSerialization.data(withJSONObject: body).write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let r = curl(["-X", "POST", "--data-binary", "@\(file)", "\(url)/_fake/\(action)"])
        guard r.status == 0 else { throw SandboxError("fake \(action) failed: \(r.stderr)") }
        return (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
    }

    /// The Events posted to the server (kube-proxy-style Node events).
    public func postedEvents() -> [[String: Any]] {
        (try? JSONSerialization.jsonObject(with: Data(curl(["\(url)/_fake/events"]).stdout.utf8))) as? [[String: Any]] ?? []
    }

    private func curl(_ args: [String]) -> (status: Int32, stdout: String, stderr: String) {
        KernelSandbox.run((netns.map { ["nsenter", "--net=\($0)"] } ?? []) + ["curl", "-sfk", "--max-time", "10"] + args)
    }

    // MARK: from async tests (HTTP from this process; not in a namespace)

    @discardableResult
    public func control(_ action: String, _ body: [String: Any] = [:]) async throws -> [String: Any] {
        var request = HTTPClientRequest(url: "\(url)/_fake/\(action)")
        request.method = .POST
        let data = try JSONSerialization.data(withJSONObject: body)
        request.body = .bytes(ByteBuffer(bytes: data))
        request.headers.add(name: "Content-Length", value: String(data.count))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        return (try JSONSerialization.jsonObject(with: Data(bytes.readableBytesView))) as? [String: Any] ?? [:]
    }

    public func get(_ pathAndQuery: String) async throws -> (Int, Data) {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url + pathAndQuery), timeout: .seconds(5))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        return (Int(response.status.code), Data(bytes.readableBytesView))
    }

    public struct Request: Sendable {
        public var path: String
        public var query: [String: String]
        public var userAgent: String?
        public var authorization: String?
    }

    /// Every API request the server has seen, in order.
    public func requests() async throws -> [Request] {
        let (_, data) = try await get("/_fake/requests")
        let list = (try JSONSerialization.jsonObject(with: data)) as? [[String: Any]] ?? []
        return list.map {
            Request(path: $0["path"] as? String ?? "", query: $0["query"] as? [String: String] ?? [:],
                    userAgent: $0["user_agent"] as? String, authorization: $0["authorization"] as? String)
        }
    }

    public func apply(_ resource: String, _ object: [String: Any]) async throws {
        try await control("apply", ["resource": resource, "object": object])
    }

    public func delete(_ resource: String, _ namespace: String, _ name: String) async throws {
        try await control("delete", ["resource": resource, "namespace": namespace, "name": name])
    }
}
