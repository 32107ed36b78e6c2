import Foundation
import Testing
@testable import VeerModel

/// The reference's §7 checklist, one case per rule and per fallback. Numbers are the checklist's.
/// Defaults: node N1 in zone a, TCP port `http`, iTP/eTP Cluster, no hints.
/// Endpoints: R ready, T serving+terminating, U not ready & not serving, X terminating & not serving,
/// N no conditions.

struct SetCase: Sendable, CustomTestStringConvertible {
    var id: Int
    var name: String
    var endpoints: [E]
    var node: NodeContext = N1
    var annotations: [String: String] = [:]
    var trafficDistribution: String?
    /// Backend IPs of the ClusterIP frontend.
    var expect: [String]
    var testDescription: String { "#\(id) \(name)" }
}

private let readinessCases: [SetCase] = [
    SetCase(id: 1, name: "3 ready endpoints on 3 nodes: all", endpoints: [.R("10.0.0.1", "N1"), .R("10.0.0.2", "N2"), .R("10.0.0.3", "N3")],
            expect: ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    SetCase(id: 2, name: "not-ready endpoint left out", endpoints: [.R("10.0.0.1"), .R("10.0.0.2"), .U("10.0.0.3")],
            expect: ["10.0.0.1", "10.0.0.2"]),
    SetCase(id: 3, name: "no ready: serving+terminating fallback, not-serving terminating left out",
            endpoints: [.T("10.0.0.1"), .T("10.0.0.2"), .X("10.0.0.3")], expect: ["10.0.0.1", "10.0.0.2"]),
    SetCase(id: 4, name: "terminating never mixed with ready", endpoints: [.R("10.0.0.1"), .T("10.0.0.2"), .T("10.0.0.3")],
            expect: ["10.0.0.1"]),
    SetCase(id: 5, name: "only not-ready and not-serving terminating: none", endpoints: [.U("10.0.0.1"), .X("10.0.0.2")],
            expect: []),
    SetCase(id: 6, name: "nil conditions count as ready", endpoints: [.N("10.0.0.1"), .N("10.0.0.2")],
            expect: ["10.0.0.1", "10.0.0.2"]),
    SetCase(id: 7, name: "ready=true and terminating=true counts as ready",
            endpoints: [E(addresses: ["10.0.0.1"], ready: true, serving: true, terminating: true), .R("10.0.0.2")],
            expect: ["10.0.0.1", "10.0.0.2"]),
    SetCase(id: 8, name: "publishNotReadyAddresses: ready=true, serving=false is used",
            endpoints: [E(addresses: ["10.0.0.1"], ready: true, serving: false, terminating: false)], expect: ["10.0.0.1"]),
    SetCase(id: 1006, name: "terminating with serving unset counts as serving (fallback)",
            endpoints: [E(addresses: ["10.0.0.1"], ready: false, terminating: true)], expect: ["10.0.0.1"]),
]

private let topologyCases: [SetCase] = [
    SetCase(id: 9, name: "all ready hinted, two for zone a: only those",
            endpoints: [.R("10.0.0.1", zones: ["a"]), .R("10.0.0.2", zones: ["a"]), .R("10.0.0.3", zones: ["b"])],
            expect: ["10.0.0.1", "10.0.0.2"]),
    SetCase(id: 10, name: "one ready endpoint without hint: no filtering",
            endpoints: [.R("10.0.0.1", zones: ["a"]), .R("10.0.0.2", zones: ["b"]), .R("10.0.0.3")],
            expect: ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    SetCase(id: 11, name: "only a not-ready endpoint lacks a hint: filtering applies",
            endpoints: [.R("10.0.0.1", zones: ["a"]), .R("10.0.0.2", zones: ["b"]), .U("10.0.0.3")], expect: ["10.0.0.1"]),
    SetCase(id: 12, name: "no ready endpoint hinted for zone a: all",
            endpoints: [.R("10.0.0.1", zones: ["b"]), .R("10.0.0.2", zones: ["c"])], expect: ["10.0.0.1", "10.0.0.2"]),
    SetCase(id: 13, name: "node without zone label: all",
            endpoints: [.R("10.0.0.1", zones: ["a"]), .R("10.0.0.2", zones: ["b"])],
            node: NodeContext(nodeName: "N1", zone: nil), expect: ["10.0.0.1", "10.0.0.2"]),
    SetCase(id: 14, name: "endpoint hinted for [b, a] kept on a zone-a node",
            endpoints: [.R("10.0.0.1", zones: ["b", "a"]), .R("10.0.0.2", zones: ["c"])], expect: ["10.0.0.1"]),
    SetCase(id: 15, name: "hints trump location: zone-a hint running in zone b is selected; zone field ignored",
            endpoints: [.R("10.0.0.1", zones: ["a"], zone: "b"), .R("10.0.0.2", zones: ["b"], zone: "a")], expect: ["10.0.0.1"]),
    SetCase(id: 16, name: "hints honoured whatever the annotation says",
            endpoints: [.R("10.0.0.1", zones: ["a"]), .R("10.0.0.2", zones: ["b"])],
            annotations: ["service.kubernetes.io/topology-mode": "Disabled"], expect: ["10.0.0.1"]),
    SetCase(id: 17, name: "trafficDistribution PreferSameZone without hints: all (field never read)",
            endpoints: [.R("10.0.0.1", zone: "a"), .R("10.0.0.2", zone: "b")], trafficDistribution: "PreferSameZone",
            expect: ["10.0.0.1", "10.0.0.2"]),
    SetCase(id: 18, name: "topology-mode Auto and trafficDistribution both set: the hints decide",
            endpoints: [.R("10.0.0.1", zones: ["b"]), .R("10.0.0.2", zones: ["a"])],
            annotations: ["service.kubernetes.io/topology-mode": "Auto"], trafficDistribution: "PreferClose", expect: ["10.0.0.2"]),
    SetCase(id: 19, name: "zone-a hints only on not-ready endpoints: all ready",
            endpoints: [.R("10.0.0.1"), .R("10.0.0.2"), .U("10.0.0.3", zones: ["a"])], expect: ["10.0.0.1", "10.0.0.2"]),
    SetCase(id: 20, name: "node hints: all ready have them, one for N1: only it",
            endpoints: [.R("10.0.0.1", "N1", zones: ["a"], nodes: ["N1"]), .R("10.0.0.2", "N2", zones: ["a"], nodes: ["N2"]),
                        .R("10.0.0.3", "N3", zones: ["b"], nodes: ["N3"])], expect: ["10.0.0.1"]),
    SetCase(id: 21, name: "node hints, none for N1, zone hints valid: zone set",
            endpoints: [.R("10.0.0.1", zones: ["a"], nodes: ["N2"]), .R("10.0.0.2", zones: ["b"], nodes: ["N3"])],
            expect: ["10.0.0.1"]),
    SetCase(id: 22, name: "one ready endpoint without node hint: node mode off, zone mode on",
            endpoints: [.R("10.0.0.1", zones: ["a"], nodes: ["N1"]), .R("10.0.0.2", zones: ["a"]),
                        .R("10.0.0.3", zones: ["b"], nodes: ["N3"])], expect: ["10.0.0.1", "10.0.0.2"]),
    SetCase(id: 23, name: "PreferSameTrafficDistribution off: node hints ignored, zone set",
            endpoints: [.R("10.0.0.1", zones: ["a"], nodes: ["N1"]), .R("10.0.0.2", zones: ["a"], nodes: ["N2"]),
                        .R("10.0.0.3", zones: ["b"], nodes: ["N3"])],
            node: NodeContext(nodeName: "N1", zone: "a", nodeHintsEnabled: false), expect: ["10.0.0.1", "10.0.0.2"]),
    SetCase(id: 24, name: "node hints valid, node has no zone: node set",
            endpoints: [.R("10.0.0.1", zones: ["a"], nodes: ["N1"]), .R("10.0.0.2", zones: ["b"], nodes: ["N2"])],
            node: NodeContext(nodeName: "N1", zone: nil), expect: ["10.0.0.1"]),
    SetCase(id: 25, name: "hints present but nothing ready: terminating fallback, hints ignored",
            endpoints: [.T("10.0.0.1", zones: ["a"]), .T("10.0.0.2", zones: ["b"])], expect: ["10.0.0.1", "10.0.0.2"]),
]

@Suite("Selection: readiness and topology (checklist 1-25)")
struct SetSelectionTests {
    @Test(arguments: readinessCases + topologyCases)
    func clusterSet(_ c: SetCase) throws {
        var extra: [String: Any] = [:]
        if let td = c.trafficDistribution { extra["trafficDistribution"] = td }
        var svc = serviceJSON(extraSpec: extra)
        if !c.annotations.isEmpty, var meta = svc["metadata"] as? [String: Any] {
            meta["annotations"] = c.annotations
            svc["metadata"] = meta
        }
        let r = select(svc, [sliceJSON("svc-1", endpoints: c.endpoints)], node: c.node)
        let f = try #require(frontend(r, "10.96.0.1:80/tcp"))
        #expect(ips(f) == c.expect)
        // No usable endpoint anywhere: connections are refused, not dropped.
        if c.expect.isEmpty { #expect(f.whenEmpty == .reject) }
        // Every endpoint is explained exactly once, and the verdicts agree with the set.
        let d = try #require(r.decision(f.address))
        #expect(d.endpoints.count == c.endpoints.count)
        #expect(d.endpoints.filter(\.included).map { $0.endpoint.split(separator: ":")[0] }.sorted().map(String.init) == c.expect)
    }
}

@Suite("Selection: the reasons a user reads in explain")
struct ReasonTests {
    /// Verdicts hold the address, not its text: explain and decisions.json still read "ip:port",
    /// and a decoded decision equals the one the Selector made.
    @Test func verdictsReadAndRoundTripAsText() throws {
        let r = select(serviceJSON(), [sliceJSON("s", endpoints: [.R("10.0.0.1"), .X("10.0.0.2")])])
        let d = try #require(r.decision(L4Address("10.96.0.1:80/tcp")!))
        #expect(d.endpoints.map(\.endpoint).sorted() == ["10.0.0.1:8080", "10.0.0.2:8080"])
        let json = try JSONEncoder().encode(d)
        let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        let endpoints = try #require(object["endpoints"] as? [[String: Any]])
        #expect(endpoints.compactMap { $0["endpoint"] as? String }.sorted() == ["10.0.0.1:8080", "10.0.0.2:8080"])
        #expect(Set(endpoints.flatMap(\.keys)) == ["endpoint", "slice", "pod", "included", "rule", "reason"])  // no node given: none written, as before
        #expect(try JSONDecoder().decode(FrontendDecision.self, from: json) == d)
        let v6 = EndpointVerdict(endpoint: "[fd00::9]:8080", slice: "s", pod: nil, node: nil, rule: .ready, reason: "ready")
        #expect(v6.endpoint == "[fd00::9]:8080")
        #expect(EndpointVerdict(endpoint: "(no address)", slice: "s", pod: nil, node: nil, rule: .noAddress, reason: "x").endpoint == "(no address)")
        // The topology reason names the endpoint without a hint by its text.
        let hinted = select(serviceJSON(), [sliceJSON("s", endpoints: [.R("10.0.0.1"), .R("10.0.0.2", zones: ["a"])])])
        #expect(hinted.decisions.first?.topology?.reason
            == "node hints ignored because endpoint 10.0.0.1:8080 has none; zone hints ignored because endpoint 10.0.0.1:8080 has none")
    }

    @Test func terminatingFallbackIsMarkedAndExplained() throws {
        let r = select(serviceJSON(), [sliceJSON("s", endpoints: [.T("10.0.0.1"), .X("10.0.0.2")])])
        let f = try #require(frontend(r, "10.96.0.1:80/tcp"))
        #expect(f.backends.map(\.terminating) == [true])
        let d = try #require(r.decision(f.address))
        #expect(d.endpoints.first { $0.endpoint == "10.0.0.1:8080" }?.rule == .terminatingFallback)
        #expect(d.endpoints.first { $0.endpoint == "10.0.0.2:8080" }?.rule == .notReady)
    }

    @Test func terminatingNotMixedIsExplained() throws {
        let r = select(serviceJSON(), [sliceJSON("s", endpoints: [.R("10.0.0.1"), .T("10.0.0.2")])])
        let d = try #require(r.decision(L4Address("10.96.0.1:80/tcp")!))
        #expect(d.endpoints.first { $0.endpoint == "10.0.0.2:8080" }?.rule == .terminatingNotNeeded)
        #expect(d.endpoints.first { $0.endpoint == "10.0.0.1:8080" }?.rule == .ready)
        #expect(d.topology?.rules == [.endpointWithoutNodeHint, .endpointWithoutZoneHint])
    }

    @Test func zoneHintsOnNameTheOtherZone() throws {
        let r = select(serviceJSON(), [sliceJSON("s", endpoints: [.R("10.0.0.1", zones: ["a"]), .R("10.0.0.2", zones: ["b"])])])
        let d = try #require(r.decision(L4Address("10.96.0.1:80/tcp")!))
        #expect(d.topology?.mode == .preferSameZone)
        #expect(d.topology?.rules.contains(.zoneHintsMatch) == true)
        let out = try #require(d.endpoints.first { $0.endpoint == "10.0.0.2:8080" })
        #expect(out.rule == .hintedForOtherZone && !out.included)
        #expect(out.reason.contains("b"))
        #expect(d.endpoints.first { $0.endpoint == "10.0.0.1:8080" }?.rule == .hintedForThisZone)
    }

    @Test func safeguardNamesTheEndpointWithoutHints() throws {
        let r = select(serviceJSON(), [sliceJSON("s", endpoints: [.R("10.0.0.1", zones: ["a"]), .R("10.0.0.3")])])
        let d = try #require(r.decision(L4Address("10.96.0.1:80/tcp")!))
        #expect(d.topology?.mode == TopologyMode.none)
        #expect(d.topology?.rules.contains(.endpointWithoutZoneHint) == true)
        #expect(d.topology?.reason.contains("10.0.0.3:8080") == true)
        // Each endpoint's verdict says the hints were ignored, and why.
        #expect(d.endpoints.allSatisfy { $0.rule == .readyHintsIgnored && $0.reason.contains("10.0.0.3:8080") })
    }

    @Test func nodeHintsModeIsReported() throws {
        let r = select(serviceJSON(), [sliceJSON("s", endpoints: [.R("10.0.0.1", zones: ["a"], nodes: ["N1"]),
                                                                  .R("10.0.0.2", zones: ["a"], nodes: ["N2"])])])
        let d = try #require(r.decision(L4Address("10.96.0.1:80/tcp")!))
        #expect(d.topology?.mode == .preferSameNode)
        #expect(d.endpoints.first { $0.endpoint == "10.0.0.2:8080" }?.rule == .hintedForOtherNode)
    }

    @Test func decisionsAreCodable() throws {
        let r = select(serviceJSON(), [sliceJSON("s", endpoints: [.R("10.0.0.1", "N1"), .U("10.0.0.2")])])
        let data = try JSONEncoder().encode(r.decisions)
        let back = try JSONDecoder().decode([FrontendDecision].self, from: data)
        #expect(back == r.decisions)
        #expect(back.first?.address == L4Address("10.96.0.1:80/tcp"))
    }
}
