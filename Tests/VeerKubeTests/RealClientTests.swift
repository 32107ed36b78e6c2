import Foundation
import Testing
import VeerModel
import VeerTestSupport
@testable import VeerKube

/// Runs a program with its output in temp files (no pipe deadlocks); blocks until it exits.
private func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                 timeout: TimeInterval = 60) throws -> (status: Int32, stdout: Data, stderr: String) {
    let out = NSTemporaryDirectory() + "veer-run-\(UUID().uuidString)"
    _ = FileManager.default.createFile(atPath: out + ".out", contents: nil)
    _ = FileManager.default.createFile(atPath: out + ".err", contents: nil)
    defer {
        try? FileManager.default.removeItem(atPath: out + ".out")
        try? FileManager.default.removeItem(atPath: out + ".err")
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    if let environment { p.environment = environment }
    p.standardInput = FileHandle.nullDevice
    p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out + ".out"))
    p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: out + ".err"))
    try p.run()
    try? waitFor("\(executable) to exit", timeout: timeout) { !p.isRunning }
    if p.isRunning { kill(p.processIdentifier, SIGKILL) }
    p.waitUntilExit()
    return (p.terminationStatus, FileManager.default.contents(atPath: out + ".out") ?? Data(),
            String(decoding: FileManager.default.contents(atPath: out + ".err") ?? Data(), as: UTF8.self))
}

private func which(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let path = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}

private let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
private let packageRoot = testsDirectory.deletingLastPathComponent().deletingLastPathComponent()

/// A venv with the official `kubernetes` client under .build/ (created once), or nil with the reason.
private func pythonWithKubernetesClient() -> (String?, String) {
    let venv = packageRoot.appendingPathComponent(".build/veer-pyenv").path
    let python = venv + "/bin/python"
    if let r = try? run(python, ["-c", "import kubernetes"]), r.status == 0 { return (python, "") }
    guard let python3 = which("python3") else { return (nil, "python3 is not installed") }
    do {
        let v = try run(python3, ["-m", "venv", venv])
        guard v.status == 0 else { return (nil, "python3 -m venv failed: \(v.stderr)") }
        let pip = try run(venv + "/bin/pip", ["install", "-q", "kubernetes"], timeout: 240)
        guard pip.status == 0 else { return (nil, "pip install kubernetes failed: \(pip.stderr.suffix(400))") }
        return (python, "")
    } catch {
        return (nil, "\(error)")
    }
}

/// A watch as (apply|delete, key, resourceVersion-or-"") — the part every client must agree on.
private struct Seen: Hashable, CustomStringConvertible {
    var op: String, key: String, rv: String
    var description: String { "\(op) \(key) \(rv)" }
    init(_ op: String, _ key: String, _ rv: String) { self.op = op; self.key = key; self.rv = rv }
    init(kubeType: String, key: String, rv: String) {
        self.init(kubeType == "DELETED" ? "delete" : "apply", key, kubeType == "DELETED" ? "" : rv)
    }
}

private func watchLines(_ data: Data) -> [[String: Any]] {
    String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap {
        (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
    }
}

private func key(_ object: [String: Any]?) -> String {
    let md = object?["metadata"] as? [String: Any]
    let ns = md?["namespace"] as? String ?? ""
    let name = md?["name"] as? String ?? ""
    return ns.isEmpty ? name : "\(ns)/\(name)"
}

@Suite("Real clients (kubectl, Python kubernetes) see what Veer sees", .serialized)
struct RealClientTests {
    @Test("same lists and the same watch events for kubectl, the Python client and the API source")
    func sameView() async throws {
        let server = try FakeAPIServer(state: standardState())
        defer { server.stop() }
        var options = testOptions(pageSize: 1)
        options.serviceLabelSelector = nil  // see every service, as the plain clients do

        var ours: [Seen] = []
        var rv0 = ""
        var ourServices: [String] = [], ourSlices: [String] = [], ourNodes: [String] = []
        try await withSource(server, options: options) { _, rec in
            await rec.wait("synced") { rec.syncedCount == 1 }
            rv0 = try await server.control("ping")["resourceVersion"] as? String ?? ""
            rec.clearEvents()
            try await server.apply("services", svc("cache", port: 6379))
            try await server.apply("services", svc("web", port: 8080))
            try await server.delete("services", "shop", "db")
            await rec.wait("changes seen") { rec.events.count == 3 }
            ours = rec.events.compactMap {
                switch $0 {
                case .apply(let o): return Seen("apply", o.key, o.resourceVersion ?? "")
                case .delete(_, let ns, let name): return Seen("delete", "\(ns)/\(name)", "")
                default: return nil
                }
            }
            ourServices = rec.keys(.service)
            ourSlices = rec.keys(.endpointSlice)
            ourNodes = rec.keys(.node)
        }
        #expect(ours.map(\.key) == ["shop/cache", "shop/web", "shop/db"])
        #expect(ourServices == ["other/api", "shop/cache", "shop/headless", "shop/web"])

        // kubectl (Debian/Google packaging; v1.32 here).
        if let kubectl = which("kubectl") {
            let home = try TempDir()
            defer { home.cleanup() }
            try home.write("kubeconfig", """
                apiVersion: v1
                kind: Config
                current-context: fake
                clusters: [{name: fake, cluster: {server: "\(server.url)"}}]
                contexts: [{name: fake, context: {cluster: fake, user: fake}}]
                users: [{name: fake, user: {token: fake-token}}]
                """)
            var env = ProcessInfo.processInfo.environment
            env["KUBECONFIG"] = nil
            env["HOME"] = home.path
            env["NO_PROXY"] = "127.0.0.1"
            let base = ["--kubeconfig", home.file("kubeconfig"), "--cache-dir", home.file("cache")]

            let raw = try run(kubectl, base + ["get", "--raw", "/api/v1/services"], environment: env)
            let (_, direct) = try await server.get("/api/v1/services")
            #expect(raw.status == 0, "\(raw.stderr)")
            #expect(raw.stdout == direct, "kubectl get --raw prints the exact bytes the fake serves")

            let list = try run(kubectl, base + ["get", "svc", "-A", "-o", "json", "--chunk-size=1"], environment: env)
            #expect(list.status == 0, "\(list.stderr)")
            let items = ((try? JSONSerialization.jsonObject(with: list.stdout)) as? [String: Any])?["items"] as? [[String: Any]] ?? []
            #expect(items.map { key($0) }.sorted() == ourServices)

            // Both kinds in one command, paged by two (the continue tokens of the served snapshot).
            let both = try run(kubectl, base + ["get", "services,endpointslices", "-A", "-o", "json", "--chunk-size=2"],
                               environment: env)
            #expect(both.status == 0, "\(both.stderr)")
            let bothItems = ((try? JSONSerialization.jsonObject(with: both.stdout)) as? [String: Any])?["items"] as? [[String: Any]] ?? []
            #expect(bothItems.filter { $0["kind"] as? String == "Service" }.map { key($0) }.sorted() == ourServices)
            #expect(bothItems.filter { $0["kind"] as? String == "EndpointSlice" }.map { key($0) }.sorted() == ourSlices)

            let w = try run(kubectl, base + ["get", "--raw",
                                             "/api/v1/services?watch=true&resourceVersion=\(rv0)&timeoutSeconds=1"], environment: env)
            #expect(w.status == 0, "\(w.stderr)")
            let kubectlSeen = watchLines(w.stdout).map { ev -> Seen in
                let object = ev["object"] as? [String: Any]
                let rv = (object?["metadata"] as? [String: Any])?["resourceVersion"] as? String ?? ""
                return Seen(kubeType: ev["type"] as? String ?? "", key: key(object), rv: rv)
            }
            #expect(kubectlSeen == ours, "kubectl: \(kubectlSeen) vs veer: \(ours)")

            try await server.control("forbid", ["resources": ["services"]])
            let denied = try run(kubectl, base + ["get", "--raw", "/api/v1/services"], environment: env)
            #expect(denied.status != 0 && denied.stderr.contains("Error from server (Forbidden)"), "\(denied.stderr)")
            try await server.control("forbid", ["resources": [String]()])
        } else {
            print("RealClientTests: kubectl is not installed; the kubectl half of this check was skipped")
        }

        // The official Python client.
        let (python, why) = pythonWithKubernetesClient()
        guard let python else {
            print("RealClientTests: the Python kubernetes client is unavailable (\(why)); that half of this check was skipped")
            return
        }
        let script = testsDirectory.appendingPathComponent("python_client_check.py").path
        let py = try run(python, [script, "--server", server.url, "--rv", rv0, "--node", "node-a"],
                         environment: ProcessInfo.processInfo.environment.merging(["NO_PROXY": "127.0.0.1"]) { $1 })
        let lines = watchLines(py.stdout)
        #expect(py.status == 0, "\(String(decoding: py.stdout, as: UTF8.self)) \(py.stderr)")
        #expect(lines.first { $0["list"] as? String == "services" }?["keys"] as? [String] == ourServices)
        #expect(lines.first { $0["list"] as? String == "endpointslices" }?["keys"] as? [String] == ourSlices)
        #expect(lines.first { $0["list"] as? String == "nodes" }?["keys"] as? [String] == ourNodes)
        let pySeen = lines.filter { $0["watch"] != nil }.map {
            Seen(kubeType: $0["type"] as? String ?? "", key: $0["key"] as? String ?? "", rv: $0["rv"] as? String ?? "")
        }
        #expect(pySeen == ours, "python: \(pySeen) vs veer: \(ours)")
        let initial = lines.filter { $0["initial"] != nil }
        #expect(initial.allSatisfy { $0["type"] as? String == "ADDED" })
        #expect(initial.compactMap { $0["key"] as? String }.sorted() == ourServices)
        // WatchList: every service ADDED, then one bookmark carrying the initial-events-end marker.
        let streamed = lines.filter { $0["watchlist"] != nil }
        #expect(streamed.dropLast().allSatisfy { $0["type"] as? String == "ADDED" })
        #expect(streamed.dropLast().compactMap { $0["key"] as? String }.sorted() == ourServices)
        #expect(streamed.last?["type"] as? String == "BOOKMARK" && streamed.last?["end"] as? Bool == true, "\(streamed)")
    }
}
