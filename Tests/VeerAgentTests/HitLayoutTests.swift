import Foundation
import Logging
import Testing
@testable import VeerAgent
import VeerDatapath
import VeerKube
import VeerModel
import VeerTestSupport

// A scrape after a sync patches the kept hit layout with what the sync changed instead of
// building it again. Whatever the changes, the text must be the one a layout built from scratch
// gives: here random changes (endpoints moved, added and removed, pods renamed, pods moved to
// another node or zone, services added and removed, ports renamed), each scrape rendered both
// ways from one snapshot.

private let node = "node-a"

/// The cluster the test changes: services with one or two ports and their endpoints.
private struct World {
    struct Endpoint {
        var ip: String
        var pod: String?
        var node: String?
        var zone: String?
    }

    struct Service {
        var namespace: String
        var name: String
        var clusterIP: String
        var portName: String
        var udp: Bool
        var endpoints: [Endpoint]
    }

    var services: [Service] = []
    var nextService = 0
    var nextIP = 0
    var rng: SplitMix64

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func freshIP() -> String {
        nextIP += 1
        return "10.244.\(nextIP / 200).\(nextIP % 200 + 1)"
    }

    mutating func endpoint() -> Endpoint {
        Endpoint(ip: freshIP(), pod: Bool.random(using: &rng) ? "pod-\(nextIP)" : nil,
                 node: ["node-a", "node-b", nil].randomElement(using: &rng)!,
                 zone: ["zone-0", "zone-1", nil].randomElement(using: &rng)!)
    }

    mutating func addService() -> Service {
        nextService += 1
        let s = Service(namespace: ["alpha", "beta", "zeta"].randomElement(using: &rng)!, name: "svc-\(nextService)",
                        clusterIP: "10.96.\(nextService / 200).\(nextService % 200 + 1)",
                        portName: ["http", "web", "a"].randomElement(using: &rng)!, udp: Bool.random(using: &rng),
                        endpoints: (0..<Int.random(in: 1...4, using: &rng)).map { _ in endpoint() })
        services.append(s)
        return s
    }

    func objects(_ s: Service) -> [Manifest.Object] {
        var ports: [Manifest.Object] = [["name": s.portName, "port": 80, "protocol": "TCP", "targetPort": 8080]]
        if s.udp { ports.append(["name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353]) }
        let endpoints = s.endpoints.map { Manifest.endpoint($0.ip, node: $0.node, zone: $0.zone, pod: $0.pod, namespace: s.namespace) }
        var objects = [Manifest.service(s.name, namespace: s.namespace, clusterIP: s.clusterIP, spec: ["ports": ports]),
                       Manifest.endpointSlice("\(s.name)-http", namespace: s.namespace, service: s.name, portName: s.portName,
                                              endpoints: endpoints)]
        if s.udp {
            var udp = Manifest.endpointSlice("\(s.name)-dns", namespace: s.namespace, service: s.name, portName: "dns", port: 5353,
                                             endpoints: endpoints)
            udp["ports"] = [["name": "dns", "port": 5353, "protocol": "UDP"] as Manifest.Object]
            objects.append(udp)
        }
        return objects
    }

    /// One random change, as the events a source would send.
    mutating func change() -> [SourceEvent] {
        let i = Int.random(in: 0..<services.count, using: &rng)
        switch Int.random(in: 0..<9, using: &rng) {
        case 0: // an endpoint moves to a new address
            let j = Int.random(in: 0..<services[i].endpoints.count, using: &rng)
            services[i].endpoints[j].ip = freshIP()
        case 1: // a pod renamed, same address
            let j = Int.random(in: 0..<services[i].endpoints.count, using: &rng)
            services[i].endpoints[j].pod = "renamed-\(Int.random(in: 0..<1000, using: &rng))"
        case 2: // a pod's node and zone change, same address
            let j = Int.random(in: 0..<services[i].endpoints.count, using: &rng)
            services[i].endpoints[j].node = ["node-a", "node-c", nil].randomElement(using: &rng)!
            services[i].endpoints[j].zone = ["zone-2", "zone-0", nil].randomElement(using: &rng)!
        case 3: // an endpoint added, sometimes one another service has (a shared backend)
            var e = endpoint()
            if Bool.random(using: &rng), let other = services.randomElement(using: &rng)?.endpoints.first,
               !services[i].endpoints.contains(where: { $0.ip == other.ip }) { e = other }
            services[i].endpoints.append(e)
        case 4: // an endpoint removed
            if services[i].endpoints.count > 1 { services[i].endpoints.remove(at: Int.random(in: 0..<services[i].endpoints.count, using: &rng)) }
        case 5: // a Service port renamed
            services[i].portName = services[i].portName == "http" ? "renamed" : "http"
        case 6: // a service removed
            let s = services.remove(at: i)
            var gone: [SourceEvent] = [.delete(.service, namespace: s.namespace, name: s.name),
                                       .delete(.endpointSlice, namespace: s.namespace, name: "\(s.name)-http")]
            if s.udp { gone.append(.delete(.endpointSlice, namespace: s.namespace, name: "\(s.name)-dns")) }
            if services.isEmpty { _ = addService() }
            return gone
        default: // a service added
            return events(objects(addService()))
        }
        return events(objects(services[i]))
    }
}

private func events(_ objects: [Manifest.Object]) -> [SourceEvent] {
    let parsed = ManifestParser.parse(Data(Manifest.yaml(objects).utf8), origin: "test")
    precondition(parsed.errors.isEmpty, "\(parsed.errors)")
    return parsed.events
}

private func agent(_ maps: MemoryMapStore, _ hitMetrics: HitMetrics) -> Agent {
    inMemoryAgent(maps, node: node, label: "hit-layout-test") {
        $0.hitMetrics = hitMetrics
        $0.addressOverride = [IPAddress("192.0.2.1")!]
    }
}

/// Every member counted, each pair its own count: a row resolved to the wrong endpoint shows.
private func countEveryMember(_ maps: MemoryMapStore) {
    let state = maps.readState()
    var hits: [FrontendBackend: UInt64] = [:]
    for member in state.members {
        let pair = FrontendBackend(frontend: state.revNat[member.revNatID]!, backend: state.backends[member.backendID]!.address)
        hits[pair] = UInt64(member.backendID) * 7 + UInt64(member.revNatID)
    }
    maps.setHits(hits)
}

/// One snapshot rendered through the agent's kept (patched) layout and through one built now.
private func scrapeBothWays(_ agent: Agent) async -> (patched: String, fresh: String) {
    let snapshot = await agent.metricsSnapshot()
    var scratch = snapshot
    scratch.layouts = nil
    return (String(buffer: snapshot.render()), String(buffer: scratch.render()))
}

/// An agent serving five services of a seeded world, every member counted, scraped once.
private func scrapedOnce(seed: UInt64) async -> (MemoryMapStore, Agent, World, HitLayoutCache) {
    let maps = MemoryMapStore()
    let agent = agent(maps, .endpoint)
    var world = World(seed: seed)
    for kind in ResourceKind.allCases { await agent.ingest(.replaceAll(kind, [])) }
    for _ in 0..<5 { await agent.ingest(events(world.objects(world.addService()))) }
    await agent.ingest(.synced)
    await agent.waitUntilIdle()
    countEveryMember(maps)
    _ = await scrapeBothWays(agent)
    return (maps, agent, world, await agent.hitLayouts)
}

@Suite("Metrics: the kept hit layout, patched")
struct HitLayoutTests {
    @Test("after any random changes a patched layout renders as one built from scratch",
          arguments: [(HitMetrics.endpoint, UInt64(1)), (.endpoint, 2), (.endpoint, 3), (.service, 4)])
    func patchedEqualsFresh(_ mode: HitMetrics, _ seed: UInt64) async throws {
        let maps = MemoryMapStore()
        let agent = agent(maps, mode)
        var world = World(seed: seed)
        for kind in ResourceKind.allCases { await agent.ingest(.replaceAll(kind, [])) }
        for _ in 0..<30 { await agent.ingest(events(world.objects(world.addService()))) }
        await agent.ingest(.synced)
        await agent.waitUntilIdle()
        countEveryMember(maps)
        // Kept whatever the time between scrapes (keptOnlyWhileScrapesRecur tests that rule).
        let layouts = await agent.hitLayouts
        layouts.keepThroughSyncs()
        let first = await scrapeBothWays(agent)
        #expect(first.patched == first.fresh)
        #expect(first.fresh.contains(mode == .endpoint ? "veer_endpoint_info{" : "veer_service_hits_total{"))
        #expect(layouts.layoutsBuilt == 1)

        var patchedScrapes = 0
        var generation = await agent.counters.programmedGeneration
        for round in 0..<60 {
            // One to three changes, each its own sync, before a scrape; sometimes two rounds.
            for _ in 0..<Int.random(in: 1...3, using: &world.rng) {
                await agent.ingest(world.change())
                await agent.waitUntilIdle()
            }
            guard Bool.random(using: &world.rng) || round == 59 else { continue }
            countEveryMember(maps)
            let scrape = await scrapeBothWays(agent)
            // A scrape after a sync patches; one after changes that synced nothing reuses the layout.
            let now = await agent.counters.programmedGeneration
            if now != generation { patchedScrapes += 1 }
            generation = now
            // Compared as a Bool: the texts are tens of kilobytes, the lines that differ are below.
            let same = scrape.patched == scrape.fresh
            #expect(same, "seed \(seed), round \(round)")
            if !same {
                let a = Set(scrape.patched.split(separator: "\n")), b = Set(scrape.fresh.split(separator: "\n"))
                Issue.record("patched only: \(a.subtracting(b).sorted().prefix(6)); fresh only: \(b.subtracting(a).sorted().prefix(6))")
                return
            }
        }
        // Every scrape after the first patched the kept layout: none built it again.
        #expect(layouts.layoutsBuilt == 1)
        #expect(layouts.layoutsPatched == patchedScrapes)
        #expect(patchedScrapes > 10)
    }

    @Test("a lone scrape's layout is not kept through a sync (its memory goes back); recurring scrapes' is, and is patched")
    func keptOnlyWhileScrapesRecur() async throws {
        let (maps, agent, started, layouts) = await scrapedOnce(seed: 11)
        var world = started
        world.services[0].endpoints[0].ip = world.freshIP()
        await agent.ingest(events(world.objects(world.services[0])))
        await agent.waitUntilIdle()
        var scrape = await scrapeBothWays(agent)
        #expect(scrape.patched == scrape.fresh)
        #expect(layouts.layoutsBuilt == 2)
        #expect(layouts.layoutsPatched == 0)
        // A second scrape soon after the first: the next sync keeps the layout for the next scrape.
        world.services[0].endpoints[0].pod = "renamed"
        await agent.ingest(events(world.objects(world.services[0])))
        await agent.waitUntilIdle()
        countEveryMember(maps)
        scrape = await scrapeBothWays(agent)
        #expect(scrape.patched == scrape.fresh)
        #expect(scrape.fresh.contains("pod=\"renamed\""))
        #expect(layouts.layoutsBuilt == 2)
        #expect(layouts.layoutsPatched == 1)
    }

    @Test("a full sync drops the kept layout: the next scrape builds it")
    func fullSyncRebuilds() async throws {
        let (_, agent, _, layouts) = await scrapedOnce(seed: 9)
        #expect(layouts.layoutsBuilt == 1)
        // The agent's own Node changing (its zone) plans everything again.
        await agent.ingest(events([Manifest.node(node, zone: "zone-9")]))
        await agent.waitUntilIdle()
        let scrape = await scrapeBothWays(agent)
        #expect(scrape.patched == scrape.fresh)
        #expect(layouts.layoutsBuilt == 2)
        #expect(layouts.layoutsPatched == 0)
    }
}
