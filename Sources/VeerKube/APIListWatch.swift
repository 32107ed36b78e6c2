import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import VeerModel

// The API source's requests: a paged list, a watch read line by line, and the HTTP details.
extension KubeAPISource {
    // MARK: - list

    func list(_ kind: ResourceKind, _ client: HTTPClient) async throws -> ([RawObject], String) {
        let started = ContinuousClock.now
        var pages = 0
        var objects: [String: RawObject] = [:]
        var order: [String] = []
        var listRV: String?
        var continueToken: String?
        var paged = options.pageSize > 0
        while true {
            var query = selectors(kind)
            if paged { query.append(("limit", String(options.pageSize))) }
            if let continueToken { query.append(("continue", continueToken)) }
            let (status, body, retryAfter) = try await get(client, kind.collectionPath, query: query, maxBytes: options.maxListBytes)
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
            pages += 1
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
        logger.info("listed \(objects.count) \(kind.resource) in \(format(ContinuousClock.now - started)) (\(pages) pages)")
        return (order.compactMap { objects[$0] }, listRV)
    }

    // MARK: - watch

    /// Watches from `rv`; with `rv == nil`, a WatchList (KEP-3157): the server streams the current
    /// state as ADDED events and ends it with a BOOKMARK annotated k8s.io/initial-events-end, which
    /// replaces the store (as a list would) and marks the kind listed; the same stream then goes
    /// on as an ordinary watch. A server that refuses it (4xx) or ignores it (no marker: the stream
    /// ends, a DELETED or a plain bookmark arrives first, or nothing comes for
    /// `watchListQuietTimeout`) throws `WatchListUnsupported`, and the reflector lists instead.
    func watch(_ kind: ResourceKind, _ client: HTTPClient, from rv: String?, lastResourceVersion: inout String?, troubled: inout Bool) async throws -> WatchEnd {
        let streaming = rv == nil
        let timeout = Int.random(in: options.watchTimeoutSeconds)
        var query = selectors(kind)
        if let rv {
            query += [("allowWatchBookmarks", "true"), ("resourceVersion", rv),
                      ("timeoutSeconds", String(timeout)), ("watch", "true")]
        } else {
            // resourceVersion unset: a consistent snapshot, as a list without one.
            query += [("allowWatchBookmarks", "true"), ("resourceVersionMatch", "NotOlderThan"),
                      ("sendInitialEvents", "true"), ("timeoutSeconds", String(timeout)), ("watch", "true")]
        }
        let request = makeRequest(kind.collectionPath, query: query)
        let requested = ContinuousClock.now
        let response = try await client.execute(request, deadline: .now() + .seconds(Int64(timeout) + 30), logger: nil)
        guard response.status == .ok else {
            let body = try? await response.body.collect(upTo: 1 << 20)
            var error = APIStatusError(status: Int(response.status.code), body: body.map { Data($0.readableBytesView) } ?? Data())
            error.retryAfter = retryAfter(response.headers)
            // 422 (the WatchList gate off) or 400 (a server that knows no resourceVersionMatch on a
            // watch): it will not change its mind. Auth, throttling and 5xx are failures as for a list.
            if streaming, (400..<500).contains(error.status), ![401, 403, 408, 429].contains(error.status) {
                throw WatchListUnsupported(reason: "the server refused it: HTTP \(error.status) (\(error.summary))", sticky: true)
            }
            throw error
        }
        count(kind) { $0.watches += 1 }
        if troubled {
            // Resumed from the same resourceVersion (or streaming a fresh list): nothing was missed.
            troubled = false
            report(.info, "watch \(kind.resource)", rv.map { "watching again from resourceVersion \($0)" }
                       ?? "streaming the list again (WatchList)", connectivity: .restored(kind.resource))
        }
        let progress = Locked(StreamProgress(lastResourceVersion: lastResourceVersion, initialDone: !streaming))
        defer { lastResourceVersion = progress.withLock { $0.lastResourceVersion } }
        let quiet = options.watchListQuietTimeout
        return try await withThrowingTaskGroup(of: WatchEnd?.self) { group in
            group.addTask { try await self.read(response, kind, streaming: streaming, since: requested, progress) }
            if streaming {
                // The marker's watchdog: client-go only warns and waits for the watch's end; a
                // server that ignores sendInitialEvents would keep veerd unsynced for minutes.
                group.addTask {
                    while true {
                        try await Task.sleep(for: quiet / 4)
                        let (done, idle) = progress.withLock { ($0.initialDone, ContinuousClock.now - $0.lastActivity) }
                        if done { return nil }
                        if idle >= quiet {
                            throw WatchListUnsupported(reason: "no initial-events-end bookmark after \(format(idle)) without events", sticky: true)
                        }
                    }
                }
            }
            while let result = try await group.next() {
                if let end = result {
                    group.cancelAll()
                    return end
                }
            }
            return .ended(events: 0)
        }
    }

    struct StreamProgress {
        var lastResourceVersion: String?
        var initialDone: Bool
        var lastActivity = ContinuousClock.now
    }

    /// Reads one watch response to its end (child task of `watch`).
    private func read(_ response: HTTPClientResponse, _ kind: ResourceKind, streaming: Bool,
                      since requested: ContinuousClock.Instant, _ progress: Locked<StreamProgress>) async throws -> WatchEnd {
        var framer = LineFramer(maxLineBytes: options.maxLineBytes)
        var events = 0
        // The WatchList's initial state, until its marker.
        var initial: [String: RawObject] = [:]
        var order: [String] = []
        var buffering = streaming
        func handle(_ line: Data) throws -> WatchEnd? {
            switch WatchLine.decode(line, kind: kind) {
            case .skip(let why):
                count(kind) { $0.skipped += 1 }
                report(.warning, "watch \(kind.resource)", "event skipped: \(why)")
            case .event(let event, let newRV):
                events += 1
                if buffering {
                    progress.withLock { $0.lastActivity = .now }
                    guard case .apply(let object) = event else {
                        throw WatchListUnsupported(reason: "a deletion before the initial-events-end bookmark", sticky: true)
                    }
                    if initial.updateValue(object, forKey: object.key) == nil { order.append(object.key) }
                    return nil
                }
                if let newRV, !newRV.isEmpty { progress.withLock { $0.lastResourceVersion = newRV } }
                eventsOut.yield(event)
            case .bookmark(let newRV, let initialEventsEnd):
                events += 1
                if buffering {
                    guard initialEventsEnd, let newRV, !newRV.isEmpty else {
                        throw WatchListUnsupported(reason: "a bookmark without the initial-events-end annotation", sticky: true)
                    }
                    buffering = false
                    let objects = order.compactMap { initial[$0] }
                    initial = [:]; order = []
                    progress.withLock { $0.lastResourceVersion = newRV; $0.initialDone = true }
                    logger.info("listed \(objects.count) \(kind.resource) in \(format(ContinuousClock.now - requested)) (WatchList)")
                    eventsOut.yield(.replaceAll(kind, objects))
                    count(kind) { $0.lists += 1 }
                    markListed(kind)
                    return nil
                }
                if let newRV, !newRV.isEmpty { progress.withLock { $0.lastResourceVersion = newRV } }
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
                    if let end = try handle(line) { return end }
                }
            }
            if let last = framer.finish(), let end = try handle(last) { return end }
        } catch let error as HTTPClientError where error == .deadlineExceeded {
            // The server ignored timeoutSeconds; our deadline ended the watch. A normal end.
        } catch let error as LineFramer.LineTooLong {
            throw WatchRestart(reason: "\(error) (maxLineBytes); dropping the watch and relisting")
        }
        if buffering {
            // Not sticky: a server going away mid-stream ends it too.
            throw WatchListUnsupported(reason: "the stream ended before the initial-events-end bookmark (\(events) events)", sticky: false)
        }
        return .ended(events: events)
    }

    // MARK: - HTTP

    func selectors(_ kind: ResourceKind) -> [(String, String)] {
        switch kind {
        case .node: return [("fieldSelector", "metadata.name=\(options.nodeName)")]
        case .service, .endpointSlice:
            return options.serviceLabelSelector.map { [("labelSelector", $0)] } ?? []
        }
    }

    func makeRequest(_ path: String, query: [(String, String)]) -> HTTPClientRequest {
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

    func get(_ client: HTTPClient, _ path: String, query: [(String, String)], maxBytes: Int) async throws -> (Int, Data, Duration?) {
        let request = makeRequest(path, query: query)
        let response = try await client.execute(
            request, deadline: .now() + .nanoseconds(Int64(options.requestTimeout.nanoseconds)), logger: nil)
        let body = try await response.body.collect(upTo: maxBytes)
        return (Int(response.status.code), Data(body.readableBytesView), retryAfter(response.headers))
    }

    /// `Retry-After: <seconds>` on 429/5xx (capped at the maximum backoff).
    func retryAfter(_ headers: HTTPHeaders) -> Duration? {
        guard let value = headers.first(name: "Retry-After"), let seconds = Int(value), seconds > 0 else { return nil }
        return min(.seconds(seconds), options.maxBackoff * 2)
    }
}
