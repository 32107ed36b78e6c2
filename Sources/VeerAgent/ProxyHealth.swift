import Foundation
import NIOHTTP1
import VeerModel

/// kube-proxy's proxy health (pkg/proxy/healthcheck/proxy_health.go, `ProxyHealthServer`), for
/// /healthz and /livez on --healthz-bind-address and for the `serviceProxyHealthy` field of every
/// service health check.
///
/// Healthy while no change has waited longer than `timeout` to reach the maps: a change that
/// arrives marks an update as queued (`queuedUpdate`, only the oldest counts), a successful sync
/// clears it (`updated`). The agent queues the first sync at start: healthy while starting, as
/// kube-proxy is, but 503 if the first sync has not happened within the bound (kube-proxy stays
/// 200 forever then, kubernetes #83263). One addition: a list or watch
/// failing against the API server also queues an update, cleared once every kind lists or watches
/// again and the maps hold what it delivered, so a node cut off from the API server longer than the
/// bound turns unhealthy (kube-proxy's informers retry silently and it stays healthy).
///
/// /healthz also turns 503 while the Node is being deleted or carries ToBeDeletedByClusterAutoscaler
/// (`SyncNode`), so load balancers drain the node first; /livez ignores the Node (KEP-3836).
public final class ProxyHealth: @unchecked Sendable {
    public let timeout: Duration
    private let lock = NSLock()
    private let clock: @Sendable () -> ContinuousClock.Instant
    private var lastUpdated: Date?
    private var oldestPending: ContinuousClock.Instant?
    private var nodeEligible = true
    private var failingSources: Set<String> = []
    private var answers: [String: [UInt: UInt64]] = ["healthz": [:], "livez": [:]]

    public init(timeout: Duration, clock: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.timeout = timeout
        self.clock = clock
    }

    /// A change arrived that the maps do not hold yet (`QueuedUpdate`): only the oldest counts.
    public func queuedUpdate() {
        lock.withLock { if oldestPending == nil { oldestPending = clock() } }
    }

    /// The maps hold everything received (`Updated`). Pending stays while a source is failing.
    public func updated() {
        lock.withLock {
            lastUpdated = Date()
            if failingSources.isEmpty { oldestPending = nil }
        }
    }

    /// A list or watch of `kind` failed: what the API server holds may not reach the maps.
    public func sourceFailing(_ kind: String) {
        lock.withLock {
            failingSources.insert(kind)
            if oldestPending == nil { oldestPending = clock() }
        }
    }

    /// `kind` lists or watches again; the next `updated` clears the pending mark once none fails.
    public func sourceRestored(_ kind: String) {
        _ = lock.withLock { failingSources.remove(kind) }
    }

    /// `SyncNode`: nil (not seen yet, or deleted from the API) keeps the node eligible, as kube-proxy
    /// does until it processes a Node event saying otherwise.
    public func syncNode(_ node: Node?) {
        lock.withLock { nodeEligible = node?.eligibleForTraffic ?? true }
    }

    /// `IsHealthy`: the proxier's own health, the Node ignored.
    public var isHealthy: Bool { lock.withLock { healthyLocked() } }
    public var isNodeEligible: Bool { lock.withLock { nodeEligible } }

    private func healthyLocked() -> Bool {
        guard let since = oldestPending else { return true }
        return clock() - since < timeout
    }

    /// The answer to GET /healthz or /livez (any other path: 404), with kube-proxy's headers and
    /// body: `{"lastUpdated": "…","currentTime": "…", "nodeEligible": true}` (/livez without
    /// nodeEligible). When healthy, lastUpdated is the current time, as kube-proxy reports it.
    public func respond(path: String) -> HTTPListener.Response {
        let endpoint: String
        switch path {
        case "/healthz": endpoint = "healthz"
        case "/livez": endpoint = "livez"
        default:
            return HTTPListener.Response(status: .notFound, headers: [("Content-Type", "text/plain; charset=utf-8"),
                                                               ("X-Content-Type-Options", "nosniff")], body: "404 page not found\n")
        }
        let (healthy, eligible, last) = lock.withLock { (healthyLocked(), nodeEligible, lastUpdated) }
        let ok = endpoint == "livez" ? healthy : healthy && eligible
        let now = Date()
        let status: HTTPResponseStatus = ok ? .ok : .serviceUnavailable
        lock.withLock { answers[endpoint, default: [:]][status.code, default: 0] += 1 }
        let lastText = Self.goTime(ok ? now : last)
        var body = "{\"lastUpdated\": \"\(lastText)\",\"currentTime\": \"\(Self.goTime(now))\""
        body += endpoint == "healthz" ? ", \"nodeEligible\": \(eligible)}" : "}"
        return HTTPListener.Response(status: status, headers: [("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff")],
                              body: body)
    }

    /// Answers given, by endpoint ("healthz", "livez") and HTTP code: kube-proxy's
    /// proxy_healthz_total and proxy_livez_total.
    public var answerCounts: [String: [UInt: UInt64]] { lock.withLock { answers } }

    /// Go's time.Time String() form, as kube-proxy's %q prints it; the zero time when never updated.
    static func goTime(_ date: Date?) -> String {
        guard let date else { return "0001-01-01 00:00:00 +0000 UTC" }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss.SSSSSSSSS '+0000 UTC'"
        return f.string(from: date)
    }
}
