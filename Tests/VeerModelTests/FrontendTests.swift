import Foundation
import Testing
@testable import VeerModel

// Frontend addresses used below.
private let CIP = "10.96.0.1:80/tcp"
private let NP = "192.168.0.1:30080/tcp"   // N1's address
private let LO = "127.0.0.1:30080/tcp"     // NodePort on loopback
private let EIP = "203.0.113.1:80/tcp"
private let LB = "198.51.100.1:80/tcp"

struct Expect: Sendable {
    var ips: [String]
    var whenEmpty: EmptyBehavior?
    static func set(_ ips: String...) -> Expect { Expect(ips: ips, whenEmpty: nil) }
    static let drop = Expect(ips: [], whenEmpty: .drop)
    static let reject = Expect(ips: [], whenEmpty: .reject)
}

struct PolicyCase: Sendable, CustomTestStringConvertible {
    var id: Int
    var name: String
    var type = "ClusterIP"
    var itp: String?
    var etp: String?
    var nodePort: Int?
    var externalIPs: [String] = []
    var lbIP: String?
    var endpoints: [E]
    /// Emulate kube-proxy with a no-op local detector (pod sockets get the Local set).
    var noOpDetector = false
    var expect: [String: Expect]
    var testDescription: String { "#\(id) \(name)" }
}

private let policyCases: [PolicyCase] = [
    PolicyCase(id: 26, name: "eTP=Cluster NodePort uses the zone-filtered set", type: "NodePort", nodePort: 30080,
               endpoints: [.R("10.0.0.1", "N2", zones: ["a"]), .R("10.0.0.2", "N3", zones: ["b"])],
               expect: [CIP: .set("10.0.0.1"), NP: .set("10.0.0.1"), LO: .set("10.0.0.1")]),
    PolicyCase(id: 27, name: "iTP=Local: ClusterIP uses this node's ready endpoints", itp: "Local",
               endpoints: [.R("10.0.0.1", "N1"), .R("10.0.0.2", "N2")], expect: [CIP: .set("10.0.0.1")]),
    PolicyCase(id: 28, name: "iTP=Local, ready only elsewhere: ClusterIP drops", itp: "Local",
               endpoints: [.R("10.0.0.2", "N2")], expect: [CIP: .drop]),
    PolicyCase(id: 29, name: "iTP=Local, no endpoints at all: ClusterIP rejects", itp: "Local",
               endpoints: [], expect: [CIP: .reject]),
    PolicyCase(id: 30, name: "iTP=Local: local terminating used although ready exists elsewhere", itp: "Local",
               endpoints: [.T("10.0.0.1", "N1"), .R("10.0.0.2", "N2")], expect: [CIP: .set("10.0.0.1")]),
    PolicyCase(id: 31, name: "iTP=Local ignores hints", itp: "Local",
               endpoints: [.R("10.0.0.1", "N1", zones: ["b"]), .R("10.0.0.2", "N2", zones: ["a"])], expect: [CIP: .set("10.0.0.1")]),
    PolicyCase(id: 32, name: "iTP=Local + NodePort eTP=Cluster: ClusterIP drops, NodePort served", type: "NodePort", itp: "Local",
               nodePort: 30080, endpoints: [.R("10.0.0.2", "N2")], expect: [CIP: .drop, NP: .set("10.0.0.2"), LO: .set("10.0.0.2")]),
    PolicyCase(id: 33, name: "eTP=Local NodePort, socket-LB (locally originated): cluster set", type: "NodePort", etp: "Local",
               nodePort: 30080, endpoints: [.R("10.0.0.1", "N1"), .R("10.0.0.2", "N2")],
               expect: [NP: .set("10.0.0.1", "10.0.0.2"), LO: .set("10.0.0.1", "10.0.0.2")]),
    PolicyCase(id: 1033, name: "eTP=Local NodePort with no-op detector: local set", type: "NodePort", etp: "Local",
               nodePort: 30080, endpoints: [.R("10.0.0.1", "N1"), .R("10.0.0.2", "N2")], noOpDetector: true,
               expect: [NP: .set("10.0.0.1"), CIP: .set("10.0.0.1", "10.0.0.2")]),
    PolicyCase(id: 34, name: "eTP=Local, ready only elsewhere: ClusterIP and short-circuited NodePort served", type: "NodePort",
               etp: "Local", nodePort: 30080, endpoints: [.R("10.0.0.2", "N2")],
               expect: [CIP: .set("10.0.0.2"), NP: .set("10.0.0.2")]),
    PolicyCase(id: 35, name: "eTP=Local LB, pod to VIP, no local ready: short-circuit to cluster set with hints",
               type: "LoadBalancer", etp: "Local", nodePort: 30080, lbIP: "198.51.100.1",
               endpoints: [.R("10.0.0.1", "N2", zones: ["a"]), .R("10.0.0.2", "N3", zones: ["b"])], expect: [LB: .set("10.0.0.1")]),
    PolicyCase(id: 36, name: "eTP=Local, host process to own NodePort: cluster set", type: "NodePort", etp: "Local",
               nodePort: 30080, endpoints: [.R("10.0.0.2", "N2")], expect: [LO: .set("10.0.0.2"), NP: .set("10.0.0.2")]),
    PolicyCase(id: 37, name: "eTP=Local + no-op detector, pod to VIP, no local ready: drop", type: "LoadBalancer", etp: "Local",
               nodePort: 30080, lbIP: "198.51.100.1", endpoints: [.R("10.0.0.2", "N2")], noOpDetector: true,
               expect: [LB: .drop, NP: .drop, CIP: .set("10.0.0.2")]),
    PolicyCase(id: 38, name: "eTP=Local + iTP=Local, ready only elsewhere: ClusterIP drops, VIP short-circuits",
               type: "LoadBalancer", itp: "Local", etp: "Local", nodePort: 30080, lbIP: "198.51.100.1",
               endpoints: [.R("10.0.0.2", "N2")], expect: [CIP: .drop, LB: .set("10.0.0.2")]),
    PolicyCase(id: 39, name: "eTP=Local + no-op detector, local only terminating: local terminating", type: "NodePort",
               etp: "Local", nodePort: 30080, endpoints: [.T("10.0.0.1", "N1"), .R("10.0.0.2", "N2")], noOpDetector: true,
               expect: [NP: .set("10.0.0.1"), CIP: .set("10.0.0.2")]),
    PolicyCase(id: 42, name: "eTP=Local on a ClusterIP service with externalIPs follows Local rules", etp: "Local",
               externalIPs: ["203.0.113.1"], endpoints: [.R("10.0.0.2", "N2")], noOpDetector: true,
               expect: [EIP: .drop, CIP: .set("10.0.0.2")]),
    PolicyCase(id: 1042, name: "eTP=Local on a plain ClusterIP service does not apply", etp: "Local",
               endpoints: [.R("10.0.0.2", "N2")], noOpDetector: true, expect: [CIP: .set("10.0.0.2")]),
    PolicyCase(id: 1005, name: "no endpoints: every frontend of the port rejects", type: "LoadBalancer", etp: "Local",
               nodePort: 30080, externalIPs: ["203.0.113.1"], lbIP: "198.51.100.1", endpoints: [.U("10.0.0.1", "N1")],
               noOpDetector: true, expect: [CIP: .reject, NP: .reject, LO: .reject, EIP: .reject, LB: .reject]),
]

@Suite("Selection: traffic policies per frontend (checklist 26-42)")
struct PolicyTests {
    @Test(arguments: policyCases)
    func frontends(_ c: PolicyCase) throws {
        let svc = serviceJSON(type: c.type, ports: [SvcPort(nodePort: c.nodePort)], itp: c.itp, etp: c.etp,
                              externalIPs: c.externalIPs, ingress: c.lbIP.map { [["ip": $0]] } ?? [])
        var node = N1
        node.externalLocalForLocalClients = c.noOpDetector
        let r = select(svc, [sliceJSON("svc-1", endpoints: c.endpoints)], node: node)
        for (address, want) in c.expect {
            let f = try #require(frontend(r, address), "frontend \(address) missing")
            #expect(ips(f) == want.ips, "\(address)")
            if let w = want.whenEmpty { #expect(f.whenEmpty == w, "\(address)") }
        }
    }

    @Test func localSetVerdictsNameTheOtherNode() throws {
        let r = select(serviceJSON(itp: "Local"), [sliceJSON("s", endpoints: [.R("10.0.0.1", "N1"), .R("10.0.0.2", "N2"), .R("10.0.0.3")])])
        let d = try #require(r.decision(L4Address(CIP)!))
        #expect(d.set == .local && d.setRule == .internalPolicyLocal)
        #expect(d.topology == nil)
        let n2 = try #require(d.endpoints.first { $0.endpoint == "10.0.0.2:8080" })
        #expect(n2.rule == .notOnThisNode && n2.reason.contains("N2"))
        // nodeName unset is remote.
        #expect(d.endpoints.first { $0.endpoint == "10.0.0.3:8080" }?.rule == .notOnThisNode)
    }

    @Test func dropIsExplained() throws {
        let r = select(serviceJSON(itp: "Local"), [sliceJSON("s", endpoints: [.R("10.0.0.2", "N2")])])
        let d = try #require(r.decision(L4Address(CIP)!))
        #expect(d.whenEmpty == "drop")
        #expect(d.emptyReason?.contains("none on this node") == true)
    }

    @Test func shortCircuitIsExplained() throws {
        let svc = serviceJSON(type: "NodePort", ports: [SvcPort(nodePort: 30080)], etp: "Local")
        let r = select(svc, [sliceJSON("s", endpoints: [.R("10.0.0.2", "N2")])])
        let d = try #require(r.decision(L4Address(NP)!))
        #expect(d.set == .cluster && d.setRule == .externalPolicyLocalShortCircuit)
        #expect(r.decision(L4Address(CIP)!)?.setRule == .internalPolicyCluster)
    }
}

@Suite("Frontends: ports, addresses, affinity (checklist 43-45, 55-59, 65, 67)")
struct FrontendTests {
    @Test func portWithoutEndpointsRejectsAlone() throws {  // 43
        let svc = serviceJSON(ports: [SvcPort(name: "http", port: 80), SvcPort(name: "https", port: 443)])
        let r = select(svc, [sliceJSON("s", ports: [SP(name: "http", port: 8080)], endpoints: [.R("10.0.0.1")])])
        #expect(ips(frontend(r, "10.96.0.1:80/tcp")) == ["10.0.0.1"])
        let https = try #require(frontend(r, "10.96.0.1:443/tcp"))
        #expect(https.backends.isEmpty && https.whenEmpty == .reject)
    }

    @Test(arguments: [
        (SP(name: "web", proto: "TCP", port: 8080), "name mismatch"),   // 44
        (SP(name: "http", proto: "UDP", port: 8080), "protocol mismatch"), // 45
    ])
    func portMismatchMeansNoEndpoints(_ port: SP, _ label: String) throws {
        let r = select(serviceJSON(), [sliceJSON("s", ports: [port], endpoints: [.R("10.0.0.1")])])
        let f = try #require(frontend(r, CIP))
        #expect(f.backends.isEmpty && f.whenEmpty == .reject, "\(label)")
        #expect(r.decision(f.address)?.endpoints.first?.rule == .portMismatch)
    }

    @Test func backendPortComesFromTheSliceNotTargetPort() throws {
        let r = select(serviceJSON(), [sliceJSON("s", ports: [SP(port: 9999)], endpoints: [.R("10.0.0.1")])])
        #expect(frontend(r, CIP)?.backends.map(\.address) == [L4Address("10.0.0.1:9999/tcp")!])
    }

    @Test func unnamedPortMatchesUnnamedSlicePort() throws {
        let svc = serviceJSON(ports: [SvcPort(name: "", port: 80)])
        let r = select(svc, [sliceJSON("s", ports: [SP(name: nil, proto: nil, port: 8080)], endpoints: [.R("10.0.0.1")])])
        #expect(ips(frontend(r, CIP)) == ["10.0.0.1"])
        #expect(frontend(r, CIP)?.service.port == "")
    }

    @Test func udpPortGetsUdpFrontendAndBackends() throws {
        let svc = serviceJSON(ports: [SvcPort(name: "dns", proto: "UDP", port: 53)])
        let r = select(svc, [sliceJSON("s", ports: [SP(name: "dns", proto: "UDP", port: 53)], endpoints: [.R("10.0.0.1")])])
        #expect(frontend(r, "10.96.0.1:53/udp")?.backends.map(\.address) == [L4Address("10.0.0.1:53/udp")!])
    }

    struct SkipCase: Sendable, CustomTestStringConvertible {
        var name: String
        var type = "ClusterIP"
        var clusterIP: String?
        var labels: [String: String] = [:]
        var families: [String]?
        var rule: SkipRule
        var testDescription: String { name }
    }

    @Test(arguments: [
        SkipCase(name: "55 clusterIP None", clusterIP: "None", rule: .headless),
        SkipCase(name: "55 clusterIP unset", clusterIP: nil, rule: .headless),
        SkipCase(name: "55 ExternalName with a clusterIP", type: "ExternalName", clusterIP: "10.96.0.1", rule: .externalName),
        SkipCase(name: "56 service-proxy-name label, any value", clusterIP: "10.96.0.1",
                 labels: [KubeLabel.serviceProxyName: "veer"], rule: .serviceProxyName),
        SkipCase(name: "48 headless label", clusterIP: "10.96.0.1", labels: [KubeLabel.headless: ""], rule: .headlessLabel),
        SkipCase(name: "57 ipFamilies names a family no cluster IP has", type: "NodePort", clusterIP: "10.96.0.1",
                 families: ["IPv6"], rule: .noClusterIP),
    ])
    func skippedServices(_ c: SkipCase) throws {
        var extra: [String: Any] = [:]
        if let f = c.families { extra["ipFamilies"] = f }
        let svc = serviceJSON(type: c.type, clusterIP: c.clusterIP, ports: [SvcPort(nodePort: 30080)], labels: c.labels, extraSpec: extra)
        let r = select(svc, [sliceJSON("s", endpoints: [.R("10.0.0.1")])])
        #expect(r.frontends.isEmpty)
        #expect(r.skipped.map(\.rule).contains(c.rule))
        #expect(r.skipped.first { $0.rule == c.rule }?.service == ObjectKey(namespace: "default", name: "svc"))
    }

    /// §4: one proxier per family. A service takes part in each family it has a cluster IP of:
    /// that family's ClusterIP, NodePorts on the node's addresses of that family, externalIPs and
    /// LB IPs of that family, with backends from that family's slices only.
    struct FamilyCase: Sendable, CustomTestStringConvertible {
        var name: String
        var clusterIPs: [String]
        var families: [String]?
        var externalIPs: [String] = []
        var lbIPs: [String] = []
        var frontends: [String: [String]]   // frontend -> backend IPs
        var skipped: [String: SkipRule] = [:]
        var testDescription: String { name }
    }

    @Test(arguments: [
        FamilyCase(name: "57 single-stack IPv4: no IPv6 frontend, not even NodePort; the IPv6 slice is not used",
                   clusterIPs: ["10.96.0.1"], families: ["IPv4"],
                   frontends: ["10.96.0.1:80/tcp": ["10.0.0.1"], "192.168.0.1:30080/tcp": ["10.0.0.1"], "127.0.0.1:30080/tcp": ["10.0.0.1"]],
                   skipped: ["default/s6": .familyNotServed]),
        FamilyCase(name: "57 single-stack IPv6: IPv6 ClusterIP and NodePort (never on ::1 or 127.0.0.1), IPv6 backends",
                   clusterIPs: ["fd00:96::1"], families: ["IPv6"],
                   frontends: ["[fd00:96::1]:80/tcp": ["fd00:244::1"], "[fd00:192::1]:30080/tcp": ["fd00:244::1"]],
                   skipped: ["default/s4": .familyNotServed]),
        FamilyCase(name: "dual-stack, IPv4 primary: each family its own frontends and backends",
                   clusterIPs: ["10.96.0.1", "fd00:96::1"], families: ["IPv4", "IPv6"],
                   frontends: ["10.96.0.1:80/tcp": ["10.0.0.1"], "192.168.0.1:30080/tcp": ["10.0.0.1"], "127.0.0.1:30080/tcp": ["10.0.0.1"],
                               "[fd00:96::1]:80/tcp": ["fd00:244::1"], "[fd00:192::1]:30080/tcp": ["fd00:244::1"]]),
        FamilyCase(name: "58 dual-stack with externalIPs and LB IPs of both families",
                   clusterIPs: ["fd00:96::1", "10.96.0.1"], families: ["IPv6", "IPv4"],
                   externalIPs: ["2001:db8::7", "203.0.113.1"], lbIPs: ["198.51.100.1", "2001:db8::8"],
                   frontends: ["10.96.0.1:80/tcp": ["10.0.0.1"], "192.168.0.1:30080/tcp": ["10.0.0.1"], "127.0.0.1:30080/tcp": ["10.0.0.1"],
                               "203.0.113.1:80/tcp": ["10.0.0.1"], "198.51.100.1:80/tcp": ["10.0.0.1"],
                               "[fd00:96::1]:80/tcp": ["fd00:244::1"], "[fd00:192::1]:30080/tcp": ["fd00:244::1"],
                               "[2001:db8::7]:80/tcp": ["fd00:244::1"], "[2001:db8::8]:80/tcp": ["fd00:244::1"]]),
        FamilyCase(name: "58 single-stack IPv4: an IPv6 externalIP or LB IP is dropped",
                   clusterIPs: ["10.96.0.1"], families: ["IPv4"], externalIPs: ["2001:db8::7", "203.0.113.1"], lbIPs: ["2001:db8::8"],
                   frontends: ["10.96.0.1:80/tcp": ["10.0.0.1"], "192.168.0.1:30080/tcp": ["10.0.0.1"], "127.0.0.1:30080/tcp": ["10.0.0.1"],
                               "203.0.113.1:80/tcp": ["10.0.0.1"]],
                   skipped: ["default/s6": .familyNotServed, "2001:db8::7": .familyNotServed, "2001:db8::8": .familyNotServed]),
        FamilyCase(name: "legacy object without ipFamilies: the cluster IP's own family",
                   clusterIPs: ["fd00:96::1"], families: nil,
                   frontends: ["[fd00:96::1]:80/tcp": ["fd00:244::1"], "[fd00:192::1]:30080/tcp": ["fd00:244::1"]],
                   skipped: ["default/s4": .familyNotServed]),
    ])
    func perFamily(_ c: FamilyCase) throws {
        let node = NodeContext(nodeName: "N1", zone: "a", addresses: [IPAddress("192.168.0.1")!, IPAddress("fd00:192::1")!])
        var extra: [String: Any] = ["clusterIPs": c.clusterIPs]
        if let f = c.families { extra["ipFamilies"] = f }
        let svc = serviceJSON(type: c.lbIPs.isEmpty ? "NodePort" : "LoadBalancer", clusterIP: nil, ports: [SvcPort(nodePort: 30080)],
                              externalIPs: c.externalIPs, ingress: c.lbIPs.map { ["ip": $0] },
                              extraSpec: extra.merging(["clusterIP": c.clusterIPs[0]]) { a, _ in a })
        let r = select(svc, [sliceJSON("s4", endpoints: [.R("10.0.0.1")]),
                             sliceJSON("s6", addressType: "IPv6", endpoints: [.R("fd00:244::1")])], node: node)
        #expect(Dictionary(uniqueKeysWithValues: r.frontends.map { ($0.address.description, ips($0)) }) == c.frontends)
        // Every frontend's backends are of its own family.
        #expect(r.frontends.allSatisfy { f in f.backends.allSatisfy { $0.address.ip.family == f.address.ip.family } })
        // The explanation names the same frontends, IPv6 in brackets.
        #expect(Set(r.decisions.map(\.frontend)) == Set(c.frontends.keys))
        #expect(Dictionary(r.skipped.map { ($0.object, $0.rule) }) { a, _ in a } == c.skipped)
    }

    @Test func endpointsOfTheOtherFamilyInASliceAreExcludedWithAReason() throws {
        // Decoding rejects such a slice from the API; a slice built in code reaches the selector.
        let slice = EndpointSlice(meta: ObjectMeta(name: "s6", namespace: "default", labels: [KubeLabel.serviceName: "svc"]),
                                  addressType: .ipv6,
                                  endpoints: [Endpoint(addresses: ["10.0.0.9"]), Endpoint(addresses: ["fd00::9"])],
                                  ports: [EndpointPort(name: "http", proto: .tcp, port: 8080)])
        let service = Service(meta: ObjectMeta(name: "svc", namespace: "default"), clusterIP: "fd00:96::1",
                              clusterIPs: ["fd00:96::1"], ipFamilies: ["IPv6"],
                              ports: [ServicePort(name: "http", proto: .tcp, port: 80)])
        let r = Selector.select(service: service, slices: [slice], node: N1)
        let f = try #require(r.frontends.first)
        #expect(f.backends.map(\.address.description) == ["[fd00::9]:8080/tcp"])
        let verdict = try #require(r.decisions.first?.endpoints.first { $0.endpoint == "10.0.0.9" })
        #expect(verdict.rule == .wrongFamily && !verdict.included)
        #expect(r.decisions.first?.endpoints.contains { $0.endpoint == "[fd00::9]:8080" && $0.included } == true)
    }

    /// The node's own address and loopback are not for any Service to claim (CVE-2020-8554 at the socket).
    @Test(arguments: [
        ("ClusterIP", [String](), [String](), [String](), ["192.168.0.1:80/tcp", "127.0.0.1:80/tcp"]),
        ("ClusterIP", ["192.168.0.1", "127.0.0.1", "203.0.113.1"], [String](), ["203.0.113.1:80/tcp"], ["192.168.0.1:80/tcp", "127.0.0.1:80/tcp"]),
        ("ClusterIP", [], ["192.168.0.1"], [], ["192.168.0.1:80/tcp"]),
        ("LoadBalancer", ["192.168.0.1"], ["192.168.0.1", "127.0.0.1"], ["192.168.0.1:80/tcp"], ["127.0.0.1:80/tcp"]),
    ])
    func nodeLocalAddresses(_ type: String, _ externalIPs: [String], _ lbIPs: [String], _ served: [String], _ refused: [String]) throws {
        let svc = serviceJSON(type: type, externalIPs: externalIPs, ingress: lbIPs.map { ["ip": $0] })
        var r = select(svc, [sliceJSON("s", endpoints: [.R("10.0.0.1")])])
        if externalIPs.isEmpty && lbIPs.isEmpty {
            // A cluster IP on the node's address or loopback.
            r = select(serviceJSON(clusterIP: "192.168.0.1"), [sliceJSON("s", endpoints: [.R("10.0.0.1")])])
            let r2 = select(serviceJSON("lo", clusterIP: "127.0.0.1"), [])
            r.skipped += r2.skipped
        }
        let frontends = Set(r.frontends.filter { $0.kind != .nodePort }.map(\.address.description))
        for f in served { #expect(frontends.contains(f), "\(f) not served: \(frontends)") }
        for f in refused {
            #expect(!frontends.contains(f), "\(f) served")
            #expect(r.skipped.contains { $0.rule == .nodeLocalAddress && $0.object == f }, "\(r.skipped)")
        }
    }

    @Test func loadBalancerIngressModes() throws {  // 59
        let svc = serviceJSON(type: "LoadBalancer", ingress: [["ip": "198.51.100.1"], ["ip": "198.51.100.2", "ipMode": "VIP"],
                                                             ["ip": "198.51.100.3", "ipMode": "Proxy"], ["hostname": "lb.example.com"]])
        let r = select(svc, [sliceJSON("s", endpoints: [.R("10.0.0.1")])])
        let lbs = r.frontends.filter { $0.kind == .loadBalancer }.map(\.address.description)
        #expect(lbs == ["198.51.100.1:80/tcp", "198.51.100.2:80/tcp"])
        #expect(r.skipped.contains { $0.rule == .loadBalancerProxyMode && $0.object == "198.51.100.3" })
        #expect(r.skipped.contains { $0.rule == .loadBalancerHostnameOnly })
    }

    @Test(arguments: [
        (nil as String?, nil as Int?, nil as UInt32?),
        ("None", nil, nil),
        ("ClientIP", nil, 10800),
        ("ClientIP", 600, 600),
    ])
    func sessionAffinity(_ mode: String?, _ timeout: Int?, _ want: UInt32?) throws {  // 65
        let svc = serviceJSON(type: "NodePort", ports: [SvcPort(nodePort: 30080)], affinity: mode, affinityTimeout: timeout)
        let r = select(svc, [sliceJSON("s", endpoints: [.R("10.0.0.1")])])
        #expect(!r.frontends.isEmpty)
        // Shared by every frontend of the port.
        #expect(r.frontends.allSatisfy { $0.affinityTimeout == want })
    }

    @Test func nodePortOnEveryNodeAddressAndLoopback() throws {  // 67
        let node = NodeContext(nodeName: "N1", zone: "a",
                               addresses: [IPAddress("192.168.0.1")!, IPAddress("10.1.0.1")!, IPAddress("192.168.0.1")!])
        let svc = serviceJSON(type: "NodePort", ports: [SvcPort(nodePort: 30080)])
        let r = select(svc, [sliceJSON("s", endpoints: [.R("10.0.0.1")])], node: node)
        #expect(r.frontends.filter { $0.kind == .nodePort }.map(\.address.description)
                == ["10.1.0.1:30080/tcp", "127.0.0.1:30080/tcp", "192.168.0.1:30080/tcp"])
        var noLoop = node
        noLoop.nodePortOnLoopback = false
        let r2 = select(svc, [sliceJSON("s", endpoints: [.R("10.0.0.1")])], node: noLoop)
        #expect(!r2.frontends.contains { $0.address.ip.isLoopback })
    }

    @Test func frontendsSortedAndDeterministic() throws {
        let svc = serviceJSON(type: "LoadBalancer", ports: [SvcPort(name: "http", port: 80, nodePort: 30080), SvcPort(name: "https", port: 443, nodePort: 30443)],
                              externalIPs: ["203.0.113.1"], ingress: [["ip": "198.51.100.1"]])
        let a = sliceJSON("a", ports: [SP(name: "http", port: 8080), SP(name: "https", port: 8443)], endpoints: [.R("10.0.0.1"), .R("10.0.0.2")])
        let b = sliceJSON("b", ports: [SP(name: "http", port: 8080), SP(name: "https", port: 8443)], endpoints: [.R("10.0.0.3"), .T("10.0.0.1")])
        let r1 = select(svc, [a, b])
        let r2 = select(svc, [b, a])
        #expect(r1 == r2)
        #expect(r1.frontends.map(\.address) == r1.frontends.map(\.address).sorted())
        #expect(r1.decisions.map(\.frontend) == r1.frontends.map(\.address.description))
        #expect(r1.frontends.count == 2 * (1 + 2 + 1 + 1))
    }

    @Test func twoServicesClaimingOneAddress() throws {
        var store = ServiceStore()
        store.apply(.apply(raw(serviceJSON("a", externalIPs: ["10.96.0.9"]))))
        store.apply(.apply(raw(serviceJSON("b", clusterIP: "10.96.0.9"))))
        let r = Selector.select(store, node: N1)
        let f = try #require(frontend(r, "10.96.0.9:80/tcp"))
        #expect(f.kind == .clusterIP && f.service.name == "b")
        #expect(r.skipped.contains { $0.rule == .frontendConflict && $0.service.name == "a" })
        #expect(Set(r.frontends.map(\.address)).count == r.frontends.count)
    }
}

/// External clients (the packet path) of eTP=Local frontends: kube-proxy's CategorizeEndpoints
/// expectations for traffic from outside the node, where the node's own connections are
/// short-circuited to the Cluster set. The external-scope entry carries the Local set (local
/// terminating as fallback, drop when only remote endpoints exist) and keeps the client's
/// address; eTP=Cluster gets no such entry and masquerades.
struct ExternalCase: Sendable, CustomTestStringConvertible {
    var name: String
    var type = "NodePort"
    var etp: String?
    var lbIP: String?
    var endpoints: [E]
    var noOpDetector = false
    /// Per address: what its external-scope entry holds; nil: no such entry.
    var external: [String: Expect?]
    /// Per address: whether the cluster-scope entry keeps the client's address.
    var preserves: [String: Bool]
    var testDescription: String { name }
}

private let externalCases: [ExternalCase] = [
    ExternalCase(name: "eTP=Cluster: no external entry, masquerade", endpoints: [.R("10.0.0.1", "N1"), .R("10.0.0.2", "N2")],
                 external: [NP: nil, LO: nil], preserves: [NP: false]),
    ExternalCase(name: "eTP=Local, local and remote ready: outside clients get the local one", etp: "Local",
                 endpoints: [.R("10.0.0.1", "N1"), .R("10.0.0.2", "N2")],
                 external: [NP: .set("10.0.0.1"), LO: nil], preserves: [NP: false]),
    ExternalCase(name: "eTP=Local, ready only elsewhere: outside clients are dropped", etp: "Local",
                 endpoints: [.R("10.0.0.2", "N2")], external: [NP: .drop], preserves: [NP: false]),
    ExternalCase(name: "eTP=Local, local only terminating: it serves outside clients", etp: "Local",
                 endpoints: [.T("10.0.0.1", "N1"), .R("10.0.0.2", "N2")], external: [NP: .set("10.0.0.1")], preserves: [NP: false]),
    ExternalCase(name: "eTP=Local, local not serving: dropped", etp: "Local",
                 endpoints: [.U("10.0.0.1", "N1"), .R("10.0.0.2", "N2")], external: [NP: .drop], preserves: [NP: false]),
    ExternalCase(name: "eTP=Local, no endpoints anywhere: rejected", etp: "Local",
                 endpoints: [], external: [NP: .reject], preserves: [NP: false]),
    ExternalCase(name: "eTP=Local LB IP: outside clients get the local set", type: "LoadBalancer", etp: "Local", lbIP: "198.51.100.1",
                 endpoints: [.R("10.0.0.1", "N1"), .R("10.0.0.2", "N2")], external: [LB: .set("10.0.0.1"), NP: .set("10.0.0.1")],
                 preserves: [LB: false]),
    ExternalCase(name: "eTP=Local with a no-op detector: one entry for everyone, Local and preserving", etp: "Local",
                 endpoints: [.R("10.0.0.1", "N1"), .R("10.0.0.2", "N2")], noOpDetector: true,
                 external: [NP: nil], preserves: [NP: true]),
]

@Suite("Selection: external clients (packet path)")
struct ExternalScopeTests {
    @Test(arguments: externalCases)
    func externalEntries(_ c: ExternalCase) throws {
        let svc = serviceJSON(type: c.type, ports: [SvcPort(nodePort: 30080)], etp: c.etp,
                              ingress: c.lbIP.map { [["ip": $0]] } ?? [])
        var node = N1
        node.externalLocalForLocalClients = c.noOpDetector
        let r = select(svc, [sliceJSON("svc-1", endpoints: c.endpoints)], node: node)
        for (address, want) in c.external {
            let key = L4Address(address)!.scoped(.external)
            let f = r.frontend(key)
            guard let want else {
                #expect(f == nil, "\(address): no external entry expected")
                continue
            }
            let ext = try #require(f, "\(address): external entry missing")
            #expect(ips(ext) == want.ips, "\(address)")
            if let w = want.whenEmpty { #expect(ext.whenEmpty == w, "\(address)") }
            #expect(ext.preservesClientAddress, "\(address): eTP=Local keeps the client's address")
            #expect(r.decision(key)?.setRule == .externalPolicyLocal)
        }
        for (address, want) in c.preserves {
            let f = try #require(frontend(r, address))
            #expect(f.preservesClientAddress == want, "\(address)")
        }
        // Never an external entry for a ClusterIP.
        #expect(r.frontend(L4Address(CIP)!.scoped(.external)) == nil)
    }
}

@Suite("Selection: node port range")
struct NodePortRangeTests {
    @Test func nodePortOutsideTheRangeIsSkippedAlone() throws {
        let svc = serviceJSON(type: "NodePort", ports: [SvcPort(name: "a", port: 80, nodePort: 8081), SvcPort(name: "b", port: 81, nodePort: 30081)])
        var node = N1
        node.nodePortRange = 30000...32767
        let r = select(svc, [sliceJSON("s", ports: [SP(name: "a", port: 8080), SP(name: "b", port: 8080)], endpoints: [.R("10.0.0.1")])], node: node)
        #expect(frontend(r, "192.168.0.1:8081/tcp") == nil)
        #expect(frontend(r, "10.96.0.1:80/tcp") != nil, "the port's ClusterIP is still served")
        #expect(frontend(r, "192.168.0.1:30081/tcp") != nil)
        #expect(r.skipped.contains { $0.rule == .nodePortOutOfRange && $0.reason.contains("8081") })
        // Without a range, any port is served, as kube-proxy does.
        #expect(frontend(select(svc, [sliceJSON("s", ports: [SP(name: "a", port: 8080)], endpoints: [.R("10.0.0.1")])]), "192.168.0.1:8081/tcp") != nil)
    }
}
