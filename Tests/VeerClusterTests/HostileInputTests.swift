import Foundation
import Glibc
import Testing
import VeerDatapath
import VeerModel
import VeerTestSupport

// Objects crafted to hurt, served by the API server to every agent. Each has one defined
// outcome, checked in the maps of every node.

/// An EndpointSlice of `service` with `count` ready endpoints 10.250.x.y (no server behind them:
/// these tests count what is programmed).
private func bigSlice(_ service: String, name: String, count: Int, offset: Int = 0) -> [String: Any] {
    ["apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
     "metadata": ["name": name, "namespace": "default", "labels": ["kubernetes.io/service-name": service]],
     "addressType": "IPv4",
     "ports": [["name": "http", "port": 8080, "protocol": "TCP"]],
     "endpoints": (offset..<offset + count).map { i in
         ["addresses": ["10.250.\(i / 250).\(i % 250 + 1)"], "conditions": ["ready": true]]
     }]
}

private func bigBackends(_ count: Int) -> [String] { (0..<count).map { "10.250.\($0 / 250).\($0 % 250 + 1):8080" }.sorted() }

extension ClusterTests {
    @Test("A 1,000-endpoint slice: all 1,000 programmed on every node")
    func thousandEndpointSlice() async throws {
        try await withCluster(agents: false) { cluster in
            cluster.stopAPIServer()
            try cluster.startAPIServer(services: [ClusterObjects.service("big", clusterIP: vip)],
                                       slices: [bigSlice("big", name: "big-1", count: 1000)])
            try cluster.startAgents()
            try await cluster.waitForBackends(frontend, timeout: 60) { _ in bigBackends(1000) }
        }
    }

    @Test("100 slices of one service: merged, 1,000 backends on every node; deleting one slice removes exactly its 10")
    func hundredSlices() async throws {
        try await withCluster(agents: false) { cluster in
            cluster.stopAPIServer()
            try cluster.startAPIServer(services: [ClusterObjects.service("many", clusterIP: vip)],
                                       slices: (0..<100).map { bigSlice("many", name: "many-\($0)", count: 10, offset: $0 * 10) })
            try cluster.startAgents()
            try await cluster.waitForBackends(frontend, timeout: 60) { _ in bigBackends(1000) }
            try cluster.delete("endpointslices", name: "many-0")
            try await cluster.waitForBackends(frontend, timeout: 60) { _ in Array(bigBackends(1000).filter { !bigBackends(10).contains($0) }) }
        }
    }

    @Test("Duplicate endpoints (twice in a slice, and in two slices) are programmed once")
    func duplicateEndpoints() async throws {
        try await withCluster { cluster in
            let pods = try cluster.addPods("dup", perNode: 1)
            var first = ClusterObjects.slice("dup", pods + [pods[0]], in: cluster)
            first["metadata"] = ["name": "dup-1", "namespace": "default", "labels": ["kubernetes.io/service-name": "dup"]]
            let second = ClusterObjects.slice("dup", name: "dup-2", [pods[0], pods[1]], in: cluster)
            try cluster.apply("services", ClusterObjects.service("dup", clusterIP: vip))
            try cluster.apply("endpointslices", first)
            try cluster.apply("endpointslices", second)
            try await cluster.waitForBackends(frontend) { _ in endpoints(pods) }
            let results = try cluster.connect(1, vip, 80, count: 30)
            #expect(results.allSatisfy { $0.ok }, "\(failures(results))")
        }
    }

    @Test("Two services claiming one IP:port: the first by name wins everywhere, the other is reported; it takes over when the winner goes")
    func conflictingFrontends() async throws {
        try await withCluster { cluster in
            let alpha = try cluster.addPod("alpha", on: 1), beta = try cluster.addPod("beta", on: 2)
            try cluster.apply("services", ClusterObjects.service("beta", clusterIP: vip))
            try cluster.apply("endpointslices", ClusterObjects.slice("beta", [beta], in: cluster))
            try await cluster.waitForBackends(frontend) { _ in endpoints([beta]) }
            try cluster.apply("services", ClusterObjects.service("alpha", clusterIP: vip))
            try cluster.apply("endpointslices", ClusterObjects.slice("alpha", [alpha], in: cluster))
            try await cluster.waitForBackends(frontend) { _ in endpoints([alpha]) }
            for node in cluster.nodes {
                #expect(try cluster.connect(node.index, vip, 80, count: 10).allSatisfy { $0.ok && $0.reply == "alpha" })
            }
            try await cluster.waitUntil("the conflict is logged") {
                cluster.agent(1)?.logText.contains("is already the clusterIP frontend of default/alpha") == true
            }
            try cluster.delete("services", name: "alpha")
            try await cluster.waitForBackends(frontend) { _ in endpoints([beta]) }
            #expect(try cluster.connect(3, vip, 80, count: 10).allSatisfy { $0.ok && $0.reply == "beta" })
        }
    }

    @Test("Huge strings: a 1 MiB annotation and 253-character names are programmed like any other service")
    func hugeStrings() async throws {
        try await withCluster { cluster in
            let pods = try cluster.addPods("huge", perNode: 1)
            let name = String(repeating: "n", count: 253)
            var service = ClusterObjects.service(name, clusterIP: vip)
            service["metadata"] = ["name": name, "namespace": "default",
                                   "annotations": ["example.com/blob": String(repeating: "x", count: 1 << 20)],
                                   "labels": ["l": String(repeating: "v", count: 63)]]
            try cluster.apply("services", service)
            try cluster.apply("endpointslices", ClusterObjects.slice(name, pods, in: cluster))
            try await cluster.waitForBackends(frontend) { _ in endpoints(pods) }
            #expect(try cluster.connect(2, vip, 80, count: 10).allSatisfy { $0.ok })
            #expect(cluster.metrics(2).contains("service=\"\(name)\""))
            #expect(cluster.nodes.allSatisfy { cluster.agent($0.index)?.isRunning == true })
        }
    }
}

extension ClusterTests {
    @Test("Seeded garbage and mutated objects in the live watch streams: agents survive, maps stay valid, the next real state converges")
    func watchStreamFuzz() async throws {
        let env = ProcessInfo.processInfo.environment
        let events = Int(env["VEER_CLUSTER_FUZZ_EVENTS"] ?? "") ?? 60
        var rng = SplitMix64(seed: UInt64(env["VEER_FUZZ_SEED"] ?? "") ?? 0xC1D5)
        try await withCluster { cluster in
            let pods = try cluster.addPods("web", perNode: 1)
            let service = ClusterObjects.service("web", clusterIP: vip, nodePort: 30080, spec: ["type": "NodePort"])
            try await cluster.deploy(service, slice: ClusterObjects.slice("web", pods, in: cluster), frontend: frontend) { _ in endpoints(pods) }
            let api = try #require(cluster.api)
            // Real events of both kinds, byte-mutated, written raw into the watches; some
            // decode into other (odd) objects, some are garbage that restarts the watch.
            let seeds: [(String, [String: Any])] = [("services", service), ("endpointslices", ClusterObjects.slice("web", pods, in: cluster))]
            for _ in 0..<events {
                let (resource, object) = seeds.randomElement(using: &rng)!
                let event: [String: Any] = ["type": ["ADDED", "MODIFIED", "DELETED"].randomElement(using: &rng)!, "object": object]
                let line = mutate(String(decoding: try JSONSerialization.data(withJSONObject: event), as: UTF8.self), &rng)
                    .replacingOccurrences(of: "\n", with: " ")
                // A mutation that renames the object would hand the agents an object the server
                // never had, which only a relist can take back: the "next real state" below
                // would then rightly include it. Garbage in every other field stays.
                if let decoded = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                   let meta = (decoded["object"] as? [String: Any])?["metadata"] as? [String: Any],
                   let seedMeta = object["metadata"] as? [String: Any],
                   (meta["name"] as? String) != (seedMeta["name"] as? String)
                    || (meta["namespace"] as? String) != (seedMeta["namespace"] as? String) {
                    continue
                }
                try api.post("inject_raw", ["resource": resource, "line": line])
            }
            for node in cluster.nodes { #expect(cluster.agent(node.index)?.isRunning == true, "\(node.name): \(cluster.agentLogs())") }
            // The real state, changed: every agent converges to it.
            let kept = Array(pods.dropLast())
            try cluster.apply("services", service)
            try cluster.apply("endpointslices", ClusterObjects.slice("web", kept, in: cluster))
            try await cluster.waitForBackends(frontend, timeout: 60) { _ in endpoints(kept) }
            for node in cluster.nodes {
                let inspection = try Inspection(datapath: Datapath(pins: node.pins))
                #expect(inspection.frontends.allSatisfy { $0.problems.isEmpty }, "\(node.name): \(inspection.frontends.flatMap(\.problems))")
                #expect(try cluster.connect(node.index, vip, 80, count: 10).allSatisfy { $0.ok })
            }
        }
    }
}
