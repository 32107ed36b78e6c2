import Foundation
import Testing
import VeerKube
@testable import VeerModel

// `veerctl explain` asks veerd for one service's decisions, which it makes from that service and
// the services claiming its addresses only. They must be exactly what the full selection says.

/// A node's worth of services: plain ones, every kind of frontend, eTP=Local (external-scope
/// entries), dual stack, address conflicts between services (three ways, across kinds, one lost
/// only on one port), and objects skipped for every reason the selector gives.
private func realisticStore() -> ServiceStore {
    var store = ServiceStore()
    func add(_ o: [String: Any]) { store.apply(.apply(raw(o))) }
    let node = "N1"
    for i in 1...12 {
        add(serviceJSON("plain-\(i)", clusterIP: "10.96.1.\(i)", ports: [SvcPort(), SvcPort(name: "dns", proto: "UDP", port: 53)]))
        add(sliceJSON("plain-\(i)-a", service: "plain-\(i)", ports: [SP(), SP(name: "dns", proto: "UDP", port: 5353)],
                      endpoints: [.R("10.1.\(i).1", node, zones: ["a"]), .R("10.1.\(i).2", "N2", zones: ["b"]), .U("10.1.\(i).3", node)]))
        if i % 3 == 0 {
            add(sliceJSON("plain-\(i)-b", service: "plain-\(i)", endpoints: [.T("10.1.\(i).4", node), .R("10.1.\(i).1", node)]))
        }
    }
    // Conflicts: a's cluster IP is b's external IP and c's LB IP; d and e share an external IP
    // on one port only; f's NodePort range clash is per port.
    add(serviceJSON("a", clusterIP: "10.96.0.9"))
    add(sliceJSON("a-1", service: "a", endpoints: [.R("10.2.0.1", node)]))
    add(serviceJSON("b", clusterIP: "10.96.0.10", externalIPs: ["10.96.0.9", "198.51.100.7"]))
    add(sliceJSON("b-1", service: "b", endpoints: [.R("10.2.0.2", "N2")]))
    add(serviceJSON("c", type: "LoadBalancer", clusterIP: "10.96.0.11", ports: [SvcPort(nodePort: 30080)], etp: "Local",
                    ingress: [["ip": "10.96.0.9"], ["ip": "203.0.113.5"], ["hostname": "lb.example"]]))
    add(sliceJSON("c-1", service: "c", endpoints: [.R("10.2.0.3", node), .R("10.2.0.4", "N2")]))
    add(serviceJSON("d", clusterIP: "10.96.0.12", ports: [SvcPort(), SvcPort(name: "alt", port: 8443)], externalIPs: ["198.51.100.8"]))
    add(sliceJSON("d-1", service: "d", ports: [SP(), SP(name: "alt", port: 8443)], endpoints: [.R("10.2.0.5", node)]))
    add(serviceJSON("e", namespace: "other", clusterIP: "10.96.0.13", ports: [SvcPort(name: "alt", port: 8443)], externalIPs: ["198.51.100.8"]))
    add(sliceJSON("e-1", service: "e", namespace: "other", ports: [SP(name: "alt", port: 8443)], endpoints: [.R("10.2.0.6", "N2")]))
    add(serviceJSON("f", type: "NodePort", clusterIP: "10.96.0.14", ports: [SvcPort(nodePort: 30080)], etp: "Local", affinity: "ClientIP"))
    add(sliceJSON("f-1", service: "f", endpoints: [.R("10.2.0.7", "N2")]))
    // Dual stack, and a service claiming the node's own address (refused).
    add(serviceJSON("dual", clusterIP: "10.96.0.15", extraSpec: ["clusterIPs": ["10.96.0.15", "fd00::15"], "ipFamilies": ["IPv4", "IPv6"]]))
    add(sliceJSON("dual-4", service: "dual", endpoints: [.R("10.2.0.8", node)]))
    add(sliceJSON("dual-6", service: "dual", addressType: "IPv6", endpoints: [.R("fd00:1::8", node)]))
    add(serviceJSON("owned", clusterIP: "10.96.0.16", externalIPs: ["192.168.0.1"]))
    // Skipped objects.
    add(serviceJSON("headless", clusterIP: "None"))
    add(serviceJSON("ext", type: "ExternalName", clusterIP: nil, extraSpec: ["externalName": "example.com"]))
    add(serviceJSON("proxied", clusterIP: "10.96.0.17", labels: [KubeLabel.serviceProxyName: "other"]))
    add(serviceJSON("v6only", clusterIP: "10.96.0.18"))
    add(sliceJSON("v6only-1", service: "v6only", addressType: "IPv6", endpoints: [.R("fd00:1::9", node)]))
    add(sliceJSON("v6only-fqdn", service: "v6only", addressType: "FQDN", endpoints: [.R("example.com", node)]))
    add(sliceJSON("plain-1-stray", service: "plain-1", endpoints: [.R("10.1.1.9", node)], labels: [KubeLabel.serviceProxyName: "other"]))
    add(serviceJSON("stray-np", clusterIP: "10.96.0.19", ports: [SvcPort(nodePort: 30999)]))
    store.apply(.synced)
    return store
}

@Suite("Explain's decisions, made on demand")
struct DecisionQueryTests {
    let store = realisticStore()
    let node = NodeContext(nodeName: "N1", zone: "a", addresses: [IPAddress("192.168.0.1")!, IPAddress("fd00:ff::1")!],
                           nodePortRange: 30000...32767)

    /// The agent's index: per-service selections without verdicts, as its sync keeps them.
    func agentIndex() -> FrontendIndex {
        var selections: [ObjectKey: SelectionResult] = [:]
        for key in store.serviceKeys { selections[key] = Selector.select(store, service: key, node: node, explain: false) }
        return FrontendIndex(selections: selections, merged: Selector.merge(selections.sorted { $0.key < $1.key }.map(\.value)))
    }

    @Test("For every service (and each of its ports), the on-demand decisions equal the full selection's")
    func everyServiceEqualsTheFullSelection() throws {
        let full = SavedDecisions(node: node, selection: Selector.select(store, node: node))
        let index = agentIndex()
        // The store is what the test says it is: conflicts lost and objects skipped.
        #expect(full.skipped.contains { $0.rule == .frontendConflict && $0.service.name == "b" })
        #expect(full.skipped.contains { $0.rule == .frontendConflict && $0.service.name == "e" })
        #expect(full.skipped.contains { $0.rule == .nodeLocalAddress })
        #expect(full.skipped.contains { $0.kind == "EndpointSlice" })
        #expect(full.decisions.contains { $0.frontend.hasSuffix("(external)") })
        #expect(index.claimants(of: L4Address("10.96.0.9:80/tcp")!).map(\.name) == ["a", "b", "c"])

        var checked = 0
        for key in store.serviceKeys {
            var queries = [DecisionQuery.service(key, port: nil)]
            queries += Set(full.decisions.filter { $0.service == key }.map(\.port)).sorted().map { DecisionQuery.service(key, port: $0) }
            for query in queries {
                let onDemand = Selector.decisions(for: query, in: store, node: node, claimants: index.claimants(of:))
                let expected = full.filtered(query)
                #expect(onDemand == expected, "\(query)")
                #expect(!onDemand.decisions.isEmpty || !onDemand.skipped.isEmpty, "\(query): something to explain")
                checked += 1
            }
            // Verdicts are there: every endpoint of every decision is explained.
            let own = Selector.decisions(for: .service(key, port: nil), in: store, node: node, claimants: index.claimants(of:))
            for d in own.decisions where d.backends > 0 { #expect(!d.endpoints.isEmpty, "\(d.frontend)") }
        }
        #expect(checked > store.serviceKeys.count)
    }

    @Test("For every frontend address, the on-demand decisions equal the full selection's")
    func everyAddressEqualsTheFullSelection() throws {
        let full = SavedDecisions(node: node, selection: Selector.select(store, node: node))
        let index = agentIndex()
        for address in Set(full.decisions.compactMap(\.address)) where address.scope == .cluster {
            let query = DecisionQuery.frontend(address)
            let onDemand = Selector.decisions(for: query, in: store, node: node, claimants: index.claimants(of:))
            let expected = full.filtered(query)
            #expect(onDemand.decisions == expected.decisions, "\(address)")
            #expect(onDemand.decisions.count == 1, "\(address)")
            // A service refused this address as the node's own claims nothing there: the only
            // reason the full selection may give that the index cannot find.
            #expect(Set(onDemand.skipped) == Set(expected.skipped.filter { $0.rule != .nodeLocalAddress }), "\(address)")
        }
        // The conflict at 10.96.0.9 is told for the address: b's and c's claims lost to a's.
        let contested = Selector.decisions(for: .frontend(L4Address("10.96.0.9:80")!), in: store, node: node, claimants: index.claimants(of:))
        #expect(contested.decisions.map(\.service.name) == ["a"])
        #expect(Set(contested.skipped.map(\.service.name)) == ["b", "c"])
    }

    @Test("Unknown services and addresses match nothing")
    func nothingMatches() {
        let index = agentIndex()
        for query in [DecisionQuery.service(ObjectKey(namespace: "default", name: "gone"), port: nil),
                      .service(ObjectKey(namespace: "default", name: "a"), port: "nope"),
                      .frontend(L4Address("10.96.9.9:80/tcp")!)] {
            let d = Selector.decisions(for: query, in: store, node: node, claimants: index.claimants(of:))
            #expect(d.decisions.isEmpty && d.skipped.isEmpty, "\(query)")
        }
    }

    @Test(arguments: [
        ("default/web", DecisionQuery.service(ObjectKey(namespace: "default", name: "web"), port: nil)),
        ("default/web:http", .service(ObjectKey(namespace: "default", name: "web"), port: "http")),
        ("default/web:", .service(ObjectKey(namespace: "default", name: "web"), port: "")),
        ("10.96.0.10:80", .frontend(L4Address("10.96.0.10:80/tcp")!)),
        ("[fd00::10]:53/udp", .frontend(L4Address("[fd00::10]:53/udp")!)),
    ])
    func parses(_ text: String, _ query: DecisionQuery) {
        #expect(DecisionQuery(text) == query)
    }

    @Test(arguments: ["web", "/web", "default/", "a/b/c", "", "10.96.0.10"])
    func refuses(_ text: String) {
        #expect(DecisionQuery(text) == nil)
    }
}
