import Foundation
import Testing
@testable import VeerModel

// kube-proxy's healthCheckNodePort: which services get one, and the localEndpoints count of
// EndpointsMap.LocalReadyEndpoints (distinct local Ready IPs; terminating never counts).
// Checklist rows 39-41 of the reference (kube-proxy-semantics.md §7).

private func target(_ service: [String: Any], _ slices: [[String: Any]], node: String = "N1") -> HealthCheckTarget? {
    var store = ServiceStore()
    store.apply(.apply(raw(service)))
    for s in slices { store.apply(.apply(raw(s))) }
    return ServiceHealth.targets(store, nodeName: node)[ObjectKey(namespace: "default", name: "svc")]
}

private var lbLocal: [String: Any] { serviceJSON(type: "LoadBalancer", ports: [SvcPort(nodePort: 30080)], etp: "Local",
                                                  extraSpec: ["healthCheckNodePort": 32000]) }

struct ServiceHealthTests {
    @Test func loadBalancerLocalGetsItsPort() {
        let t = target(lbLocal, [sliceJSON("s1", endpoints: [.R("10.0.0.1", "N1"), .R("10.0.0.2", "N2")])])
        #expect(t == HealthCheckTarget(service: ObjectKey(namespace: "default", name: "svc"), port: 32000, localEndpoints: 1))
    }

    /// Services that get no health check, by why.
    private static func without(_ why: String) -> [String: Any] {
        let np = [SvcPort(nodePort: 30080)]
        switch why {
        case "NodePort eTP Local (row 41)": return serviceJSON(type: "NodePort", ports: np, etp: "Local", extraSpec: ["healthCheckNodePort": 32000])
        case "LoadBalancer eTP Cluster": return serviceJSON(type: "LoadBalancer", ports: np, etp: "Cluster", extraSpec: ["healthCheckNodePort": 32000])
        case "no healthCheckNodePort": return serviceJSON(type: "LoadBalancer", ports: np, etp: "Local")
        case "healthCheckNodePort 0": return serviceJSON(type: "LoadBalancer", ports: np, etp: "Local", extraSpec: ["healthCheckNodePort": 0])
        case "another proxy's": return serviceJSON(type: "LoadBalancer", ports: np, etp: "Local", labels: [KubeLabel.serviceProxyName: "other"],
                                                   extraSpec: ["healthCheckNodePort": 32000])
        default: return serviceJSON(type: "LoadBalancer", clusterIP: "None", ports: np, etp: "Local", extraSpec: ["healthCheckNodePort": 32000])
        }
    }

    @Test("Only LoadBalancer + eTP Local + a healthCheckNodePort, among the services kube-proxy proxies", arguments: [
        "NodePort eTP Local (row 41)", "LoadBalancer eTP Cluster", "no healthCheckNodePort", "healthCheckNodePort 0", "another proxy's", "headless",
    ])
    func noHealthCheck(_ why: String) {
        #expect(target(Self.without(why), [sliceJSON("s1", endpoints: [.R("10.0.0.1", "N1")])]) == nil, "\(why)")
    }

    @Test("localEndpoints counts distinct local Ready IPs", arguments: [
        ("one ready local", [E.R("10.0.0.1", "N1")], 1),
        ("ready elsewhere only", [E.R("10.0.0.1", "N2")], 0),
        ("only terminating local (row 39): 0, so 503", [E.T("10.0.0.1", "N1"), E.R("10.0.0.2", "N2")], 0),
        ("terminating beside ready: only the ready one", [E.T("10.0.0.1", "N1"), E.R("10.0.0.2", "N1")], 1),
        ("not ready", [E.U("10.0.0.1", "N1")], 0),
        ("no conditions = ready", [E.N("10.0.0.1", "N1")], 1),
        ("no nodeName is never local", [E.R("10.0.0.1")], 0),
        ("three local", [E.R("10.0.0.1", "N1"), E.R("10.0.0.2", "N1"), E.R("10.0.0.3", "N1")], 3),
    ] as [(String, [E], Int)])
    func localEndpoints(_ why: String, _ endpoints: [E], _ expected: Int) {
        #expect(target(lbLocal, [sliceJSON("s1", endpoints: endpoints)])?.localEndpoints == expected, "\(why)")
    }

    @Test("A pod exposing two ports counts once (row 40); duplicates across slices count once")
    func distinctIPs() {
        let twoPorts = sliceJSON("s1", ports: [SP(name: "http", port: 8080), SP(name: "https", port: 8443)],
                                 endpoints: [.R("10.0.0.1", "N1"), .R("10.0.0.2", "N1")])
        #expect(target(lbLocal, [twoPorts])?.localEndpoints == 2)
        let again = sliceJSON("s2", endpoints: [.R("10.0.0.1", "N1")])
        #expect(target(lbLocal, [twoPorts, again])?.localEndpoints == 2)
    }

    @Test("Bad input: a healthCheckNodePort out of range rejects that version of the Service with its field; the last good one keeps its health check")
    func badHealthCheckNodePort() {
        var store = ServiceStore()
        store.apply(.apply(raw(lbLocal)))
        store.apply(.apply(raw(sliceJSON("s1", endpoints: [.R("10.0.0.1", "N1")]))))
        let bad = serviceJSON(type: "LoadBalancer", ports: [SvcPort(nodePort: 30080)], etp: "Local", extraSpec: ["healthCheckNodePort": 70000])
        let change = store.apply(.apply(raw(bad)))
        #expect(change.rejected.contains { $0.field == "spec.healthCheckNodePort" }, "\(change.rejected)")
        #expect(ServiceHealth.targets(store, nodeName: "N1")[ObjectKey(namespace: "default", name: "svc")]?.port == 32000)
    }

    @Test("A slice whose ports carry no number contributes nothing, as in kube-proxy's slice cache")
    func portlessSlice() {
        #expect(target(lbLocal, [sliceJSON("s1", ports: [SP(port: nil)], endpoints: [.R("10.0.0.1", "N1")])])?.localEndpoints == 0)
    }

    @Test("Node eligibility: deletionTimestamp or the autoscaler's taint; other taints do not matter")
    func nodeEligibility() throws {
        func node(_ extra: [String: Any], deleting: Bool = false) throws -> Node {
            var meta: [String: Any] = ["name": "N1"]
            if deleting { meta["deletionTimestamp"] = "2026-12-06T07:00:00Z" }
            var o: [String: Any] = ["apiVersion": "v1", "kind": "Node", "metadata": meta]
            if !extra.isEmpty { o["spec"] = extra }
            guard case let .node(n)? = KubeDecoder.decode(raw(o)).object else { throw NSError(domain: "not a node", code: 1) }
            return n
        }
        #expect(try node([:]).eligibleForTraffic)
        #expect(try node(["taints": [["key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"]]]).eligibleForTraffic)
        #expect(try !node(["taints": [["key": "ToBeDeletedByClusterAutoscaler", "value": "1733000000", "effect": "NoSchedule"]]]).eligibleForTraffic)
        #expect(try !node([:], deleting: true).eligibleForTraffic)
        // Bad input: a taint without a key is skipped with a reason, the node is kept.
        let decoded = KubeDecoder.decode(raw(["apiVersion": "v1", "kind": "Node", "metadata": ["name": "N1"],
                                              "spec": ["taints": [["effect": "NoSchedule"]]]]))
        guard case let .node(n)? = decoded.object else { Issue.record("node rejected"); return }
        #expect(n.eligibleForTraffic && n.taintKeys.isEmpty)
        #expect(decoded.warnings.contains { $0.field == "spec.taints[0].key" }, "\(decoded.warnings)")
    }
}
