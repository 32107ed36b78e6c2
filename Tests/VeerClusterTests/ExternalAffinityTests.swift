import Foundation
import Testing
import VeerTestSupport

// sessionAffinity: ClientIP for clients outside the node. kube-proxy keys affinity by the
// client's source address; every new connection steered to the endpoint refreshes the timer
// (sliding); only endpoints of the set being chosen from can match. The packet path keeps the
// pick in the socket path's affinity map, keyed by the packet's source address.

extension ClusterTests {
    @Test("sessionAffinity ClientIP from outside: each client's new connections to a NodePort stay on one pod, different clients spread, a pod leaving the service moves its clients (IPv4 and IPv6)")
    func externalSessionAffinity() async throws {
        try await withCluster { cluster in
            try cluster.addOutsideClient()
            let pods = try [cluster.addIsolatedPod("web-2a", on: 2), cluster.addIsolatedPod("web-2b", on: 2),
                            cluster.addIsolatedPod("web-3", on: 3)]
            let service = ClusterObjects.service("sticky", clusterIP: vip, clusterIP6: vip6, nodePort: 30200,
                                                 spec: ["type": "NodePort", "sessionAffinity": "ClientIP",
                                                        "sessionAffinityConfig": ["clientIP": ["timeoutSeconds": 600]]])
            try await cluster.deployDualStack(service, name: "sticky", pods: pods)
            let clients = try cluster.addOutsideAddresses(10)
            let node1 = cluster.nodes[0]
            func url(_ client: String) -> String { client.contains(":") ? "http://[\(node1.address6)]:30200/" : "http://\(node1.address):30200/" }
            try await cluster.waitUntil("the NodePort served from outside") { try cluster.curlOutside(url(clients.v4[0]), from: clients.v4[0]).status == 0 }

            // Without affinity, 6 connections over 3 pods land on one pod 1 time in 243; here every
            // client's do, and the pod sees the client's connections masqueraded as node-1.
            var sticky: [String: String] = [:]
            for client in clients.v4 + clients.v6 {
                var reached: Set<String> = []
                for _ in 0..<6 {
                    let r = try cluster.curlOutside(url(client), from: client)
                    #expect(r.status == 0, "\(client): exit \(r.status) \(r.body)")
                    if let w = WhoAmI(r.body) { reached.insert(w.pod) }
                }
                #expect(reached.count == 1, "\(client) reached \(reached.sorted())")
                sticky[client] = reached.first
            }
            // Different clients spread (all 20 on one of 3 pods: 1 in 3^19 without a bug).
            #expect(Set(sticky.values).count > 1, "\(sticky)")
            #expect(!cluster.metrics(1).contains("veer_packet_path_packets_total{event=\"affinity\"} 0\n"))

            // The pod of the first IPv4 client leaves the service: that client moves to another
            // pod (only members can match) and stays there.
            let mover = clients.v4[0]
            let left = try #require(sticky[mover])
            let kept = pods.filter { $0.name != left }
            try cluster.apply("endpointslices", ClusterObjects.slice("sticky", kept, in: cluster))
            try cluster.apply("endpointslices", ClusterObjects.slice("sticky", kept, in: cluster, ipv6: true))
            try await cluster.waitForBackends(frontend) { _ in endpoints(kept) }
            try await cluster.waitUntil("node-1's NodePort without \(left)") {
                cluster.backends(1, "\(node1.address):30200/tcp") == endpoints(kept)
            }
            var moved: Set<String> = []
            for _ in 0..<6 { if let w = WhoAmI(try cluster.curlOutside(url(mover), from: mover).body) { moved.insert(w.pod) } }
            #expect(moved.count == 1 && !moved.contains(left), "\(mover) reached \(moved.sorted()) after \(left) left")
        }
    }

    @Test("sessionAffinity ClientIP from outside: the timeout slides with each new connection and, once it passes, the client picks afresh")
    func externalSessionAffinityTimeout() async throws {
        try await withCluster { cluster in
            try cluster.addOutsideClient()
            let pods = try [cluster.addIsolatedPod("web-2", on: 2), cluster.addIsolatedPod("web-3a", on: 3),
                            cluster.addIsolatedPod("web-3b", on: 3)]
            let service = ClusterObjects.service("brief", clusterIP: vip, nodePort: 30201,
                                                 spec: ["type": "NodePort", "sessionAffinity": "ClientIP",
                                                        "sessionAffinityConfig": ["clientIP": ["timeoutSeconds": 3]]])
            try await cluster.deploy(service, slice: ClusterObjects.slice("brief", pods, in: cluster), frontend: frontend) { _ in endpoints(pods) }
            let url = "http://\(cluster.nodes[0].address):30201/"
            try await cluster.waitUntil("the NodePort served from outside") { try cluster.curlOutside(url).status == 0 }
            func pod() throws -> String? { WhoAmI(try cluster.curlOutside(url).body)?.pod }

            // A connection every 0.5 s for 6 s, twice the timeout: each refreshes the timer, so all
            // stay on one pod. (The pauses are the subject: time passing against the timeout.)
            var sliding: Set<String> = []
            for _ in 0..<12 {
                if let p = try pod() { sliding.insert(p) }
                try await pause(seconds: 0.5)
            }
            #expect(sliding.count == 1, "\(sliding.sorted())")

            // A connection every 3.5 s: each finds its pick expired and picks afresh among 3 pods
            // (all 8 on one pod: 1 in 3^7).
            var expired: [String] = []
            for i in 0..<8 {
                if i > 0 { try await pause(seconds: 3.5) }
                if let p = try pod() { expired.append(p) }
            }
            #expect(Set(expired).count > 1, "\(expired)")
        }
    }
}
