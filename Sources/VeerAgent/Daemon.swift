import Foundation
import Logging
import ServiceLifecycle
import VeerDatapath
import VeerKube
import VeerModel

/// Where veerd reads Services, EndpointSlices and its Node from.
public enum SourceChoice: Sendable {
    case manifests(directory: String)
    case kubernetes(KubeAPIConfig)
}

public struct DaemonOptions: Sendable {
    public var agent: AgentConfiguration
    public var source: SourceChoice
    public var metricsHost: String
    public var metricsPort: Int
    /// kube-proxy's --healthz-bind-address (/healthz, /livez); nil: not served.
    public var healthzHost: String? = "0.0.0.0"
    public var healthzPort = 10256
    /// Serve the healthCheckNodePort of eTP=Local LoadBalancer Services.
    public var serviceHealthChecks = true

    public init(agent: AgentConfiguration, source: SourceChoice, metricsHost: String, metricsPort: Int) {
        self.agent = agent
        self.source = source
        self.metricsHost = metricsHost
        self.metricsPort = metricsPort
    }
}

/// Runs veerd until SIGTERM/SIGINT: the agent, its source, and the metrics server. A
/// graceful stop leaves the datapath attached and the maps as they are.
public func runDaemon(_ options: DaemonOptions, logger: Logger) async throws {
    // Before anything touches the pins: a second agent for them exits here (AgentLock.Held).
    let lock = try AgentLock(pins: options.agent.pins)
    defer { withExtendedLifetime(lock) {} }
    let agent = try Agent(config: options.agent, logger: logger)
    let events: AsyncStream<SourceEvent>
    var serviceCIDRs: ServiceCIDRSource?
    let diagnostics: AsyncStream<SourceDiagnostic>
    let startSource: @Sendable () throws -> Void
    let stopSource: @Sendable () async -> Void
    switch options.source {
    case let .manifests(directory):
        let source = ManifestSource(directory: directory)
        (events, diagnostics) = (source.events, source.diagnostics)
        startSource = { try source.start() }
        stopSource = { source.stop() }
        logger.info("reading manifests from \(directory)")
    case let .kubernetes(config):
        let source = try KubeAPISource(config: config, options: .init(nodeName: options.agent.nodeName), logger: logger)
        await agent.exportStatistics(of: source)
        let recorder = try KubeEventRecorder(config: config, nodeName: options.agent.nodeName, logger: logger)
        await agent.recordEvents(with: recorder)
        let cidrs = try ServiceCIDRSource(config: config, logger: logger)
        serviceCIDRs = cidrs
        (events, diagnostics) = (source.events, source.diagnostics)
        startSource = { source.start() }
        stopSource = { await source.stop() }
        logger.info("watching the Kubernetes API at \(config.server)")
    }

    let metrics = try await MetricsServer(host: options.metricsHost, port: options.metricsPort) { path in
        switch path {
        case "/metrics":
            return (.ok, "text/plain; version=0.0.4; charset=utf-8", await agent.metricsText())
        case "/healthz":
            // Alive: the programs are still attached through their pinned links.
            let attached = await agent.datapathAttached
            return (attached ? .ok : .serviceUnavailable, "text/plain", attached ? "ok\n" : "datapath links are gone\n")
        case "/readyz":
            let synced = await agent.isSynced
            return (synced ? .ok : .serviceUnavailable, "text/plain", synced ? "ok\n" : "waiting for the first full list\n")
        default:
            return (.notFound, "text/plain", "not found\n")
        }
    }
    logger.info("metrics on http://\(options.metricsHost):\(metrics.port)/metrics")
    let healthz = options.healthzHost.map { ProxyHealthServer(health: agent.proxyHealth, host: $0, port: options.healthzPort, logger: logger) }
    if options.serviceHealthChecks { await agent.serveHealthChecks() }

    let group = ServiceGroup(
        services: [
            AgentService(agent: agent, events: events, start: startSource, stop: stopSource),
            DiagnosticsService(agent: agent, diagnostics: diagnostics, logger: logger),
            MetricsService(server: metrics),
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
    let start: @Sendable () throws -> Void
    let stop: @Sendable () async -> Void

    func run() async throws {
        try start()
        await cancelWhenGracefulShutdown {
            await agent.run(events)
        }
        await stop()
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
    let server: MetricsServer

    func run() async throws {
        try? await gracefulShutdown()
        await server.close()
    }
}

private struct HealthChecksService: ServiceLifecycle.Service {
    let agent: Agent

    func run() async throws {
        try? await gracefulShutdown()
        await agent.stopHealthChecks()
    }
}

/// Feeds the ServiceCIDR objects' ranges to the agent (API source only).
private struct ServiceCIDRService: ServiceLifecycle.Service {
    let agent: Agent
    let source: ServiceCIDRSource

    func run() async throws {
        source.start()
        await cancelWhenGracefulShutdown {
            for await update in source.updates {
                switch update {
                case let .cidrs(texts): await agent.serviceCIDRsFromAPI(texts)
                case .unavailable: await agent.serviceCIDRsFromAPI(nil)
                }
            }
        }
        await source.stop()
    }
}
