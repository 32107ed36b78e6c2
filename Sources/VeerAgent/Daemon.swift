import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import VeerDatapath
import VeerKube
import VeerModel

/// Where veerd reads Services, EndpointSlices and its Node from.
public enum SourceChoice: Sendable {
    case manifests(directory: String)
    case kubernetes(KubeAPIConfig)
}

/// What the daemon installs (or adopts) before the agent starts.
public struct DatapathOptions: Sendable {
    public var bpfObject: String
    public var cgroup: String
    /// nil: the sizes compiled into the object, or what is pinned.
    public var capacities: MapCapacities?
    /// The other maps' sizes, each nil unless asked for.
    public var tables = TableCapacities()
    public var scope: TranslationScope
    /// bind() of the host's processes onto a frontend (a NodePort…) fails with EADDRINUSE.
    public var bindProtection = true
    /// The packet path for clients outside the node; nil: off.
    public var packetPath: PacketPathConfiguration?

    public init(bpfObject: String, cgroup: String, capacities: MapCapacities? = nil, scope: TranslationScope = .allNamespaces) {
        self.bpfObject = bpfObject
        self.cgroup = cgroup
        self.capacities = capacities
        self.scope = scope
    }
}

public struct DaemonOptions: Sendable {
    public var agent: AgentConfiguration
    public var datapath: DatapathOptions
    public var source: SourceChoice
    public var metricsHost: String
    public var metricsPort: Int
    /// kube-proxy's --healthz-bind-address (/healthz, /livez); nil: not served.
    public var healthzHost: String? = "0.0.0.0"
    public var healthzPort = 10256
    /// Serve the healthCheckNodePort of eTP=Local LoadBalancer Services.
    public var serviceHealthChecks = true
    /// Ask the API server for a WatchList first (KubeAPISource.Options.watchList).
    public var watchList = false

    public init(agent: AgentConfiguration, datapath: DatapathOptions, source: SourceChoice, metricsHost: String, metricsPort: Int) {
        self.agent = agent
        self.datapath = datapath
        self.source = source
        self.metricsHost = metricsHost
        self.metricsPort = metricsPort
    }
}

/// Runs veerd until SIGTERM/SIGINT: the agent, its source, and the metrics server. A
/// graceful stop leaves the datapath attached and the maps as they are.
public func runDaemon(_ options: DaemonOptions, logger: Logger) async throws {
    // The source and the listener are made before the datapath is installed, so a bad
    // source or a port in use fails the start with nothing attached. The handler answers
    // 503 in the moment before the agent exists.
    let started = NIOLockedValueBox<Agent?>(nil)
    let metrics: HTTPListener
    do {
        metrics = try await HTTPListener(host: options.metricsHost, port: options.metricsPort, handler: .async(metricsHandler(started)))
    } catch {
        throw DaemonStartError(description: "cannot listen on \(options.metricsHost):\(options.metricsPort) for /metrics: \(error)")
    }
    let events: AsyncStream<SourceEvent>
    let diagnostics: AsyncStream<SourceDiagnostic>
    /// The source's own services (they end by finishing `events` and `diagnostics`).
    let sources: [any ServiceLifecycle.Service]
    let connect: (Agent) async -> Void
    var serviceCIDRs: ServiceCIDRSource?
    /// Closes what was opened before the start failed (HTTP clients must be shut down).
    let abandon: @Sendable () async -> Void
    switch options.source {
    case let .manifests(directory):
        let source = ManifestSource(directory: directory)
        (events, diagnostics) = (source.events, source.diagnostics)
        sources = [source]
        connect = { _ in }
        abandon = { await metrics.close() }
        logger.info("reading manifests from \(directory)")
    case let .kubernetes(config):
        // The sources make their HTTP clients when they run; only the recorder holds one before.
        let source: KubeAPISource
        let recorder: KubeEventRecorder
        let cidrs: ServiceCIDRSource
        do {
            var sourceOptions = KubeAPISource.Options(nodeName: options.agent.nodeName)
            sourceOptions.watchList = options.watchList
            source = try KubeAPISource(config: config, options: sourceOptions, logger: logger)
            cidrs = try ServiceCIDRSource(config: config, logger: logger)
        } catch {
            await metrics.close()
            throw error
        }
        do {
            recorder = try KubeEventRecorder(config: config, nodeName: options.agent.nodeName, logger: logger)
        } catch {
            await metrics.close()
            throw error
        }
        serviceCIDRs = cidrs
        (events, diagnostics) = (source.events, source.diagnostics)
        sources = [source, cidrs]
        connect = { agent in
            await agent.exportStatistics(of: source)
            await agent.recordEvents(with: recorder)
        }
        abandon = {
            await recorder.shutdown()
            await metrics.close()
        }
        logger.info("watching the Kubernetes API at \(config.server)")
    }

    // Before anything touches the pins: a second agent for them exits here (AgentLock.Held).
    let lock: AgentLock
    let agent: Agent
    // veerctl explain's socket: after the lock (the socket of a live veerd is never replaced),
    // before the datapath is touched.
    var opened: HTTPListener?
    do {
        lock = try AgentLock(pins: options.agent.pins)
        do {
            opened = try await DecisionsServer.open(pins: options.agent.pins) { started.withLockedValue { $0 } }
        } catch {
            throw DaemonStartError(description: "cannot listen on \(DecisionsSocket.path(options.agent.pins)) for veerctl explain: \(error)")
        }
        let installed = try installDatapath(options, logger: logger)
        agent = Agent(config: options.agent, maps: installed.maps, packetPath: installed.packetPath, logger: logger)
    } catch {
        if let opened { await DecisionsServer.close(opened, pins: options.agent.pins) }
        await abandon()
        throw error
    }
    let decisions = opened!
    defer { withExtendedLifetime(lock) {} }
    await connect(agent)
    started.withLockedValue { $0 = agent }
    logger.info("metrics on http://\(options.metricsHost):\(metrics.port)/metrics")
    let healthz = options.healthzHost.map { ProxyHealthServer(health: agent.proxyHealth, host: $0, port: options.healthzPort, logger: logger) }
    if options.serviceHealthChecks { await agent.serveHealthChecks() }

    // Graceful shutdown runs in reverse order: the sources stop last, after the agent stopped reading them.
    let group = ServiceGroup(
        services: sources + [
            AgentService(agent: agent, events: events),
            DiagnosticsService(agent: agent, diagnostics: diagnostics, logger: logger),
            MetricsService(server: metrics),
            DecisionsService(agent: agent, server: decisions, pins: options.agent.pins),
        ] + (healthz.map { [$0] } ?? []) + [HealthChecksService(agent: agent)]
          + (serviceCIDRs.map { [ServiceCIDRService(agent: agent, source: $0)] } ?? []),
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger)
    try await group.run()
    logger.info("stopped; the datapath stays attached and keeps serving")
}

private struct AgentService: ServiceLifecycle.Service {
    let agent: Agent
    let events: AsyncStream<SourceEvent>

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await agent.run(events)
        }
    }
}

private struct DiagnosticsService: ServiceLifecycle.Service {
    let agent: Agent
    let diagnostics: AsyncStream<SourceDiagnostic>
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            for await d in diagnostics {
                switch d.connectivity {
                case let .failing(kind): await agent.sourceConnectivity(kind, failing: true)
                case let .restored(kind): await agent.sourceConnectivity(kind, failing: false)
                case nil: break
                }
                switch d.severity {
                case .info: logger.info("\(d.origin): \(d.message)")
                case .warning:
                    logger.warning("\(d.origin): \(d.message)")
                    await agent.sourceProblem("warning")
                case .error:
                    logger.error("\(d.origin): \(d.message)")
                    await agent.sourceProblem("error")
                }
            }
        }
    }
}

private struct MetricsService: ServiceLifecycle.Service {
    let server: HTTPListener

    func run() async throws {
        try? await gracefulShutdown()
        await server.close()
    }
}

/// veerctl explain's socket; at a graceful stop it closes and the decisions are saved once.
private struct DecisionsService: ServiceLifecycle.Service {
    let agent: Agent
    let server: HTTPListener
    let pins: PinLayout

    func run() async throws {
        try? await gracefulShutdown()
        await DecisionsServer.close(server, pins: pins)
        await agent.saveDecisions()
    }
}

private struct HealthChecksService: ServiceLifecycle.Service {
    let agent: Agent

    func run() async throws {
        try? await gracefulShutdown()
        await agent.stopHealthChecks()
    }
}

/// Feeds the ServiceCIDR objects' ranges to the agent (API source only; the source runs as its own service).
private struct ServiceCIDRService: ServiceLifecycle.Service {
    let agent: Agent
    let source: ServiceCIDRSource

    func run() async throws {
        await cancelWhenGracefulShutdown {
            for await update in source.updates {
                switch update {
                case let .cidrs(texts): await agent.serviceCIDRsFromAPI(texts)
                case .unavailable: await agent.serviceCIDRsFromAPI(nil)
                }
            }
        }
    }
}

/// A start that failed before the datapath was touched.
public struct DaemonStartError: Error, CustomStringConvertible {
    public let description: String
}

/// /metrics, /healthz and /readyz; 503 until the agent exists.
private func metricsHandler(_ started: NIOLockedValueBox<Agent?>) -> @Sendable (String, [String: String]) async -> HTTPListener.Response {
    { path, _ in
        guard let agent = started.withLockedValue({ $0 }) else {
            return HTTPListener.Response(.serviceUnavailable, contentType: "text/plain", "starting\n")
        }
        switch path {
        case "/metrics":
            // Streamed as it is rendered: a scrape holds a chunk or two of its text, not the whole.
            return agent.metricsResponse()
        case "/healthz":
            // Alive: the programs are still attached through their pinned links.
            let attached = await agent.datapathAttached
            return HTTPListener.Response(attached ? .ok : .serviceUnavailable, contentType: "text/plain", attached ? "ok\n" : "datapath links are gone\n")
        case "/readyz":
            let synced = await agent.isSynced
            return HTTPListener.Response(synced ? .ok : .serviceUnavailable, contentType: "text/plain", synced ? "ok\n" : "waiting for the first full list\n")
        default:
            return HTTPListener.Response(.notFound, contentType: "text/plain", "not found\n")
        }
    }
}

/// Where the packet path (tc) is attached.
public struct PacketPathConfiguration: Sendable {
    /// bpf/veer_tc.bpf.o.
    public var object: String
    /// nil: the interfaces holding the node's addresses (its Node's, or --node-address),
    /// attached by the agent at every full sync.
    public var interfaces: [String]?

    public init(object: String, interfaces: [String]? = nil) {
        self.object = object
        self.interfaces = interfaces
    }
}

/// Loads or adopts the datapath: the programs attached, the maps pinned, nothing written; and
/// the packet path, on the interfaces named (the node's own wait for its addresses, at the
/// agent's first full sync).
private func installDatapath(_ options: DaemonOptions, logger: Logger) throws -> (maps: Datapath, packetPath: PacketPath?) {
    let o = options.datapath
    let pins = options.agent.pins
    let datapath = try Datapath.install(object: o.bpfObject, cgroup: o.cgroup, pins: pins, capacities: o.capacities, tables: o.tables, scope: o.scope,
                                        bindProtection: o.bindProtection)
    if !datapath.retiredVersions.isEmpty {
        logger.notice("retired the pins of an older schema (upgrade)", metadata: ["versions": "\(datapath.retiredVersions.joined(separator: ","))"])
    }
    let frontends = (try? datapath.readState().masters.count) ?? 0
    logger.info("datapath ready", metadata: ["pins": "\(pins.directory)", "cgroup": "\(o.cgroup)", "adopted_frontends": "\(frontends)"])
    guard let pp = o.packetPath else { return (datapath, nil) }
    let packetPath = try PacketPath(object: pp.object, pins: pins)
    // Named interfaces are attached at once (replacing a predecessor's filter in place).
    if let names = pp.interfaces { try packetPath.attach(all: names) }
    if (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8))?.hasPrefix("0") == true {
        logger.warning("net.ipv4.ip_forward is 0 in veerd's network namespace: the packet path cannot forward to pods (the CNI plugin normally turns it on)")
    }
    return (datapath, packetPath)
}
