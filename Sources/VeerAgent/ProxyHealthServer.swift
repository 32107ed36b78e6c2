import Logging
import NIOCore
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
        // Binding (and retrying) ends at graceful shutdown; nil then.
        let server = await cancelWhenGracefulShutdown { await self.bind(group) }
        if server != nil { try? await gracefulShutdown() }
        await server?.close()
        try? await group.shutdownGracefully()
    }

    private func bind(_ group: EventLoopGroup) async -> HTTPListener? {
        while !Task.isCancelled {
            do {
                let server = try await HTTPListener(group: group, host: host, port: port, handler: .onEventLoop { [health] path in
                    health.respond(path: path)
                })
                logger.info("healthz on http://\(host):\(server.port)/healthz and /livez")
                return server
            } catch {
                logger.error("cannot serve /healthz on \(host):\(port): \(error); retrying in 5 s")
                try? await Task.sleep(for: .seconds(5))
            }
        }
        return nil
    }
}
