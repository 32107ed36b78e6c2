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
public struct DecodeOutcome: Hashable, Sendable {
    /// nil when the object was rejected; `errors` then says why.
    public var object: KubeObject?
    /// Why the whole object was rejected.
    public var errors: [ObjectError]
    /// Parts skipped while the object itself was kept (an endpoint with a bad address).
    public var warnings: [ObjectError]
}

public enum KubeDecoder {
    /// Decodes and validates one object, straight from its bytes (or returns what its source
    /// decoded already). Never throws, never traps.
    public static func decode(_ raw: RawObject) -> DecodeOutcome {
        if let decoded = raw.decoded { return decoded }
        return decode(raw, json: raw.json)
    }

    /// A list item of `kind` read in one pass, its identity taken from what was read: what a
    /// list page costs is one reading of its bytes. nil when the item does not read whole or
    /// does not name itself plainly (no name or namespace, another kind); the reader is then
    /// anywhere inside it, and the caller reads it again the long way, which names the problem.
    public static func decodeListItem(_ r: inout JSONReader, kind: ResourceKind, origin: String) -> RawObject? {
        /// The item named by its own metadata, with what `validate` made of it; nil as above.
        func named(_ m: WireMeta?, _ k: WireKind, _ validate: (inout Validator, RawObject) -> KubeObject?) -> RawObject? {
            guard !k.unreadable, k.name == nil || k.name == kind.rawValue, let name = m?.name, !name.isEmpty else { return nil }
            let namespace = kind != .node ? m?.namespace ?? "" : ""
            guard kind == .node || !namespace.isEmpty else { return nil }
            var raw = RawObject(kind: kind, namespace: namespace, name: name, resourceVersion: m?.resourceVersion, json: Data(), origin: origin)
            var v = Validator(kind: kind.rawValue, object: raw.key, origin: origin)
            let object = validate(&v, raw)
            raw.decoded = DecodeOutcome(object: v.errors.isEmpty ? object : nil, errors: v.errors, warnings: v.warnings)
            return raw
        }
        do throws(JSONError) {
            switch kind {
            case .service:
                let w = try WireService(&r)
                return named(w.metadata, w.kind) { v, raw in v.service(w, raw: raw).map(KubeObject.service) }
            case .endpointSlice:
                let w = try WireEndpointSlice(&r)
                return named(w.metadata, w.kind) { v, raw in v.endpointSlice(w, raw: raw).map(KubeObject.endpointSlice) }
            case .node:
                let w = try WireNode(&r)
                return named(w.metadata, w.kind) { v, raw in v.node(w, raw: raw).map(KubeObject.node) }
            }
        } catch {
            return nil
        }
    }

    /// Decodes `raw` from `json`, its bytes wherever they are (a list page's, read in place).
    public static func decode(_ raw: RawObject, json: some ContiguousBytes) -> DecodeOutcome {
        var v = Validator(kind: raw.kind.rawValue, object: raw.key, origin: raw.origin)
        var object: KubeObject?
        do throws(JSONError) {
            object = try JSONReader.read(json) { r throws(JSONError) -> KubeObject? in
                let decoded: KubeObject?
                switch raw.kind {
                case .service: decoded = v.service(try WireService(&r), raw: raw).map(KubeObject.service)
                case .endpointSlice: decoded = v.endpointSlice(try WireEndpointSlice(&r), raw: raw).map(KubeObject.endpointSlice)
                case .node: decoded = v.node(try WireNode(&r), raw: raw).map(KubeObject.node)
                }
                try r.expectEnd()
                return decoded
            }
        } catch {
            v.fail(error.path, error.message)
            object = nil
        }
        return DecodeOutcome(object: v.errors.isEmpty ? object : nil, errors: v.errors, warnings: v.warnings)
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
        // Namespaces repeat across thousands of objects: one shared copy of each.
        ObjectMeta(name: raw.name, namespace: NameTable.shared.interned(raw.namespace), labels: wire?.labels ?? [:],
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
        let spec = w.spec
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
            if let number { ports.append(ServicePort(name: p.name ?? "", proto: proto, port: number, targetPort: p.targetPort, nodePort: nodePort)) }
        }
        var affinity = SessionAffinity.none
        if let a = spec.sessionAffinity {
            if let v = SessionAffinity(rawValue: a) { affinity = v } else { fail("spec.sessionAffinity", "unknown session affinity \"\(a)\"") }
        }
        var timeout = Service.defaultAffinityTimeout
        if let t = spec.affinityTimeoutSeconds {
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
        for (i, ing) in (w.ingress ?? []).enumerated() {
            if let a = ing.ip, !a.isEmpty { _ = ip(a, "status.loadBalancer.ingress[\(i)].ip") }
            if let m = ing.ipMode, m != "VIP", m != "Proxy" { fail("status.loadBalancer.ingress[\(i)].ipMode", "unknown ipMode \"\(m)\"") }
            ingress.append(LoadBalancerIngress(ip: ing.ip.flatMap { $0.isEmpty ? nil : $0 }, hostname: ing.hostname, ipMode: ing.ipMode))
        }
        return Service(meta: meta, type: type, clusterIP: spec.clusterIP, clusterIPs: spec.clusterIPs ?? [],
                       ipFamilies: SharedArrays.ipFamilies.interned(spec.ipFamilies ?? []), ipFamilyPolicy: spec.ipFamilyPolicy,
                       ports: SharedArrays.servicePorts.interned(ports), externalIPs: spec.externalIPs ?? [],
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
        endpoints.reserveCapacity(w.endpoints?.count ?? 0)  // kept for the slice's life: no growth slack
        var pods = PodName.Sharing()
        for (i, e) in (w.endpoints ?? []).enumerated() {
            let f = "endpoints[\(i)]"
            let addresses = e.addresses ?? []
            // Parsed once: the check below and the endpoint's binary address both use it.
            let first = addresses.count == 1 ? IPAddress(addresses[0]) : nil
            // An endpoint with an address that is wrong for the slice is dropped alone; the slice stays.
            if addressType == .ipv4 || addressType == .ipv6 {
                let want: IPFamily = addressType == .ipv4 ? .ipv4 : .ipv6
                let bad = addresses.count == 1
                    ? (first?.family == want ? nil : (offset: 0, element: addresses[0]))
                    : addresses.enumerated().first(where: { IPFamily(address: $0.element) != want })
                if let bad {
                    warn("\(f).addresses[\(bad.offset)]", "\"\(bad.element)\" is not an \(want.rawValue) address; endpoint skipped")
                    continue
                }
            }
            endpoints.append(Endpoint(
                addresses: addresses, parsed: first,
                conditions: EndpointConditions(ready: e.ready, serving: e.serving, terminating: e.terminating),
                nodeName: e.nodeName, zone: e.zone,
                zoneHints: e.zoneHints, nodeHints: e.nodeHints, targetRef: e.targetRef, pods: &pods))
        }
        return EndpointSlice(meta: meta, addressType: addressType, endpoints: endpoints, ports: SharedArrays.endpointPorts.interned(ports))
    }

    mutating func node(_ w: WireNode, raw: RawObject) -> Node? {
        let meta = meta(w.metadata, raw: raw)
        var addresses: [NodeAddress] = []
        for (i, a) in (w.addresses ?? []).enumerated() {
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
        for (i, key) in (w.taints ?? []).enumerated() {
            guard let key, !key.isEmpty else {
                warn("spec.taints[\(i)].key", "taint without a key; skipped")
                continue
            }
            taints.append(key)
        }
        var node = Node(meta: meta, addresses: addresses, beingDeleted: deleting, taintKeys: taints)
        for (i, text) in (w.podCIDRs ?? w.podCIDR.map { [$0] } ?? []).enumerated() {
            guard let p = IPPrefix(text) else {
                warn("spec.podCIDRs[\(i)]", "\"\(text)\" is not a CIDR; skipped")
                continue
            }
            node.podCIDRs.append(p)
        }
        return node
    }
}
