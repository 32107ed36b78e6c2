import Foundation
import Glibc
import Testing
import VeerTestSupport

/// Why the cluster tests cannot run here (they need what the kernel tests need, plus veerd and
/// nsenter), or nil.
let clusterUnavailable: String? = {
    if let r = KernelSandbox.unavailableReason { return r }
    if access("\(KernelSandbox.veerBinaries)/veerd", X_OK) != 0 { return "veerd not built: run `make test`" }
    if access("/usr/bin/nsenter", X_OK) != 0 { return "the cluster tests need nsenter (util-linux)" }
    if KernelSandbox.run(["python3", "-c", "pass"]).status != 0 { return "the cluster tests need python3 (the fake API server)" }
    return nil
}()

/// One parent suite, serialized: clusters are heavy (3 namespaces, 3 agents, a Python API
/// server) and the machine is shared, so they run one at a time.
@Suite("cluster", .serialized, .disabled(if: clusterUnavailable != nil, Comment(rawValue: "skipped: \(clusterUnavailable ?? "")")))
struct ClusterTests {}

/// The cluster IP most tests serve, and its frontend as the maps key it.
let vip = "10.96.0.10"
let frontend = "\(vip):80/tcp"

/// A 3-node cluster (zones a, b, c) with an agent on every node, already listing the API server.
func withCluster<T>(agents: Bool = true, _ body: (ClusterSandbox) async throws -> T) async throws -> T {
    try await ClusterSandbox.run(nodes: 3) { cluster in
        if agents { try cluster.startAgents() }
        return try await body(cluster)
    }
}

extension ClusterSandbox {
    /// Adds `perNode` pods on every node, named `<prefix>-<node>-<i>`.
    func addPods(_ prefix: String, perNode: Int) throws -> [Pod] {
        var out: [Pod] = []
        for n in nodes { for i in 1...perNode { out.append(try addPod("\(prefix)-\(n.index)-\(i)", on: n.index)) } }
        return out
    }

    /// Applies a service and its one slice, and waits until every node programs `expected`
    /// (default: every pod) for clusterIP:80.
    func deploy(_ service: [String: Any], slice: [String: Any], frontend: String, expected: ((Node) -> [String]?)) async throws {
        try apply("services", service)
        try apply("endpointslices", slice)
        try await waitForBackends(frontend, expected)
    }
}

func endpoints(_ pods: [ClusterSandbox.Pod]) -> [String] { pods.map { "\($0.ip):8080" }.sorted() }

/// Failures, for messages: the first few.
func failures(_ results: [ProbeResult]) -> String {
    let bad = results.filter { !$0.ok }
    return "\(bad.count) failed of \(results.count), e.g. \(bad.prefix(3).map(\.reply))"
}
