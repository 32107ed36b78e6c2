/// The API's objects as they arrive, read field by field from the bytes (JSONReader): every
/// field optional, unknown fields skipped, a wrong type an error naming its path. The Validator
/// (KubeDecoding.swift) turns them into the checked model types.

/// The top-level "kind", read leniently: the source's identity check, not the decoder, judges it
/// (a kind that is not a string was never an error of the object's).
struct WireKind {
    var name: String?
    var unreadable = false

    mutating func read(_ r: inout JSONReader) throws(JSONError) {
        if try r.peek() == .string { name = try r.readString() } else { unreadable = true; try r.skipValue() }
    }
}

struct WireMeta {
    var name: String?
    var namespace: String?
    var labels: [String: String]?
    var annotations: [String: String]?
    var resourceVersion: String?
    var deletionTimestamp: String?

    /// The annotations Veer reads; the rest (kubectl's last-applied-configuration can be kilobytes)
    /// are never stored.
    static func keepsAnnotation(_ key: JSONKey) -> Bool {
        key == "endpoints.kubernetes.io/last-change-trigger-time"
    }

    /// The labels Veer reads, as the shared key strings (no copy per object); the rest are
    /// checked to be strings, as the API's own decoder would, and dropped.
    static func keptLabel(_ key: JSONKey) -> String? {
        switch key {
        case "kubernetes.io/service-name": KubeLabel.serviceName
        case "service.kubernetes.io/service-proxy-name": KubeLabel.serviceProxyName
        case "service.kubernetes.io/headless": KubeLabel.headless
        case "topology.kubernetes.io/zone": KubeLabel.zone
        default: nil
        }
    }

    init(_ r: inout JSONReader) throws(JSONError) {
        try r.forEachField { r, key throws(JSONError) in
            switch key {
            case "name": name = try r.optionalString()
            case "namespace": namespace = try r.optionalString()
            case "labels": labels = try r.optionalStringMap(storingAs: WireMeta.keptLabel)
            case "annotations": annotations = try r.optionalStringMap(keeping: WireMeta.keepsAnnotation)
            case "resourceVersion": resourceVersion = try r.optionalString()
            case "deletionTimestamp": deletionTimestamp = try r.optionalString()
            default: try r.skipValue()
            }
        }
    }
}

/// A port of a Service or of an EndpointSlice, read by one reader: a slice's ports have no
/// targetPort or nodePort (nil here), and the slice's Validator reads only the first three.
struct WirePort {
    var name: String?
    var `protocol`: String?
    var port: Int?
    var targetPort: TargetPort?
    var nodePort: Int?

    init(_ r: inout JSONReader) throws(JSONError) {
        try r.forEachField { r, key throws(JSONError) in
            switch key {
            case "name": name = try r.optionalString()
            case "protocol": `protocol` = try r.optionalString()
            case "port": port = try r.optionalInt()
            case "nodePort": nodePort = try r.optionalInt()
            case "targetPort":
                switch try r.peek() {
                case .null: _ = try r.skipNull()
                case .number: targetPort = .number(try r.readInt())
                case .string: targetPort = .name(try r.readString())
                default: throw JSONError(problem: .type(expected: "string"))
                }
            default: try r.skipValue()
            }
        }
    }
}

struct WireService {
    typealias Port = WirePort
    struct Ingress {
        var ip: String?
        var hostname: String?
        var ipMode: String?
    }
    struct Spec {
        var type: String?
        var clusterIP: String?
        var clusterIPs: [String]?
        var ipFamilies: [String]?
        var ipFamilyPolicy: String?
        var ports: [Port]?
        var externalIPs: [String]?
        var externalName: String?
        var sessionAffinity: String?
        var affinityTimeoutSeconds: Int?
        var internalTrafficPolicy: String?
        var externalTrafficPolicy: String?
        var trafficDistribution: String?
        var publishNotReadyAddresses: Bool?
        var healthCheckNodePort: Int?
        var loadBalancerSourceRanges: [String]?
    }

    var metadata: WireMeta?
    var kind = WireKind()
    var spec = Spec()
    var ingress: [Ingress]?

    init(_ r: inout JSONReader) throws(JSONError) {
        try r.forEachField { r, key throws(JSONError) in
            switch key {
            case "kind": try kind.read(&r)
            case "metadata": metadata = try r.optional { r throws(JSONError) in try WireMeta(&r) }
            case "spec": if !(try r.skipNull()) { try readSpec(&r) }
            case "status":
                try r.optionalObject { r, key throws(JSONError) in
                    guard key == "loadBalancer" else { return try r.skipValue() }
                    try r.optionalObject { r, key throws(JSONError) in
                        guard key == "ingress" else { return try r.skipValue() }
                        ingress = try r.optionalList { r throws(JSONError) in
                            var ing = Ingress()
                            try r.forEachField { r, key throws(JSONError) in
                                switch key {
                                case "ip": ing.ip = try r.optionalString()
                                case "hostname": ing.hostname = try r.optionalString()
                                case "ipMode": ing.ipMode = try r.optionalString()
                                default: try r.skipValue()
                                }
                            }
                            return ing
                        }
                    }
                }
            default: try r.skipValue()
            }
        }
    }

    private mutating func readSpec(_ r: inout JSONReader) throws(JSONError) {
        try r.forEachField { r, key throws(JSONError) in
            switch key {
            case "type": spec.type = try r.optionalString()
            case "clusterIP": spec.clusterIP = try r.optionalString()
            case "clusterIPs": spec.clusterIPs = try r.optionalStringList()
            case "ipFamilies": spec.ipFamilies = try r.optionalStringList()
            case "ipFamilyPolicy": spec.ipFamilyPolicy = try r.optionalString()
            case "ports": spec.ports = try r.optionalList { r throws(JSONError) in try WirePort(&r) }
            case "externalIPs": spec.externalIPs = try r.optionalStringList()
            case "externalName": spec.externalName = try r.optionalString()
            case "sessionAffinity": spec.sessionAffinity = try r.optionalString()
            case "sessionAffinityConfig":
                try r.optionalObject { r, key throws(JSONError) in
                    guard key == "clientIP" else { return try r.skipValue() }
                    try r.optionalObject { r, key throws(JSONError) in
                        guard key == "timeoutSeconds" else { return try r.skipValue() }
                        spec.affinityTimeoutSeconds = try r.optionalInt()
                    }
                }
            case "internalTrafficPolicy": spec.internalTrafficPolicy = try r.optionalString()
            case "externalTrafficPolicy": spec.externalTrafficPolicy = try r.optionalString()
            case "trafficDistribution": spec.trafficDistribution = try r.optionalString()
            case "publishNotReadyAddresses": spec.publishNotReadyAddresses = try r.optionalBool()
            case "healthCheckNodePort": spec.healthCheckNodePort = try r.optionalInt()
            case "loadBalancerSourceRanges": spec.loadBalancerSourceRanges = try r.optionalStringList()
            default: try r.skipValue()
            }
        }
    }
}

struct WireEndpointSlice {
    struct Endpoint {
        var addresses: [String]?
        var ready: Bool?
        var serving: Bool?
        var terminating: Bool?
        var nodeName: String?
        var zone: String?
        var zoneHints: [String]?
        var nodeHints: [String]?
        var targetRef: ObjectReference?
    }
    typealias Port = WirePort

    var metadata: WireMeta?
    var kind = WireKind()
    var addressType: String?
    var endpoints: [Endpoint]?
    var ports: [Port]?

    init(_ r: inout JSONReader) throws(JSONError) {
        try r.forEachField { r, key throws(JSONError) in
            switch key {
            case "kind": try kind.read(&r)
            case "metadata": metadata = try r.optional { r throws(JSONError) in try WireMeta(&r) }
            case "addressType": addressType = try r.optionalString()
            case "endpoints": endpoints = try r.optionalList { r throws(JSONError) in try Self.endpoint(&r) }
            case "ports": ports = try r.optionalList { r throws(JSONError) in try WirePort(&r) }
            default: try r.skipValue()
            }
        }
    }

    private static func endpoint(_ r: inout JSONReader) throws(JSONError) -> Endpoint {
        var e = Endpoint()
        try r.forEachField { r, key throws(JSONError) in
            switch key {
            case "addresses": e.addresses = try r.optionalStringList()
            case "conditions":
                try r.optionalObject { r, key throws(JSONError) in
                    switch key {
                    case "ready": e.ready = try r.optionalBool()
                    case "serving": e.serving = try r.optionalBool()
                    case "terminating": e.terminating = try r.optionalBool()
                    default: try r.skipValue()
                    }
                }
            case "nodeName": e.nodeName = try r.optionalString()
            case "zone": e.zone = try r.optionalString()
            case "hints":
                try r.optionalObject { r, key throws(JSONError) in
                    switch key {
                    case "forZones": e.zoneHints = try r.optionalList { r throws(JSONError) in try r.nameField() }?.compactMap { $0 }
                    case "forNodes": e.nodeHints = try r.optionalList { r throws(JSONError) in try r.nameField() }?.compactMap { $0 }
                    default: try r.skipValue()
                    }
                }
            case "targetRef":
                if !(try r.skipNull()) {
                    var ref = ObjectReference(kind: nil, namespace: nil, name: nil)
                    try r.forEachField { r, key throws(JSONError) in
                        switch key {
                        case "kind": ref.kind = try r.optionalString()
                        case "namespace": ref.namespace = try r.optionalString()
                        case "name": ref.name = try r.optionalString()
                        default: try r.skipValue()
                        }
                    }
                    e.targetRef = ref
                }
            default: try r.skipValue()
            }
        }
        return e
    }
}

struct WireNode {
    struct Address {
        var type: String?
        var address: String?
    }

    var metadata: WireMeta?
    var kind = WireKind()
    var addresses: [Address]?
    /// Taint keys (nil for a taint without one).
    var taints: [String?]?
    var podCIDR: String?
    var podCIDRs: [String]?

    init(_ r: inout JSONReader) throws(JSONError) {
        try r.forEachField { r, key throws(JSONError) in
            switch key {
            case "kind": try kind.read(&r)
            case "metadata": metadata = try r.optional { r throws(JSONError) in try WireMeta(&r) }
            case "spec":
                try r.optionalObject { r, key throws(JSONError) in
                    switch key {
                    case "taints":
                        taints = try r.optionalList { r throws(JSONError) in
                            var k: String?
                            try r.forEachField { r, key throws(JSONError) in
                                if key == "key" { k = try r.optionalString() } else { try r.skipValue() }
                            }
                            return k
                        }
                    case "podCIDR": podCIDR = try r.optionalString()
                    case "podCIDRs": podCIDRs = try r.optionalStringList()
                    default: try r.skipValue()
                    }
                }
            case "status":
                try r.optionalObject { r, key throws(JSONError) in
                    guard key == "addresses" else { return try r.skipValue() }
                    addresses = try r.optionalList { r throws(JSONError) in
                        var a = Address()
                        try r.forEachField { r, key throws(JSONError) in
                            switch key {
                            case "type": a.type = try r.optionalString()
                            case "address": a.address = try r.optionalString()
                            default: try r.skipValue()
                            }
                        }
                        return a
                    }
                }
            default: try r.skipValue()
            }
        }
    }
}

// MARK: - Optional fields: null reads as absent, as it does for Kubernetes' own decoders.

extension JSONReader {
    mutating func optional<T>(_ read: (inout JSONReader) throws(JSONError) -> T) throws(JSONError) -> T? {
        if try skipNull() { return nil }
        return try read(&self)
    }

    mutating func optionalString() throws(JSONError) -> String? { try skipNull() ? nil : try readString() }
    mutating func optionalInt() throws(JSONError) -> Int? { try skipNull() ? nil : try readInt() }
    mutating func optionalBool() throws(JSONError) -> Bool? { try skipNull() ? nil : try readBool() }

    /// An object whose fields `body` reads; null is an absent object.
    mutating func optionalObject(_ body: (inout JSONReader, JSONKey) throws(JSONError) -> Void) throws(JSONError) {
        if try skipNull() { return }
        try forEachField(body)
    }

    mutating func optionalList<T>(_ element: (inout JSONReader) throws(JSONError) -> T) throws(JSONError) -> [T]? {
        if try skipNull() { return nil }
        var out: [T] = []
        try forEachElement { r, _ throws(JSONError) in out.append(try element(&r)) }
        return out
    }

    /// A list of strings; a null element is an error, as it is for a Go `[]string`.
    mutating func optionalStringList() throws(JSONError) -> [String]? {
        try optionalList { r throws(JSONError) in try r.readString() }
    }

    /// A map of strings, keeping the keys `keep` accepts (the others are skipped unread).
    mutating func optionalStringMap(keeping keep: (JSONKey) -> Bool) throws(JSONError) -> [String: String]? {
        if try skipNull() { return nil }
        var out: [String: String] = [:]
        try forEachField { r, key throws(JSONError) in
            if keep(key) { out[key.string] = try r.readString() } else { try r.skipValue() }
        }
        return out
    }

    /// A map of strings, keeping the keys `store` names (under the name it returns); the others
    /// are checked to be strings and skipped.
    mutating func optionalStringMap(storingAs store: (JSONKey) -> String?) throws(JSONError) -> [String: String]? {
        if try skipNull() { return nil }
        var out: [String: String] = [:]
        try forEachField { r, key throws(JSONError) in
            if let name = store(key) {
                out[name] = try r.readString()
            } else {
                guard try r.peek() == .string else { _ = try r.readString(); return }  // throws the type error
                try r.skipValue()
            }
        }
        return out
    }

    /// `{"name": "..."}` (a hint): the name, nil when absent.
    mutating func nameField() throws(JSONError) -> String? {
        var name: String?
        try forEachField { r, key throws(JSONError) in
            if key == "name" { name = try r.optionalString() } else { try r.skipValue() }
        }
        return name
    }
}
