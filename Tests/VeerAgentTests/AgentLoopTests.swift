import Foundation
import Logging
import Testing
import VeerAgent
import VeerDatapath
import VeerKube
import VeerModel
import VeerTestSupport

// The agent's own reconcile loop (full sync, then incremental syncs, retries after failed
// writes) against maps in memory: no root, no kernel. Whatever order the objects arrive in
// and whichever writes fail, the maps converge to what one full plan of the final objects
// would write.

private let node = "node-a"

private func service(_ name: String, ip: String, port: Int = 80, nodePort: Int? = nil, affinity: Bool = false, itpLocal: Bool = false) -> String {
    Manifest.yaml(Manifest.service(name, clusterIP: ip, port: port, nodePort: nodePort, spec: [
        "sessionAffinity": affinity ? "ClientIP" : "None",
        "internalTrafficPolicy": itpLocal ? "Local" : "Cluster",
    ]))
}

private func slice(_ name: String, service: String, _ endpoints: [(ip: String, node: String, ready: Bool, terminating: Bool)]) -> String {
    Manifest.yaml(Manifest.endpointSlice(name, service: service, endpoints: endpoints.map {
        Manifest.endpoint($0.ip, ready: $0.ready, serving: $0.ready || $0.terminating, terminating: $0.terminating, node: $0.node)
    }))
}

private func events(_ yaml: String) -> [SourceEvent] {
    let parsed = ManifestParser.parse(Data(yaml.utf8), origin: "test")
    precondition(parsed.errors.isEmpty, "\(parsed.errors)")
    return parsed.events
}

private func delete(_ kind: ResourceKind, _ name: String) -> SourceEvent { .delete(kind, namespace: "default", name: name) }

/// The history: services added, endpoints flapping, a conflict, deletions; some objects
/// arrive before the service they belong to.
private func history() -> [[SourceEvent]] {
    var steps: [[SourceEvent]] = []
    for k in 0..<8 {
        let ip = "10.96.0.\(10 + k)"
        steps.append(events(service("svc-\(k)", ip: ip, nodePort: k % 3 == 0 ? 30_000 + k : nil, affinity: k % 4 == 1, itpLocal: k % 4 == 2)))
        steps.append(events(slice("svc-\(k)-a", service: "svc-\(k)", (0..<3).map { j in
            (ip: "10.244.\(k).\(j + 1)", node: j == 0 ? node : "node-b", ready: true, terminating: false)
        })))
    }
    // Readiness flaps, terminating fallback, a second slice, a shared backend.
    steps.append(events(slice("svc-1-a", service: "svc-1", [(ip: "10.244.1.1", node: node, ready: false, terminating: true),
                                                              (ip: "10.244.1.2", node: "node-b", ready: false, terminating: true)])))
    steps.append(events(slice("svc-2-b", service: "svc-2", [(ip: "10.244.0.1", node: node, ready: true, terminating: false)])))
    steps.append(events(slice("svc-3-a", service: "svc-3", [])))
    // A second service claims svc-4's ClusterIP (the first by name keeps it), then svc-4 goes.
    steps.append(events(service("svc-zz", ip: "10.96.0.14")))
    steps.append(events(slice("svc-zz-a", service: "svc-zz", [(ip: "10.244.9.9", node: "node-b", ready: true, terminating: false)])))
    steps.append([delete(.service, "svc-4")])
    steps.append([delete(.endpointSlice, "svc-5-a")])
    steps.append([delete(.service, "svc-6"), delete(.endpointSlice, "svc-6-a")])
    return steps
}

/// The maps as a user sees them, without ids (which depend on the order of writes): every
/// frontend with its count, flags and backends, and the sizes of the id-keyed maps. A slot
/// naming a missing backend or a member left behind shows up here too.
private func dump(_ s: MapState) -> [String] {
    var lines = s.masters.keys.sorted().map { address -> String in
        let m = s.masters[address]!
        let backends = (s.slots[address] ?? [:]).sorted { $0.key < $1.key }.map { slot, id in
            s.backends[id].map { "\($0.address)\($0.flags != 0 ? "(t)" : "")" } ?? "missing-\(id)"
        }.sorted()
        let members = backends.count == (s.slots[address]?.count ?? 0) ? "" : " members?"
        return "\(address) count=\(m.count) flags=\(m.flags) affinity=\(m.affinityTimeout) → \(backends.joined(separator: " "))\(members)"
    }
    lines.append("backends=\(s.backends.count) rev_nat=\(s.revNat.count) members=\(s.members.count)")
    return lines
}

private func expected(after steps: [[SourceEvent]]) -> [String] {
    var store = ServiceStore()
    for kind in ResourceKind.allCases { _ = store.apply(.replaceAll(kind, [])) }
    _ = store.apply(.synced)
    for e in steps.joined() { _ = store.apply(e) }
    let selection = Selector.select(store, node: NodeContext(nodeName: node, node: nil))
    let plan = Planner.plan(desired: selection.frontends, actual: MapState(),
                            capacities: MapCapacities(services: 1 << 16, backends: 1 << 16, revNat: 1 << 16, members: 1 << 17))
    return dump(plan.target)
}

private func agent(_ maps: MemoryMapStore, hitMetrics: HitMetrics = .endpoint) -> Agent {
    inMemoryAgent(maps, node: node, label: "agent-loop-test") {
        $0.hitMetrics = hitMetrics
        $0.retryDelay = .milliseconds(5)
    }
}

/// Waits until the agent is idle and its maps match; failed writes retry on a timer, so
/// idleness alone is not convergence.
private func converge(_ agent: Agent, _ maps: MemoryMapStore, to want: [String]) async -> Bool {
    // A bound for a loaded machine, not a speed: unloaded it converges in well under a second.
    (try? await waitFor("the maps to converge", timeout: 60, every: .milliseconds(5)) {
        await agent.waitUntilIdle()
        return dump(maps.readState()) == want
    }) != nil
}

@Suite("Agent loop on in-memory maps", .serialized)
struct AgentLoopTests {
    @Test("objects in any order, one change at a time: the incremental syncs end where one full plan does",
          arguments: [1, 2, 3, 4, 5] as [UInt64])
    func anyOrder(seed: UInt64) async {
        var rng = SplitMix64(seed: seed)
        let steps = history().shuffled(using: &rng)
        let maps = MemoryMapStore()
        let agent = agent(maps)
        for kind in ResourceKind.allCases { await agent.ingest(.replaceAll(kind, [])) }
        await agent.ingest(.synced)
        for step in steps {
            for e in step { await agent.ingest(e) }
            await agent.waitUntilIdle()
        }
        let want = expected(after: steps)
        #expect(want.count > 5, "the history programs frontends")
        #expect(dump(maps.readState()) == want)
        #expect(maps.writes.failed == 0)
    }

    @Test("a start of more operations than one write part (65,536) writes every part, in order, and ends where the full plan does")
    func startWrittenInParts() async {
        // 2,000 services × 15 endpoints: about 94,000 operations.
        var services: [RawObject] = [], slices: [RawObject] = []
        for i in 0..<2_000 {
            let ip = "10.96.\(i / 256).\(i % 256)"
            let svc = #"{"apiVersion":"v1","kind":"Service","metadata":{"name":"svc-\#(i)","namespace":"default"},"spec":{"type":"ClusterIP","clusterIP":"\#(ip)","clusterIPs":["\#(ip)"],"ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":8080}]}}"#
            let endpoints = (0..<15).map { j in
                #"{"addresses":["10.\#(128 + i / 256).\#(i % 256).\#(j + 1)"],"conditions":{"ready":true},"nodeName":"node-\#(j % 4)"}"#
            }
            let eps = #"{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"svc-\#(i)-a","namespace":"default","labels":{"kubernetes.io/service-name":"svc-\#(i)"}},"addressType":"IPv4","ports":[{"name":"http","port":8080,"protocol":"TCP"}],"endpoints":[\#(endpoints.joined(separator: ","))]}"#
            services.append(RawObject(kind: .service, namespace: "default", name: "svc-\(i)", json: Data(svc.utf8)))
            slices.append(RawObject(kind: .endpointSlice, namespace: "default", name: "svc-\(i)-a", json: Data(eps.utf8)))
        }
        let events: [SourceEvent] = [.replaceAll(.node, []), .replaceAll(.service, services), .replaceAll(.endpointSlice, slices), .synced]
        var store = ServiceStore()
        for e in events { _ = store.apply(e) }
        let plan = Planner.plan(desired: Selector.select(store, node: NodeContext(nodeName: node, node: nil)).frontends, actual: MapState(),
                                capacities: MapCapacities(services: 1 << 17, backends: 1 << 16, revNat: 1 << 12, members: 1 << 16))
        #expect(plan.operations.count > 65_536 + 20_000, "more than one part")
        let maps = MemoryMapStore()
        let agent = agent(maps)
        for e in events { await agent.ingest(e) }
        await agent.waitUntilIdle()
        #expect(maps.readState() == plan.target, "every entry of every part, with the full plan's ids")
        #expect(maps.writes.failed == 0)
    }

    @Test("incremental syncs keep the names of exactly what the maps hold: a backend gone loses its names")
    func namesFollowTheMaps() async {
        let maps = MemoryMapStore()
        let agent = agent(maps)
        for kind in ResourceKind.allCases { await agent.ingest(.replaceAll(kind, [])) }
        await agent.ingest(.synced)
        for step in history() {
            for e in step { await agent.ingest(e) }
            await agent.waitUntilIdle()
        }
        let state = maps.readState()
        let names = await agent.programmedNames
        // The history deletes svc-4, svc-5's slice and svc-6 one change at a time: their
        // endpoints' names must go with their backend entries, not wait for a full sync.
        #expect(Set(names.backends.keys) == Set(state.backends.values.map(\.address)))
        #expect(Set(names.frontends.keys) == Set(state.masters.keys))
        #expect(names.backend(L4Address("10.244.6.1:8080/tcp")!) == nil, "svc-6's endpoint is gone")
        #expect(names.backend(L4Address("10.244.7.1:8080/tcp")!)?.node == node, "svc-7's endpoint is named")
    }

    @Test("10% of writes fail: every sync is retried from what the maps hold, and the maps converge",
          arguments: [11, 12, 13] as [UInt64])
    func faultyWrites(seed: UInt64) async {
        var rng = SplitMix64(seed: seed)
        let steps = history().shuffled(using: &rng)
        let maps = MemoryMapStore(failureRate: 0.1, seed: seed)
        let agent = agent(maps)
        // The first list arrives whole, then changes one by one without waiting: bursts coalesce.
        let half = steps.count / 2
        for kind in ResourceKind.allCases { await agent.ingest(.replaceAll(kind, [])) }
        for e in steps[..<half].joined() { await agent.ingest(e) }
        await agent.ingest(.synced)
        for step in steps[half...] {
            for e in step { await agent.ingest(e) }
        }
        let want = expected(after: steps)
        let converged = await converge(agent, maps, to: want)
        #expect(converged, "maps: \(dump(maps.readState()))\nwant: \(want)")
        #expect(maps.writes.failed > 0, "the faults were injected")
    }

    @Test("a full map rejects the service that does not fit, whole; the others are programmed")
    func fullMap() async {
        // Room for two services of three backends (1 master + 3 slots each), not a third.
        let maps = MemoryMapStore(capacities: MapCapacities(services: 8, backends: 64, revNat: 64, members: 64))
        let agent = agent(maps)
        for kind in ResourceKind.allCases { await agent.ingest(.replaceAll(kind, [])) }
        await agent.ingest(.synced)
        for k in 0..<3 {
            for e in events(service("svc-\(k)", ip: "10.96.0.\(10 + k)")) { await agent.ingest(e) }
            for e in events(slice("svc-\(k)-a", service: "svc-\(k)", (0..<3).map { j in
                (ip: "10.244.\(k).\(j + 1)", node: "node-b", ready: true, terminating: false)
            })) { await agent.ingest(e) }
            await agent.waitUntilIdle()
        }
        let state = maps.readState()
        #expect(Set(state.masters.keys.map(\.description)) == ["10.96.0.10:80/tcp", "10.96.0.11:80/tcp"])
        #expect(state.masters.values.allSatisfy { $0.count == 3 })
        let metrics = await agent.metricsText()
        #expect(metrics.contains("veer_services_rejected 1"), "\(metrics)")
    }
}

@Suite("Agent metrics")
struct AgentMetricsTests {
    @Test("hit counters per endpoint by default, per Service port with --hit-metrics service", arguments: HitMetrics.allCases)
    func hitGranularity(_ granularity: HitMetrics) async {
        let maps = MemoryMapStore()
        let agent = agent(maps, hitMetrics: granularity)
        for kind in ResourceKind.allCases { await agent.ingest(.replaceAll(kind, [])) }
        await agent.ingest(.synced)
        for e in events(service("web", ip: "10.96.0.10") + "\n---\n" + slice("web-a", service: "web", [
            (ip: "10.244.0.1", node: node, ready: true, terminating: false), (ip: "10.244.0.2", node: "node-b", ready: true, terminating: false),
        ])) { await agent.ingest(e) }
        await agent.waitUntilIdle()
        let frontend = L4Address("10.96.0.10:80/tcp")!
        maps.setHits([FrontendBackend(frontend: frontend, backend: L4Address("10.244.0.1:8080/tcp")!): 5,
                      FrontendBackend(frontend: frontend, backend: L4Address("10.244.0.2:8080/tcp")!): 7])
        let text = await agent.metricsText()
        switch granularity {
        case .endpoint:
            #expect(text.contains(#"veer_endpoint_hits_total{namespace="default",service="web",port="http",protocol="TCP",endpoint="10.244.0.2:8080"} 7"#), "\(text)")
            #expect(text.contains("veer_endpoint_info{"))
            #expect(!text.contains("veer_service_hits_total"))
        case .service:
            #expect(text.contains(#"veer_service_hits_total{namespace="default",service="web",port="http",protocol="TCP"} 12"#), "\(text)")
            #expect(!text.contains("veer_endpoint_hits_total") && !text.contains("veer_endpoint_info"))
        }
    }
}

