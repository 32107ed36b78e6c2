/// The Kubernetes objects Veer reads, reduced to what a service proxy needs, already validated.
///
/// Values are decoded from JSON in `KubeDecoding.swift`; every field here was checked there, so the
/// selector can rely on it (ports in range, IPs well-formed, protocols known). IP addresses are kept as
/// text because IPv6 ones are valid input that the IPv4 datapath skips, not errors.

/// Namespace and name: how the store keys objects and how reasons name them.
public struct ObjectKey: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var namespace: String
    public var name: String

    public init(namespace: String, name: String) {
        self.namespace = namespace
        self.name = name
    }

    public var description: String { namespace.isEmpty ? name : "\(namespace)/\(name)" }

    public static func < (a: Self, b: Self) -> Bool { (a.namespace, a.name) < (b.namespace, b.name) }
}

public struct ObjectMeta: Hashable, Sendable {
    public var name: String
    /// "" for cluster-scoped objects.
    public var namespace: String
    public var labels: [String: String]
    public var annotations: [String: String]
    public var resourceVersion: String?

    public init(name: String, namespace: String = "", labels: [String: String] = [:],
                annotations: [String: String] = [:], resourceVersion: String? = nil) {
        self.name = name
        self.namespace = namespace
        self.labels = labels
        self.annotations = annotations
        self.resourceVersion = resourceVersion
    }

    public var key: ObjectKey { ObjectKey(namespace: namespace, name: name) }
}

/// Well-known label keys.
public enum KubeLabel {
    /// On EndpointSlices: the Service they belong to.
    public static let serviceName = "kubernetes.io/service-name"
    /// On Services (and their slices): another proxy owns this service; kube-proxy skips every value.
    public static let serviceProxyName = "service.kubernetes.io/service-proxy-name"
    /// On Services and slices of headless services; kube-proxy's informer filters them out.
    public static let headless = "service.kubernetes.io/headless"
    /// On Nodes.
    public static let zone = "topology.kubernetes.io/zone"
}

// MARK: - Service

public struct ServiceType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let clusterIP = ServiceType(rawValue: "ClusterIP")
    public static let nodePort = ServiceType(rawValue: "NodePort")
    public static let loadBalancer = ServiceType(rawValue: "LoadBalancer")
    public static let externalName = ServiceType(rawValue: "ExternalName")
    static let known: Set<String> = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]

    public var description: String { rawValue }
}

public enum TrafficPolicy: String, Hashable, Sendable, Codable {
    case cluster = "Cluster"
    case local = "Local"
}

public enum SessionAffinity: String, Hashable, Sendable, Codable {
    case none = "None"
    case clientIP = "ClientIP"
}

public enum TargetPort: Hashable, Sendable {
    case number(Int)
    case name(String)
}

public struct ServicePort: Hashable, Sendable {
    /// "" for an unnamed port (API defaulting).
    public var name: String
    public var proto: L4Protocol
    public var port: UInt16
    /// Informational: kube-proxy takes the backend port from the slice, never from here.
    public var targetPort: TargetPort?
    /// nil when the service has no node port for this port.
    public var nodePort: UInt16?

    public init(name: String = "", proto: L4Protocol = .tcp, port: UInt16, targetPort: TargetPort? = nil,
                nodePort: UInt16? = nil) {
        self.name = name
        self.proto = proto
        self.port = port
        self.targetPort = targetPort
        self.nodePort = nodePort
    }
}

public struct LoadBalancerIngress: Hashable, Sendable {
    public var ip: String?
    public var hostname: String?
    /// "VIP", "Proxy" or nil (= VIP).
    public var ipMode: String?

    public init(ip: String? = nil, hostname: String? = nil, ipMode: String? = nil) {
        self.ip = ip
        self.hostname = hostname
        self.ipMode = ipMode
    }
}

/// A Service, with what most services leave unset (external IPs and name, a non-default affinity
/// timeout, traffic distribution, a health check node port, load balancer ranges and ingress)
/// in one box, nil otherwise: tens of thousands of services sit in the store's table, whose
/// buckets are as wide as the struct. Properties read and write as plain fields would.
public struct Service: Hashable, Sendable {
    public var meta: ObjectMeta
    public var type: ServiceType
    /// `spec.clusterIP` as written: an address, "None" (headless) or nil.
    public var clusterIP: String?
    public var clusterIPs: [String]
    /// "IPv4"/"IPv6", parallel to `clusterIPs`; empty on legacy objects.
    public var ipFamilies: [String]
    /// SingleStack, PreferDualStack or RequireDualStack. The API server reads it to allocate
    /// `clusterIPs`; kube-proxy (and Veer) go by `clusterIPs`/`ipFamilies` only. Kept for explanations.
    public var ipFamilyPolicy: String?
    public var ports: [ServicePort]
    public var sessionAffinity: SessionAffinity
    /// nil = Cluster.
    public var internalTrafficPolicy: TrafficPolicy
    public var externalTrafficPolicy: TrafficPolicy
    public var publishNotReadyAddresses: Bool
    private var extras: Extras?

    private final class Extras: Hashable, Sendable {
        let externalIPs: [String]
        let externalName: String?
        let affinityTimeoutSeconds: UInt32
        let trafficDistribution: String?
        let healthCheckNodePort: UInt16?
        let loadBalancerSourceRanges: [String]
        let loadBalancerIngress: [LoadBalancerIngress]

        init(externalIPs: [String], externalName: String?, affinityTimeoutSeconds: UInt32, trafficDistribution: String?,
             healthCheckNodePort: UInt16?, loadBalancerSourceRanges: [String], loadBalancerIngress: [LoadBalancerIngress]) {
            self.externalIPs = externalIPs
            self.externalName = externalName
            self.affinityTimeoutSeconds = affinityTimeoutSeconds
            self.trafficDistribution = trafficDistribution
            self.healthCheckNodePort = healthCheckNodePort
            self.loadBalancerSourceRanges = loadBalancerSourceRanges
            self.loadBalancerIngress = loadBalancerIngress
        }

        static let defaults = Extras(externalIPs: [], externalName: nil, affinityTimeoutSeconds: Service.defaultAffinityTimeout,
                                     trafficDistribution: nil, healthCheckNodePort: nil, loadBalancerSourceRanges: [],
                                     loadBalancerIngress: [])

        static func == (a: Extras, b: Extras) -> Bool {
            a.externalIPs == b.externalIPs && a.externalName == b.externalName && a.affinityTimeoutSeconds == b.affinityTimeoutSeconds
                && a.trafficDistribution == b.trafficDistribution && a.healthCheckNodePort == b.healthCheckNodePort
                && a.loadBalancerSourceRanges == b.loadBalancerSourceRanges && a.loadBalancerIngress == b.loadBalancerIngress
        }

        func hash(into h: inout Hasher) {
            h.combine(externalIPs)
            h.combine(externalName)
            h.combine(affinityTimeoutSeconds)
            h.combine(trafficDistribution)
            h.combine(healthCheckNodePort)
            h.combine(loadBalancerSourceRanges)
            h.combine(loadBalancerIngress)
        }

        /// nil when every field has its default: equal services store equally.
        static func boxed(_ e: Extras) -> Extras? { e == defaults ? nil : e }

        func with(externalIPs: [String]? = nil, externalName: String?? = nil, affinityTimeoutSeconds: UInt32? = nil,
                  trafficDistribution: String?? = nil, healthCheckNodePort: UInt16?? = nil,
                  loadBalancerSourceRanges: [String]? = nil, loadBalancerIngress: [LoadBalancerIngress]? = nil) -> Extras? {
            Extras.boxed(Extras(externalIPs: externalIPs ?? self.externalIPs, externalName: externalName ?? self.externalName,
                         affinityTimeoutSeconds: affinityTimeoutSeconds ?? self.affinityTimeoutSeconds,
                         trafficDistribution: trafficDistribution ?? self.trafficDistribution,
                         healthCheckNodePort: healthCheckNodePort ?? self.healthCheckNodePort,
                         loadBalancerSourceRanges: loadBalancerSourceRanges ?? self.loadBalancerSourceRanges,
                         loadBalancerIngress: loadBalancerIngress ?? self.loadBalancerIngress))
        }
    }

    private var rare: Extras { extras ?? .defaults }

    public var externalIPs: [String] {
        get { rare.externalIPs }
        set { extras = rare.with(externalIPs: newValue) }
    }
    public var externalName: String? {
        get { rare.externalName }
        set { extras = rare.with(externalName: .some(newValue)) }
    }
    /// `sessionAffinityConfig.clientIP.timeoutSeconds`, defaulted to 10800.
    public var affinityTimeoutSeconds: UInt32 {
        get { rare.affinityTimeoutSeconds }
        set { extras = rare.with(affinityTimeoutSeconds: newValue) }
    }
    /// Read by the EndpointSlice controller only; kept for explanations.
    public var trafficDistribution: String? {
        get { rare.trafficDistribution }
        set { extras = rare.with(trafficDistribution: .some(newValue)) }
    }
    public var healthCheckNodePort: UInt16? {
        get { rare.healthCheckNodePort }
        set { extras = rare.with(healthCheckNodePort: .some(newValue)) }
    }
    public var loadBalancerSourceRanges: [String] {
        get { rare.loadBalancerSourceRanges }
        set { extras = rare.with(loadBalancerSourceRanges: newValue) }
    }
    public var loadBalancerIngress: [LoadBalancerIngress] {
        get { rare.loadBalancerIngress }
        set { extras = rare.with(loadBalancerIngress: newValue) }
    }

    public static let defaultAffinityTimeout: UInt32 = 10800

    public init(meta: ObjectMeta, type: ServiceType = .clusterIP, clusterIP: String? = nil, clusterIPs: [String] = [],
                ipFamilies: [String] = [], ipFamilyPolicy: String? = nil, ports: [ServicePort] = [], externalIPs: [String] = [],
                externalName: String? = nil, sessionAffinity: SessionAffinity = .none,
                affinityTimeoutSeconds: UInt32 = Service.defaultAffinityTimeout,
                internalTrafficPolicy: TrafficPolicy = .cluster, externalTrafficPolicy: TrafficPolicy = .cluster,
                trafficDistribution: String? = nil, publishNotReadyAddresses: Bool = false,
                healthCheckNodePort: UInt16? = nil, loadBalancerSourceRanges: [String] = [],
                loadBalancerIngress: [LoadBalancerIngress] = []) {
        self.meta = meta
        self.type = type
        self.clusterIP = clusterIP
        self.clusterIPs = clusterIPs
        self.ipFamilies = ipFamilies
        self.ipFamilyPolicy = ipFamilyPolicy
        self.ports = ports
        self.sessionAffinity = sessionAffinity
        self.internalTrafficPolicy = internalTrafficPolicy
        self.externalTrafficPolicy = externalTrafficPolicy
        self.publishNotReadyAddresses = publishNotReadyAddresses
        self.extras = Extras.boxed(Extras(
            externalIPs: externalIPs, externalName: externalName, affinityTimeoutSeconds: affinityTimeoutSeconds,
            trafficDistribution: trafficDistribution, healthCheckNodePort: healthCheckNodePort,
            loadBalancerSourceRanges: loadBalancerSourceRanges, loadBalancerIngress: loadBalancerIngress))
    }

    public var key: ObjectKey { meta.key }
}

// MARK: - Node

public struct NodeAddress: Hashable, Sendable {
    /// "InternalIP", "ExternalIP", "Hostname", ...
    public var type: String
    public var address: String

    public init(type: String, address: String) {
        self.type = type
        self.address = address
    }
}

public struct Node: Hashable, Sendable {
    public var meta: ObjectMeta
    public var addresses: [NodeAddress]
    /// `metadata.deletionTimestamp` is set: the node is going away.
    public var beingDeleted: Bool
    /// `spec.taints[].key`.
    public var taintKeys: [String]
    /// `spec.podCIDRs` (or `spec.podCIDR`): where this node's pods get their addresses, when the
    /// cluster allocates per-node ranges.
    public var podCIDRs: [IPPrefix] = []

    /// The taint the Cluster Autoscaler puts on a node before deleting it
    /// (kube-proxy's `healthcheck.ToBeDeletedTaint`).
    public static let toBeDeletedTaint = "ToBeDeletedByClusterAutoscaler"

    public init(meta: ObjectMeta, addresses: [NodeAddress] = [], beingDeleted: Bool = false, taintKeys: [String] = []) {
        self.meta = meta
        self.addresses = addresses
        self.beingDeleted = beingDeleted
        self.taintKeys = taintKeys
    }

    /// kube-proxy's `ProxyHealthServer.SyncNode`: a node being deleted or tainted
    /// ToBeDeletedByClusterAutoscaler answers /healthz with 503, so load balancers drain it first.
    public var eligibleForTraffic: Bool { !beingDeleted && !taintKeys.contains(Self.toBeDeletedTaint) }

    /// `topology.kubernetes.io/zone`, nil when missing.
    public var zone: String? { meta.labels[KubeLabel.zone] }

    /// InternalIP and ExternalIP addresses of either family, in the order given.
    public var ipAddresses: [IPAddress] {
        addresses.filter { $0.type == "InternalIP" || $0.type == "ExternalIP" }.compactMap { IPAddress($0.address) }
    }
}

// MARK: - Any of them

public enum KubeObject: Hashable, Sendable {
    case service(Service)
    case endpointSlice(EndpointSlice)
    case node(Node)

    public var kind: ResourceKind {
        switch self {
        case .service: .service
        case .endpointSlice: .endpointSlice
        case .node: .node
        }
    }

    public var meta: ObjectMeta {
        switch self {
        case let .service(s): s.meta
        case let .endpointSlice(s): s.meta
        case let .node(n): n.meta
        }
    }
}
