import Foundation

/// Kubernetes objects as the tests need them, built once: written into a manifest directory as
/// YAML (`Manifest.yaml`) or posted to the fake API server as they are (JSON-style values).
/// Defaults are the common case: namespace `default`, one TCP port `http` (80 → 8080).
public enum Manifest {
    public typealias Object = [String: Any]

    /// A Service. `type` defaults to NodePort when a `nodePort` is given (else ClusterIP, as the
    /// API server does); `spec` adds or overrides spec fields (traffic policies, affinity, …).
    public static func service(_ name: String, namespace: String = "default", clusterIP: String, port: Int = 80,
                               portName: String = "http", targetPort: Int = 8080, nodePort: Int? = nil,
                               type: String? = nil, labels: [String: String] = [:], spec: Object = [:],
                               status: Object? = nil) -> Object {
        var p: Object = ["name": portName, "port": port, "protocol": "TCP", "targetPort": targetPort]
        if let nodePort { p["nodePort"] = nodePort }
        var s: Object = ["clusterIP": clusterIP, "ports": [p]]
        if let type = type ?? (nodePort == nil ? nil : "NodePort") { s["type"] = type }
        s.merge(spec) { $1 }
        var metadata: Object = ["name": name, "namespace": namespace]
        if !labels.isEmpty { metadata["labels"] = labels }
        var o: Object = ["apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": s]
        if let status { o["status"] = status }
        return o
    }

    /// An EndpointSlice of `service` with one TCP port; `endpoints` from `endpoint(…)`.
    public static func endpointSlice(_ name: String, namespace: String = "default", service: String,
                                     addressType: String = "IPv4", portName: String = "http", port: Int = 8080,
                                     endpoints: [Object]) -> Object {
        ["apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": ["name": name, "namespace": namespace,
                      "labels": ["kubernetes.io/service-name": service]] as Object,
         "addressType": addressType,
         "ports": [["name": portName, "port": port, "protocol": "TCP"] as Object],
         "endpoints": endpoints]
    }

    /// One endpoint. Conditions left nil are left out (the API's defaults: serving = ready,
    /// terminating = false); `pod` sets a Pod targetRef, `hint` a zone hint.
    public static func endpoint(_ ip: String, ready: Bool = true, serving: Bool? = nil, terminating: Bool? = nil,
                                node: String? = nil, zone: String? = nil, hint: String? = nil,
                                pod: String? = nil, namespace: String = "default") -> Object {
        var conditions: Object = ["ready": ready]
        if let serving { conditions["serving"] = serving }
        if let terminating { conditions["terminating"] = terminating }
        var e: Object = ["addresses": [ip], "conditions": conditions]
        if let node { e["nodeName"] = node }
        if let zone { e["zone"] = zone }
        if let hint { e["hints"] = ["forZones": [["name": hint]]] }
        if let pod { e["targetRef"] = ["kind": "Pod", "name": pod, "namespace": namespace] as Object }
        return e
    }

    /// A Node, with its zone label, InternalIP and podCIDRs where given.
    public static func node(_ name: String, zone: String? = nil, address: String? = nil, podCIDRs: [String]? = nil) -> Object {
        var metadata: Object = ["name": name]
        if let zone { metadata["labels"] = ["topology.kubernetes.io/zone": zone] }
        var o: Object = ["apiVersion": "v1", "kind": "Node", "metadata": metadata]
        if let podCIDRs { o["spec"] = ["podCIDRs": podCIDRs] }
        if let address { o["status"] = ["addresses": [["type": "InternalIP", "address": address]]] }
        return o
    }

    /// The objects as one YAML stream, `---` between documents.
    public static func yaml(_ objects: Object...) -> String { yaml(objects) }

    public static func yaml(_ objects: [Object]) -> String {
        objects.map { lines($0, indent: "").joined(separator: "\n") + "\n" }.joined(separator: "---\n")
    }

    // Block style, keys in a stable order (apiVersion, kind, metadata first, as kubectl writes
    // them); every string double-quoted, so no address or "None" is read as another type.
    private static let leading = ["apiVersion", "kind", "metadata", "name", "namespace"]

    private static func keys(_ o: Object) -> [String] {
        o.keys.sorted { a, b in
            let (ia, ib) = (leading.firstIndex(of: a) ?? leading.count, leading.firstIndex(of: b) ?? leading.count)
            return ia != ib ? ia < ib : a < b
        }
    }

    private static func lines(_ o: Object, indent: String) -> [String] {
        keys(o).flatMap { key -> [String] in
            let value = o[key]!
            if let inline = scalar(value) { return ["\(indent)\(key): \(inline)"] }
            return ["\(indent)\(key):"] + block(value, indent: indent + "  ")
        }
    }

    private static func block(_ value: Any, indent: String) -> [String] {
        if let o = value as? Object { return lines(o, indent: indent) }
        return (value as? [Any] ?? []).flatMap { item -> [String] in
            if let inline = scalar(item) { return ["\(indent)- \(inline)"] }
            let inner = block(item, indent: indent + "  ")
            guard let first = inner.first else { return ["\(indent)- {}"] }
            return ["\(indent)- " + first.dropFirst(indent.count + 2)] + inner.dropFirst()
        }
    }

    /// The one-line form of a scalar or an empty collection; nil for a non-empty collection.
    private static func scalar(_ value: Any) -> String? {
        switch value {
        case let b as Bool where type(of: value) == Bool.self: return b ? "true" : "false"
        case let i as Int: return "\(i)"
        case let s as String:
            let data = try! JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])
            return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
        case is NSNull: return "null"
        case let o as Object where o.isEmpty: return "{}"
        case let a as [Any] where a.isEmpty: return "[]"
        default: return nil
        }
    }
}
