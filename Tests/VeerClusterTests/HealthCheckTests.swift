import Foundation
import Glibc
import Testing
import VeerTestSupport

// kube-proxy's health promises, probed from outside the nodes as a cloud load balancer does:
// healthCheckNodePort per eTP=Local LoadBalancer Service, /healthz and /livez on 10256.

/// An eTP=Local LoadBalancer Service with its health check port.
private func lbLocal(_ name: String, healthCheckNodePort: Int, nodePort: Int = 30080) -> [String: Any] {
    ClusterObjects.service(name, clusterIP: vip, nodePort: nodePort,
                           spec: ["type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": healthCheckNodePort],
                           status: ["loadBalancer": ["ingress": [["ip": "203.0.113.9"]]]])
}

private func json(_ body: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
}

private func localEndpoints(_ a: ClusterSandbox.HTTPAnswer) -> Int? { json(a.body)["localEndpoints"] as? Int }

extension ClusterTests {
    @Test("healthCheckNodePort: 200 with the node's local Ready endpoints, 503 with none or only terminating ones; follows the Service; a port in use is reported and the rest keep serving")
    func healthCheckNodePort() async throws {
        try await withCluster { cluster in
            let pods = try [cluster.addPod("web-1a", on: 1), cluster.addPod("web-1b", on: 1), cluster.addPod("web-2a", on: 2)]
            try cluster.apply("services", lbLocal("web", healthCheckNodePort: 32001))
            try cluster.apply("endpointslices", ClusterObjects.slice("web", pods, in: cluster))
            try await cluster.waitUntil("every node answers on 32001 with its own count") {
                [1: 2, 2: 1, 3: 0].allSatisfy { localEndpoints(cluster.probe($0.key, port: 32001)) == $0.value }
            }
            for (node, count) in [1: 2, 2: 1, 3: 0] {
                let a = cluster.probe(node, port: 32001, path: node == 2 ? "/any/path" : "/")
                #expect(a.status == (count > 0 ? 200 : 503), "node-\(node): \(a.status) \(a.body)")
                #expect(a.headers["content-type"] == "application/json")
                #expect(a.headers["x-content-type-options"] == "nosniff")
                #expect(a.headers["x-load-balancing-endpoint-weight"] == "\(count)")
                // kube-proxy's body, byte for byte.
                #expect(a.body == "{\n\t\"service\": {\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": \(count),\n\t\"serviceProxyHealthy\": true\n}",
                        "node-\(node): \(a.body.debugDescription)")
            }

            // node-1's pods start terminating (still serving): they no longer count, node-1 turns 503.
            try cluster.apply("endpointslices", ClusterObjects.slice("web", pods, in: cluster,
                                                                     states: ["web-1a": .terminating, "web-1b": .terminating]))
            try await cluster.waitUntil("node-1 has no Ready local endpoint") { cluster.probe(1, port: 32001).status == 503 }
            #expect(localEndpoints(cluster.probe(1, port: 32001)) == 0)
            #expect(cluster.probe(2, port: 32001).status == 200)
            // A new Ready pod on node-3 turns it healthy.
            let p3 = try cluster.addPod("web-3a", on: 3)
            try cluster.apply("endpointslices", ClusterObjects.slice("web", pods + [p3], in: cluster,
                                                                     states: ["web-1a": .terminating, "web-1b": .terminating]))
            try await cluster.waitUntil("node-3 counts its pod") { localEndpoints(cluster.probe(3, port: 32001)) == 1 }
            #expect(cluster.probe(3, port: 32001).status == 200)

            // The port moves: the old one closes, the new one serves.
            try cluster.apply("services", lbLocal("web", healthCheckNodePort: 32002))
            try await cluster.waitUntil("moved to 32002 everywhere") {
                cluster.nodes.allSatisfy { cluster.probe($0.index, port: 32002).status != 0 && cluster.probe($0.index, port: 32001).status == 0 }
            }

            // A port something else holds on node-2: reported (log, metric, Node event); the other
            // Service's check keeps serving there, and this one serves on the other nodes.
            let squatter = try cluster.holdPort(2, ip: cluster.nodes[1].address, port: 32003)
            defer { kill(squatter.processIdentifier, SIGKILL); squatter.waitUntilExit() }
            var other = lbLocal("other", healthCheckNodePort: 32003, nodePort: 30081)
            var spec = other["spec"] as! [String: Any]
            spec["clusterIP"] = "10.96.0.11"
            spec["clusterIPs"] = ["10.96.0.11"]
            other["spec"] = spec
            try cluster.apply("services", other)
            try await cluster.waitUntil("node-2 reports the port it cannot bind") {
                cluster.metrics(2).contains("veer_health_check_servers{state=\"failed\"} 1")
            }
            #expect(cluster.metrics(2).contains("veer_health_check_bind_failures_total "))
            #expect(cluster.agent(2)?.logText.contains("cannot serve the health check of default/other on port 32003") == true)
            try await cluster.waitUntil("the Node event") {
                cluster.postedEvents().contains { e in
                    (e["reason"] as? String) == "FailedToStartServiceHealthcheck"
                        && ((e["involvedObject"] as? [String: Any])?["name"] as? String) == "node-2"
                }
            }
            #expect(cluster.probe(2, port: 32002).status == 200, "web's check keeps serving on node-2")
            #expect(cluster.probe(1, port: 32003).status == 503, "other's check serves on node-1 (no endpoints: 503)")

            // Deleted: closed everywhere.
            try cluster.delete("services", name: "web")
            try await cluster.waitUntil("closed") { cluster.nodes.allSatisfy { cluster.probe($0.index, port: 32002).status == 0 } }
        }
    }

    @Test("/healthz and /livez on 10256: 200 when synced; a node tainted ToBeDeletedByClusterAutoscaler or being deleted answers /healthz 503, /livez 200")
    func proxyHealthz() async throws {
        try await withCluster { cluster in
            try cluster.apply("services", ClusterObjects.service("web", clusterIP: vip))
            try await cluster.waitUntil("programmed") { cluster.nodes.allSatisfy { cluster.backends($0.index, frontend) == [] } }
            try await cluster.waitUntil("/healthz answers") { cluster.nodes.allSatisfy { cluster.probe($0.index, port: 10256, path: "/healthz").status == 200 } }
            let ok = cluster.probe(1, port: 10256, path: "/healthz")
            #expect(ok.headers["content-type"] == "application/json" && ok.headers["x-content-type-options"] == "nosniff")
            #expect(json(ok.body)["nodeEligible"] as? Bool == true, "\(ok.body)")
            #expect(json(ok.body)["lastUpdated"] is String && json(ok.body)["currentTime"] is String, "\(ok.body)")
            #expect(cluster.probe(1, port: 10256, path: "/livez").status == 200)
            #expect(cluster.probe(1, port: 10256, path: "/other").status == 404)

            var tainted = cluster.nodeObjects[2]
            tainted["spec"] = ["taints": [["key": "ToBeDeletedByClusterAutoscaler", "value": "1765000000", "effect": "NoSchedule"]]]
            try cluster.apply("nodes", tainted)
            var deleting = cluster.nodeObjects[1]
            var meta = deleting["metadata"] as! [String: Any]
            meta["deletionTimestamp"] = "2026-12-06T07:00:00Z"
            deleting["metadata"] = meta
            try cluster.apply("nodes", deleting)
            try await cluster.waitUntil("nodes 2 and 3 drain") {
                [2, 3].allSatisfy { cluster.probe($0, port: 10256, path: "/healthz").status == 503 }
            }
            for n in [2, 3] {
                #expect(json(cluster.probe(n, port: 10256, path: "/healthz").body)["nodeEligible"] as? Bool == false)
                #expect(cluster.probe(n, port: 10256, path: "/livez").status == 200, "/livez ignores the Node")
            }
            #expect(cluster.probe(1, port: 10256, path: "/healthz").status == 200)
            #expect(cluster.metrics(2).contains("veer_proxy_healthz_total{code=\"503\"}"))

            // The taint is lifted: healthy again.
            try cluster.apply("nodes", cluster.nodeObjects[2])
            try await cluster.waitUntil("node-3 back") { cluster.probe(3, port: 10256, path: "/healthz").status == 200 }
        }
    }

    @Test("/healthz: 503 when the first sync does not come within --healthz-timeout; 200 once it does; 503 when the API server stays unreachable longer, and recovers; the health check follows")
    func healthzWhenSyncsStop() async throws {
        try await ClusterSandbox.run(nodes: 1) { cluster in
            let pod = try cluster.addPod("web-1a", on: 1)
            let service = lbLocal("web", healthCheckNodePort: 32001)
            let slice = ClusterObjects.slice("web", [pod], in: cluster)
            // No API server at start: the first sync never comes.
            cluster.stopAPIServer()
            try cluster.startAgent(1, extra: ["--healthz-timeout", "2"])
            try await cluster.waitUntil("503 before any sync, after the bound", timeout: 60) {
                cluster.probe(1, port: 10256, path: "/healthz").status == 503
            }
            try cluster.startAPIServer(services: [service], slices: [slice], rvStart: 20000)
            try await cluster.waitUntil("healthy") {
                cluster.probe(1, port: 10256, path: "/healthz").status == 200 && cluster.probe(1, port: 32001).status == 200
            }
            cluster.stopAPIServer()
            try await cluster.waitUntil("unhealthy after the bound", timeout: 60) {
                cluster.probe(1, port: 10256, path: "/healthz").status == 503
            }
            #expect(cluster.probe(1, port: 10256, path: "/livez").status == 503)
            let hc = cluster.probe(1, port: 32001)
            #expect(hc.status == 503 && json(hc.body)["serviceProxyHealthy"] as? Bool == false && localEndpoints(hc) == 1, "\(hc.body)")
            #expect(json(cluster.probe(1, port: 10256, path: "/healthz").body)["nodeEligible"] as? Bool == true)
            // Traffic keeps flowing meanwhile: the last good state stays programmed.
            #expect(try cluster.connect(1, vip, 80, count: 5).allSatisfy { $0.ok })

            try cluster.startAPIServer(services: [service], slices: [slice], rvStart: 50000)
            try await cluster.waitUntil("healthy again", timeout: 60) {
                cluster.probe(1, port: 10256, path: "/healthz").status == 200 && cluster.probe(1, port: 32001).status == 200
            }
        }
    }
}
