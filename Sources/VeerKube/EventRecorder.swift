import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import VeerModel

/// Posts Kubernetes Events on this node's Node object, as kube-proxy does for its own: so
/// `kubectl describe node` shows when Veer started, rejected a service, or terminated
/// sockets. Needs only `create` on `events`. Rate-limited per reason; best effort: a
/// failed post is logged at debug level and never blocks the agent.
public final class KubeEventRecorder: Sendable {
    public enum EventType: String, Sendable { case normal = "Normal", warning = "Warning" }

    private let config: KubeAPIConfig
    private let nodeName: String
    private let client: HTTPClient
    private let logger: Logger
    private let minInterval: Duration
    private let lastPosted = Locked([String: ContinuousClock.Instant]())

    public init(config: KubeAPIConfig, nodeName: String, minInterval: Duration = .seconds(10),
                logger: Logger = Logger(label: "veer.events")) throws {
        self.config = config
        self.nodeName = nodeName
        self.minInterval = minInterval
        self.logger = logger
        var configuration = HTTPClient.Configuration(tlsConfiguration: try config.makeTLSConfiguration())
        configuration.redirectConfiguration = .disallow
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    /// Records an event unless one with the same reason was posted less than `minInterval` ago.
    /// Returns whether it was sent.
    @discardableResult
    public func record(_ type: EventType, reason: String, message: String) async -> Bool {
        let now = ContinuousClock.now
        let allowed = lastPosted.withLock { last -> Bool in
            if let t = last[reason], now - t < minInterval { return false }
            last[reason] = now
            return true
        }
        guard allowed else { return false }
        let stamp = ISO8601DateFormatter().string(from: Date())
        let event: [String: Any] = [
            "apiVersion": "v1", "kind": "Event",
            "metadata": ["generateName": "\(nodeName).", "namespace": "default"],
            "involvedObject": ["apiVersion": "v1", "kind": "Node", "name": nodeName, "uid": nodeName],
            "reason": reason, "message": message, "type": type.rawValue,
            "source": ["component": "veerd", "host": nodeName],
            "reportingComponent": "veerd", "reportingInstance": nodeName,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        ]
        do {
            var request = HTTPClientRequest(url: config.server + "/api/v1/namespaces/default/events")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "User-Agent", value: "veer/0.1 (linux) veerd")
            if let auth = config.authorizationHeader() { request.headers.add(name: "Authorization", value: auth) }
            request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: event)))
            let response = try await client.execute(request, timeout: .seconds(10))
            guard (200..<300).contains(Int(response.status.code)) else {
                logger.debug("event \(reason) not posted: HTTP \(response.status.code) (RBAC: create events)")
                return false
            }
            return true
        } catch {
            logger.debug("event \(reason) not posted: \(error)")
            return false
        }
    }

    public func shutdown() async {
        try? await client.shutdown()
    }
}
