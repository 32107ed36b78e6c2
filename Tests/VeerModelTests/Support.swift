import Foundation
import Testing
import VeerKube
@testable import VeerModel

// MARK: - Fixtures

enum Fixture {
    static func text(_ name: String) throws -> String {
        let base = try #require(Bundle.module.resourceURL)
        let url = base.appendingPathComponent("Fixtures").appendingPathComponent(name)
        return try String(contentsOf: url, encoding: .utf8)
    }

    static let all = ["seed001-endpointslices.yaml", "seed001-service.yaml", "seed001-nodes.json",
                      "api-services.json", "watch-slices.jsonl", "multi-doc.yaml"]
}

// MARK: - Builders producing real-format (API JSON) objects

/// One endpoint of a slice, as the EndpointSlice controller (or a hand-written slice) would write it.
struct E: Sendable {
    var addresses: [String]
    var node: String?
    var ready: Bool?
    var serving: Bool?
    var terminating: Bool?
    var zones: [String]?
    var nodes: [String]?
    var zone: String?
    var pod: String?

    /// Ready (the controller writes all three conditions).
    static func R(_ ip: String, _ node: String? = nil, zones: [String]? = nil, nodes: [String]? = nil, zone: String? = nil) -> E {
        E(addresses: [ip], node: node, ready: true, serving: true, terminating: false, zones: zones, nodes: nodes, zone: zone)
    }
    /// Serving and terminating.
    static func T(_ ip: String, _ node: String? = nil, zones: [String]? = nil) -> E {
        E(addresses: [ip], node: node, ready: false, serving: true, terminating: true, zones: zones)
    }
    /// Not ready, not serving, not terminating.
    static func U(_ ip: String, _ node: String? = nil, zones: [String]? = nil) -> E {
        E(addresses: [ip], node: node, ready: false, serving: false, terminating: false, zones: zones)
    }
    /// Terminating and not serving.
    static func X(_ ip: String, _ node: String? = nil) -> E {
        E(addresses: [ip], node: node, ready: false, serving: false, terminating: true)
    }
    /// No conditions at all.
    static func N(_ ip: String, _ node: String? = nil) -> E { E(addresses: [ip], node: node) }

    var json: [String: Any] {
        var o: [String: Any] = ["addresses": addresses]
        var c: [String: Any] = [:]
        if let ready { c["ready"] = ready }
        if let serving { c["serving"] = serving }
        if let terminating { c["terminating"] = terminating }
        if !c.isEmpty { o["conditions"] = c }
        if let node { o["nodeName"] = node }
        if let zone { o["zone"] = zone }
        var hints: [String: Any] = [:]
        if let zones { hints["forZones"] = zones.map { ["name": $0] } }
        if let nodes { hints["forNodes"] = nodes.map { ["name": $0] } }
        if !hints.isEmpty { o["hints"] = hints }
        o["targetRef"] = ["kind": "Pod", "namespace": "default", "name": pod ?? "pod-\(addresses.first ?? "none")"]
        return o
    }
}

struct SP: Sendable {
    var name: String? = "http"
    var proto: String? = "TCP"
    var port: Int? = 8080
}

func sliceJSON(_ name: String, service: String? = "svc", namespace: String = "default", addressType: String = "IPv4",
               ports: [SP] = [SP()], endpoints: [E], labels: [String: String] = [:]) -> [String: Any] {
    var l = labels
    if let service { l[KubeLabel.serviceName] = service }
    return [
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": ["name": name, "namespace": namespace, "labels": l, "resourceVersion": "1"] as [String: Any],
        "addressType": addressType,
        "endpoints": endpoints.map(\.json),
        "ports": ports.map { p -> [String: Any] in
            var o: [String: Any] = [:]
            if let n = p.name { o["name"] = n }
            if let pr = p.proto { o["protocol"] = pr }
            if let n = p.port { o["port"] = n }
            return o
        },
    ]
}

struct SvcPort: Sendable {
    var name: String = "http"
    var proto: String = "TCP"
    var port: Int = 80
    var nodePort: Int?
}

func serviceJSON(_ name: String = "svc", namespace: String = "default", type: String = "ClusterIP",
                 clusterIP: String? = "10.96.0.1", ports: [SvcPort] = [SvcPort()], itp: String? = nil, etp: String? = nil,
                 externalIPs: [String] = [], ingress: [[String: String]] = [], affinity: String? = nil,
                 affinityTimeout: Int? = nil, labels: [String: String] = [:], extraSpec: [String: Any] = [:]) -> [String: Any] {
    var spec: [String: Any] = ["type": type]
    if let clusterIP { spec["clusterIP"] = clusterIP; spec["clusterIPs"] = [clusterIP] }
    spec["ports"] = ports.map { p -> [String: Any] in
        var o: [String: Any] = ["name": p.name, "protocol": p.proto, "port": p.port, "targetPort": 8080]
        if let n = p.nodePort { o["nodePort"] = n }
        return o
    }
    if let itp { spec["internalTrafficPolicy"] = itp }
    if let etp { spec["externalTrafficPolicy"] = etp }
    if !externalIPs.isEmpty { spec["externalIPs"] = externalIPs }
    if let affinity { spec["sessionAffinity"] = affinity }
    if let affinityTimeout { spec["sessionAffinityConfig"] = ["clientIP": ["timeoutSeconds": affinityTimeout]] }
    for (k, v) in extraSpec { spec[k] = v }
    var o: [String: Any] = [
        "apiVersion": "v1", "kind": "Service",
        "metadata": ["name": name, "namespace": namespace, "labels": labels, "resourceVersion": "1"] as [String: Any],
        "spec": spec,
    ]
    if !ingress.isEmpty { o["status"] = ["loadBalancer": ["ingress": ingress]] }
    return o
}

func raw(_ object: [String: Any], origin: String = "test") -> RawObject {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    let parsed = ManifestParser.parse(String(decoding: data, as: UTF8.self), origin: origin)
    precondition(parsed.objects.count == 1, "builder produced \(parsed.errors)")
    return parsed.objects[0]
}

/// Default node of the reference's checklist: N1 in zone a, with one address.
let N1 = NodeContext(nodeName: "N1", zone: "a", addresses: [IPAddress("192.168.0.1")!])

/// Feeds a service and its slices through the store (so decoding is exercised) and selects.
func select(_ service: [String: Any], _ slices: [[String: Any]], node: NodeContext = N1) -> SelectionResult {
    var store = ServiceStore()
    store.apply(.apply(raw(service)))
    for s in slices { store.apply(.apply(raw(s))) }
    return Selector.select(store, node: node)
}

func frontend(_ r: SelectionResult, _ text: String) -> DesiredFrontend? { r.frontend(L4Address(text)!) }

/// Backend IPs of a frontend, sorted.
func ips(_ f: DesiredFrontend?) -> [String] { (f?.backends ?? []).map { "\($0.address.ip)" }.sorted() }
