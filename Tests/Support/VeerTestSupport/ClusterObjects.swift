import Foundation

/// Kubernetes objects as the API server serves them (JSON), for the cluster tests.
public enum ClusterObjects {
    /// A Service with one TCP port `http` (port → targetPort 8080); `spec` entries are merged in.
    /// `clusterIP6` makes it dual stack (`RequireDualStack`, IPv4 first), as the API server does.
    public static func service(_ name: String, clusterIP: String, clusterIP6: String? = nil, port: Int = 80, nodePort: Int? = nil,
                               spec extra: [String: Any] = [:], status: [String: Any]? = nil) -> [String: Any] {
        var port: [String: Any] = ["name": "http", "port": port, "protocol": "TCP", "targetPort": 8080]
        if let nodePort { port["nodePort"] = nodePort }
        var spec: [String: Any] = ["clusterIP": clusterIP, "clusterIPs": [clusterIP], "ports": [port]]
        if let clusterIP6 {
            spec["clusterIPs"] = [clusterIP, clusterIP6]
            spec["ipFamilies"] = ["IPv4", "IPv6"]
            spec["ipFamilyPolicy"] = "RequireDualStack"
        }
        for (k, v) in extra { spec[k] = v }
        var object: [String: Any] = ["apiVersion": "v1", "kind": "Service",
                                     "metadata": ["name": name, "namespace": "default"], "spec": spec]
        if let status { object["status"] = status }
        return object
    }

    public enum PodState: Sendable { case ready, terminating, notReady }

    /// One EndpointSlice of `service` listing `pods` on port 8080, each with its node and zone;
    /// `zoneHints` adds hints.forZones = the pod's own zone (what the EndpointSlice controller
    /// writes when every zone has enough endpoints).
    /// `ipv6`: the IPv6 slice (the pods' `ip6`, named `<service>-v6` unless `name` is given), which
    /// a dual-stack Service has beside its IPv4 one.
    public static func slice(_ service: String, name: String? = nil, _ pods: [ClusterSandbox.Pod], in cluster: ClusterSandbox,
                             zoneHints: Bool = false, states: [String: PodState] = [:], ipv6: Bool = false) -> [String: Any] {
        [
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": ["name": name ?? (ipv6 ? "\(service)-v6" : "\(service)-1"), "namespace": "default",
                         "labels": ["kubernetes.io/service-name": service]],
            "addressType": ipv6 ? "IPv6" : "IPv4",
            "ports": [["name": "http", "port": 8080, "protocol": "TCP"]],
            "endpoints": pods.map { pod -> [String: Any] in
                let node = cluster.nodes[pod.node - 1]
                let conditions: [String: Bool]
                switch states[pod.name] ?? .ready {
                case .ready: conditions = ["ready": true, "serving": true, "terminating": false]
                case .terminating: conditions = ["ready": false, "serving": true, "terminating": true]
                case .notReady: conditions = ["ready": false, "serving": false, "terminating": false]
                }
                var e: [String: Any] = ["addresses": [ipv6 ? pod.ip6 ?? "" : pod.ip], "conditions": conditions, "nodeName": node.name, "zone": node.zone,
                                        "targetRef": ["kind": "Pod", "name": pod.name, "namespace": "default"]]
                if zoneHints { e["hints"] = ["forZones": [["name": node.zone]]] }
                return e
            },
        ]
    }
}
