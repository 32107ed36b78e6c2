import Foundation
import Testing
import VeerModel
import VeerTestSupport
@testable import VeerKube

// The objects the fake API server (VeerTestSupport's FakeAPIServer) starts with, and one API
// source against it.

func svc(_ name: String, _ ns: String = "shop", port: Int = 80, labels: [String: String] = [:]) -> [String: Any] {
    Manifest.service(name, namespace: ns, clusterIP: "10.96.0.\(abs(name.hashValue) % 200 + 1)", port: port, labels: labels)
}

func slice(_ name: String, _ ns: String = "shop", service: String) -> [String: Any] {
    Manifest.endpointSlice(name, namespace: ns, service: service, endpoints: [Manifest.endpoint("10.0.0.5")])
}

func node(_ name: String, zone: String = "z1") -> [String: Any] { Manifest.node(name, zone: zone) }

func standardState() -> [String: Any] {
    ["services": [svc("web"), svc("db", port: 5432), svc("api", "other"),
                  svc("headless", labels: ["service.kubernetes.io/headless": ""])],
     "endpointslices": [slice("web-1", service: "web"), slice("web-2", service: "web"), slice("db-1", service: "db")],
     "nodes": [node("node-a"), node("node-b")]]
}

/// Options that make the loops quick enough for tests.
/// List+watch unless `watchList`: most suites check the list path (every WatchList falls back to
/// it); WatchListTests checks the streamed one.
func testOptions(node: String = "node-a", pageSize: Int = 500, watchList: Bool = false) -> KubeAPISource.Options {
    var o = KubeAPISource.Options(nodeName: node)
    o.pageSize = pageSize
    o.watchList = watchList
    o.watchListQuietTimeout = .milliseconds(500)
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

