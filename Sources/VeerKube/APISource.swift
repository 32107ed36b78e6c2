// The Kubernetes API source: list+watch of Services and EndpointSlices in all namespaces and of
// this node's Node, one reflector per kind, in the manner of client-go's reflector
// (see docs/sources.md and /work/shared/reference/kube-api-watch.md):
//   list (paged) → replaceAll → watch from the list's resourceVersion
//   (Options.watchList: first a WatchList, one watch streaming the state, whose marker bookmark →
//    replaceAll and the same watch goes on; refused (4xx) or ignored (no marker) → the list above)
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
import ServiceLifecycle
import VeerModel

/// A swift-service-lifecycle `Service`: `run()` runs one reflector per kind as child tasks until it
/// is cancelled or, in a ServiceGroup, until graceful shutdown.
public final class KubeAPISource: ServiceLifecycle.Service, Sendable {
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
        /// Stream the initial state as a WatchList (KEP-3157; served by Kubernetes 1.32 and 1.34+),
        /// falling back to list+watch where the server refuses or ignores it. Off by default: at
        /// 10,000 Services our streamed read is about 0.2 s slower than the paged list (make bench).
        public var watchList = false
        /// A WatchList that brings nothing for this long before its initial-events-end marker is
        /// taken as ignored: list instead (client-go warns after 10 s).
        public var watchListQuietTimeout: Duration = .seconds(10)

        public init(nodeName: String) { self.nodeName = nodeName }
    }

    public let config: KubeAPIConfig
    public let options: Options
    /// apply/delete/replaceAll per kind, then `synced` once all three kinds were listed once.
    public let events: AsyncStream<SourceEvent>
    /// Reconnects, RBAC problems, undecodable events (also logged). Keeps the newest 256.
    public let diagnostics: AsyncStream<SourceDiagnostic>

    let eventsOut: AsyncStream<SourceEvent>.Continuation
    private let diagnosticsOut: AsyncStream<SourceDiagnostic>.Continuation
    let logger: Logger
    /// The HTTP client is made by `run()` and shut down when it ends, so a source that never runs holds nothing.
    private let clientConfiguration: HTTPClient.Configuration
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

    func count(_ kind: ResourceKind, _ update: (inout Statistics) -> Void) {
        state.withLock { update(&$0.stats[kind, default: Statistics()]) }
    }

    private struct State {
        var stats: [ResourceKind: Statistics] = [:]
        var listed: Set<ResourceKind> = []
        var synced = false
        var ran = false
        /// The server refused or ignored a WatchList: list+watch from now on.
        var watchListUnsupported = false
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
        clientConfiguration = configuration
        (events, eventsOut) = AsyncStream.makeStream(of: SourceEvent.self)
        (diagnostics, diagnosticsOut) = AsyncStream.makeStream(of: SourceDiagnostic.self,
                                                              bufferingPolicy: .bufferingNewest(256))
    }

    /// Runs the three reflectors until cancelled or graceful shutdown; they never give up. Then
    /// closes the connections and finishes both streams. A source runs once.
    public func run() async throws {
        guard state.withLock({ s in defer { s.ran = true }; return !s.ran }) else { return }
        logger.info("watching the Kubernetes API at \(config.server) (\(config.origin)), node \(options.nodeName)")
        for warning in config.warnings { report(.warning, "config", warning) }
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: clientConfiguration)
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                for kind in ResourceKind.allCases {
                    group.addTask { await self.reflect(kind, client) }
                }
            }
        }
        try? await client.shutdown()
        eventsOut.finish()
        diagnosticsOut.finish()
    }

    // MARK: - the reflector loop

    enum WatchEnd {
        case ended(events: Int)
        case expired(String)
    }

    private func reflect(_ kind: ResourceKind, _ client: HTTPClient) async {
        var backoff = Backoff(initial: options.initialBackoff, maximum: options.maxBackoff,
                              resetAfter: options.backoffResetAfter)
        var resourceVersion: String?
        var troubled = false  // a problem was reported; report the recovery too
        var listNext = false  // a WatchList just failed without being refused: list this time
        while !Task.isCancelled {
            let streaming = resourceVersion == nil && options.watchList && !listNext
                && !state.withLock({ $0.watchListUnsupported })
            if resourceVersion == nil && !streaming {
                listNext = false
                do {
                    let (objects, listRV) = try await list(kind, client)
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
            let rv = resourceVersion ?? "(WatchList)"
            let started = ContinuousClock.now
            do {
                switch try await watch(kind, client, from: resourceVersion, lastResourceVersion: &resourceVersion, troubled: &troubled) {
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
            } catch let error as WatchListUnsupported {
                if Task.isCancelled { return }
                // Whatever the stream brought stays unapplied: a list replaces it at once.
                if error.sticky { state.withLock { $0.watchListUnsupported = true } }
                report(.info, "watch \(kind.resource)", "WatchList unavailable (\(error.reason)); "
                       + (error.sticky ? "listing instead from now on" : "listing instead"))
                resourceVersion = nil
                listNext = true
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
                listNext = true
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

    func markListed(_ kind: ResourceKind) {
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

    func sleep(_ d: Duration) async {
        try? await Task.sleep(for: d)
    }

    // MARK: - diagnostics

    func report(_ severity: SourceDiagnostic.Severity, _ origin: String, _ message: String,
                connectivity: SourceDiagnostic.Connectivity? = nil) {
        var d = SourceDiagnostic(severity, origin: origin, message)
        d.connectivity = connectivity
        logger.log(level: d.logLevel, "\(d.description)")
        diagnosticsOut.yield(d)
    }

    func report(failure error: Error, kind: ResourceKind, verb: String, delay: Duration) {
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
