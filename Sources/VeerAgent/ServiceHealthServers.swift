import Foundation
import Logging
import NIOCore
import NIOPosix
import VeerModel

/// kube-proxy's service health check servers (pkg/proxy/healthcheck/service_health.go): one HTTP
/// listener per `type: LoadBalancer`, `externalTrafficPolicy: Local` Service, on its
/// `healthCheckNodePort`, answering any path with
///
///     200 or 503, Content-Type: application/json, X-Content-Type-Options: nosniff,
///     X-Load-Balancing-Endpoint-Weight: N
///     {"service": {"namespace": "…", "name": "…"}, "localEndpoints": N, "serviceProxyHealthy": true}
///
/// 200 exactly when N > 0 and the proxy is healthy (`ProxyHealth.isHealthy`, the Node ignored).
/// The listeners follow the Services: opened, moved to a new port and closed as they change. A port
/// that cannot be bound is logged, counted and reported once (`onBindFailure`), the others keep
/// serving, and it is tried again on every later update, as kube-proxy's SyncServices does.
public final class ServiceHealthServers: @unchecked Sendable {
    public typealias BindFailure = @Sendable (_ service: ObjectKey, _ port: UInt16, _ error: String) -> Void

    private let hosts: [String]
    private let proxyHealth: ProxyHealth
    private let logger: Logger
    private let onBindFailure: BindFailure
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    private let lock = NSLock()
    /// What should be served, with the counts the handlers read.
    private var wanted: [ObjectKey: HealthCheckTarget] = [:]
    private var servers: [ObjectKey: (port: UInt16, listeners: [HTTPListener])] = [:]
    /// (service, port) whose failure was already reported: reported again only after a change.
    private var reported: [ObjectKey: UInt16] = [:]
    private var reconciling = false
    private var closed = false
    private var bindFailures: UInt64 = 0

    /// `hosts`: the addresses to listen on; ["::"] (every address of both families, as kube-proxy's
    /// 0.0.0.0 does in Go) by default.
    public init(hosts: [String] = ["::"], proxyHealth: ProxyHealth, logger: Logger, onBindFailure: @escaping BindFailure) {
        self.hosts = hosts
        self.proxyHealth = proxyHealth
        self.logger = logger
        self.onBindFailure = onBindFailure
    }

    /// The health checks this node should serve now. Counts change at once; listeners are opened
    /// and closed off the caller's path.
    public func update(_ targets: [ObjectKey: HealthCheckTarget]) {
        let start = lock.withLock { () -> Bool in
            wanted = targets
            guard !reconciling, !closed else { return false }
            reconciling = true
            return true
        }
        // Unstructured: `update` is called synchronously from the agent's sync and must not wait
        // for a bind. One reconcile at a time (`reconciling`); `close()` ends what it opened.
        if start { Task { await self.reconcile() } }
    }

    /// Listening ports and failed bind attempts, for metrics.
    public var status: (listening: Int, failing: Int, bindFailures: UInt64) {
        lock.withLock {
            (servers.count, wanted.keys.filter { servers[$0] == nil }.count, bindFailures)
        }
    }

    /// The ports currently served, by service (tests, metrics).
    public var serving: [ObjectKey: UInt16] { lock.withLock { servers.mapValues(\.port) } }

    public func close() async {
        let all = lock.withLock { () -> [HTTPListener] in
            closed = true
            defer { servers = [:] }
            return servers.values.flatMap(\.listeners)
        }
        for s in all { await s.close() }
        try? await group.shutdownGracefully()
    }

    private func reconcile() async {
        while true {
            // Close what is gone or moved; open what is new (or failed before).
            let (stale, missing) = lock.withLock { () -> ([(ObjectKey, UInt16, [HTTPListener])], [(ObjectKey, UInt16)]) in
                var stale: [(ObjectKey, UInt16, [HTTPListener])] = []
                for (key, s) in servers where wanted[key]?.port != s.port {
                    stale.append((key, s.port, s.listeners))
                    servers[key] = nil
                }
                let missing = wanted.filter { servers[$0.key] == nil }.map { ($0.key, $0.value.port) }.sorted { $0.0 < $1.0 }
                for key in reported.keys where wanted[key] == nil { reported[key] = nil }
                return (stale, missing)
            }
            for (key, port, listeners) in stale {
                for l in listeners { await l.close() }
                logger.info("closed the health check of \(key) on port \(port)")
            }
            for (key, port) in missing {
                do {
                    let listeners = try await open(key, port)
                    let kept = lock.withLock { () -> Bool in
                        guard !closed, wanted[key]?.port == port else { return false }
                        servers[key] = (port, listeners)
                        reported[key] = nil
                        return true
                    }
                    if kept {
                        logger.info("serving the health check of \(key) on port \(port)")
                    } else {
                        for l in listeners { await l.close() }
                    }
                } catch {
                    let first = lock.withLock { () -> Bool in
                        bindFailures += 1
                        defer { reported[key] = port }
                        return reported[key] != port
                    }
                    if first {
                        logger.error("cannot serve the health check of \(key) on port \(port): \(error); the other health checks keep serving, retried on the next change")
                        onBindFailure(key, port, "\(error)")
                    }
                }
            }
            let done = lock.withLock { () -> Bool in
                let settled = closed || servers.allSatisfy { wanted[$0.key]?.port == $0.value.port }
                    && wanted.allSatisfy { servers[$0.key] != nil || reported[$0.key] == $0.value.port }
                if settled { reconciling = false }
                return settled
            }
            if done { return }
        }
    }

    private func open(_ key: ObjectKey, _ port: UInt16) async throws -> [HTTPListener] {
        var opened: [HTTPListener] = []
        for host in hosts {
            let handler: HTTPListener.Handler = .onEventLoop { [weak self] _ in
                self?.respond(key) ?? HTTPListener.Response(status: .serviceUnavailable, headers: [], body: "")
            }
            do {
                do {
                    opened.append(try await HTTPListener(group: group, host: host, port: Int(port), handler: handler))
                } catch let e as IOError where host == "::" && (e.errnoCode == EAFNOSUPPORT || e.errnoCode == EADDRNOTAVAIL) {
                    // No IPv6 on this node: every IPv4 address, as kube-proxy's 0.0.0.0.
                    opened.append(try await HTTPListener(group: group, host: "0.0.0.0", port: Int(port), handler: handler))
                }
            } catch {
                // All or nothing, as kube-proxy's listenAndServeAll: a half-open check would lie.
                for l in opened { await l.close() }
                throw error
            }
        }
        return opened
    }

    /// kube-proxy's hcHandler.ServeHTTP, for any path.
    func respond(_ key: ObjectKey) -> HTTPListener.Response {
        let count = lock.withLock { wanted[key]?.localEndpoints ?? 0 }
        let healthy = proxyHealth.isHealthy
        let body = """
            {
            \t"service": {
            \t\t"namespace": "\(Self.quoted(key.namespace))",
            \t\t"name": "\(Self.quoted(key.name))"
            \t},
            \t"localEndpoints": \(count),
            \t"serviceProxyHealthy": \(healthy)
            }
            """
        return HTTPListener.Response(status: count != 0 && healthy ? .ok : .serviceUnavailable,
                              headers: [("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff"),
                                        ("X-Load-Balancing-Endpoint-Weight", "\(count)")],
                              body: body)
    }

    /// Namespaces and names are DNS labels; escape anyway, so the body stays JSON whatever arrives.
    private static func quoted(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where c.value < 0x20: out += String(format: "\\u%04x", c.value)
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}
