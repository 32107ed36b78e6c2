import Foundation

/// A problem with one object (or one endpoint of it), naming the object and the field.
public struct ObjectError: Error, Hashable, Sendable, Codable, CustomStringConvertible {
    /// "Service", "EndpointSlice", "Node" (or the document's kind).
    public var kind: String
    /// "namespace/name" ("name" for nodes, "" if unknown).
    public var object: String
    /// JSON path of the offending field, e.g. "spec.ports[0].port" ("" for the whole document).
    public var field: String
    public var message: String
    /// Where the object came from ("manifests/web.yaml#2", "watch").
    public var origin: String

    public init(kind: String, object: String, field: String, message: String, origin: String = "") {
        self.kind = kind
        self.object = object
        self.field = field
        self.message = message
        self.origin = origin
    }

    public var description: String {
        var s = "\(kind) \(object.isEmpty ? "<unnamed>" : object)"
        if !field.isEmpty { s += ": \(field)" }
        s += ": \(message)"
        if !origin.isEmpty { s += " (\(origin))" }
        return s
    }
}

/// The result of decoding one RawObject.
public struct DecodeOutcome: Sendable {
    /// nil when the object was rejected; `errors` then says why.
    public var object: KubeObject?
    /// Why the whole object was rejected.
    public var errors: [ObjectError]
    /// Parts skipped while the object itself was kept (an endpoint with a bad address).
    public var warnings: [ObjectError]
}

public enum KubeDecoder {
    /// Decodes and validates one object. Never throws, never traps.
    public static func decode(_ raw: RawObject) -> DecodeOutcome {
        var v = Validator(kind: raw.kind.rawValue, object: raw.key, origin: raw.origin)
        let object: KubeObject?
        do {
            switch raw.kind {
            case .service:
                let wire = try JSONDecoder().decode(WireService.self, from: raw.json)
                object = v.service(wire, raw: raw).map(KubeObject.service)
            case .endpointSlice:
                let wire = try JSONDecoder().decode(WireEndpointSlice.self, from: raw.json)
                object = v.endpointSlice(wire, raw: raw).map(KubeObject.endpointSlice)
            case .node:
                let wire = try JSONDecoder().decode(WireNode.self, from: raw.json)
                object = v.node(wire, raw: raw).map(KubeObject.node)
            }
        } catch let error as DecodingError {
            v.fail(describe(error))
            object = nil
        } catch {
            v.fail(("", "not valid JSON: \(error)"))
            object = nil
        }
        return DecodeOutcome(object: v.errors.isEmpty ? object : nil, errors: v.errors, warnings: v.warnings)
    }

    /// Turns a DecodingError into (field path, message).
    static func describe(_ error: DecodingError) -> (String, String) {
        func path(_ keys: [any CodingKey]) -> String {
            var out = ""
            for key in keys {
                if let i = key.intValue { out += "[\(i)]" } else { out += out.isEmpty ? key.stringValue : ".\(key.stringValue)" }
            }
            return out
        }
        switch error {
        case let .typeMismatch(type, ctx):
            return (path(ctx.codingPath), "wrong type: expected \(typeName(type))")
        case let .valueNotFound(type, ctx):
            return (path(ctx.codingPath), "null where \(typeName(type)) is required")
        case let .keyNotFound(key, ctx):
            return (path(ctx.codingPath + [key]), "missing field")
        case let .dataCorrupted(ctx):
            return (path(ctx.codingPath), ctx.codingPath.isEmpty ? "not valid JSON" : "invalid value: \(ctx.debugDescription)")
        @unknown default:
            return ("", "\(error)")
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        if type == String.self { return "string" }
        if type == Int.self || type == UInt16.self || type == Int64.self { return "integer" }
        if type == Bool.self { return "boolean" }
        if type == Double.self { return "number" }
        let name = "\(type)"
        if name.hasPrefix("Array") { return "list" }
        if name.hasPrefix("Dictionary") || name.contains("Wire") { return "object" }
        return name
    }
}

// MARK: - Validation

private struct Validator {
    let kind: String
    let object: String
    let origin: String
    var errors: [ObjectError] = []
    var warnings: [ObjectError] = []

    init(kind: String, object: String, origin: String) {
        self.kind = kind
        self.object = object
        self.origin = origin
    }

    mutating func fail(_ f: (String, String)) { fail(f.0, f.1) }
    mutating func fail(_ field: String, _ message: String) {
        errors.append(ObjectError(kind: kind, object: object, field: field, message: message, origin: origin))
    }
    mutating func warn(_ field: String, _ message: String) {
        warnings.append(ObjectError(kind: kind, object: object, field: field, message: message, origin: origin))
    }

    mutating func meta(_ wire: WireMeta?, raw: RawObject) -> ObjectMeta {
        // The source's identity wins: it is what deletes will name.
        ObjectMeta(name: raw.name, namespace: raw.namespace, labels: wire?.labels ?? [:],
                   annotations: wire?.annotations ?? [:], resourceVersion: wire?.resourceVersion ?? raw.resourceVersion)
    }

    mutating func port(_ value: Int?, _ field: String, required: Bool, allowZero: Bool = false) -> UInt16? {
        guard let value else {
            if required { fail(field, "missing field") }
            return nil
        }
        if value == 0 && allowZero { return nil }
        guard (1...65535).contains(value) else {
            fail(field, "port \(value) out of range 1-65535")
            return nil
        }
        return UInt16(value)
    }

    mutating func proto(_ value: String?, _ field: String) -> L4Protocol {
        guard let value else { return .tcp }  // API defaulting
        guard let p = L4Protocol(kubernetes: value) else {
            fail(field, "unknown protocol \"\(value)\" (TCP, UDP or SCTP)")
            return .tcp
        }
        return p
    }

    mutating func ip(_ value: String, _ field: String) -> Bool {
        guard IPFamily(address: value) != nil else {
            fail(field, "\"\(value)\" is not an IP address")
            return false
        }
        return true
    }

    mutating func service(_ w: WireService, raw: RawObject) -> Service? {
        let meta = meta(w.metadata, raw: raw)
        let spec = w.spec ?? WireService.Spec()
        var type = ServiceType.clusterIP
        if let t = spec.type {
            if ServiceType.known.contains(t) { type = ServiceType(rawValue: t) } else { fail("spec.type", "unknown service type \"\(t)\"") }
        }
        if let c = spec.clusterIP, !c.isEmpty, c != "None" { _ = ip(c, "spec.clusterIP") }
        for (i, c) in (spec.clusterIPs ?? []).enumerated() where c != "None" && !c.isEmpty { _ = ip(c, "spec.clusterIPs[\(i)]") }
        for (i, f) in (spec.ipFamilies ?? []).enumerated() where IPFamily(rawValue: f) == nil {
            fail("spec.ipFamilies[\(i)]", "unknown IP family \"\(f)\"")
        }
        if let p = spec.ipFamilyPolicy, !["SingleStack", "PreferDualStack", "RequireDualStack"].contains(p) {
            fail("spec.ipFamilyPolicy", "unknown IP family policy \"\(p)\"")
        }
        for (i, e) in (spec.externalIPs ?? []).enumerated() { _ = ip(e, "spec.externalIPs[\(i)]") }
        var ports: [ServicePort] = []
        for (i, p) in (spec.ports ?? []).enumerated() {
            let f = "spec.ports[\(i)]"
            let number = port(p.port, "\(f).port", required: true)
            let nodePort = port(p.nodePort, "\(f).nodePort", required: false, allowZero: true)
            let proto = proto(p.protocol, "\(f).protocol")
            if let number { ports.append(ServicePort(name: p.name ?? "", proto: proto, port: number, targetPort: p.targetPort?.value, nodePort: nodePort)) }
        }
        var affinity = SessionAffinity.none
        if let a = spec.sessionAffinity {
            if let v = SessionAffinity(rawValue: a) { affinity = v } else { fail("spec.sessionAffinity", "unknown session affinity \"\(a)\"") }
        }
        var timeout = Service.defaultAffinityTimeout
        if let t = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds {
            if (1...86400).contains(t) { timeout = UInt32(t) } else {
                fail("spec.sessionAffinityConfig.clientIP.timeoutSeconds", "\(t) out of range 1-86400")
            }
        }
        func policy(_ value: String?, _ field: String) -> TrafficPolicy? {
            guard let value else { return .cluster }
            return TrafficPolicy(rawValue: value)
        }
        let itp = policy(spec.internalTrafficPolicy, "spec.internalTrafficPolicy")
        if itp == nil { fail("spec.internalTrafficPolicy", "unknown traffic policy \"\(spec.internalTrafficPolicy ?? "")\"") }
        let etp = policy(spec.externalTrafficPolicy, "spec.externalTrafficPolicy")
        if etp == nil { fail("spec.externalTrafficPolicy", "unknown traffic policy \"\(spec.externalTrafficPolicy ?? "")\"") }
        let hc = port(spec.healthCheckNodePort, "spec.healthCheckNodePort", required: false, allowZero: true)
        var ingress: [LoadBalancerIngress] = []
        for (i, ing) in (w.status?.loadBalancer?.ingress ?? []).enumerated() {
            if let a = ing.ip, !a.isEmpty { _ = ip(a, "status.loadBalancer.ingress[\(i)].ip") }
            if let m = ing.ipMode, m != "VIP", m != "Proxy" { fail("status.loadBalancer.ingress[\(i)].ipMode", "unknown ipMode \"\(m)\"") }
            ingress.append(LoadBalancerIngress(ip: ing.ip.flatMap { $0.isEmpty ? nil : $0 }, hostname: ing.hostname, ipMode: ing.ipMode))
        }
        return Service(meta: meta, type: type, clusterIP: spec.clusterIP, clusterIPs: spec.clusterIPs ?? [],
                       ipFamilies: spec.ipFamilies ?? [], ipFamilyPolicy: spec.ipFamilyPolicy, ports: ports, externalIPs: spec.externalIPs ?? [],
                       externalName: spec.externalName, sessionAffinity: affinity, affinityTimeoutSeconds: timeout,
                       internalTrafficPolicy: itp ?? .cluster, externalTrafficPolicy: etp ?? .cluster,
                       trafficDistribution: spec.trafficDistribution,
                       publishNotReadyAddresses: spec.publishNotReadyAddresses ?? false,
                       healthCheckNodePort: hc, loadBalancerSourceRanges: spec.loadBalancerSourceRanges ?? [],
                       loadBalancerIngress: ingress)
    }

    mutating func endpointSlice(_ w: WireEndpointSlice, raw: RawObject) -> EndpointSlice? {
        let meta = meta(w.metadata, raw: raw)
        guard let addressTypeText = w.addressType else {
            fail("addressType", "missing field")
            return nil
        }
        let addressType = AddressType(rawValue: addressTypeText)
        var ports: [EndpointPort] = []
        for (i, p) in (w.ports ?? []).enumerated() {
            let f = "ports[\(i)]"
            let number = port(p.port, "\(f).port", required: false, allowZero: true)
            ports.append(EndpointPort(name: p.name ?? "", proto: proto(p.protocol, "\(f).protocol"), port: number))
        }
        var endpoints: [Endpoint] = []
        for (i, e) in (w.endpoints ?? []).enumerated() {
            let f = "endpoints[\(i)]"
            let addresses = e.addresses ?? []
            // An endpoint with an address that is wrong for the slice is dropped alone; the slice stays.
            if addressType == .ipv4 || addressType == .ipv6 {
                let want: IPFamily = addressType == .ipv4 ? .ipv4 : .ipv6
                if let bad = addresses.enumerated().first(where: { IPFamily(address: $0.element) != want }) {
                    warn("\(f).addresses[\(bad.offset)]", "\"\(bad.element)\" is not an \(want.rawValue) address; endpoint skipped")
                    continue
                }
            }
            let c = e.conditions
            endpoints.append(Endpoint(
                addresses: addresses,
                conditions: EndpointConditions(ready: c?.ready, serving: c?.serving, terminating: c?.terminating),
                nodeName: e.nodeName, zone: e.zone,
                zoneHints: e.hints?.forZones.map { $0.compactMap(\.name) },
                nodeHints: e.hints?.forNodes.map { $0.compactMap(\.name) },
                targetRef: e.targetRef.map { ObjectReference(kind: $0.kind, namespace: $0.namespace, name: $0.name) }))
        }
        return EndpointSlice(meta: meta, addressType: addressType, endpoints: endpoints, ports: ports)
    }

    mutating func node(_ w: WireNode, raw: RawObject) -> Node? {
        let meta = meta(w.metadata, raw: raw)
        var addresses: [NodeAddress] = []
        for (i, a) in (w.status?.addresses ?? []).enumerated() {
            guard let type = a.type, let address = a.address else {
                warn("status.addresses[\(i)]", "address without type or address; skipped")
                continue
            }
            if type == "InternalIP" || type == "ExternalIP" {
                guard IPFamily(address: address) != nil else {
                    warn("status.addresses[\(i)].address", "\"\(address)\" is not an IP address; skipped")
                    continue
                }
            }
            addresses.append(NodeAddress(type: type, address: address))
        }
        let deleting = w.metadata?.deletionTimestamp.map { !$0.isEmpty } ?? false
        var taints: [String] = []
        for (i, t) in (w.spec?.taints ?? []).enumerated() {
            guard let key = t.key, !key.isEmpty else {
                warn("spec.taints[\(i)].key", "taint without a key; skipped")
                continue
            }
            taints.append(key)
        }
        var node = Node(meta: meta, addresses: addresses, beingDeleted: deleting, taintKeys: taints)
        for (i, text) in (w.spec?.podCIDRs ?? w.spec?.podCIDR.map { [$0] } ?? []).enumerated() {
            guard let p = IPPrefix(text) else {
                warn("spec.podCIDRs[\(i)]", "\"\(text)\" is not a CIDR; skipped")
                continue
            }
            node.podCIDRs.append(p)
        }
        return node
    }
}

// MARK: - Wire shapes (lenient: everything optional; unknown fields ignored)

struct WireMeta: Decodable {
    var name: String?
    var namespace: String?
    var labels: [String: String]?
    var annotations: [String: String]?
    var resourceVersion: String?
    var deletionTimestamp: String?
}

struct WireIntOrString: Decodable {
    var value: TargetPort
    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let i = try? c.decode(Int.self) { value = .number(i) } else { value = .name(try c.decode(String.self)) }
    }
}

struct WireService: Decodable {
    struct Port: Decodable {
        var name: String?
        var `protocol`: String?
        var port: Int?
        var targetPort: WireIntOrString?
        var nodePort: Int?
    }
    struct ClientIPConfig: Decodable { var timeoutSeconds: Int? }
    struct AffinityConfig: Decodable { var clientIP: ClientIPConfig? }
    struct Spec: Decodable {
        var type: String?
        var clusterIP: String?
        var clusterIPs: [String]?
        var ipFamilies: [String]?
        var ipFamilyPolicy: String?
        var ports: [Port]?
        var externalIPs: [String]?
        var externalName: String?
        var sessionAffinity: String?
        var sessionAffinityConfig: AffinityConfig?
        var internalTrafficPolicy: String?
        var externalTrafficPolicy: String?
        var trafficDistribution: String?
        var publishNotReadyAddresses: Bool?
        var healthCheckNodePort: Int?
        var loadBalancerSourceRanges: [String]?
    }
    struct Ingress: Decodable {
        var ip: String?
        var hostname: String?
        var ipMode: String?
    }
    struct LBStatus: Decodable { var ingress: [Ingress]? }
    struct Status: Decodable { var loadBalancer: LBStatus? }

    var metadata: WireMeta?
    var spec: Spec?
    var status: Status?
}

struct WireEndpointSlice: Decodable {
    struct Conditions: Decodable {
        var ready: Bool?
        var serving: Bool?
        var terminating: Bool?
    }
    struct Named: Decodable { var name: String? }
    struct Hints: Decodable {
        var forZones: [Named]?
        var forNodes: [Named]?
    }
    struct Ref: Decodable {
        var kind: String?
        var namespace: String?
        var name: String?
    }
    struct Endpoint: Decodable {
        var addresses: [String]?
        var conditions: Conditions?
        var nodeName: String?
        var zone: String?
        var hints: Hints?
        var targetRef: Ref?
    }
    struct Port: Decodable {
        var name: String?
        var `protocol`: String?
        var port: Int?
    }

    var metadata: WireMeta?
    var addressType: String?
    var endpoints: [Endpoint]?
    var ports: [Port]?
}

struct WireNode: Decodable {
    struct Address: Decodable {
        var type: String?
        var address: String?
    }
    struct Status: Decodable { var addresses: [Address]? }
    struct Taint: Decodable { var key: String? }
    struct Spec: Decodable {
        var taints: [Taint]?
        var podCIDR: String?
        var podCIDRs: [String]?
    }

    var metadata: WireMeta?
    var spec: Spec?
    var status: Status?
}
