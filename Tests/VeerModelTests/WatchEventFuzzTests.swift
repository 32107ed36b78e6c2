import Foundation
import Testing
import VeerKube
import VeerModel
import VeerTestSupport

// A seeded fuzzer over watch events: random Services and EndpointSlices (hostile on purpose:
// node-local and conflicting addresses, duplicate endpoints, odd ports, huge strings), half of
// them byte-mutated, delivered as apply/delete/relist in random order, each step selected,
// planned against small maps and applied one operation at a time. No crash, no hang, and the
// maps are valid after every single operation.
//
// `make test` runs a bounded number of steps; VEER_FUZZ_SECONDS=600 runs for ten minutes, and
// VEER_FUZZ_SEED replays one seed.

private struct EventGenerator {
    var rng: SplitMix64
    let node = NodeContext(nodeName: "node-1", zone: "zone-a", addresses: [IPAddress("192.168.77.11")!])

    mutating func pick<T>(_ options: [T]) -> T { options.randomElement(using: &rng)! }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }

    mutating func hugeString() -> String {
        String(repeating: pick(["a", "é", "\u{0}", "\"", "-", "ż"]), count: pick([1, 64, 254, 4096, 70_000]))
    }

    mutating func address() -> String {
        pick(["10.96.0.1", "10.96.0.2", "10.96.0.3", "192.168.77.11", "127.0.0.1", "0.0.0.0", "255.255.255.255",
              "10.96.0.300", "fd00::1", "", "None", "1.2.3", "10.96.0.\(Int.random(in: 0...255, using: &rng))"])
    }

    mutating func service() -> [String: Any] {
        let name = chance(0.05) ? hugeString() : "svc\(Int.random(in: 0..<6, using: &rng))"
        var ports: [[String: Any]] = []
        for i in 0..<Int.random(in: 0...3, using: &rng) {
            var p: [String: Any] = ["name": pick(["http", "dns", "", "p\(i)"]), "port": pick([80, 53, 0, 65535, 70000, -1]),
                                    "protocol": pick(["TCP", "UDP", "SCTP", "tcp"]), "targetPort": pick([8080, 53] as [Any] + ["http"])]
            if chance(0.4) { p["nodePort"] = pick([30080, 30081, 0, 99999]) }
            ports.append(p)
        }
        var spec: [String: Any] = ["type": pick(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName", "Bogus"]),
                                   "clusterIP": address(), "ports": ports]
        if chance(0.3) { spec["externalIPs"] = (0..<Int.random(in: 0...3, using: &rng)).map { _ in address() } }
        if chance(0.2) { spec["internalTrafficPolicy"] = pick(["Local", "Cluster", "x"]) }
        if chance(0.2) { spec["sessionAffinity"] = "ClientIP"; spec["sessionAffinityConfig"] = ["clientIP": ["timeoutSeconds": pick([0, 10, 86400, 999999])]] }
        var meta: [String: Any] = ["name": name, "namespace": pick(["default", "other"])]
        if chance(0.05) { meta["annotations"] = ["big": hugeString()] }
        var o: [String: Any] = ["apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec]
        if chance(0.2) { o["status"] = ["loadBalancer": ["ingress": [["ip": address()]]]] }
        return o
    }

    mutating func slice() -> [String: Any] {
        let count = pick([0, 1, 3, 10, 200])
        let endpoints: [[String: Any]] = (0..<count).map { _ in
            var e: [String: Any] = ["addresses": [chance(0.9) ? "10.244.\(Int.random(in: 0...2, using: &rng)).\(Int.random(in: 1...20, using: &rng))" : address()],
                                    "conditions": ["ready": chance(0.7), "serving": chance(0.8), "terminating": chance(0.2)]]
            if chance(0.5) { e["nodeName"] = pick(["node-1", "node-2", ""]) }
            if chance(0.5) { e["zone"] = pick(["zone-a", "zone-b"]) }
            if chance(0.4) { e["hints"] = ["forZones": [["name": pick(["zone-a", "zone-b", "zone-c"])]]] }
            return e
        }
        return ["apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": ["name": "s\(Int.random(in: 0..<10, using: &rng))", "namespace": pick(["default", "other"]),
                             "labels": ["kubernetes.io/service-name": "svc\(Int.random(in: 0..<6, using: &rng))"]],
                "addressType": pick(["IPv4", "IPv4", "IPv6", "FQDN"]),
                "ports": [["name": pick(["http", "dns", ""]), "port": pick([8080, 53, 0]), "protocol": pick(["TCP", "UDP"])]],
                "endpoints": endpoints]
    }

    /// The object as a watch event carries it, byte-mutated half of the time.
    mutating func raw(_ object: [String: Any]) -> [RawObject] {
        guard let data = try? JSONSerialization.data(withJSONObject: object) else { return [] }
        var text = String(decoding: data, as: UTF8.self)
        if chance(0.5) { text = mutate(text, &rng) }
        return ManifestParser.parse(text, origin: "watch").objects
    }

    mutating func event() -> [SourceEvent] {
        switch Int.random(in: 0..<10, using: &rng) {
        case 0..<4: return raw(service()).map { .apply($0) }
        case 4..<8: return raw(slice()).map { .apply($0) }
        case 8: return [.delete(pick([.service, .endpointSlice]), namespace: "default", name: pick(["svc0", "svc1", "s0", "s1"]))]
        default:
            let kind: ResourceKind = pick([.service, .endpointSlice])
            let objects = (0..<Int.random(in: 0...4, using: &rng)).flatMap { _ in raw(kind == .service ? service() : slice()) }
            return [.replaceAll(kind, objects.filter { $0.kind == kind })]
        }
    }
}

@Suite("Fuzz: watch events through store, selector and planner")
struct WatchEventFuzzTests {
    @Test("Random and mutated watch events never crash, hang or leave invalid map state")
    func watchEvents() {
        let env = ProcessInfo.processInfo.environment
        let seconds = Double(env["VEER_FUZZ_SECONDS"] ?? "") ?? 0
        let seeds: [UInt64] = env["VEER_FUZZ_SEED"].flatMap { UInt64($0) }.map { [$0] } ?? Array(1...4)
        let deadline = ContinuousClock.now + .seconds(seconds)
        var steps = 0, events = 0, seed = seeds[0]
        var seedIndex = 0
        repeat {
            var gen = EventGenerator(rng: SplitMix64(seed: seed))
            var store = ServiceStore()
            var state = MapState()
            // Small maps, so capacity rejections happen too.
            let capacities = MapCapacities(services: 300, backends: 120, revNat: 40, members: 400)
            for _ in 0..<150 {
                for e in gen.event() { store.apply(e); events += 1 }
                let stepStart = ContinuousClock.now
                let selection = Selector.select(store, node: gen.node)
                #expect(Set(selection.frontends.map(\.address)).count == selection.frontends.count, "seed \(seed): one frontend per address")
                for f in selection.frontends {
                    #expect(!f.address.ip.isLoopback || f.kind == .nodePort, "seed \(seed): \(f.address) claims loopback as \(f.kind)")
                }
                let plan = Planner.plan(desired: selection.frontends, actual: state, capacities: capacities)
                for op in plan.operations {
                    state.apply(op)
                    let problems = invariantViolations(state)
                    #expect(problems.isEmpty, "seed \(seed) after \(op): \(problems.prefix(3))")
                    if !problems.isEmpty { return }
                }
                #expect(state == plan.target, "seed \(seed): the maps hold the plan's target")
                #expect(state.serviceEntryCount <= capacities.services && state.backends.count <= capacities.backends)
                #expect(ContinuousClock.now - stepStart < .seconds(10), "seed \(seed): one step took too long")
                steps += 1
            }
            seedIndex += 1
            seed = seedIndex < seeds.count ? seeds[seedIndex] : UInt64(seedIndex + 1)
        } while seedIndex < seeds.count || ContinuousClock.now < deadline
        #expect(steps >= 150)
        print("watch-event fuzz: \(steps) steps, \(seedIndex) seeds, \(events) events")
    }
}
