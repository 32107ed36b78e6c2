// The Kubernetes API source: list+watch of Services and EndpointSlices in all namespaces and of
// this node's Node, one reflector per kind, in the manner of client-go's reflector
// (see docs/sources.md and /work/shared/reference/kube-api-watch.md):
//   list (paged) → replaceAll → watch from the list's resourceVersion
//   clean end of a watch        → watch again at once from the last resourceVersion
//   410 Gone (status or ERROR)  → relist (consistent) → replaceAll, so nothing stale is left
//   unreachable / refused       → back off, watch again from the same resourceVersion
//   other failures (401, 403…)  → report, back off, relist
// While the API server is unreachable nothing is emitted, so the last good state stays programmed.
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import VeerModel

public final class KubeAPISource: Sendable {
    public struct Options: Sendable {
        /// This node's name: its Node is watched with fieldSelector=metadata.name=<nodeName>.
        public var nodeName: String
        public var pageSize: Int = 500
        /// Each watch asks the server to end after a random time in this range (seconds).
        public var watchTimeoutSeconds: ClosedRange<Int> = 300...599
        public var initialBackoff: Duration = .milliseconds(800)
        public var maxBackoff: Duration = .seconds(30)
        public var backoffResetAfter: Duration = .seconds(120)
        /// Longest single watch event accepted; longer ones restart the watch.
        public var maxLineBytes: Int = 16 << 20
        public var maxListBytes: Int = 512 << 20
        public var requestTimeout: Duration = .seconds(60)
        /// A watch that ends sooner than this with no events counts as a failure (client-go: 1 s).
        public var shortWatch: Duration = .seconds(1)
        public var connectTimeout: Duration = .seconds(10)
        public var userAgent: String = "veer/0.1 (linux) veerd"
        /// kube-proxy's selector: headless services and services owned by another proxy are not ours.
        public var serviceLabelSelector: String? = "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name"

        public init(nodeName: String) { self.nodeName = nodeName }
    }

    public let config: KubeAPIConfig
    public let options: Options
    /// apply/delete/replaceAll per kind, then `synced` once all three kinds were listed once.
    public let events: AsyncStream<SourceEvent>
    /// Reconnects, RBAC problems, undecodable events (also logged). Keeps the newest 256.
    public let diagnostics: AsyncStream<SourceDiagnostic>

    private let eventsOut: AsyncStream<SourceEvent>.Continuation
    private let diagnosticsOut: AsyncStream<SourceDiagnostic>.Continuation
    private let logger: Logger
    private let client: HTTPClient
    private let state = Locked(State())

    /// Counters per kind, for the agent's metrics.
    public struct Statistics: Sendable, Equatable {
        /// Completed lists, the first one included.
        public var lists = 0
        /// Watch requests the server accepted.
        public var watches = 0
        /// Relists forced by 410 Gone / Expired.
        public var expired = 0
        /// Failed requests: unreachable server, HTTP errors, broken streams.
        public var failures = 0
        /// Watch events and list items that could not be used (reported as diagnostics).
        public var skipped = 0
        public init() {}
    }

    public func statistics() -> [ResourceKind: Statistics] { state.withLock { $0.stats } }

    private func count(_ kind: ResourceKind, _ update: (inout Statistics) -> Void) {
        state.withLock { update(&$0.stats[kind, default: Statistics()]) }
    }

    private struct State {
        var stats: [ResourceKind: Statistics] = [:]
        var listed: Set<ResourceKind> = []
        var synced = false
        var tasks: [Task<Void, Never>] = []
        var stopped = false
    }

    public init(config: KubeAPIConfig, options: Options, logger: Logger = Logger(label: "veer.source.api")) throws {
        self.config = config
        self.options = options
        self.logger = logger
        var configuration = HTTPClient.Configuration(
            tlsConfiguration: try config.makeTLSConfiguration(),
            timeout: .init(connect: .nanoseconds(Int64(options.connectTimeout.nanoseconds)), read: nil))
        configuration.decompression = .disabled
        configuration.redirectConfiguration = .disallow
        // One HTTP/1.1 connection per watch: the path the fake API server and real clients test.
        // (HTTP/2 would multiplex the three watches over one connection; untested here.)
        configuration.httpVersion = .http1Only
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        (events, eventsOut) = AsyncStream.makeStream(of: SourceEvent.self)
        (diagnostics, diagnosticsOut) = AsyncStream.makeStream(of: SourceDiagnostic.self,
                                                              bufferingPolicy: .bufferingNewest(256))
    }

    /// Starts the three reflectors. They run until `stop()`; they never give up.
    public func start() {
        logger.info("watching the Kubernetes API at \(config.server) (\(config.origin)), node \(options.nodeName)")
        for warning in config.warnings { report(.warning, "config", warning) }
        state.withLock { s in
            guard !s.stopped, s.tasks.isEmpty else { return }
            for kind in ResourceKind.allCases {
                s.tasks.append(Task { await self.reflect(kind) })
            }
        }
    }

    /// Stops the reflectors, closes connections and finishes both streams.
    public func stop() async {
        let tasks = state.withLock { s -> [Task<Void, Never>] in
            s.stopped = true
            return s.tasks
        }
        tasks.forEach { $0.cancel() }
        for t in tasks { await t.value }
        try? await client.shutdown()
        eventsOut.finish()
        diagnosticsOut.finish()
    }

    // MARK: - the reflector loop

    private enum WatchEnd {
        case ended(events: Int)
        case expired(String)
    }

    private func reflect(_ kind: ResourceKind) async {
        var backoff = Backoff(initial: options.initialBackoff, maximum: options.maxBackoff,
                              resetAfter: options.backoffResetAfter)
        var resourceVersion: String?
        var troubled = false  // a problem was reported; report the recovery too
        while !Task.isCancelled {
            guard let rv = resourceVersion else {
                do {
                    let (objects, listRV) = try await list(kind)
                    eventsOut.yield(.replaceAll(kind, objects))
                    count(kind) { $0.lists += 1 }
                    resourceVersion = listRV
                    markListed(kind)
                    if troubled {
                        troubled = false
                        report(.info, "list \(kind.resource)", "listed \(objects.count) \(kind.resource) again; state replaced",
                               connectivity: .restored(kind.resource))
                    }
                } catch {
                    if Task.isCancelled { return }
                    troubled = true
                    count(kind) { $0.failures += 1 }
                    let delay = max(backoff.next(), (error as? APIStatusError)?.retryAfter ?? .zero)
                    report(failure: error, kind: kind, verb: "list", delay: delay)
                    await sleep(delay)
                }
                continue
            }
            let started = ContinuousClock.now
            do {
                switch try await watch(kind, from: rv, lastResourceVersion: &resourceVersion, troubled: &troubled) {
                case .ended(let count):
                    if count == 0 && ContinuousClock.now - started < options.shortWatch {
                        // A watch that closes at once with nothing in it: back off and relist, never spin.
                        let delay = backoff.next()
                        report(.warning, "watch \(kind.resource)",
                               "the watch closed immediately; relisting in \(format(delay))")
                        resourceVersion = nil
                        await sleep(delay)
                    }
                    // else: a normal end (timeoutSeconds); watch again at once from the last RV.
                case .expired(let message):
                    count(kind) { $0.expired += 1 }
                    // Back off before relisting (as client-go does), so a server that answers
                    // every watch with 410 cannot make us spin.
                    let delay = backoff.next()
                    report(.info, "watch \(kind.resource)",
                           "resourceVersion \(rv) expired (\(message)); relisting in \(format(delay))")
                    resourceVersion = nil
                    await sleep(delay)
                }
            } catch let error as APIStatusError where error.status == 410 {
                count(kind) { $0.expired += 1 }
                let delay = backoff.next()
                report(.info, "watch \(kind.resource)", "410 Gone for resourceVersion \(rv); relisting in \(format(delay))")
                resourceVersion = nil
                await sleep(delay)
            } catch let error as APIStatusError {
                if Task.isCancelled { return }
                troubled = true
                count(kind) { $0.failures += 1 }
                let delay = max(backoff.next(), error.retryAfter ?? .zero)
                report(failure: error, kind: kind, verb: "watch", delay: delay)
                // Relist, as client-go does; a 504 "Too large resource version" too, or it would repeat forever.
                if (error.status != 429 && error.status != 504) || error.tooLargeResourceVersion { resourceVersion = nil }
                await sleep(delay)
            } catch let error as WatchRestart {
                if Task.isCancelled { return }
                troubled = true
                count(kind) { $0.failures += 1 }
                let delay = backoff.next()
                report(failure: error, kind: kind, verb: "watch", delay: delay)
                // Watching again from the same resourceVersion would meet the same oversized event;
                // a list is not bound by the line cap and moves the resourceVersion past it.
                resourceVersion = nil
                await sleep(delay)
            } catch {
                if Task.isCancelled { return }
                troubled = true
                count(kind) { $0.failures += 1 }
                let delay = backoff.next()
                report(failure: error, kind: kind, verb: "watch", delay: delay)
                await sleep(delay)  // then watch again from the same resourceVersion
            }
        }
    }

    private func markListed(_ kind: ResourceKind) {
        let emitSynced = state.withLock { s -> Bool in
            s.listed.insert(kind)
            guard !s.synced, s.listed.count == ResourceKind.allCases.count else { return false }
            s.synced = true
            return true
        }
        if emitSynced {
            logger.info("initial list complete for services, endpointslices and node \(options.nodeName)")
            eventsOut.yield(.synced)
        }
    }

    private func sleep(_ d: Duration) async {
        try? await Task.sleep(for: d)
    }

    // MARK: - list

    private func list(_ kind: ResourceKind) async throws -> ([RawObject], String) {
        var objects: [String: RawObject] = [:]
        var order: [String] = []
        var listRV: String?
        var continueToken: String?
        var paged = options.pageSize > 0
        while true {
            var query = selectors(kind)
            if paged { query.append(("limit", String(options.pageSize))) }
            if let continueToken { query.append(("continue", continueToken)) }
            let (status, body, retryAfter) = try await get(kind.collectionPath, query: query, maxBytes: options.maxListBytes)
            if status == 410, continueToken != nil {
                // The continue token expired between pages: one unpaginated, consistent list (client-go's pager).
                report(.info, "list \(kind.resource)", "continue token expired; listing again without pages")
                objects = [:]; order = []; listRV = nil; continueToken = nil; paged = false
                continue
            }
            guard status == 200 else {
                var error = APIStatusError(status: status, body: body)
                error.retryAfter = retryAfter
                throw error
            }
            let page: ListPage
            do {
                page = try ListPage.decode(body, kind: kind)
            } catch {
                throw APIStatusError(status: status, body: body, note: "the list response is not a JSON object (\(error))")
            }
            if listRV == nil { listRV = page.resourceVersion }
            for raw in page.items {
                if objects.updateValue(raw, forKey: raw.key) == nil { order.append(raw.key) }
            }
            for (i, why) in page.skipped {
                count(kind) { $0.skipped += 1 }
                report(.warning, "list \(kind.resource)", "item \(i) skipped: \(why)")
            }
            continueToken = page.continueToken
            if !paged || continueToken == nil { break }
        }
        guard let listRV, !listRV.isEmpty else {
            throw APIStatusError(status: 200, body: Data(), note: "the \(kind.resource) list has no metadata.resourceVersion")
        }
        return (order.compactMap { objects[$0] }, listRV)
    }

    // MARK: - watch

    private func watch(_ kind: ResourceKind, from rv: String, lastResourceVersion: inout String?, troubled: inout Bool) async throws -> WatchEnd {
        let timeout = Int.random(in: options.watchTimeoutSeconds)
        var query = selectors(kind)
        query += [("allowWatchBookmarks", "true"), ("resourceVersion", rv),
                  ("timeoutSeconds", String(timeout)), ("watch", "true")]
        let request = makeRequest(kind.collectionPath, query: query)
        let response = try await client.execute(request, deadline: .now() + .seconds(Int64(timeout) + 30), logger: nil)
        guard response.status == .ok else {
            let body = try? await response.body.collect(upTo: 1 << 20)
            var error = APIStatusError(status: Int(response.status.code), body: body.map { Data($0.readableBytesView) } ?? Data())
            error.retryAfter = retryAfter(response.headers)
            throw error
        }
        count(kind) { $0.watches += 1 }
        if troubled {
            // Resumed from the same resourceVersion: nothing was missed.
            troubled = false
            report(.info, "watch \(kind.resource)", "watching again from resourceVersion \(rv)", connectivity: .restored(kind.resource))
        }
        var framer = LineFramer(maxLineBytes: options.maxLineBytes)
        var events = 0
        func handle(_ line: Data) -> WatchEnd? {
            switch WatchLine.decode(line, kind: kind) {
            case .skip(let why):
                count(kind) { $0.skipped += 1 }
                report(.warning, "watch \(kind.resource)", "event skipped: \(why)")
            case .event(let event, let newRV):
                events += 1
                if let newRV, !newRV.isEmpty { lastResourceVersion = newRV }
                if let event { eventsOut.yield(event) }
            case .expired(let message):
                return .expired(message)
            case .failure(let status):
                report(.warning, "watch \(kind.resource)", "ERROR event: \(status); watching again")
                return .ended(events: events)
            }
            return nil
        }
        do {
            for try await chunk in response.body {
                for line in try framer.append(chunk.readableBytesView) {
                    if let end = handle(line) { return end }
                }
            }
            if let last = framer.finish(), let end = handle(last) { return end }
        } catch let error as HTTPClientError where error == .deadlineExceeded {
            // The server ignored timeoutSeconds; our deadline ended the watch. A normal end.
        } catch let error as LineFramer.LineTooLong {
            throw WatchRestart(reason: "\(error) (maxLineBytes); dropping the watch and relisting")
        }
        return .ended(events: events)
    }

    // MARK: - HTTP

    private func selectors(_ kind: ResourceKind) -> [(String, String)] {
        switch kind {
        case .node: return [("fieldSelector", "metadata.name=\(options.nodeName)")]
        case .service, .endpointSlice:
            return options.serviceLabelSelector.map { [("labelSelector", $0)] } ?? []
        }
    }

    private func makeRequest(_ path: String, query: [(String, String)]) -> HTTPClientRequest {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let q = query.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.1)" }
            .joined(separator: "&")
        var request = HTTPClientRequest(url: config.server + path + (q.isEmpty ? "" : "?" + q))
        request.method = .GET
        request.headers.add(name: "User-Agent", value: options.userAgent)
        request.headers.add(name: "Accept", value: "application/json")
        if let auth = config.authorizationHeader() { request.headers.add(name: "Authorization", value: auth) }
        return request
    }

    private func get(_ path: String, query: [(String, String)], maxBytes: Int) async throws -> (Int, Data, Duration?) {
        let request = makeRequest(path, query: query)
        let response = try await client.execute(
            request, deadline: .now() + .nanoseconds(Int64(options.requestTimeout.nanoseconds)), logger: nil)
        let body = try await response.body.collect(upTo: maxBytes)
        return (Int(response.status.code), Data(body.readableBytesView), retryAfter(response.headers))
    }

    /// `Retry-After: <seconds>` on 429/5xx (capped at the maximum backoff).
    private func retryAfter(_ headers: HTTPHeaders) -> Duration? {
        guard let value = headers.first(name: "Retry-After"), let seconds = Int(value), seconds > 0 else { return nil }
        return min(.seconds(seconds), options.maxBackoff * 2)
    }

    // MARK: - diagnostics

    private func report(_ severity: SourceDiagnostic.Severity, _ origin: String, _ message: String,
                        connectivity: SourceDiagnostic.Connectivity? = nil) {
        var d = SourceDiagnostic(severity, origin: origin, message)
        d.connectivity = connectivity
        logger.log(level: d.logLevel, "\(d.description)")
        diagnosticsOut.yield(d)
    }

    private func report(failure error: Error, kind: ResourceKind, verb: String, delay: Duration) {
        let origin = "\(verb) \(kind.resource)"
        let retry = "retrying in \(format(delay)); the last good state stays programmed"
        if let status = error as? APIStatusError {
            switch status.status {
            case 401:
                report(.error, origin, """
                    401 Unauthorized (\(status.summary)): the API server rejected veerd's credentials from \
                    \(config.origin.isEmpty ? config.server : config.origin); check the token or client certificate (a token file is re-read before every request); \(retry)
                    """, connectivity: .failing(kind.resource))
            case 403:
                let verbs = kind == .node ? "get, list, watch" : "list, watch"
                let group = kind.apiGroup
                report(.error, origin, """
                    403 Forbidden (\(status.summary)): RBAC does not let veerd \(verb) \(kind.resource) \
                    in API group "\(group)" at the cluster scope. Grant its ServiceAccount a ClusterRole rule \
                    {apiGroups: ["\(group)"], resources: ["\(kind.resource)"], verbs: [\(verbs)]} (see deploy/ and docs/sources.md); \(retry)
                    """, connectivity: .failing(kind.resource))
            default:
                report(.warning, origin, "HTTP \(status.status) (\(status.summary)); \(retry)", connectivity: .failing(kind.resource))
            }
        } else if let restart = error as? WatchRestart {
            report(.warning, origin, "\(restart.reason); \(retry)", connectivity: .failing(kind.resource))
        } else {
            report(.warning, origin, "connection to the API server at \(config.server) failed: \(error); \(retry)", connectivity: .failing(kind.resource))
        }
    }
}

/// A non-2xx answer, with the Status the API server sent.
struct APIStatusError: Error, CustomStringConvertible {
    var status: Int
    var reason: String?
    var message: String?
    var note: String?
    var retryAfter: Duration?
    /// The server has not reached the resourceVersion asked for (504, cause ResourceVersionTooLarge).
    var tooLargeResourceVersion = false

    init(status: Int, body: Data, note: String? = nil) {
        self.status = status
        self.note = note
        if let s = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] {
            reason = s["reason"] as? String
            message = s["message"] as? String
            tooLargeResourceVersion = Self.isTooLargeResourceVersion(status: s)
        } else if !body.isEmpty {
            message = String(decoding: body.prefix(200), as: UTF8.self)
        }
    }

    var summary: String {
        [note, reason, message].compactMap { $0 }.joined(separator: ": ")
    }

    /// apimachinery's IsTooLargeResourceVersion: the cause type, or the message of older servers.
    static func isTooLargeResourceVersion(status s: [String: Any]) -> Bool {
        let causes = ((s["details"] as? [String: Any])?["causes"] as? [[String: Any]]) ?? []
        return causes.contains { $0["reason"] as? String == "ResourceVersionTooLarge" }
            || (s["message"] as? String)?.contains("Too large resource version") == true
    }
    var description: String { "HTTP \(status): \(summary)" }
}

struct WatchRestart: Error { var reason: String }

func format(_ d: Duration) -> String {
    let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    return seconds < 10 ? String(format: "%.2fs", seconds) : String(format: "%.0fs", seconds)
}

extension Duration {
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}
