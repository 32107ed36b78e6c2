import Logging
import NIOPosix
import ServiceLifecycle

/// Serves kube-proxy's /healthz and /livez (`ProxyHealth`) on --healthz-bind-address until the
/// daemon stops. A port that cannot be bound is logged and tried again every 5 s, as kube-proxy's
/// serveHealthz does: the proxy keeps programming the maps either way.
public struct ProxyHealthServer: ServiceLifecycle.Service {
    let health: ProxyHealth
    let host: String
    let port: Int
    let logger: Logger

    public init(health: ProxyHealth, host: String, port: Int, logger: Logger) {
        self.health = health
        self.host = host
        self.port = port
        self.logger = logger
    }

    public func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let binding = Task { [health, host, port, logger] () -> HealthHTTPServer? in
            while !Task.isCancelled {
                do {
                    let server = try await HealthHTTPServer(group: group, host: host, port: port) { path in
                        health.respond(path: path)
                    }
                    logger.info("healthz on http://\(host):\(server.port)/healthz and /livez")
                    return server
                } catch {
                    logger.error("cannot serve /healthz on \(host):\(port): \(error); retrying in 5 s")
                    try? await Task.sleep(for: .seconds(5))
                }
            }
            return nil
        }
        try? await gracefulShutdown()
        binding.cancel()
        await binding.value?.close()
        try? await group.shutdownGracefully()
    }
}
