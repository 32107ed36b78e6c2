/// kube-proxy's service health checks: which Services get one on this node, on which port, and
/// how many local endpoints it reports.
///
/// Sources (kubernetes/kubernetes, pkg/proxy): `ServicePort.NeedsHealthCheck` and
/// `ServicePortMap.HealthCheckNodePorts` (serviceport.go, servicechangetracker.go) choose the
/// services; `EndpointsMap.LocalReadyEndpoints` (endpoints.go) counts, per service, the
/// **distinct IPs** of endpoints that are on this node and Ready, over every port of every slice:
/// a pod exposing two ports counts once, and a terminating endpoint never counts (Ready is false
/// while terminating), so a node left with only terminating endpoints answers 503 while still
/// forwarding to them (KEP-1669).
public struct HealthCheckTarget: Hashable, Sendable {
    public var service: ObjectKey
    /// `spec.healthCheckNodePort`.
    public var port: UInt16
    public var localEndpoints: Int

    public init(service: ObjectKey, port: UInt16, localEndpoints: Int) {
        self.service = service
        self.port = port
        self.localEndpoints = localEndpoints
    }
}

public enum ServiceHealth {
    /// The health check this service needs on `nodeName`, or nil: only `type: LoadBalancer` with
    /// `externalTrafficPolicy: Local` and a non-zero `healthCheckNodePort`, among the services
    /// kube-proxy proxies at all (not headless, not ExternalName, not owned by another proxy).
    public static func target(_ service: Service, slices: [EndpointSlice], nodeName: String) -> HealthCheckTarget? {
        guard service.type == .loadBalancer, service.externalTrafficPolicy == .local,
              let port = service.healthCheckNodePort, port != 0,
              service.meta.labels[KubeLabel.serviceProxyName] == nil,
              service.meta.labels[KubeLabel.headless] == nil else { return nil }
        let primary = service.clusterIP ?? service.clusterIPs.first
        guard let primary, !primary.isEmpty, primary != "None" else { return nil }
        return HealthCheckTarget(service: service.key, port: port,
                                 localEndpoints: localReadyEndpoints(slices, nodeName: nodeName))
    }

    /// One service of the store; nil when it is gone or needs no health check.
    public static func target(_ store: ServiceStore, service key: ObjectKey, nodeName: String) -> HealthCheckTarget? {
        guard let service = store.services[key] else { return nil }
        return target(service, slices: store.slices(for: key), nodeName: nodeName)
    }

    /// Every service of the store that needs a health check on this node.
    public static func targets(_ store: ServiceStore, nodeName: String) -> [ObjectKey: HealthCheckTarget] {
        var out: [ObjectKey: HealthCheckTarget] = [:]
        for key in store.services.keys {
            if let t = target(store, service: key, nodeName: nodeName) { out[key] = t }
        }
        return out
    }

    /// `EndpointsMap.LocalReadyEndpoints`: distinct addresses of endpoints whose nodeName is this
    /// node and whose Ready condition is true (unset counts as ready), over the slice ports that
    /// carry a port number (kube-proxy's slice cache keeps no endpoint for the others).
    public static func localReadyEndpoints(_ slices: [EndpointSlice], nodeName: String) -> Int {
        var ips = Set<String>()
        for slice in slices where slice.addressType.family != nil {
            guard slice.ports.contains(where: { ($0.port ?? 0) != 0 }) else { continue }
            for e in slice.endpoints where e.nodeName == nodeName && e.conditions.isReady {
                guard let first = e.addresses.first else { continue }
                // Normalized, so "fd00::1" and "fd00:0::1" are one endpoint.
                ips.insert(IPAddress(first)?.description ?? first)
            }
        }
        return ips.count
    }
}
