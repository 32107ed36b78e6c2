import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
import VeerModel
@testable import VeerKube

/// Runs Tests/VeerKubeTests/fake_apiserver.py on 127.0.0.1 and drives it.
final class FakeAPIServer: @unchecked Sendable {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("fake_apiserver.py").path

    let port: Int
    private let process: Process
    private let stdinPipe = Pipe()
    let scheme: String
    var url: String { "\(scheme)://127.0.0.1:\(port)" }

    struct StartFailed: Error, CustomStringConvertible { var description: String }

    init(state: [String: Any]? = nil, port: Int = 0, rvStart: Int = 1000, token: String? = nil,
         extraArguments: [String] = []) throws {
        scheme = extraArguments.contains("--tls-cert") ? "https" : "http"
        var args = [Self.script, "--port", String(port), "--rv-start", String(rvStart), "--exit-with-stdin"]
        var stateFile: String?
        // The server reads its state once at start; the file goes as soon as it listens.
        defer { if let stateFile { try? FileManager.default.removeItem(atPath: stateFile) } }
        if let state {
            let file = NSTemporaryDirectory() + "veer-fake-state-\(UUID().uuidString).json"
            stateFile = file
            try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: file))
            args += ["--state", file]
        }
        if let token { args += ["--token", token] }
        args += extraArguments
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + args
        let out = Pipe()
        process.standardOutput = out
        process.standardInput = stdinPipe
        try process.run()
        // Read "LISTENING <port>\n".
        var line = Data()
        let handle = out.fileHandleForReading
        while !line.contains(UInt8(ascii: "\n")) {
            let d = handle.availableData
            if d.isEmpty { break }
            line.append(d)
        }
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.hasPrefix("LISTENING "), let p = Int(text.dropFirst(10)) else {
            process.terminate()
            throw StartFailed(description: "fake API server did not start: \(text)")
        }
        self.port = p
    }

    deinit { stop() }

    func stop() {
        // SIGKILL: a child of the test runner may inherit a signal mask that blocks SIGTERM.
        try? stdinPipe.fileHandleForWriting.close()
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    @discardableResult
    func control(_ action: String, _ body: [String: Any] = [:]) async throws -> [String: Any] {
        var request = HTTPClientRequest(url: "\(url)/_fake/\(action)")
        request.method = .POST
        let data = try JSONSerialization.data(withJSONObject: body)
        request.body = .bytes(ByteBuffer(bytes: data))
        request.headers.add(name: "Content-Length", value: String(data.count))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        return (try JSONSerialization.jsonObject(with: Data(bytes.readableBytesView))) as? [String: Any] ?? [:]
    }

    func get(_ pathAndQuery: String) async throws -> (Int, Data) {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url + pathAndQuery), timeout: .seconds(5))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        return (Int(response.status.code), Data(bytes.readableBytesView))
    }

    struct Request { var path: String; var query: [String: String]; var userAgent: String?; var authorization: String? }

    func requests() async throws -> [Request] {
        let (_, data) = try await get("/_fake/requests")
        let list = (try JSONSerialization.jsonObject(with: data)) as? [[String: Any]] ?? []
        return list.map {
            Request(path: $0["path"] as? String ?? "", query: $0["query"] as? [String: String] ?? [:],
                    userAgent: $0["user_agent"] as? String, authorization: $0["authorization"] as? String)
        }
    }

    func apply(_ resource: String, _ object: [String: Any]) async throws {
        try await control("apply", ["resource": resource, "object": object])
    }

    func delete(_ resource: String, _ namespace: String, _ name: String) async throws {
        try await control("delete", ["resource": resource, "namespace": namespace, "name": name])
    }
}

func svc(_ name: String, _ ns: String = "shop", port: Int = 80, labels: [String: String] = [:]) -> [String: Any] {
    ["metadata": ["name": name, "namespace": ns, "labels": labels] as [String: Any],
     "spec": ["clusterIP": "10.96.0.\(abs(name.hashValue) % 200 + 1)", "ports": [["name": "http", "port": port, "protocol": "TCP"]]]]
}

func slice(_ name: String, _ ns: String = "shop", service: String) -> [String: Any] {
    ["metadata": ["name": name, "namespace": ns, "labels": ["kubernetes.io/service-name": service]] as [String: Any],
     "addressType": "IPv4",
     "endpoints": [["addresses": ["10.0.0.5"], "conditions": ["ready": true]]],
     "ports": [["name": "http", "port": 8080, "protocol": "TCP"]]]
}

func node(_ name: String, zone: String = "z1") -> [String: Any] {
    ["metadata": ["name": name, "labels": ["topology.kubernetes.io/zone": zone]]]
}

func standardState() -> [String: Any] {
    ["services": [svc("web"), svc("db", port: 5432), svc("api", "other"),
                  svc("headless", labels: ["service.kubernetes.io/headless": ""])],
     "endpointslices": [slice("web-1", service: "web"), slice("web-2", service: "web"), slice("db-1", service: "db")],
     "nodes": [node("node-a"), node("node-b")]]
}

/// Options that make the loops quick enough for tests.
func testOptions(node: String = "node-a", pageSize: Int = 500) -> KubeAPISource.Options {
    var o = KubeAPISource.Options(nodeName: node)
    o.pageSize = pageSize
    o.initialBackoff = .milliseconds(50)
    o.maxBackoff = .milliseconds(400)
    o.backoffResetAfter = .seconds(5)
    o.requestTimeout = .seconds(15)
    o.connectTimeout = .seconds(1)
    o.shortWatch = .milliseconds(100)
    return o
}

/// One source against one fake server, torn down at the end.
func withSource(_ server: FakeAPIServer, options: KubeAPISource.Options = testOptions(),
                        config: KubeAPIConfig? = nil,
                        _ body: (KubeAPISource, EventRecorder) async throws -> Void,
                        inspect: (KubeAPISource) throws -> Void = { _ in }) async throws {
    let source = try KubeAPISource(config: config ?? KubeAPIConfig(server: server.url), options: options)
    let rec = EventRecorder(events: source.events, diagnostics: source.diagnostics)
    try await whileRunning(source.run) { try await body(source, rec) }
    try inspect(source)
}

/// Runs a source's `run()` as a child task around `body`, as its ServiceGroup would, and
/// cancels it after `body` (its connections closed and its streams finished on return).
func whileRunning(_ run: @escaping @Sendable () async throws -> Void, _ body: () async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await run() }
        defer { group.cancelAll() }
        try await body()
    }
}

