import Foundation
import Testing
import VeerTestSupport

// kube-proxy's own expectations for clients outside the node, as table cases through the packet
// path. The cases are kube-proxy's: `TestCategorizeEndpoints` (pkg/proxy/topology_test.go) for
// which endpoints serve external traffic (its local set under eTP=Local, terminating fallback
// included; its cluster set under eTP=Cluster), and the nftables proxier's
// `TestExternalTrafficPolicyLocal` / `TestExternalTrafficPolicyCluster`
// (pkg/proxy/nftables/proxier_test.go) for masquerading. "This node" is node-1: kube-proxy's
// IsLocal endpoints are pods on node-1, the others pods on node-2 and node-3. For every case the
// outside client connects to node-1's NodePort, an LB IP and an externalIP routed to node-1, and
// the test checks which pods answer and which source address they saw.

/// One endpoint of a case: a pod, where it runs, its conditions, and optionally its zone hint.
struct CaseEndpoint: Sendable {
    let name: String
    let node: Int
    var state: ClusterObjects.PodState = .ready
    var zoneHint: String? = nil
    /// kube-proxy's tests leave `nodeName` unset on some remote endpoints.
    var omitNodeName = false
}

struct KubeProxyExternalCase: Sendable, CustomTestStringConvertible {
    let name: String               // kube-proxy's test and case name
    let externalLocal: Bool        // externalTrafficPolicy: Local
    var internalLocal = false      // internalTrafficPolicy: Local
    let endpoints: [CaseEndpoint]
    /// The pods an outside client reaches through node-1; empty: its packets are dropped.
    let reached: Set<String>
    /// eTP=Cluster: the pods see node-1's address (kube-proxy masquerades); else the client's.
    var masqueraded: Bool { !externalLocal }

    var testDescription: String { name }

    static let all: [KubeProxyExternalCase] = [
        .init(name: "CategorizeEndpoints: iTP: Cluster, eTP: Local, some endpoints local", externalLocal: true,
              endpoints: [.init(name: "local", node: 1), .init(name: "remote", node: 2)],
              reached: ["local"]),
        .init(name: "CategorizeEndpoints: iTP: Local, eTP: Local, all endpoints remote", externalLocal: true, internalLocal: true,
              endpoints: [.init(name: "remote-2", node: 2), .init(name: "remote-3", node: 3)],
              reached: []),
        .init(name: "CategorizeEndpoints: iTP: Cluster, eTP: Local, PTE enabled, with terminating endpoints", externalLocal: true,
              endpoints: [.init(name: "remote-ready", node: 2), .init(name: "local-unready", node: 1, state: .notReady),
                          .init(name: "local-terminating", node: 1, state: .terminating),
                          .init(name: "remote-terminating", node: 3, state: .terminating)],
              reached: ["local-terminating"]),
        .init(name: "CategorizeEndpoints: iTP: Local, eTP: Local, PTE enabled, all endpoints remote and terminating",
              externalLocal: true, internalLocal: true,
              endpoints: [.init(name: "remote-2", node: 2, state: .terminating), .init(name: "remote-3", node: 3, state: .terminating)],
              reached: []),
        .init(name: "CategorizeEndpoints: externalTrafficPolicy: Local, topology ignored for Local endpoints", externalLocal: true,
              endpoints: [.init(name: "local-a", node: 1, zoneHint: "zone-a"), .init(name: "local-b", node: 1, zoneHint: "zone-b"),
                          .init(name: "remote-c", node: 3, zoneHint: "zone-c"), .init(name: "remote-a", node: 2, zoneHint: "zone-a")],
              reached: ["local-a", "local-b"]),
        .init(name: "CategorizeEndpoints: Cluster traffic policy, PTE enabled, all endpoints are terminating", externalLocal: false,
              endpoints: [.init(name: "local", node: 1, state: .terminating), .init(name: "remote", node: 2, state: .terminating)],
              reached: ["local", "remote"]),
        .init(name: "CategorizeEndpoints: iTP: Local, eTP: Cluster, some endpoints local", externalLocal: false, internalLocal: true,
              endpoints: [.init(name: "local", node: 1), .init(name: "remote", node: 2)],
              reached: ["local", "remote"]),
        .init(name: "nftables TestExternalTrafficPolicyLocal: external to NodePort, LB IP, external IP hits only local endpoint, unmasqueraded",
              externalLocal: true,
              endpoints: [.init(name: "ep1", node: 2, omitNodeName: true), .init(name: "ep2", node: 1)],
              reached: ["ep2"]),
        .init(name: "nftables TestExternalTrafficPolicyCluster: external to NodePort, LB IP, external IP hits both endpoints, masqueraded",
              externalLocal: false,
              endpoints: [.init(name: "ep1", node: 2, omitNodeName: true), .init(name: "ep2", node: 1)],
              reached: ["ep1", "ep2"]),
    ]
}

extension ClusterTests {
    @Test("kube-proxy's expectations for outside clients, through the packet path", arguments: KubeProxyExternalCase.all)
    func kubeProxyExternalCases(_ c: KubeProxyExternalCase) async throws {
        try await withCluster { cluster in
            try cluster.addOutsideClient()
            var pods: [String: ClusterSandbox.Pod] = [:]
            for e in c.endpoints { pods[e.name] = try cluster.addIsolatedPod(e.name, on: e.node) }
            let podList = c.endpoints.map { pods[$0.name]! }
            let (lbIP, extIP) = ("203.0.113.30", "198.51.100.30")
            var spec: [String: Any] = ["type": "LoadBalancer", "externalIPs": [extIP],
                                       "externalTrafficPolicy": c.externalLocal ? "Local" : "Cluster"]
            if c.internalLocal { spec["internalTrafficPolicy"] = "Local" }
            try cluster.apply("services", ClusterObjects.service("case", clusterIP: vip, nodePort: 30300, spec: spec,
                                                                 status: ["loadBalancer": ["ingress": [["ip": lbIP]]]]))
            var slice = ClusterObjects.slice("case", podList, in: cluster,
                                             states: Dictionary(uniqueKeysWithValues: c.endpoints.map { ($0.name, $0.state) }))
            if var list = slice["endpoints"] as? [[String: Any]] {
                for (i, e) in c.endpoints.enumerated() {
                    if let zone = e.zoneHint { list[i]["hints"] = ["forZones": [["name": zone]]] }
                    if e.omitNodeName { list[i]["nodeName"] = nil }
                }
                slice["endpoints"] = list
            }
            try cluster.apply("endpointslices", slice)
            try cluster.routeOutside("\(lbIP)/32", via: 1)
            try cluster.routeOutside("\(extIP)/32", via: 1)
            let node1 = cluster.nodes[0]
            let node1Addresses = Set(KernelSandbox.run(["ip", "-n", node1.netns, "-o", "addr", "show"]).stdout
                .split(separator: "\n").compactMap { line -> String? in
                    let w = line.split(separator: " ")
                    guard let i = w.firstIndex(where: { $0 == "inet" || $0 == "inet6" }), i + 1 < w.count else { return nil }
                    return String(w[i + 1].split(separator: "/")[0])
                })
            for url in ["http://\(node1.address):30300/", "http://\(lbIP)/", "http://\(extIP)/"] {
                if c.reached.isEmpty {
                    // kube-proxy drops: no answer, no RST (curl times out). Until node-1 has the
                    // slice the frontend refuses (no endpoint) or is no frontend at all: also
                    // an answer, so waiting for the silence is waiting for the programming.
                    try await cluster.waitUntil("\(url) dropped silently") { try cluster.curlOutside(url, timeout: 1).status == 28 }
                    let r = try cluster.curlOutside(url, timeout: 2)
                    #expect(r.status == 28, "\(url): curl exit \(r.status) (28 = timed out) \(r.body)")
                    continue
                }
                try await cluster.waitUntil("\(url) answers") { try cluster.curlOutside(url).status == 0 }
                var reached: Set<String> = []
                for _ in 0..<(12 * c.reached.count) {
                    let r = try cluster.curlOutside(url)
                    guard r.status == 0, let who = WhoAmI(r.body) else {
                        // What node-1 held then: its conntrack table and the packet path's counters.
                        let ct = KernelSandbox.run(["nsenter", "--net=\(node1.netnsPath)", "cat", "/proc/net/nf_conntrack"]).stdout
                        let stats = cluster.metrics(1).split(separator: "\n").filter { $0.hasPrefix("veer_packet_path_packets_total") }
                        Issue.record("\(url): exit \(r.status) \(r.body)\nnode-1 conntrack:\n\(ct)\n\(stats.joined(separator: "\n"))")
                        continue
                    }
                    reached.insert(who.pod)
                    if c.masqueraded {
                        #expect(who.client != ClusterSandbox.outsideAddress && node1Addresses.contains(who.client),
                                "\(url): \(who.pod) saw \(who.client), not one of node-1's addresses \(node1Addresses.sorted())")
                    } else {
                        #expect(who.client == ClusterSandbox.outsideAddress, "\(url): \(who.pod) saw \(who.client), not the client")
                    }
                }
                #expect(reached == c.reached, "\(url): reached \(reached.sorted()), kube-proxy: \(c.reached.sorted())")
            }
            if c.reached.isEmpty {
                #expect(!cluster.metrics(1).contains("veer_packet_path_packets_total{event=\"dropped\"} 0\n"))
            }
        }
    }
}
