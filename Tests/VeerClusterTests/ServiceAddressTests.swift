import Foundation
import Glibc
import Testing
import VeerTestSupport

// Addresses no Service uses, as kube-proxy's nftables mode treats them, with the service CIDRs
// read from ServiceCIDR objects (networking.k8s.io/v1) or, when the API has none, --service-cidr.

private func serviceCIDR(_ name: String, _ cidrs: [String]) -> [String: Any] {
    ["apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR", "metadata": ["name": name], "spec": ["cidrs": cidrs]]
}

extension ClusterTests {
    @Test("ServiceCIDR objects: an unallocated address in them fails at once on every node, a bad range is skipped, deleted ones fall back to --service-cidr; an API without the kind too; unexposed ports refused")
    func serviceCIDRs() async throws {
        try await withCluster(agents: false) { cluster in
            let pods = try cluster.addPods("web", perNode: 1)
            try cluster.apply("services", ClusterObjects.service("web", clusterIP: vip))
            try cluster.apply("endpointslices", ClusterObjects.slice("web", pods, in: cluster))
            try cluster.startAgents(extra: ["--service-cidr", "10.96.0.0/24"])
            try await cluster.waitForBackends(frontend) { _ in endpoints(pods) }
            func replies(_ node: Int, _ ip: String, _ port: UInt16 = 80) throws -> Set<String> {
                Set(try cluster.connect(node, ip, port, count: 2).map(\.reply))
            }
            try await cluster.waitUntil("the flag's range drops") { try cluster.nodes.allSatisfy { try replies($0.index, "10.96.0.99") == ["ETIMEDOUT"] } }
            for node in cluster.nodes {
                #expect(try replies(node.index, vip, 81) == ["ECONNREFUSED"], "node-\(node.index): unexposed port")
                #expect(try replies(node.index, "10.96.5.1") == ["ENETUNREACH"], "outside --service-cidr: routed (no route here)")
            }

            // ServiceCIDR objects replace the flag: the whole /16 now, and a second object with a
            // range that does not parse beside a good one.
            try cluster.apply("servicecidrs", serviceCIDR("kubernetes", ["10.96.0.0/16"]))
            try cluster.apply("servicecidrs", serviceCIDR("extra", ["not-a-cidr", "10.100.0.0/24"]))
            try await cluster.waitUntil("the objects' ranges drop on every node") {
                try cluster.nodes.allSatisfy { try replies($0.index, "10.96.5.1") == ["ETIMEDOUT"] && replies($0.index, "10.100.0.7") == ["ETIMEDOUT"] }
            }
            #expect(cluster.agent(1)?.logText.contains("ServiceCIDR: \"not-a-cidr\" is not a CIDR") == true)
            let served = try cluster.connect(2, vip, 80, count: 5)
            #expect(served.allSatisfy { $0.ok }, "\(failures(served))")

            // Deleted: back to --service-cidr.
            try cluster.delete("servicecidrs", name: "kubernetes", namespace: "")
            try cluster.delete("servicecidrs", name: "extra", namespace: "")
            try await cluster.waitUntil("back to the flag") { try replies(1, "10.96.5.1") == ["ENETUNREACH"] && replies(1, "10.96.0.99") == ["ETIMEDOUT"] }

            // An API server without the kind (before 1.33): said once, and the flag applies.
            try cluster.api?.post("unserve", ["resources": ["servicecidrs"]])
            cluster.agent(3)?.signal(SIGTERM)
            let agent = try cluster.startAgent(3, extra: ["--service-cidr", "10.96.0.0/24"])
            try await cluster.waitUntil("node-3's new agent says why") { agent.logText.contains("does not serve networking.k8s.io/v1 servicecidrs") }
            try await cluster.waitUntil("node-3 drops with the flag") { try replies(3, "10.96.0.99") == ["ETIMEDOUT"] }
            #expect(try replies(3, "10.96.5.1") == ["ENETUNREACH"])
        }
    }
}
