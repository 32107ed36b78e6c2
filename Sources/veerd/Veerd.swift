import ArgumentParser
import CVeerVersion
import Foundation
import Logging
import VeerAgent
import VeerDatapath
import VeerKube
import VeerModel

@main
struct Veerd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "veerd",
        abstract: "Veer's node daemon: programs socket-level load balancing for the Services this node uses.",
        version: "\(String(cString: veer_version())) (git \(String(cString: veer_git_revision())))",
        subcommands: [Run.self, Uninstall.self],
        defaultSubcommand: Run.self)
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load (or adopt) the datapath and keep it in sync with the source. SIGTERM stops the daemon and leaves the datapath serving.")

    @Option(help: "Read Services, EndpointSlices and Nodes from this directory of YAML/JSON manifests (watched).")
    var manifests: String?

    @Option(help: "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster config).")
    var kubeconfig: String?

    @Option(help: "kubeconfig context (default: current-context).")
    var context: String?

    @Option(help: "API server URL. Must be a real address: a proxy cannot reach the API through a ClusterIP it has not programmed yet.")
    var apiServer: String?

    @Flag(help: "Read the initial state as a WatchList (sendInitialEvents: streamed on a watch, no list pages), falling back to list+watch where the API server refuses or ignores it.")
    var watchList = false

    @Option(help: "This node's name, matched against endpoints' nodeName and node hints (default: hostname).")
    var nodeName: String?

    @Option(help: "This node's zone; overrides the Node's topology.kubernetes.io/zone label.")
    var zone: String?

    @Option(name: .customLong("node-address"), help: "Address to serve NodePorts on; repeatable (default: the Node's InternalIP/ExternalIP).")
    var nodeAddresses: [String] = []

    @Option(help: "cgroup v2 directory to attach to (default: the cgroup2 mount, i.e. every process on the node).")
    var cgroup: String?

    @Option(help: "Root of Veer's pins on bpffs.")
    var bpffs = "/sys/fs/bpf/veer"

    @Option(help: "The compiled BPF object (default: $VEER_BPF_OBJECT, then next to veerd, then ../lib/veer from veerd, then /usr/lib/veer).")
    var bpfObject: String?

    @Option(help: "Where /metrics and /healthz listen, HOST:PORT.")
    var metricsAddress = "127.0.0.1:9965"

    @Option(help: "Where kube-proxy's /healthz and /livez listen, HOST:PORT (cloud load balancers probe it); \"\" turns them off.")
    var healthzBindAddress = "0.0.0.0:10256"

    @Option(help: "Seconds a received change may wait to reach the maps (or the API server stay unreachable) before /healthz and every healthCheckNodePort answer 503.")
    var healthzTimeout: Double = 60

    @Flag(inversion: .prefixedNo, help: "Serve the healthCheckNodePort of each LoadBalancer Service with externalTrafficPolicy Local, on all the node's addresses.")
    var healthCheckNodePorts = true

    @Option(name: .customLong("service-cidr"), help: "The cluster's service CIDR, as the API server's service-cluster-ip-range; repeatable, one per family. A connection to an address there that no Service holds fails at once, as kube-proxy's nftables mode drops it.")
    var serviceCIDRs: [String] = []

    @Flag(inversion: .prefixedNo, help: "Make bind() by processes of the host's network namespace onto a Service frontend (a NodePort on a node address or on 0.0.0.0, an externalIP or LB IP held by the node) fail with EADDRINUSE, as Cilium's bind protection does.")
    var bindProtection = true

    @Option(help: "Capacity of the services map (masters + slots); default 2097152, or what is pinned. Takes effect on a fresh install only.")
    var maxServiceEntries: Int?

    @Option(help: "Capacity of the backends map; default 1048576, or what is pinned. Takes effect on a fresh install only.")
    var maxBackends: Int?

    @Option(help: "Capacity of the members map (one per frontend and backend pair); default 1048576, or what is pinned. Takes effect on a fresh install only.")
    var maxMembers: Int?

    @Option(help: "Capacity of the reverse-translation map (one per frontend); default 262144, or what is pinned. Takes effect on a fresh install only.")
    var maxRevNat: Int?

    @Option(name: .customLong("max-service-ips"), help: "Capacity of the service address table (a ClusterIP per Service and family, and the service CIDRs); default 262144, or what is pinned. Takes effect on a fresh install only.")
    var maxServiceIPs: Int?

    @Option(help: "Capacity of the loadBalancerSourceRanges table (one per restricted frontend and range); default 65536, or what is pinned. Takes effect on a fresh install only.")
    var maxSourceRanges: Int?

    @Option(help: "Capacity of the translated-socket table (LRU: one per socket a frontend was translated for, and per backend an unconnected UDP socket reached); default 262144, or what is pinned. Takes effect on a fresh install only.")
    var maxSockRev: Int?

    @Option(help: "Capacity of the session-affinity table (LRU: one per client and frontend with sessionAffinity ClientIP); default 65536, or what is pinned. Takes effect on a fresh install only.")
    var maxAffinity: Int?

    @Flag(help: "Also destroy TCP connections to a backend that leaves the service (UDP sockets always are).")
    var terminateTCP = false

    @Flag(help: "Never destroy sockets connected to removed backends, not even UDP.")
    var noSocketTermination = false

    @Flag(help: "Translate only sockets in veerd's own (the host's) network namespace. Pods then reach the ClusterIP itself, for a service mesh sidecar (Istio, Linkerd) to intercept. See docs/operations.md.")
    var hostnsOnly = false

    @Option(help: "Hit counters per endpoint (veer_endpoint_hits_total, veer_endpoint_info) or per Service port (veer_service_hits_total): endpoint or service.")
    var hitMetrics: HitMetrics = .endpoint

    @Option(help: "The API server's --service-node-port-range, FROM-TO: a nodePort outside it opens no port here (default: any port, as kube-proxy).")
    var nodePortRange: String?

    @Option(name: .customLong("packet-path-interface"), help: "Serve clients outside the node on this interface (repeatable); default: the interfaces holding the node's addresses.")
    var packetPathInterfaces: [String] = []

    @Flag(help: "Do not serve NodePorts, LB IPs and externalIPs to clients outside the node (no tc program, no nftables nat table); connections made on the node are still served.")
    var noPacketPath = false

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    mutating func validate() throws {
        let sources = [manifests != nil, kubeconfig != nil || apiServer != nil || context != nil]
        if sources.allSatisfy({ $0 }) { throw ValidationError("--manifests and the Kubernetes API options exclude each other") }
        if let nodePortRange, Self.parseRange(nodePortRange) == nil {
            throw ValidationError("--node-port-range \(nodePortRange) is not FROM-TO with 1 <= FROM <= TO <= 65535")
        }
        if noPacketPath && !packetPathInterfaces.isEmpty { throw ValidationError("--no-packet-path and --packet-path-interface exclude each other") }
        for (flag, value) in [("--max-service-entries", maxServiceEntries), ("--max-backends", maxBackends),
                              ("--max-members", maxMembers), ("--max-rev-nat", maxRevNat),
                              ("--max-service-ips", maxServiceIPs), ("--max-source-ranges", maxSourceRanges),
                              ("--max-sock-rev", maxSockRev), ("--max-affinity", maxAffinity)] {
            if let value, value < 1 || value > Int(UInt32.max) { throw ValidationError("\(flag) must be between 1 and \(UInt32.max)") }
        }
        for a in nodeAddresses where IPAddress(a) == nil { throw ValidationError("--node-address \(a) is not an IP address") }
        guard metricsAddress.lastIndex(of: ":").flatMap({ Int(metricsAddress[metricsAddress.index(after: $0)...]) }) != nil else {
            throw ValidationError("--metrics-address must be HOST:PORT")
        }
        if !healthzBindAddress.isEmpty, Self.hostPort(healthzBindAddress) == nil {
            throw ValidationError("--healthz-bind-address must be HOST:PORT (or \"\" to turn it off)")
        }
        for c in serviceCIDRs where IPPrefix(c) == nil { throw ValidationError("--service-cidr \(c) is not a CIDR (e.g. 10.96.0.0/12)") }
        guard healthzTimeout > 0, healthzTimeout.isFinite else { throw ValidationError("--healthz-timeout must be a positive number of seconds") }
        // Every path is checked here, before the first kernel change: a start that fails
        // leaves nothing attached and nothing pinned.
        var isDirectory: ObjCBool = false
        if let manifests, !(FileManager.default.fileExists(atPath: manifests, isDirectory: &isDirectory) && isDirectory.boolValue) {
            throw ValidationError("manifest directory \(manifests) does not exist or is not a directory")
        }
        let object = bpfObject ?? defaultObject()
        guard FileManager.default.isReadableFile(atPath: object) else {
            throw ValidationError("BPF object \(object) is not a readable file (pass --bpf-object or set VEER_BPF_OBJECT)")
        }
        if let cgroup {
            do { try SystemCheck.requireCgroup2(cgroup) } catch { throw ValidationError("--cgroup: \(error)") }
        }
        if !noPacketPath, !FileManager.default.isReadableFile(atPath: tcObject) {
            throw ValidationError("the packet path's BPF object \(tcObject) is not a readable file (it belongs beside \(object); or pass --no-packet-path)")
        }
    }

    /// "0.0.0.0:10256", "[::]:10256" → host and port.
    static func hostPort(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }

    /// The tc object lives beside the socket one (`make build` puts both there).
    var tcObject: String {
        URL(fileURLWithPath: bpfObject ?? defaultObject()).deletingLastPathComponent().appendingPathComponent(PacketPath.objectName).path
    }

    static func parseRange(_ text: String) -> ClosedRange<UInt16>? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let from = UInt16(parts[0]), let to = UInt16(parts[1]), from >= 1, from <= to else { return nil }
        return from...to
    }

    func run() async throws {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "veerd")

        let source: SourceChoice
        if let manifests {
            source = .manifests(directory: manifests)
        } else {
            do {
                source = .kubernetes(try KubeConfigLoader.load(.init(kubeconfig: kubeconfig, context: context, apiServer: apiServer)))
            } catch {
                throw ValidationError("no Kubernetes API configuration: \(error). Pass --manifests DIR to run from manifests.")
            }
        }
        guard let cgroup = cgroup ?? SystemCheck.cgroup2Mount() else {
            throw ValidationError("no cgroup2 mount found; pass --cgroup")
        }
        let colon = metricsAddress.lastIndex(of: ":")!
        var terminate: Set<L4Protocol> = noSocketTermination ? [] : [.udp]
        if terminateTCP && !noSocketTermination { terminate.insert(.tcp) }
        var agent = AgentConfiguration(
            nodeName: nodeName ?? hostname(), zoneOverride: zone,
            addressOverride: nodeAddresses.isEmpty ? nil : nodeAddresses.compactMap { IPAddress($0) },
            pins: PinLayout(root: bpffs))
        agent.terminateProtocols = terminate
        agent.hitMetrics = hitMetrics
        agent.healthTimeout = .milliseconds(Int64(healthzTimeout * 1000))
        agent.serviceCIDRs = serviceCIDRs.compactMap { IPPrefix($0) }
        agent.nodePortRange = nodePortRange.flatMap(Self.parseRange)
        agent.packetPathFollowsNodeAddresses = packetPathInterfaces.isEmpty
        var datapath = DatapathOptions(
            bpfObject: bpfObject ?? defaultObject(), cgroup: cgroup,
            // Only what was asked for: a restart without the flags adopts whatever is pinned.
            capacities: maxServiceEntries == nil && maxBackends == nil && maxMembers == nil && maxRevNat == nil ? nil : MapCapacities(
                services: maxServiceEntries ?? MapCapacities.compiledDefaults.services,
                backends: maxBackends ?? MapCapacities.compiledDefaults.backends,
                revNat: maxRevNat ?? MapCapacities.compiledDefaults.revNat,
                members: maxMembers ?? MapCapacities.compiledDefaults.members),
            // Read once, at start: the namespace veerd runs in is the host's (hostNetwork pod).
            scope: hostnsOnly ? .hostNamespaceOnly(netns: "/proc/self/ns/net") : .allNamespaces)
        datapath.tables = TableCapacities(serviceIPs: maxServiceIPs, sourceRanges: maxSourceRanges, sockRev: maxSockRev, affinity: maxAffinity)
        datapath.bindProtection = bindProtection
        if !noPacketPath {
            datapath.packetPath = PacketPathConfiguration(object: tcObject, interfaces: packetPathInterfaces.isEmpty ? nil : packetPathInterfaces)
        }
        var options = DaemonOptions(
            agent: agent, datapath: datapath, source: source,
            metricsHost: String(metricsAddress[..<colon]),
            metricsPort: Int(metricsAddress[metricsAddress.index(after: colon)...])!)
        let healthz = Self.hostPort(healthzBindAddress)
        options.healthzHost = healthz?.host
        options.healthzPort = healthz?.port ?? 0
        options.serviceHealthChecks = healthCheckNodePorts
        options.watchList = watchList
        do {
            try await runDaemon(options, logger: logger)
        } catch let error as DatapathError {
            logger.critical("\(error.description)")
            throw ExitCode(1)
        } catch let error as AgentLock.Held {
            logger.critical("\(error.description)")
            throw ExitCode(1)
        } catch let error as DaemonStartError {
            logger.critical("\(error.description)")
            throw ExitCode(1)
        }
    }
}

struct Uninstall: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Detach Veer's programs and remove every pin.")

    @Option(help: "Root of Veer's pins on bpffs.")
    var bpffs = "/sys/fs/bpf/veer"
    @Flag(help: "Uninstall even while a veerd runs for these pins.")
    var force = false

    func run() throws {
        let pins = PinLayout(root: bpffs)
        if !force, let holder = AgentLock.holder(pins) {
            throw ValidationError("veerd (\(holder)) is running for \(pins.directory): stop it first, or pass --force (it would keep running with nothing attached)")
        }
        // The packet path first: its filters read the maps about to be unpinned.
        let detached = PacketPath.detachAll()
        if !detached.isEmpty { NATHooks.remove() }
        print(try Datapath.uninstall(pins: pins) ? "removed the datapath pinned at \(pins.directory)" : "nothing pinned at \(pins.directory)")
        if !detached.isEmpty { print("removed the packet path from \(detached.joined(separator: ", "))") }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension HitMetrics: ExpressibleByArgument {}

func hostname() -> String {
    var buf = [CChar](repeating: 0, count: 256)
    gethostname(&buf, buf.count)
    return buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }.lowercased()
}

/// $VEER_BPF_OBJECT, else next to veerd (a build directory), else `../lib/veer` from it
/// (`make install PREFIX=…`), else /usr/lib/veer (the image).
func defaultObject() -> String {
    if let env = ProcessInfo.processInfo.environment["VEER_BPF_OBJECT"] { return env }
    // /proc/self/exe, not argv[0]: run from $PATH (as in the image), argv[0] is a bare name.
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    let dir = URL(fileURLWithPath: exe).resolvingSymlinksInPath().deletingLastPathComponent()
    for candidate in [dir.appendingPathComponent("veer_sock.bpf.o"),
                      dir.deletingLastPathComponent().appendingPathComponent("lib/veer/veer_sock.bpf.o")]
    where FileManager.default.fileExists(atPath: candidate.path) {
        return candidate.path
    }
    return "/usr/lib/veer/veer_sock.bpf.o"
}
