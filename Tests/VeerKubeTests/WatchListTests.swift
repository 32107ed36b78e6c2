import Foundation
import Testing
import VeerModel
import VeerTestSupport
@testable import VeerKube

/// WatchList (KEP-3157): the initial state streamed on a watch and ended by the
/// k8s.io/initial-events-end bookmark, against the fake API server in each of its modes: a server
/// that serves it (1.32, 1.34+), one that refuses it with 422 (the gate off, 1.33), and one that
/// ignores the parameters (no marker ever comes).
@Suite("WatchList: the initial list streamed, with the list+watch fallback", .serialized)
struct WatchListTests {
    private func isList(_ r: FakeAPIServer.Request) -> Bool { r.query["watch"] == nil }
    private func isWatchList(_ r: FakeAPIServer.Request) -> Bool { r.query["sendInitialEvents"] != nil }

    @Test("served: one stream per kind brings the state and then the changes; no list request")
    func served() async throws {
        let server = try FakeAPIServer(state: standardState())
        defer { server.stop() }
        try await withSource(server, options: testOptions(watchList: true)) { source, rec in
            await rec.wait("synced") { rec.syncedCount == 1 }
            #expect(rec.keys(.service) == ["other/api", "shop/db", "shop/web"], "headless filtered by the selector")
            #expect(rec.keys(.endpointSlice) == ["shop/db-1", "shop/web-1", "shop/web-2"])
            #expect(rec.keys(.node) == ["node-a"])
            // The state arrives whole, as a list would bring it: one replaceAll per kind before synced.
            let events = rec.events
            let syncedAt = try #require(events.firstIndex(of: .synced))
            #expect(!events[..<syncedAt].contains { if case .apply = $0 { true } else { false } })
            // Changes then arrive on the same stream.
            try await server.apply("services", svc("cache", port: 6379))
            try await server.delete("services", "shop", "db")
            await rec.wait("changes on the stream") { rec.keys(.service) == ["other/api", "shop/cache", "shop/web"] }
            #expect(source.statistics()[.service]?.lists == 1)
            #expect(source.statistics()[.service]?.watches == 1, "the WatchList's stream goes on as the watch")
        }
        let requests = try await server.requests().filter { $0.path == "/api/v1/services" }
        #expect(!requests.contains(where: isList), "no list request: \(requests.map(\.query))")
        let first = try #require(requests.first)
        #expect(first.query["sendInitialEvents"] == "true" && first.query["resourceVersionMatch"] == "NotOlderThan")
        #expect(first.query["allowWatchBookmarks"] == "true" && first.query["watch"] == "true")
        #expect(first.query["resourceVersion"] == nil, "a consistent snapshot: no resourceVersion")
        #expect(first.query["labelSelector"] == "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name")
        #expect(requests.count == 1)
    }

    @Test("served: after 410 the relist is streamed again, and what vanished meanwhile is deleted")
    func relistStreamed() async throws {
        let server = try FakeAPIServer(state: standardState())
        defer { server.stop() }
        try await withSource(server, options: testOptions(watchList: true)) { _, rec in
            await rec.wait("synced") { rec.syncedCount == 1 }
            // Changes the watch never sees (compacted away), then the watch drops: resuming gets 410.
            try await server.control("silent", ["on": true])
            try await server.delete("services", "shop", "db")
            try await server.apply("services", svc("late", port: 81))
            try await server.control("silent", ["on": false])
            try await server.control("compact")
            try await server.control("drop_watches")
            await rec.wait("relisted by a stream") { rec.keys(.service) == ["other/api", "shop/late", "shop/web"] }
        }
        let streams = try await server.requests().filter { $0.path == "/api/v1/services" && isWatchList($0) }
        #expect(streams.count >= 2, "the relist is a WatchList too")
        #expect(try await server.requests().filter { $0.path == "/api/v1/services" }.allSatisfy { !isList($0) })
    }

    @Test("refused with 422: lists at once, and never asks again")
    func refused() async throws {
        let server = try FakeAPIServer(state: standardState(), extraArguments: ["--watch-list", "refuse"])
        defer { server.stop() }
        try await withSource(server, options: testOptions(pageSize: 2, watchList: true)) { source, rec in
            await rec.wait("synced") { rec.syncedCount == 1 }
            #expect(rec.keys(.service) == ["other/api", "shop/db", "shop/web"])
            #expect(rec.keys(.endpointSlice) == ["shop/db-1", "shop/web-1", "shop/web-2"])
            #expect(rec.diagnostics.contains { $0.message.contains("WatchList unavailable") && $0.message.contains("422") })
            #expect(!rec.diagnostics.contains { $0.severity != .info }, "a refusal is no failure: \(rec.diagnostics)")
            #expect(source.statistics()[.service]?.failures == 0)
            // A forced relist lists (the refusal is remembered): history moves on unseen, then is compacted.
            try await server.control("silent", ["on": true])
            try await server.apply("services", svc("unseen", port: 82))
            try await server.control("silent", ["on": false])
            try await server.control("compact")
            try await server.control("drop_watches")
            try await server.apply("services", svc("cache", port: 6379))
            await rec.wait("the change after the relist") { rec.keys(.service).contains("shop/cache") }
            await rec.wait("relisted") { source.statistics()[.service]?.lists ?? 0 >= 2 }
        }
        let requests = try await server.requests()
        #expect(requests.filter(isWatchList).count <= ResourceKind.allCases.count, "one attempt per kind at most")
        let services = requests.filter { $0.path == "/api/v1/services" }
        let firstList = try #require(services.firstIndex(where: isList))
        #expect(services[..<firstList].allSatisfy(isWatchList), "the WatchList is tried first")
        #expect(services.filter(isList).count >= 3, "two pages, then the relist")
        let watch = try #require(services.first { !isList($0) && !isWatchList($0) })
        #expect(watch.query["resourceVersion"] != nil, "the fallback watch starts at the list's resourceVersion")
    }

    @Test("ignored (no initial-events-end bookmark): falls back to list+watch within the quiet timeout, state exact")
    func ignored() async throws {
        let server = try FakeAPIServer(state: standardState(), extraArguments: ["--watch-list", "ignore"])
        defer { server.stop() }
        try await withSource(server, options: testOptions(watchList: true)) { source, rec in
            await rec.wait("synced", timeout: .seconds(10)) { rec.syncedCount == 1 }
            #expect(rec.keys(.service) == ["other/api", "shop/db", "shop/web"])
            #expect(rec.keys(.node) == ["node-a"])
            // The ignored stream's ADDED events were never applied one by one: the list replaced them.
            #expect(!rec.events.contains { if case .apply = $0 { true } else { false } })
            #expect(rec.diagnostics.contains { $0.message.contains("no initial-events-end bookmark") })
            try await server.apply("services", svc("cache", port: 6379))
            await rec.wait("changes after the fallback") { rec.keys(.service).contains("shop/cache") }
            #expect(source.statistics()[.service]?.lists == 1)
        }
        let services = try await server.requests().filter { $0.path == "/api/v1/services" }
        #expect(services.filter(isWatchList).count == 1)
        #expect(services.contains(where: isList))
    }

    @Test("a bookmark without the marker before the initial events end means the server ignores WatchList")
    func plainBookmarkFirst() async throws {
        let server = try FakeAPIServer(state: standardState(), extraArguments: ["--watch-list", "ignore"])
        defer { server.stop() }
        var options = testOptions(watchList: true)
        options.watchListQuietTimeout = .seconds(60)  // only the bookmark can end the wait
        try await withSource(server, options: options) { source, rec in
            await rec.wait("the streams open") {
                ResourceKind.allCases.allSatisfy { source.statistics()[$0]?.watches == 1 }
            }
            for resource in ["services", "endpointslices", "nodes"] {
                try await server.control("bookmark", ["resource": resource])
            }
            await rec.wait("synced", timeout: .seconds(10)) { rec.syncedCount == 1 }
            #expect(rec.keys(.service) == ["other/api", "shop/db", "shop/web"])
            #expect(rec.diagnostics.contains { $0.message.contains("without the initial-events-end annotation") })
        }
    }
}
