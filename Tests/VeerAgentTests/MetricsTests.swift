import Foundation
import Glibc
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Testing
@testable import VeerAgent
import VeerDatapath
import VeerKube
import VeerModel
import VeerTestSupport

// The hit series of /metrics, rendered from integer ids into one byte buffer, against the plain
// definition of what they are: one series per (Service port, endpoint) summed over the frontends
// that share it, one info series per (Service, endpoint, pod, node, zone), sorted by their label
// lists. Namespaces, names, port names and addresses are chosen so that label order, numeric
// order and insertion order disagree.

private let node = "node-a"

private func events(_ objects: [Manifest.Object]) -> [SourceEvent] {
    let parsed = ManifestParser.parse(Data(Manifest.yaml(objects).utf8), origin: "test")
    precondition(parsed.errors.isEmpty, "\(parsed.errors)")
    return parsed.events
}

/// Services in three namespaces; two ports (TCP and UDP) on some; NodePorts (a second frontend
/// sharing the ClusterIP's backends); an IPv6 service; endpoints with and without pod, node and
/// zone; an endpoint shared by two services; `10.244.x.10` before `10.244.x.9` in text order.
private func fixture() -> [SourceEvent] {
    var objects: [Manifest.Object] = []
    let namespaces = ["zeta", "default", "alpha"]
    for (n, namespace) in namespaces.enumerated() {
        for (k, name) in ["web", "api", "web-2", "db"].enumerated() {
            let index = n * 4 + k
            let twoPorts = k % 2 == 0
            var ports: [Manifest.Object] = [["name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080]]
            if twoPorts { ports.append(["name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353]) }
            if k == 1 { ports[0]["nodePort"] = 30_000 + index }
            objects.append(Manifest.service(name, namespace: namespace, clusterIP: "10.96.\(n).\(10 + k)",
                                            type: k == 1 ? "NodePort" : nil, spec: ["ports": ports]))
            let endpoints = [12, 9, 10, 1, 100].prefix(2 + index % 4).enumerated().map { j, host in
                Manifest.endpoint("10.244.\(index).\(host)", node: j % 2 == 0 ? node : "node-b",
                                  zone: j == 1 ? nil : "zone-\(j % 3)", pod: j == 2 ? nil : "\(name)-pod-\(j)", namespace: namespace)
            } + (index == 5 ? [Manifest.endpoint("10.244.0.12", node: node, pod: "shared")] : [])
            objects.append(Manifest.endpointSlice("\(name)-http", namespace: namespace, service: name, endpoints: endpoints))
            if twoPorts {
                var udp = Manifest.endpointSlice("\(name)-dns", namespace: namespace, service: name, portName: "dns", port: 5353,
                                                 endpoints: Array(endpoints.prefix(2)))
                udp["ports"] = [["name": "dns", "port": 5353, "protocol": "UDP"] as Manifest.Object]
                objects.append(udp)
            }
        }
    }
    // One endpoint's TCP and UDP rows (one `ip:port`, two backend entries): one info series each.
    objects.append(Manifest.service("dual", clusterIP: "10.96.9.53", spec: ["ports": [
        ["name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 5353] as Manifest.Object,
        ["name": "dns-udp", "port": 53, "protocol": "UDP", "targetPort": 5353]]]))
    var dual = Manifest.endpointSlice("dual", service: "dual", endpoints: ["10.244.50.2", "10.244.50.10"].map {
        Manifest.endpoint($0, node: node, zone: "zone-1", pod: "dual-\($0)")
    })
    dual["ports"] = [["name": "dns-tcp", "port": 5353, "protocol": "TCP"] as Manifest.Object,
                     ["name": "dns-udp", "port": 5353, "protocol": "UDP"]]
    objects.append(dual)
    objects.append(Manifest.service("v6", clusterIP: "fd00:96::10", spec: ["ipFamilies": ["IPv6"]]))
    objects.append(Manifest.endpointSlice("v6-a", service: "v6", addressType: "IPv6",
                                          endpoints: ["fd00:244::a", "fd00:244::9", "fd00:244::1:0"].map { Manifest.endpoint($0, node: node, pod: "v6-\($0)") }))
    return events(objects)
}

/// An agent on `maps` that has listed the fixture and written it.
private func syncedAgent(_ maps: MemoryMapStore, _ hitMetrics: HitMetrics) async -> Agent {
    let agent = inMemoryAgent(maps, node: node, label: "metrics-test") {
        $0.hitMetrics = hitMetrics
        $0.addressOverride = [IPAddress("192.0.2.1")!]
    }
    for kind in ResourceKind.allCases { await agent.ingest(.replaceAll(kind, [])) }
    await agent.ingest(fixture())
    await agent.ingest(.synced)
    await agent.waitUntilIdle()
    return agent
}

/// The hit families as their definition says: label lists, summed, deduplicated, sorted.
private func reference(_ state: MapState, _ names: ProgrammedNames, _ hits: [FrontendBackend: UInt64], _ mode: HitMetrics) -> String {
    func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
    func line(_ name: String, _ keys: [String], _ values: [String], _ value: UInt64) -> String {
        "\(name){" + zip(keys, values).map { "\($0)=\"\(escape($1))\"" }.joined(separator: ",") + "} \(value)\n"
    }
    var series: [[String]: UInt64] = [:]
    var info = Set<[String]>()
    for member in state.members {
        guard let frontend = state.revNat[member.revNatID], let backend = state.backends[member.backendID]?.address,
              let f = names.frontend(frontend) else { continue }
        let count = hits[FrontendBackend(frontend: frontend, backend: backend)] ?? 0
        series[[f.namespace, f.service, f.port, frontend.proto.kubernetesName, backend.hostPort], default: 0] += count
        let b = names.backend(backend)
        info.insert([f.namespace, f.service, backend.hostPort, b?.pod ?? "", b?.node ?? "", b?.zone ?? ""])
    }
    let hitsHelp = "Connections (TCP, connected UDP) and datagrams (unconnected UDP) the kernel sent to each"
    switch mode {
    case .endpoint:
        var text = "# HELP veer_endpoint_hits_total \(hitsHelp) endpoint.\n# TYPE veer_endpoint_hits_total counter\n"
        for (labels, n) in series.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            text += line("veer_endpoint_hits_total", ["namespace", "service", "port", "protocol", "endpoint"], labels, n)
        }
        text += "# HELP veer_endpoint_info 1 for each endpoint a service uses on this node, with its pod, node and zone: join it to veer_endpoint_hits_total.\n# TYPE veer_endpoint_info gauge\n"
        for labels in info.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            text += line("veer_endpoint_info", ["namespace", "service", "endpoint", "pod", "node", "zone"], labels, 1)
        }
        return text
    case .service:
        var perPort: [[String]: UInt64] = [:]
        for (labels, n) in series { perPort[Array(labels.prefix(4)), default: 0] += n }
        var text = "# HELP veer_service_hits_total \(hitsHelp) Service port's endpoints.\n# TYPE veer_service_hits_total counter\n"
        for (labels, n) in perPort.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            text += line("veer_service_hits_total", ["namespace", "service", "port", "protocol"], labels, n)
        }
        return text
    }
}

/// The text of the hit families: everything before the datapath events.
private func hitFamilies(_ text: String) -> String {
    String(text[..<(text.range(of: "# HELP veer_datapath_events_total")?.lowerBound ?? text.endIndex)])
}

@Suite("Metrics: the hit series")
struct MetricsTests {
    @Test("the hit series are their definition, byte for byte: summed over frontends, sorted by labels, escaped",
          arguments: HitMetrics.allCases)
    func hitSeriesMatchTheirDefinition(_ mode: HitMetrics) async throws {
        let maps = MemoryMapStore()
        let agent = await syncedAgent(maps, mode)
        let state = maps.readState()
        let names = await agent.programmedNames
        // Frontends sharing a Service port (the NodePorts beside their ClusterIPs), IPv6, UDP.
        let byPort = Dictionary(grouping: state.masters.keys) { a in names.frontend(a).map { "\($0.namespace)/\($0.service):\($0.port)" } ?? "" }
        #expect(byPort.values.contains { $0.count > 1 }, "\(state.masters.keys.sorted())")
        #expect(state.masters.keys.contains { !$0.ip.isIPv4 } && state.masters.keys.contains { $0.proto == .udp })

        // Every member counted, some twice over 2^32, one pair not at all.
        var rng = SplitMix64(seed: 7)
        var hits: [FrontendBackend: UInt64] = [:]
        for member in state.members.sorted() {
            let pair = FrontendBackend(frontend: state.revNat[member.revNatID]!, backend: state.backends[member.backendID]!.address)
            hits[pair] = rng.next() % 3 == 0 ? rng.next() >> 20 : rng.next() % 1000
        }
        hits.remove(at: hits.startIndex)
        maps.setHits(hits)
        let text = await agent.metricsText()
        let want = reference(state, names, hits, mode)
        #expect(want.split(separator: "\n").count > (mode == .endpoint ? 100 : 15), "the fixture makes series: \(want)")
        #expect(hitFamilies(text) == want)
        if mode == .endpoint {
            // The TCP and UDP rows of one endpoint: a hit series each, one info series.
            #expect(text.components(separatedBy: "veer_endpoint_info{namespace=\"default\",service=\"dual\",endpoint=\"10.244.50.10:5353\"").count == 2)
            #expect(text.contains("service=\"dual\",port=\"dns-udp\",protocol=\"UDP\",endpoint=\"10.244.50.10:5353\""))
        }
        // Scraping again gives the same text (nothing of one scrape leaks into the next).
        #expect(await agent.metricsText() == text)
    }

    @Test("a scrape after a change shows it: a pod and node renamed, a backend added and one removed; no change keeps the layout",
          arguments: HitMetrics.allCases)
    func scrapeAfterAChangeShowsIt(_ mode: HitMetrics) async throws {
        let maps = MemoryMapStore()
        let agent = await syncedAgent(maps, mode)
        /// Every member counted (by its address pair), then the hit families and the reference.
        func scrape() async -> (text: String, want: String) {
            let state = maps.readState()
            var hits: [FrontendBackend: UInt64] = [:]
            for member in state.members.sorted() {
                let pair = FrontendBackend(frontend: state.revNat[member.revNatID]!, backend: state.backends[member.backendID]!.address)
                hits[pair] = UInt64(member.backendID) * 7 + UInt64(member.revNatID)
            }
            maps.setHits(hits)
            return (hitFamilies(await agent.metricsText()), reference(state, await agent.programmedNames, hits, mode))
        }
        let first = await scrape()
        #expect(first.text == first.want)
        let layouts = await agent.hitLayouts
        let built = layouts.layoutsBuilt
        #expect(built == 1)
        // Scrapes without a change in between reuse the layout, and say the same.
        #expect(await scrape().text == first.text)
        #expect(layouts.layoutsBuilt == built)

        // alpha/web's slices again (its http and dns ports): 10.244.8.12 now another pod on
        // another node, 10.244.8.9 gone, 10.244.8.77 new.
        let endpoints = [
            Manifest.endpoint("10.244.8.12", node: "node-c", zone: "zone-0", pod: "web-pod-renamed", namespace: "alpha"),
            Manifest.endpoint("10.244.8.77", node: node, zone: "zone-2", pod: "web-pod-new", namespace: "alpha"),
        ]
        var udp = Manifest.endpointSlice("web-dns", namespace: "alpha", service: "web", portName: "dns", port: 5353, endpoints: endpoints)
        udp["ports"] = [["name": "dns", "port": 5353, "protocol": "UDP"] as Manifest.Object]
        await agent.ingest(events([Manifest.endpointSlice("web-http", namespace: "alpha", service: "web", endpoints: endpoints), udp]))
        await agent.waitUntilIdle()
        let second = await scrape()
        #expect(second.text == second.want)
        #expect(second.text != first.text)
        if mode == .endpoint {
            let info = second.text.split(separator: "\n").filter { $0.hasPrefix("veer_endpoint_info{namespace=\"alpha\",service=\"web\"") }
            #expect(info.contains { $0.contains("endpoint=\"10.244.8.12:8080\",pod=\"web-pod-renamed\",node=\"node-c\"") }, "\(info)")
            #expect(info.contains { $0.contains("endpoint=\"10.244.8.77:8080\",pod=\"web-pod-new\"") }, "\(info)")
            #expect(info.contains { $0.contains("endpoint=\"10.244.8.77:5353\",pod=\"web-pod-new\"") }, "\(info)")
            #expect(!info.contains { $0.contains("10.244.8.9:") || $0.contains("pod=\"web-pod-0\"") }, "\(info)")
        }
        // The change was patched into the kept layout, not built again.
        #expect(layouts.layoutsBuilt == built)
        #expect(layouts.layoutsPatched == 1)
    }

    @Test("a streamed scrape is the whole text in chunks, and stops when its receiver is gone")
    func streamedScrape() async throws {
        let maps = MemoryMapStore()
        let agent = await syncedAgent(maps, .endpoint)
        let whole = await agent.metricsText()
        let chunks = NIOLockedValueBox<[ByteBuffer]>([])
        let (bytes, complete) = await agent.streamMetrics(chunkBytes: 512) { chunk in
            chunks.withLockedValue { $0.append(chunk) }
            return true
        }
        let received = chunks.withLockedValue { $0 }
        #expect(complete && bytes == whole.utf8.count)
        #expect(received.count > 5, "chunks of about 512 bytes: \(received.map(\.readableBytes))")
        #expect(received.dropLast().allSatisfy { $0.readableBytes >= 512 && $0.readableBytes < 512 + 8192 })
        #expect(received.map { String(buffer: $0) }.joined() == whole)

        // The receiver gone after two chunks: the render stops, and says so.
        let calls = NIOLockedValueBox(0)
        let cut = await agent.streamMetrics(chunkBytes: 512) { _ in
            calls.withLockedValue { $0 += 1; return $0 < 2 }
        }
        #expect(!cut.complete && calls.withLockedValue { $0 } == 2 && cut.bytes < bytes)
    }

    @Test("/metrics over HTTP is streamed in chunks (chunked transfer encoding) and curl reads it whole")
    func streamedOverHTTP() async throws {
        let maps = MemoryMapStore()
        let agent = await syncedAgent(maps, .endpoint)
        let whole = await agent.metricsText()
        let path = "/tmp/veer-metrics-\(getpid())-\(UUID().uuidString.prefix(8)).sock"
        let headers = path + ".headers"
        let listener = try await HTTPListener(unixSocket: path, handler: .async { _, _ in agent.metricsResponse(chunkBytes: 512) })
        defer { unlink(path); unlink(headers) }
        // curl on a thread of its own (DecisionsSocketTests.blocking says why).
        let curl = try await DecisionsSocketTests.blocking {
            KernelSandbox.run(["curl", "-sS", "--max-time", "10", "--unix-socket", path, "-D", headers, "http://localhost/metrics"])
        }
        await listener.close()
        #expect(curl.status == 0, "\(curl.stderr)")
        #expect(curl.stdout == whole)
        let head = (try? String(contentsOfFile: headers, encoding: .utf8)) ?? ""
        #expect(head.lowercased().contains("transfer-encoding: chunked"), "\(head)")
        #expect(!head.lowercased().contains("content-length"), "\(head)")
    }

    @Test("a slice change's trigger-time annotation starts its network programming latency")
    func networkProgrammingFromTheTriggerTime() async throws {
        let agent = await syncedAgent(MemoryMapStore(), .endpoint)
        // Stamped 1.5 s ago, with microseconds, as the EndpointSlice controller writes it.
        let stamp = Date().timeIntervalSince1970 - 1.5
        let f = ISO8601DateFormatter()
        var text = f.string(from: Date(timeIntervalSince1970: stamp.rounded(.down)))
        text.insert(contentsOf: String(format: ".%06d", Int((stamp - stamp.rounded(.down)) * 1e6)), at: text.index(before: text.endIndex))
        var slice = Manifest.endpointSlice("web-http", namespace: "alpha", service: "web",
                                           endpoints: [Manifest.endpoint("10.244.8.12", node: node, pod: "web-pod-moved", namespace: "alpha")])
        var meta = try #require(slice["metadata"] as? Manifest.Object)
        meta["annotations"] = ["endpoints.kubernetes.io/last-change-trigger-time": text]
        slice["metadata"] = meta
        await agent.ingest(events([slice]))
        await agent.waitUntilIdle()
        let lines = await agent.metricsText().split(separator: "\n")
        func value(_ name: String) -> Double? {
            lines.first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
        }
        #expect(value("veer_network_programming_duration_seconds_count") == 1, "\(text)")
        let sum = try #require(value("veer_network_programming_duration_seconds_sum"))
        #expect(sum >= 1.5 && sum < 60, "\(text): \(sum)")
    }

    @Test("label values are escaped as the exposition format says: backslash, double quote, line feed")
    func escaping() {
        var out = PrometheusText()
        out.sample("m", [("a", "x\\y\"z\nw"), ("b", "plain"), ("c", "ünï")], 42)
        out.sample("m", [], 1.5)
        out.append(UInt64.max)
        #expect(out.output == "m{a=\"x\\\\y\\\"z\\nw\",b=\"plain\",c=\"ünï\"} 42\nm 1.5\n18446744073709551615")
    }
}
