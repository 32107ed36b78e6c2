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

    @Option(help: "Capacity of the services map (masters + slots); default 65536, or what is pinned. Takes effect on a fresh install only.")
    var maxServiceEntries: Int?

    @Option(help: "Capacity of the backends map; default 65536, or what is pinned. Takes effect on a fresh install only.")
    var maxBackends: Int?

    @Option(help: "Capacity of the members map (one per frontend and backend pair); default 131072, or what is pinned. Takes effect on a fresh install only.")
    var maxMembers: Int?

    @Flag(help: "Also destroy TCP connections to a backend that leaves the service (UDP sockets always are).")
    var terminateTCP = false

    @Flag(help: "Never destroy sockets connected to removed backends, not even UDP.")
    var noSocketTermination = false

    @Flag(help: "Translate only sockets in veerd's own (the host's) network namespace. Pods then reach the ClusterIP itself, for a service mesh sidecar (Istio, Linkerd) to intercept. See docs/operations.md.")
    var hostnsOnly = false

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    mutating func validate() throws {
        let sources = [manifests != nil, kubeconfig != nil || apiServer != nil || context != nil]
        if sources.allSatisfy({ $0 }) { throw ValidationError("--manifests and the Kubernetes API options exclude each other") }
        for a in nodeAddresses where IPAddress(a) == nil { throw ValidationError("--node-address \(a) is not an IP address") }
        guard metricsAddress.lastIndex(of: ":").flatMap({ Int(metricsAddress[metricsAddress.index(after: $0)...]) }) != nil else {
            throw ValidationError("--metrics-address must be HOST:PORT")
        }
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
        var options = DaemonOptions(
            agent: AgentConfiguration(
                nodeName: nodeName ?? hostname(), zoneOverride: zone,
                addressOverride: nodeAddresses.isEmpty ? nil : nodeAddresses.compactMap { IPAddress($0) },
                cgroup: cgroup, pins: PinLayout(root: bpffs), bpfObject: bpfObject ?? defaultObject(),
                // Only what was asked for: a restart without the flags adopts whatever is pinned.
                capacities: maxServiceEntries == nil && maxBackends == nil && maxMembers == nil ? nil : MapCapacities(
                    services: maxServiceEntries ?? MapCapacities.compiledDefaults.services,
                    backends: maxBackends ?? MapCapacities.compiledDefaults.backends,
                    revNat: MapCapacities.compiledDefaults.revNat,
                    members: maxMembers ?? MapCapacities.compiledDefaults.members)),
            source: source,
            metricsHost: String(metricsAddress[..<colon]),
            metricsPort: Int(metricsAddress[metricsAddress.index(after: colon)...])!)
        options.agent.terminateProtocols = terminate
        // Read once, at start: the namespace veerd runs in is the host's (hostNetwork pod).
        options.agent.hostNamespace = hostnsOnly ? "/proc/self/ns/net" : nil
        do {
            try await runDaemon(options, logger: logger)
        } catch let error as DatapathError {
            logger.critical("\(error.description)")
            throw ExitCode(1)
        } catch let error as AgentLock.Held {
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
        print(try Datapath.uninstall(pins: pins) ? "removed the datapath pinned at \(pins.directory)" : "nothing pinned at \(pins.directory)")
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

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
