import Foundation
import Glibc
import Testing
import VeerTestSupport

// What users rely on across nodes and zones, asserted by counting which pod answered each
// connection made from each node.

extension ClusterTests {
    @Test("Zone hints: each node reaches only its zone's pods; a zone without pods falls back to all")
    func zoneHints() async throws {
        try await withCluster { cluster in
            let pods = try cluster.addPods("web", perNode: 2)
            try await cluster.deploy(ClusterObjects.service("web", clusterIP: vip),
                               slice: ClusterObjects.slice("web", pods, in: cluster, zoneHints: true),
                               frontend: frontend) { node in endpoints(pods.filter { $0.node == node.index }) }
            for node in cluster.nodes {
                let results = try cluster.connect(node.index, vip, 80, count: 40)
                let own = Set(pods.filter { $0.node == node.index }.map(\.name))
                #expect(results.allSatisfy { $0.ok }, "\(node.name): \(failures(results))")
                #expect(Set(results.map(\.reply)) == own, "\(node.name) in \(node.zone) reached \(Set(results.map(\.reply)))")
            }

            // Zone a loses its pods; the remaining ones keep their hints (b, c). Node 1 has no
            // hinted endpoint for its zone, so it uses every pod; the others keep to their zone.
            let remaining = pods.filter { $0.node != 1 }
            try cluster.apply("endpointslices", ClusterObjects.slice("web", remaining, in: cluster, zoneHints: true))
            try await cluster.waitForBackends(frontend) { node in
                node.index == 1 ? endpoints(remaining) : endpoints(remaining.filter { $0.node == node.index })
            }
            let fallback = try cluster.connect(1, vip, 80, count: 60)
            #expect(fallback.allSatisfy { $0.ok }, "\(failures(fallback))")
            #expect(Set(fallback.map(\.reply)).isSubset(of: Set(remaining.map(\.name))))
            #expect(Set(fallback.compactMap { r in remaining.first { $0.name == r.reply }?.node }) == [2, 3],
                    "node-1 falls back to both other zones: \(Set(fallback.map(\.reply)))")
            for n in [2, 3] {
                let results = try cluster.connect(n, vip, 80, count: 30)
                #expect(Set(results.map(\.reply)) == Set(remaining.filter { $0.node == n }.map(\.name)))
            }
        }
    }

    @Test("internalTrafficPolicy Local: only the node's own pods; a node with none fails connections as kube-proxy drops them")
    func internalTrafficPolicyLocal() async throws {
        try await withCluster { cluster in
            let pods = try [cluster.addPod("local-1a", on: 1), cluster.addPod("local-1b", on: 1), cluster.addPod("local-2a", on: 2)]
            try await cluster.deploy(ClusterObjects.service("local", clusterIP: vip, spec: ["internalTrafficPolicy": "Local"]),
                               slice: ClusterObjects.slice("local", pods, in: cluster), frontend: frontend) { node in
                endpoints(pods.filter { $0.node == node.index })
            }
            for n in [1, 2] {
                let results = try cluster.connect(n, vip, 80, count: 30)
                #expect(results.allSatisfy { $0.ok }, "\(failures(results))")
                #expect(Set(results.map(\.reply)) == Set(pods.filter { $0.node == n }.map(\.name)))
            }
            // Endpoints exist, none on node 3: kube-proxy drops, so the connect times out (at once here).
            let none = try cluster.connect(3, vip, 80, count: 10)
            #expect(none.allSatisfy { !$0.ok && $0.reply == "ETIMEDOUT" }, "\(none.map(\.reply))")
        }
    }

    @Test("Rolling update of 6 pods under load from every node: no failed connection, none reaches a pod after its removal is programmed")
    func rollingUpdate() async throws {
        try await withCluster { cluster in
            var current = try cluster.addPods("v1", perNode: 2)
            var states: [String: ClusterObjects.PodState] = [:]
            try await cluster.deploy(ClusterObjects.service("roll", clusterIP: vip),
                               slice: ClusterObjects.slice("roll", current, in: cluster), frontend: frontend) { _ in endpoints(current) }
            let loads = try cluster.nodes.map { try cluster.startLoad($0.index, vip, 80, gapMicroseconds: 5000) }
            // pod → node → when that node's maps were first seen without it (polled every 50 ms,
            // so a connection started later was certainly translated without it).
            var removedAt: [String: [Int: UInt64]] = [:]
            let old = current
            for (i, pod) in old.enumerated() {
                // A new pod becomes ready on the same node, the old one starts terminating.
                let fresh = try cluster.addPod("v2-\(pod.node)-\(i % 2 + 1)", on: pod.node)
                current.append(fresh)
                states[pod.name] = .terminating
                try cluster.apply("endpointslices", ClusterObjects.slice("roll", current, in: cluster, states: states))
                let serving = current.filter { states[$0.name] == nil }
                try await cluster.waitUntil("\(pod.name) replaced on every node") {
                    for node in cluster.nodes where removedAt[pod.name]?[node.index] == nil
                        && cluster.backends(node.index, frontend) == endpoints(serving) {
                        removedAt[pod.name, default: [:]][node.index] = monotonicNow()
                    }
                    return removedAt[pod.name]?.count == cluster.nodes.count
                }
                // Then it is gone from the slice, and the process exits.
                current.removeAll { $0 == pod }
                states[pod.name] = nil
                try cluster.apply("endpointslices", ClusterObjects.slice("roll", current, in: cluster, states: states))
                try await cluster.waitForBackends(frontend) { _ in endpoints(serving) }
                try await pause(seconds: 0.3)   // connections accepted just before the removal finish
                cluster.stopPod(pod)
            }
            try await pause(seconds: 0.5)
            let results = loads.map { $0.stop() }
            for (load, r) in zip(loads, results) {
                #expect(r.count > 50, "node-\(load.node) made only \(r.count) connections")
                #expect(r.allSatisfy { $0.ok }, "node-\(load.node): \(failures(r))")
                for (name, perNode) in removedAt {
                    let t = perNode[load.node]!
                    let late = r.filter { $0.reply == name && $0.startNS > t }
                    #expect(late.isEmpty, "node-\(load.node): \(late.count) connections reached \(name) after its removal")
                }
                #expect(Set(r.suffix(20).map(\.reply)).isSubset(of: Set(current.map(\.name))))
            }
            #expect(Set(results.joined().map(\.reply)).isSuperset(of: Set(current.map(\.name))), "every new pod served")
        }
    }

    @Test("Session affinity: every client namespace keeps its pod across many connections")
    func sessionAffinity() async throws {
        try await withCluster { cluster in
            let pods = try cluster.addPods("sticky", perNode: 2)
            try await cluster.deploy(ClusterObjects.service("sticky", clusterIP: vip, spec: [
                "sessionAffinity": "ClientIP", "sessionAffinityConfig": ["clientIP": ["timeoutSeconds": 600]]]),
                               slice: ClusterObjects.slice("sticky", pods, in: cluster), frontend: frontend) { _ in endpoints(pods) }
            for node in cluster.nodes {
                let results = try cluster.connect(node.index, vip, 80, count: 50)
                #expect(results.allSatisfy { $0.ok }, "\(failures(results))")
                #expect(Set(results.map(\.reply)).count == 1, "\(node.name) reached \(Set(results.map(\.reply)))")
            }
        }
    }

    @Test("NodePort on each node's address and on loopback, externalIPs and LB IPs reach the pods, with the frontend as peer")
    func nodePortExternalAndLoadBalancer() async throws {
        try await withCluster { cluster in
            let pods = try cluster.addPods("lb", perNode: 1)
            let service = ClusterObjects.service("lb", clusterIP: vip, nodePort: 30080,
                                                 spec: ["type": "LoadBalancer", "externalIPs": ["198.51.100.7"]],
                                                 status: ["loadBalancer": ["ingress": [["ip": "203.0.113.9"]]]])
            try await cluster.deploy(service, slice: ClusterObjects.slice("lb", pods, in: cluster), frontend: frontend) { _ in endpoints(pods) }
            for node in cluster.nodes {
                for (ip, port) in [(node.address, 30080), ("127.0.0.1", 30080), ("198.51.100.7", 80), ("203.0.113.9", 80)] {
                    try await cluster.waitUntil("\(ip):\(port) on \(node.name)") { cluster.backends(node.index, "\(ip):\(port)/tcp") == endpoints(pods) }
                    let results = try cluster.connect(node.index, ip, UInt16(port), count: 30)
                    #expect(results.allSatisfy { $0.ok && $0.peer == "\(ip):\(port)" }, "\(node.name) \(ip):\(port): \(results.prefix(2))")
                    #expect(Set(results.map(\.reply)).count > 1, "spread over the pods of every node")
                }
                // Another node's NodePort address is not this node's: not programmed here.
                let other = cluster.nodes[node.index % 3]
                #expect(cluster.backends(node.index, "\(other.address):30080/tcp") == nil)
            }
        }
    }
}
