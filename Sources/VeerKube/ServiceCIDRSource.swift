import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import ServiceLifecycle

/// Lists and watches `networking.k8s.io/v1` ServiceCIDR objects (GA in Kubernetes 1.33): the
/// ranges the API server allocates ClusterIPs from, as kube-proxy's ServiceCIDR informer reads
/// them. Every change yields the union of all objects' `spec.cidrs`, as text (the agent parses
/// them and skips a bad one with a reason).
///
/// Kept apart from `KubeAPISource`: the kind is optional. An API server that does not serve it
/// (404, before 1.33 or with the API off) or does not let veerd read it (403) yields
/// `.unavailable` once and is asked again every `retryUnavailable`; the agent then uses
/// `--service-cidr`. Nothing here holds up the first sync of Services.
///
/// A swift-service-lifecycle `Service`: `run()` lists and watches until cancelled or graceful shutdown.
public final class ServiceCIDRSource: ServiceLifecycle.Service, Sendable {
    public enum Update: Sendable, Equatable {
        /// Every ServiceCIDR's `spec.cidrs` (may be empty: the API has no object).
        case cidrs([String])
        /// The API does not serve or allow ServiceCIDRs; why.
        case unavailable(String)
    }

    public static let path = "/apis/networking.k8s.io/v1/servicecidrs"

    public let updates: AsyncStream<Update>
    private let out: AsyncStream<Update>.Continuation
    private let config: KubeAPIConfig
    /// The HTTP client is made by `run()` and shut down when it ends, so a source that never runs holds nothing.
    private let clientConfiguration: HTTPClient.Configuration
    private let logger: Logger
    private let retryUnavailable: Duration
    private let ran = Locked(false)

    public init(config: KubeAPIConfig, retryUnavailable: Duration = .seconds(300),
                logger: Logger = Logger(label: "veer.source.servicecidrs")) throws {
        self.config = config
        self.logger = logger
        self.retryUnavailable = retryUnavailable
        var configuration = HTTPClient.Configuration(tlsConfiguration: try config.makeTLSConfiguration(),
                                                     timeout: .init(connect: .seconds(10), read: nil))
        configuration.redirectConfiguration = .disallow
        configuration.httpVersion = .http1Only
        clientConfiguration = configuration
        (updates, out) = AsyncStream.makeStream(of: Update.self, bufferingPolicy: .bufferingNewest(16))
    }

    /// Lists, then watches, again and again until cancelled or graceful shutdown; then finishes `updates`. A source runs once.
    public func run() async throws {
        guard ran.withLock({ r in defer { r = true }; return !r }) else { return }
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: clientConfiguration)
        await cancelWhenGracefulShutdown { await self.listAndWatch(client) }
        try? await client.shutdown()
        out.finish()
    }

    private struct Unavailable: Error { let reason: String }

    private func listAndWatch(_ client: HTTPClient) async {
        var backoff = Backoff(initial: .milliseconds(800), maximum: .seconds(30), resetAfter: .seconds(120))
        var reportedUnavailable: String?
        while !Task.isCancelled {
            do {
                var objects: [String: [String]] = [:]
                let rv = try await list(client, into: &objects)
                if reportedUnavailable != nil { logger.info("ServiceCIDRs are served again") }
                reportedUnavailable = nil
                out.yield(.cidrs(Self.union(objects)))
                try await watch(client, from: rv, objects: &objects)
            } catch let u as Unavailable {
                if reportedUnavailable != u.reason {
                    reportedUnavailable = u.reason
                    logger.notice("\(u.reason); using --service-cidr, asking again in \(retryUnavailable)")
                    out.yield(.unavailable(u.reason))
                }
                try? await Task.sleep(for: retryUnavailable)
            } catch {
                if Task.isCancelled { return }
                let delay = backoff.next()
                logger.debug("servicecidrs: \(error); retrying in \(delay)")
                try? await Task.sleep(for: delay)
            }
        }
    }

    static func union(_ objects: [String: [String]]) -> [String] {
        Array(Set(objects.values.flatMap { $0 })).sorted()
    }

    private func request(_ query: String) -> HTTPClientRequest {
        var r = HTTPClientRequest(url: config.server + Self.path + query)
        r.headers.add(name: "Accept", value: "application/json")
        r.headers.add(name: "User-Agent", value: "veer/0.1 (linux) veerd")
        if let auth = config.authorizationHeader() { r.headers.add(name: "Authorization", value: auth) }
        return r
    }

    private func check(_ status: UInt) throws {
        switch status {
        case 200: return
        case 404: throw Unavailable(reason: "the API server does not serve networking.k8s.io/v1 servicecidrs (Kubernetes before 1.33, or the API is off)")
        case 403: throw Unavailable(reason: "RBAC does not let veerd list servicecidrs in API group \"networking.k8s.io\" (see deploy/rbac.yaml)")
        default: throw APIStatusError(status: Int(status), body: Data())
        }
    }

    private func list(_ client: HTTPClient, into objects: inout [String: [String]]) async throws -> String {
        let response = try await client.execute(request(""), timeout: .seconds(30))
        try check(UInt(response.status.code))
        let body = try await response.body.collect(upTo: 16 << 20)
        guard let top = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] else {
            throw APIStatusError(status: 200, body: Data(), note: "the servicecidrs list is not a JSON object")
        }
        objects = [:]
        for item in top["items"] as? [[String: Any]] ?? [] { Self.apply(item, to: &objects) }
        return ((top["metadata"] as? [String: Any])?["resourceVersion"] as? String) ?? ""
    }

    /// name → spec.cidrs; an object without a name or cidrs counts as none.
    static func apply(_ object: [String: Any], to objects: inout [String: [String]]) {
        guard let name = (object["metadata"] as? [String: Any])?["name"] as? String else { return }
        objects[name] = ((object["spec"] as? [String: Any])?["cidrs"] as? [Any] ?? []).compactMap { $0 as? String }
    }

    private func watch(_ client: HTTPClient, from rv: String, objects: inout [String: [String]]) async throws {
        let timeout = Int.random(in: 300...600)
        let response = try await client.execute(
            request("?watch=true&allowWatchBookmarks=true&resourceVersion=\(rv)&timeoutSeconds=\(timeout)"),
            deadline: .now() + .seconds(Int64(timeout) + 30))
        try check(UInt(response.status.code))
        var framer = LineFramer(maxLineBytes: 1 << 20)
        for try await chunk in response.body {
            for line in try framer.append(chunk.readableBytesView) {
                guard let event = (try? JSONSerialization.jsonObject(with: line)) as? [String: Any],
                      let type = event["type"] as? String, let object = event["object"] as? [String: Any] else { continue }
                switch type {
                case "ADDED", "MODIFIED": Self.apply(object, to: &objects)
                case "DELETED":
                    if let name = (object["metadata"] as? [String: Any])?["name"] as? String { objects[name] = nil }
                case "ERROR": return  // 410 Gone and the like: list again
                default: continue  // BOOKMARK
                }
                out.yield(.cidrs(Self.union(objects)))
            }
        }
    }
}
