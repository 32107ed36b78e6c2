import VeerDatapath
import VeerModel

/// What the agent is told at start: who this node is and how to treat what it programs.
public struct AgentConfiguration: Sendable {
    public var nodeName: String
    /// Overrides the Node's `topology.kubernetes.io/zone` label.
    public var zoneOverride: String?
    /// Overrides the Node's InternalIP/ExternalIP addresses for NodePorts.
    public var addressOverride: [IPAddress]?
    /// Where the state files for veerctl go (`/run/veer/<pin directory>`).
    public var pins: PinLayout
    /// Writes names.json and decisions.json for veerctl (off for an in-memory store).
    public var writesStateFiles = true
    /// Protocols whose connected sockets are destroyed when their backend leaves the
    /// service. UDP by default: nothing else ever tells a UDP client its peer is gone.
    public var terminateProtocols: Set<L4Protocol> = [.udp]
    /// How long after a failed write the maps are read back and planned again.
    public var retryDelay: Duration = .seconds(1)
    /// Per-endpoint hit series (the default), or per Service port where they are too many.
    public var hitMetrics: HitMetrics = .endpoint
    /// How long a change may wait to reach the maps before /healthz turns 503 (kube-proxy:
    /// twice its sync period, 60 s by default).
    public var healthTimeout: Duration = .seconds(60)
    /// The cluster's service CIDRs (--service-cidr): an address there that no Service holds fails
    /// at once. ServiceCIDR objects, when the API serves them, are added to these.
    public var serviceCIDRs: [IPPrefix] = []
    /// NodePorts outside this range are skipped; nil: any.
    public var nodePortRange: ClosedRange<UInt16>?
    /// The packet path follows the interfaces holding the node's addresses (false: the
    /// operator named them, and the daemon attached them).
    public var packetPathFollowsNodeAddresses = true

    public init(nodeName: String, zoneOverride: String? = nil, addressOverride: [IPAddress]? = nil,
                pins: PinLayout) {
        self.nodeName = nodeName
        self.zoneOverride = zoneOverride
        self.addressOverride = addressOverride
        self.pins = pins
    }
}
