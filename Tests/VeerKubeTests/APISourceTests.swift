import Foundation
import Testing
import VeerModel
import VeerTestSupport
@testable import VeerKube

@Suite("API source against the fake API server", .serialized)
struct APISourceTests {
    @Test("paginated initial list, selectors, watch parameters, live add/modify/delete")
    func listAndWatch() async throws {
        let server = try FakeAPIServer(state: standardState())
        defer { server.stop() }
        try await withSource(server, options: testOptions(pageSize: 1)) { _, rec in
            await rec.wait("synced") { rec.syncedCount == 1 }
            #expect(rec.keys(.service) == ["other/api", "shop/db", "shop/web"], "headless filtered, pages stitched")
            #expect(rec.keys(.endpointSlice) == ["shop/db-1", "shop/web-1", "shop/web-2"])
            #expect(rec.keys(.node) == ["node-a"])
            // The item's own bytes (list items carry no kind; the RawObject does), decodable as they are.
            let web = try #require(rec.object(.service, "shop/web"))
            #expect(web.kind == .service && web.namespace == "shop" && web.name == "web")
            guard case let .service(decoded)? = KubeDecoder.decode(web).object else {
                Issue.record("shop/web does not decode: \(KubeDecoder.decode(web).errors)")
                return
            }
            #expect(decoded.ports.map(\.port) == [80])
            #expect(rec.object(.service, "shop/web")?.resourceVersion != nil)
            // synced comes after a replaceAll for every kind.
            let events = rec.events
            let syncedAt = try #require(events.firstIndex(of: .synced))
            for kind in ResourceKind.allCases {
                #expect(events[..<syncedAt].contains { if case .replaceAll(kind, _) = $0 { true } else { false } })
            }

            try await server.apply("services", svc("cache", port: 6379))
            try await server.apply("services", svc("web", port: 8080))
            try await server.delete("services", "shop", "db")
            try await server.apply("nodes", node("node-b", zone: "z9"))  // not ours
            try await server.apply("nodes", node("node-a", zone: "z2"))
            try await server.delete("endpointslices", "shop", "web-2")
            await rec.wait("live changes") {
                rec.keys(.service) == ["other/api", "shop/cache", "shop/web"]
                    && rec.service("shop/web")?.ports.first?.port == 8080
                    && rec.node("node-a")?.zone == "z2"
                    && rec.keys(.endpointSlice) == ["shop/db-1", "shop/web-1"]
            }
            #expect(rec.keys(.node) == ["node-a"])
            #expect(rec.events.contains(.delete(.service, namespace: "shop", name: "db")))
        }

        let requests = try await server.requests()
        let serviceLists = requests.filter { $0.path == "/api/v1/services" && $0.query["watch"] == nil }
        #expect(serviceLists.count == 3, "three pages of one")
        #expect(serviceLists.first?.query["limit"] == "1" && serviceLists.first?.query["continue"] == nil)
        #expect(serviceLists.dropFirst().allSatisfy { $0.query["continue"] != nil && $0.query["resourceVersion"] == nil })
        #expect(serviceLists.allSatisfy { $0.query["labelSelector"] == "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name" })
        let watch = try #require(requests.first { $0.path == "/api/v1/services" && $0.query["watch"] == "true" })
        #expect(watch.query["allowWatchBookmarks"] == "true")
        #expect(watch.query["resourceVersion"] == "1009", "the list's resourceVersion (9 objects loaded from 1000)")
        #expect((300...599).contains(Int(watch.query["timeoutSeconds"] ?? "") ?? 0))
        let nodeRequests = requests.filter { $0.path == "/api/v1/nodes" }
        #expect(!nodeRequests.isEmpty && nodeRequests.allSatisfy { $0.query["fieldSelector"] == "metadata.name=node-a" })
        #expect(requests.filter { !$0.path.hasPrefix("/_fake") }.allSatisfy { $0.userAgent == "veer/0.1 (linux) veerd" })
        #expect(requests.contains { $0.path == "/apis/discovery.k8s.io/v1/endpointslices" && $0.query["watch"] == "true" })
    }

    @Test("events split across chunks are reassembled; a malformed event is reported and the stream continues")
    func chunksAndMalformedEvents() async throws {
        let server = try FakeAPIServer(state: standardState())
        defer { server.stop() }
        try await withSource(server) { _, rec in
            await rec.wait("synced") { rec.syncedCount == 1 }
            try await server.control("split", ["bytes": 7])
            try await server.apply("services", svc("split-one", port: 1111))
            try await server.apply("services", svc("split-two", port: 2222))
            await rec.wait("split events") { rec.keys(.service).contains("shop/split-two") }
            #expect(rec.service("shop/split-one")?.ports.first?.port == 1111)

            try await server.control("split", ["bytes": 0])
            try await server.control("inject_raw", ["resource": "services", "line": "{\"type\":\"ADDED\",\"object\":{not json"])
            try await server.control("inject_raw", ["resource": "services",
                                                    "line": #"{"type":"ADDED","object":{"kind":"Service","metadata":{"namespace":"shop"}}}"#])
            try await server.apply("services", svc("after-garbage"))
            await rec.wait("stream continues") { rec.keys(.service).contains("shop/after-garbage") }
            #expect(rec.diagnostics.contains { $0.origin == "watch services" && $0.message.contains("not JSON") })
            #expect(rec.diagnostics.contains { $0.message.contains("metadata.name") })
        }
        let watches = try await server.requests().filter { $0.path == "/api/v1/services" && $0.query["watch"] != nil }
        #expect(watches.count == 1, "garbage does not restart the watch")
    }

    @Test("a clean end or a cut stream resumes from the last resourceVersion (bookmarks included), no relist")
    func resume() async throws {
        let server = try FakeAPIServer(state: standardState())
        defer { server.stop() }
        try await withSource(server) { _, rec in
            await rec.wait("synced") { rec.syncedCount == 1 }
            try await server.apply("services", svc("one"))
            await rec.wait("one") { rec.keys(.service).contains("shop/one") }
            try await server.apply("endpointslices", slice("unrelated", service: "x"))  // moves the RV elsewhere
            let bm = try await server.control("bookmark", ["resource": "services"])
            let bookmarkRV = try #require(bm["resourceVersion"] as? String)
            // Not a wait for an event: the watch must outlive shortWatch (100 ms) for its end to
            // count as a normal one rather than a failure (the bookmark itself is queued ahead
            // of the close on the same stream).
            try await Task.sleep(for: .milliseconds(200))
            try await server.control("close_watches", ["resource": "services"])
            func serviceWatches() async throws -> [FakeAPIServer.Request] {
                try await server.requests().filter { $0.path == "/api/v1/services" && $0.query["watch"] != nil }
            }
            try await waitFor("the services watch resumed") { try await serviceWatches().count >= 2 }
            var watches = try await serviceWatches()
            #expect(watches.count == 2)
            #expect(watches.last?.query["resourceVersion"] == bookmarkRV, "resumed at the bookmark's resourceVersion")

            // Cut in the middle of an event: the half event is dropped, the resumed watch replays it whole.
            try await server.control("cut_next_event", ["resource": "services"])
            try await server.apply("services", svc("two", port: 2020))
            await rec.wait("two after the cut") { rec.keys(.service).contains("shop/two") }
            #expect(rec.service("shop/two")?.ports.first?.port == 2020)
            watches = try await server.requests().filter { $0.path == "/api/v1/services" && $0.query["watch"] != nil }
            #expect(watches.count == 3)
            #expect(watches.last?.query["resourceVersion"] == bookmarkRV)
            let applies = rec.events.filter { if case .apply(let o) = $0 { o.name == "two" } else { false } }
            #expect(applies.count == 1, "delivered once")
        }
        let lists = try await server.requests().filter { $0.path == "/api/v1/services" && $0.query["watch"] == nil }
        #expect(lists.count == 1, "no relist")
    }

    @Test("410 Gone as an ERROR event and as an HTTP status: relist, no stale objects")
    func gone() async throws {
        let server = try FakeAPIServer(state: standardState())
        defer { server.stop() }
        try await withSource(server) { _, rec in
            await rec.wait("synced") { rec.syncedCount == 1 }
            // Changes the watch never sees (compacted away), then the watch ends.
            try await server.control("silent", ["on": true])
            try await server.delete("services", "shop", "db")
            try await server.apply("services", svc("late"))
            try await server.control("silent", ["on": false])
            try await server.control("compact")
            // Not a wait for an event: the watch must outlive shortWatch (100 ms), so that its end
            // is a normal one, not a failure.
            try await Task.sleep(for: .milliseconds(150))
            try await server.control("close_watches", ["resource": "services"])
            await rec.wait("relisted after ERROR 410") { rec.keys(.service) == ["other/api", "shop/late", "shop/web"] }
            #expect(rec.events.contains { if case .replaceAll(.service, let os) = $0 { os.contains { $0.name == "late" } } else { false } })
            #expect(rec.diagnostics.contains { $0.origin == "watch services" && $0.message.contains("expired") },
                    "relisted because of the ERROR event: \(rec.diagnostics)")

            // The HTTP form.
            try await server.control("silent", ["on": true])
            try await server.delete("endpointslices", "shop", "web-2")
            try await server.control("silent", ["on": false])
            try await server.control("watch_http_410", ["count": 1])
            try await Task.sleep(for: .milliseconds(150))  // outlive shortWatch, as above
            try await server.control("close_watches", ["resource": "endpointslices"])
            await rec.wait("relisted after HTTP 410") { rec.keys(.endpointSlice) == ["shop/db-1", "shop/web-1"] }
            #expect(rec.diagnostics.contains { $0.origin == "watch endpointslices" && $0.message.contains("410 Gone") })

            // And it keeps watching afterwards.
            try await server.apply("endpointslices", slice("web-3", service: "web"))
            await rec.wait("watching again") { rec.keys(.endpointSlice).contains("shop/web-3") }
            #expect(rec.syncedCount == 1)
        } inspect: { source in
            let stats = source.statistics()
            #expect(stats[.service]?.lists == 2 && stats[.service]?.expired == 1, "\(stats)")
            #expect(stats[.endpointSlice]?.lists == 2 && stats[.endpointSlice]?.expired == 1, "\(stats)")
        }
        let requests = try await server.requests()
        #expect(requests.filter { $0.path == "/api/v1/services" && $0.query["watch"] == nil }.count == 2)
        #expect(requests.filter { $0.path == "/apis/discovery.k8s.io/v1/endpointslices" && $0.query["watch"] == nil }.count == 2)
    }

    @Test("an expired continue token gives one unpaginated list")
    func expiredContinue() async throws {
        let server = try FakeAPIServer(state: standardState())
        defer { server.stop() }
        try await server.control("expire_continue", ["count": 1])
        try await withSource(server, options: testOptions(pageSize: 2)) { _, rec in
            await rec.wait("synced") { rec.syncedCount == 1 }
            #expect(rec.keys(.service) == ["other/api", "shop/db", "shop/web"])
        }
        let requests = try await server.requests()
        #expect(!requests.contains { $0.query["continue"] == "inconsistent-token" })
        // The three kinds list at once: whichever met the expired token relisted without pages.
        let lists = ["/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices", "/api/v1/nodes"]
        #expect(requests.contains { lists.contains($0.path) && $0.query["watch"] == nil && $0.query["limit"] == nil },
                "\(requests.map { "\($0.path) \($0.query)" })")
    }

    @Test("server down then up: state kept while down, then converges; backoff, no spinning")
    func serverDownAndUp() async throws {
        var server = try FakeAPIServer(state: standardState())
        let port = server.port
        try await withSource(server) { _, rec in
            await rec.wait("synced") { rec.syncedCount == 1 }
            let before = rec.events.count
            server.stop()
            // A measuring window, not a wait: how often it retries in 1.5 s is what is tested.
            try await Task.sleep(for: .milliseconds(1500))
            #expect(rec.events.count == before, "nothing emitted while the server is away")
            #expect(rec.keys(.service) == ["other/api", "shop/db", "shop/web"], "last good state kept")
            let failures = rec.diagnostics.filter { $0.message.contains("connection to the API server") }
            #expect(!failures.isEmpty)
            #expect(failures.count < 60, "backs off: \(failures.count) attempts in 1.5 s over 3 kinds")

            // Back, with a newer state and no history: 410 → relist → converge.
            var state = standardState()
            state["services"] = [svc("web", port: 9090), svc("new")]
            server = try FakeAPIServer(state: state, port: port, rvStart: 5000)
            await rec.wait("converged", timeout: .seconds(30)) {
                rec.keys(.service) == ["shop/new", "shop/web"]
                    && rec.service("shop/web")?.ports.first?.port == 9090
            }
            try await server.apply("services", svc("after-restart"))
            await rec.wait("watching the new server") { rec.keys(.service).contains("shop/after-restart") }
            #expect(rec.syncedCount == 1)
        }
        server.stop()
    }

    @Test("a server whose history is behind our resourceVersion (restored from a backup): 504 Too large resource version → relist, as client-go does")
    func serverBehindUs() async throws {
        var server = try FakeAPIServer(state: standardState(), rvStart: 5000)
        let port = server.port
        try await withSource(server) { _, rec in
            await rec.wait("synced") { rec.syncedCount == 1 }
            server.stop()
            // Restored from an older backup: resourceVersions from 1000 again, other objects.
            var state = standardState()
            state["services"] = [svc("restored")]
            server = try FakeAPIServer(state: state, port: port, rvStart: 1000)
            await rec.wait("relisted", timeout: .seconds(30)) { rec.keys(.service) == ["shop/restored"] }
            #expect(rec.diagnostics.contains { $0.message.contains("Too large resource version") }, "\(rec.diagnostics)")
            try await server.apply("services", svc("after"))
            await rec.wait("watching the restored server") { rec.keys(.service).contains("shop/after") }
        }
        server.stop()
    }

    @Test("401 and 403 are reported with the missing permission; a rotated token file is picked up")
    func authErrors() async throws {
        let server = try FakeAPIServer(state: standardState(), token: "good-token")
        defer { server.stop() }
        let dir = try TempDir()
        defer { dir.cleanup() }
        try dir.write("token", "expired-token\n")
        try await server.control("forbid", ["resources": ["endpointslices"]])
        let config = KubeAPIConfig(server: server.url, credentials: .tokenFile(path: dir.file("token"), fallback: nil))
        try await withSource(server, config: config) { _, rec in
            // By the status line: a bare "403" also matches a retry delay such as "1.403 s".
            await rec.wait("401 reported") { rec.diagnostics.contains { $0.message.contains("401 Unauthorized") } }
            #expect(rec.syncedCount == 0 && rec.events.isEmpty)
            try dir.write("token", "good-token\n")  // rotated
            await rec.wait("services listed") { !rec.keys(.service).isEmpty }
            await rec.wait("403 reported") { rec.diagnostics.contains { $0.message.contains("403 Forbidden") } }
            let forbidden = try #require(rec.diagnostics.first { $0.message.contains("403 Forbidden") })
            #expect(forbidden.origin == "list endpointslices")
            #expect(forbidden.message.contains("endpointslices") && forbidden.message.contains("discovery.k8s.io")
                    && forbidden.message.contains("list, watch") && forbidden.message.contains("cannot list resource"),
                    "\(forbidden.message)")
            #expect(rec.syncedCount == 0, "not synced while a kind is missing")
            try await server.control("forbid", ["resources": [String]()])
            await rec.wait("synced once allowed") { rec.syncedCount == 1 && rec.keys(.endpointSlice).count == 3 }
        }
        let auth = try await server.requests().filter { !$0.path.hasPrefix("/_fake") }.compactMap(\.authorization)
        #expect(auth.contains("Bearer expired-token") && auth.contains("Bearer good-token"))
    }
}

extension APISourceTests {
    @Test("an event over the line cap drops the watch with a reason and relists past it")
    func oversizedEvent() async throws {
        let server = try FakeAPIServer(state: standardState())
        defer { server.stop() }
        var options = testOptions()
        options.maxLineBytes = 4096
        try await withSource(server, options: options) { _, rec in
            await rec.wait("synced") { rec.syncedCount == 1 }
            var big = svc("big")
            big["metadata"] = ["name": "big", "namespace": "shop", "annotations": ["note": String(repeating: "x", count: 10_000)]]
            try await server.apply("services", big)
            await rec.wait("big arrives by relist") { rec.keys(.service).contains("shop/big") }
            #expect(rec.diagnostics.contains { $0.message.contains("longer than 4096 bytes") && $0.message.contains("relisting") })
            try await server.apply("services", svc("after-big"))
            await rec.wait("watching past it") { rec.keys(.service).contains("shop/after-big") }
        }
    }

    @Test("a server that answers every watch with 410, or closes every watch at once, is not hammered")
    func noSpin() async throws {
        let server = try FakeAPIServer(state: standardState())
        defer { server.stop() }
        try await withSource(server) { _, rec in
            await rec.wait("synced") { rec.syncedCount == 1 }
            try await server.control("watch_http_410", ["count": 100_000])
            try await server.control("drop_watches")
            // A measuring window, not a wait: the request rate over 1.5 s is what is tested.
            try await Task.sleep(for: .seconds(1.5))
            #expect(rec.keys(.service) == ["other/api", "shop/db", "shop/web"], "relists keep the state")
        }
        let requests = try await server.requests().filter { !$0.path.hasPrefix("/_fake") }
        // Test backoff: 50 ms doubling to a 400 ms cap, jittered; ~1.5 s over three kinds.
        #expect(requests.count < 70, "\(requests.count) requests in 1.5 s")
        #expect(requests.filter { $0.query["watch"] == nil }.count >= 6, "it does keep trying")
    }

    @Test("429 with Retry-After waits as long as asked; a slow server is waited for")
    func retryAfterAndSlow() async throws {
        let server = try FakeAPIServer(state: standardState())
        defer { server.stop() }
        try await server.control("fail_next", ["resource": "services", "status": 429, "retry_after": 1, "count": 1])
        try await server.control("delay", ["ms": 300])
        let started = ContinuousClock.now
        try await withSource(server) { _, rec in
            await rec.wait("synced") { rec.syncedCount == 1 }
            #expect(ContinuousClock.now - started >= .seconds(1), "Retry-After: 1 honoured (test backoff is 50 ms)")
            #expect(rec.diagnostics.contains { $0.message.contains("429") })
            #expect(rec.keys(.service) == ["other/api", "shop/db", "shop/web"])
        }
    }
}

@Suite("Watch framing and backoff")
struct WatchSupportTests {
    @Test("lines split at every byte offset decode identically; several per chunk; cap enforced")
    func framer() throws {
        let events = (0..<3).map { #"{"type":"MODIFIED","object":{"metadata":{"name":"s\#($0)"}}}"# }
        let stream = Array(events.joined(separator: "\n").utf8) + [UInt8(ascii: "\n")]
        for cut in 0...stream.count {
            var f = LineFramer(maxLineBytes: 1 << 20)
            let lines = try f.append(stream[..<cut]) + f.append(stream[cut...])
            #expect(lines.map { String(decoding: $0, as: UTF8.self) } == events, "cut at \(cut)")
        }
        // CRLF endings and blank lines, cut anywhere (a cut may fall between \r and \n).
        let crlf = Array(("\r\n" + events.joined(separator: "\r\n\n") + "\r\n").utf8)
        for cut in 0...crlf.count {
            var f = LineFramer(maxLineBytes: 1 << 20)
            let lines = try f.append(crlf[..<cut]) + f.append(crlf[cut...])
            #expect(lines.map { String(decoding: $0, as: UTF8.self) } == events, "CRLF cut at \(cut)")
        }
        var byteByByte = LineFramer(maxLineBytes: 1 << 20)
        var lines: [Data] = []
        for b in stream { lines += try byteByByte.append([b]) }
        #expect(lines.count == 3)

        let big = #"{"pad":""# + String(repeating: "x", count: 4 << 20) + "\"}\n"
        var f = LineFramer(maxLineBytes: 16 << 20)
        var got: [Data] = []
        for chunk in Array(big.utf8).chunks(ofCount: 65536) { got += try f.append(chunk) }
        #expect(got.count == 1 && got[0].count == big.utf8.count - 1)

        var small = LineFramer(maxLineBytes: 100)
        #expect(throws: LineFramer.LineTooLong.self) { _ = try small.append(Array(repeating: UInt8(ascii: "a"), count: 101)) }
        _ = try small.append(Array("ok\n".utf8))  // usable again after the error
    }

    @Test("backoff doubles with jitter in [d, 2d), caps, and resets after a quiet period")
    func backoff() {
        var b = Backoff(initial: .milliseconds(800), maximum: .seconds(30), resetAfter: .seconds(120))
        let t0 = ContinuousClock.now
        var step = Duration.milliseconds(800)
        for i in 0..<10 {
            let d = b.next(now: t0 + .seconds(i))
            #expect(d >= step && d < step * 2, "attempt \(i): \(d) for step \(step)")
            step = min(step * 2, .seconds(30))
        }
        let afterQuiet = b.next(now: t0 + .seconds(500))
        #expect(afterQuiet >= .milliseconds(800) && afterQuiet < .milliseconds(1600))
    }
}

extension Array {
    func chunks(ofCount n: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: n).map { self[$0..<Swift.min($0 + n, count)] }
    }
}
