import Foundation
import Testing
import VeerTestSupport

// loadBalancerSourceRanges on the packet path: the tc program looks the packet's own source up
// in the same table the socket hooks use (veer_source_ranges), before it picks a backend.

extension ClusterTests {
    @Test("loadBalancerSourceRanges from outside: a client inside the ranges reaches the LB IP, one outside is dropped silently; the NodePort stays open, as in kube-proxy")
    func externalSourceRanges() async throws {
        try await withCluster { cluster in
            try cluster.addOutsideClient()
            let pod = try cluster.addIsolatedPod("guarded-3", on: 3)
            let lbIP = "203.0.113.20"
            func service(_ ranges: [String]) -> [String: Any] {
                ClusterObjects.service("guarded", clusterIP: vip, nodePort: 30090,
                                       spec: ["type": "LoadBalancer", "loadBalancerSourceRanges": ranges],
                                       status: ["loadBalancer": ["ingress": [["ip": lbIP]]]])
            }
            // The outside client itself is allowed (a /32), beside a range that is not its own.
            try await cluster.deploy(service(["10.200.0.0/16", "\(ClusterSandbox.outsideAddress)/32"]),
                                     slice: ClusterObjects.slice("guarded", [pod], in: cluster), frontend: frontend) { _ in
                endpoints([pod])
            }
            try cluster.routeOutside("\(lbIP)/32", via: 1)
            let lbURL = "http://\(lbIP)/"
            try await cluster.waitUntil("the LB IP served to an allowed client") { try cluster.curlOutside(lbURL).status == 0 }
            #expect(WhoAmI(try cluster.curlOutside(lbURL).body)?.pod == "guarded-3")

            // The ranges no longer hold the client: its SYN is dropped (curl times out, no RST).
            try cluster.apply("services", service(["10.200.0.0/16"]))
            try await cluster.waitUntil("the LB IP dropped for a client outside the ranges") {
                try cluster.curlOutside(lbURL, timeout: 1).status == 28
            }
            let denied = cluster.metrics(1)
            #expect(denied.contains("veer_packet_path_packets_total{event=\"source_denied\"} "), "\(denied.prefix(400))")
            #expect(!denied.contains("veer_packet_path_packets_total{event=\"source_denied\"} 0\n"))
            // kube-proxy restricts the LB IP only: the same client still reaches the NodePort.
            let nodePort = try cluster.curlOutside("http://\(cluster.nodes[0].address):30090/")
            #expect(nodePort.status == 0 && WhoAmI(nodePort.body)?.pod == "guarded-3", "exit \(nodePort.status) \(nodePort.body)")

            // A range that does not parse is skipped; the others still apply.
            try cluster.apply("services", service(["not-a-cidr", "\(ClusterSandbox.outsideAddress)/32"]))
            try await cluster.waitUntil("the LB IP served again") { try cluster.curlOutside(lbURL).status == 0 }
        }
    }
}
