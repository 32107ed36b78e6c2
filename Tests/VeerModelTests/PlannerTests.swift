import Testing
import VeerModel
import VeerTestSupport

private func addr(_ s: String) -> L4Address { L4Address(s)! }

private func fe(_ frontend: String, _ backends: [String], service: String = "web", affinity: UInt32? = nil,
                whenEmpty: EmptyBehavior = .reject, terminating: Set<String> = []) -> DesiredFrontend {
    let a = addr(frontend)
    return DesiredFrontend(
        address: a, kind: .clusterIP,
        service: ServicePortName(namespace: "default", name: service, port: "", proto: a.proto),
        backends: backends.map { DesiredBackend(address: addr($0), terminating: terminating.contains($0)) },
        whenEmpty: whenEmpty, affinityTimeout: affinity)
}

private let roomy = MapCapacities(services: 10_000, backends: 10_000, revNat: 10_000, members: 10_000)

/// Everything bpf/veer_sock.bpf.c relies on at any instant.
func invariantViolations(_ s: MapState) -> [String] {
    var problems: [String] = []
    for (frontend, master) in s.masters {
        guard s.revNat[master.revNatID] == frontend else {
            problems.append("\(frontend): rev_nat \(master.revNatID) missing or wrong"); continue
        }
        guard master.count > 0 else { continue }
        for slot in 1...UInt16(master.count) {
            guard let id = s.slots[frontend]?[slot] else { problems.append("\(frontend): count \(master.count) but slot \(slot) missing"); continue }
            if s.backends[id] == nil { problems.append("\(frontend)#\(slot): backend \(id) missing") }
            if !s.members.contains(MemberKey(revNatID: master.revNatID, backendID: id)) {
                problems.append("\(frontend)#\(slot): member \(master.revNatID)/\(id) missing")
            }
        }
    }
    return problems
}

/// The target holds exactly what was desired.
private func matches(_ s: MapState, _ desired: [DesiredFrontend]) -> Bool {
    guard Set(s.masters.keys) == Set(desired.map(\.address)) else { return false }
    for d in desired {
        let master = s.masters[d.address]!
        let backends = Set((s.slots[d.address] ?? [:]).values.compactMap { s.backends[$0]?.address })
        if backends != Set(d.backends.map(\.address)) || Int(master.count) != d.backends.count { return false }
        if (master.flags & MasterEntry.flagAffinity != 0) != (d.affinityTimeout != nil) { return false }
    }
    return true
}

private func applyChecked(_ plan: Plan, to start: MapState) -> (MapState, [String]) {
    var state = start
    var problems: [String] = []
    for op in plan.operations {
        state.apply(op)
        problems += invariantViolations(state).map { "after \(op): \($0)" }
    }
    return (state, problems)
}


private func randomDesired(_ rng: inout SplitMix64) -> [DesiredFrontend] {
    let pool = (1...12).map { "10.244.0.\($0):8080/tcp" }
    return (0..<Int.random(in: 0...6, using: &rng)).map { i in
        let backends = pool.filter { _ in Bool.random(using: &rng) }
        return fe("10.96.0.\(i + 1):80/tcp", backends, service: "svc\(i % 3)",
                  affinity: Bool.random(using: &rng) ? 60 : nil,
                  whenEmpty: Bool.random(using: &rng) ? .drop : .reject)
    }
}

@Suite("Planner")
struct PlannerTests {
    @Test("Generated states: applying a plan yields the desired state, every prefix is safe, and replanning is empty",
          arguments: 0..<200)
    func properties(seed: Int) {
        var rng = SplitMix64(seed: UInt64(seed))
        let first = Planner.plan(desired: randomDesired(&rng), actual: MapState(), capacities: roomy)
        let (start, p1) = applyChecked(first, to: MapState())
        #expect(p1.isEmpty, "\(p1.prefix(3))")

        let desired = randomDesired(&rng)
        let plan = Planner.plan(desired: desired, actual: start, capacities: roomy)
        let (end, problems) = applyChecked(plan, to: start)
        #expect(problems.isEmpty, "\(problems.prefix(3))")
        #expect(end == plan.target)
        #expect(matches(end, desired))
        #expect(Planner.plan(desired: desired, actual: end, capacities: roomy).operations.isEmpty)
        // Nothing leaks: no backend, member or rev_nat outlives its last user.
        #expect(Set(end.revNat.keys) == Set(end.masters.values.map(\.revNatID)))
        #expect(Set(end.backends.keys) == Set(end.slots.values.flatMap(\.values)))
    }

    @Test("Removing one of three backends writes only what changed")
    func minimalShrink() {
        let three = fe("10.96.0.10:80/tcp", ["10.244.1.1:80/tcp", "10.244.1.2:80/tcp", "10.244.1.3:80/tcp"])
        let start = Planner.plan(desired: [three], actual: MapState(), capacities: roomy).target
        let two = fe("10.96.0.10:80/tcp", ["10.244.1.1:80/tcp", "10.244.1.3:80/tcp"])
        let plan = Planner.plan(desired: [two], actual: start, capacities: roomy)
        let removedID = start.backends.first { $0.value.address == addr("10.244.1.2:80/tcp") }!.key
        let keptIDs = Set(start.backends.keys).subtracting([removedID])
        // Backend 3 moves into the hole only if it sat beyond the new count.
        #expect(plan.operations.count <= 5, "\(plan.operations)")
        #expect(plan.operations.last == .deleteBackend(id: removedID))
        #expect(Set(plan.target.backends.keys) == keptIDs, "kept backends keep their ids")
        #expect(plan.operations.contains { if case .upsertMaster(_, let m) = $0 { m.count == 2 } else { false } })
    }

    @Test("Ids are stable across updates and freed ids are reused by later plans")
    func idReuse() {
        let a = fe("10.96.0.1:80/tcp", ["10.244.1.1:80/tcp"], service: "a")
        let b = fe("10.96.0.2:80/tcp", ["10.244.1.2:80/tcp"], service: "b")
        let s1 = Planner.plan(desired: [a, b], actual: MapState(), capacities: roomy).target
        let s2 = Planner.plan(desired: [b], actual: s1, capacities: roomy).target
        #expect(s2.masters[b.address]!.revNatID == s1.masters[b.address]!.revNatID)
        let c = fe("10.96.0.3:80/tcp", ["10.244.1.3:80/tcp"], service: "c")
        let s3 = Planner.plan(desired: [b, c], actual: s2, capacities: roomy).target
        #expect(s3.masters[c.address]!.revNatID == s1.masters[a.address]!.revNatID, "freed rev_nat id reused")
        // But never within the same plan: replacing a by c at once gives c a fresh id.
        let swap = Planner.plan(desired: [b, c], actual: s1, capacities: roomy).target
        #expect(swap.masters[c.address]!.revNatID != s1.masters[a.address]!.revNatID)
    }

    @Test("A service that does not fit is rejected whole; the others are planned, and what it had stays")
    func capacity() {
        let small = fe("10.96.0.1:80/tcp", ["10.244.1.1:80/tcp"], service: "a-small")
        let big = fe("10.96.0.2:80/tcp", (1...8).map { "10.244.2.\($0):80/tcp" }, service: "b-big")
        let tight = MapCapacities(services: 6, backends: 100, revNat: 100, members: 100)
        let plan = Planner.plan(desired: [small, big], actual: MapState(), capacities: tight)
        #expect(plan.rejected.map(\.service.description) == ["default/b-big"])
        #expect(plan.rejected.first?.reason.contains("veer_services is full") == true)
        #expect(plan.target.masters.keys.sorted() == [small.address])

        // Already programmed with 2 backends, growing to 8 does not fit: the 2 stay.
        let bigBefore = fe("10.96.0.2:80/tcp", ["10.244.2.1:80/tcp", "10.244.2.2:80/tcp"], service: "b-big")
        let start = Planner.plan(desired: [bigBefore], actual: MapState(), capacities: roomy).target
        let grow = Planner.plan(desired: [big], actual: start, capacities: MapCapacities(services: 5, backends: 100, revNat: 100, members: 100))
        #expect(grow.operations.isEmpty)
        #expect(grow.target == start)
    }

    @Test("Two services claiming one frontend: the first by name keeps it, the other is reported")
    func conflict() {
        let a = fe("10.96.0.1:80/tcp", ["10.244.1.1:80/tcp"], service: "a")
        let b = fe("10.96.0.1:80/tcp", ["10.244.1.2:80/tcp"], service: "b")
        let plan = Planner.plan(desired: [b, a], actual: MapState(), capacities: roomy)
        #expect(plan.rejected.count == 1 && plan.rejected[0].service.description == "default/b")
        let only = plan.target.slots[a.address]!.values.map { plan.target.backends[$0]!.address }
        #expect(only == [addr("10.244.1.1:80/tcp")])
    }

    @Test("Empty sets: reject by default, the drop flag for an empty Local set; affinity carries its timeout")
    func masterFlags() {
        let plan = Planner.plan(desired: [
            fe("10.96.0.1:80/tcp", [], service: "a"),
            fe("10.96.0.2:80/tcp", [], service: "b", whenEmpty: .drop),
            fe("10.96.0.3:80/tcp", ["10.244.1.1:80/tcp"], service: "c", affinity: 10800),
        ], actual: MapState(), capacities: roomy)
        #expect(plan.target.masters[addr("10.96.0.1:80/tcp")] == MasterEntry(count: 0, revNatID: 1))
        #expect(plan.target.masters[addr("10.96.0.2:80/tcp")]!.flags == MasterEntry.flagEmptyDrop)
        let c = plan.target.masters[addr("10.96.0.3:80/tcp")]!
        #expect(c.flags == MasterEntry.flagAffinity && c.affinityTimeout == 10800)
    }

    @Test("An external-scope frontend is an entry of its own: its own rev_nat id and slots, the client-preserving flag")
    func externalScope() {
        let np = addr("192.168.0.1:30080/tcp")
        var cluster = fe("192.168.0.1:30080/tcp", ["10.244.1.1:8080/tcp", "10.244.2.1:8080/tcp"])
        cluster.kind = .nodePort
        var external = fe("192.168.0.1:30080/tcp", ["10.244.1.1:8080/tcp"])
        external.address = np.scoped(.external)
        external.kind = .nodePort
        external.preservesClientAddress = true
        let plan = Planner.plan(desired: [cluster, external], actual: MapState(), capacities: roomy)
        let c = plan.target.masters[np]!, e = plan.target.masters[np.scoped(.external)]!
        #expect(c.count == 2 && e.count == 1 && c.revNatID != e.revNatID)
        #expect(c.flags & MasterEntry.flagExternalLocal == 0 && e.flags & MasterEntry.flagExternalLocal != 0)
        #expect(plan.target.revNat[e.revNatID] == np.scoped(.external))
        #expect(invariantViolations(plan.target).isEmpty)
        // Dropping the external entry (eTP back to Cluster) leaves the cluster one as it was.
        let back = Planner.plan(desired: [cluster], actual: plan.target, capacities: roomy)
        #expect(back.target.masters[np] == c && back.target.masters[np.scoped(.external)] == nil)
    }

    @Test("A backend shared by two frontends is one entry, terminating only if every frontend says so")
    func sharedBackend() {
        let plan = Planner.plan(desired: [
            fe("10.96.0.1:80/tcp", ["10.244.1.1:80/tcp"], service: "a", terminating: ["10.244.1.1:80/tcp"]),
            fe("10.96.0.2:80/tcp", ["10.244.1.1:80/tcp"], service: "b"),
        ], actual: MapState(), capacities: roomy)
        #expect(plan.target.backends.count == 1)
        #expect(plan.target.backends.values.first?.flags == 0)
        #expect(plan.target.members.count == 2)
    }

    @Test("Garbage left by a crash mid-write (slots without a master) is swept")
    func sweepsOrphanSlots() {
        var actual = MapState()
        actual.slots[addr("10.96.9.9:80/tcp")] = [1: 7]
        actual.backends[7] = BackendEntry(address: addr("10.244.9.9:80/tcp"))
        let plan = Planner.plan(desired: [], actual: actual, capacities: roomy)
        #expect(plan.operations == [.deleteSlot(addr("10.96.9.9:80/tcp"), slot: 1), .deleteBackend(id: 7)])
    }

    @Test("A plan that failed before its master is retried with the entries it wrote, not new ids: nothing leaks")
    func retryAfterPartialWrite() {
        let desired = [fe("10.96.0.1:80/tcp", ["10.244.0.1:80/tcp", "10.244.0.2:80/tcp"])]
        let plan = Planner.plan(desired: desired, actual: MapState(), capacities: roomy)
        // Every prefix that stops before the master: the write failed there.
        let master = plan.operations.firstIndex { if case .upsertMaster = $0 { true } else { false } }!
        for cut in 1..<master {
            var state = MapState()
            for op in plan.operations[..<cut] { state.apply(op) }
            let retry = Planner.plan(desired: desired, actual: state, capacities: roomy)
            var end = state
            for op in retry.operations { end.apply(op) }
            // The same ids as the first plan: every entry written before the failure is reused.
            #expect(end == plan.target, "cut after \(cut) operations: \(retry.operations)")
            let revNatWritten = plan.operations[..<cut].contains { if case .upsertRevNat = $0 { true } else { false } }
            #expect(!revNatWritten || !retry.operations.contains { if case .upsertRevNat = $0 { true } else { false } },
                    "cut after \(cut): the rev_nat entry is written once")
        }
    }
}

// MARK: - Plans of a few frontends (what the agent runs for each change)

/// The changed addresses, closed over shared backends (the subset planner's precondition).
private func changedAddresses(_ before: [DesiredFrontend], _ after: [DesiredFrontend]) -> Set<L4Address> {
    let old = Dictionary(before.map { ($0.address, $0) }, uniquingKeysWith: { a, _ in a })
    let new = Dictionary(after.map { ($0.address, $0) }, uniquingKeysWith: { a, _ in a })
    var changed = Set(old.keys).union(new.keys).filter { old[$0] != new[$0] }
    let all = before + after
    while true {
        let backends = Set(all.filter { changed.contains($0.address) }.flatMap { $0.backends.map(\.address) })
        let more = Set(all.filter { !Set($0.backends.map(\.address)).isDisjoint(with: backends) }.map(\.address))
        if more.isSubset(of: changed) { return changed }
        changed.formUnion(more)
    }
}

/// Plans `after` both ways from the state a full plan of `before` left: the subset plan applied
/// to that state must give the full plan's target, with every prefix safe.
private func compareSubset(_ before: [DesiredFrontend], _ after: [DesiredFrontend], capacities: MapCapacities = roomy,
                           extra: Set<L4Address> = []) -> (subset: Plan, full: Plan, end: MapState, problems: [String]) {
    let start = Planner.plan(desired: before, actual: MapState(), capacities: capacities).target
    let full = Planner.plan(desired: after, actual: start, capacities: capacities)
    let changed = changedAddresses(before, after).union(extra)
    let subset = Planner.plan(changed: changed, desired: after, actual: IndexedMapState(start), capacities: capacities)
    let (end, problems) = applyChecked(subset, to: start)
    return (subset, full, end, problems)
}

@Suite("Planner, a few frontends against the maps")
struct SubsetPlannerTests {
    private static let web = fe("10.96.0.1:80/tcp", ["10.244.1.1:80/tcp", "10.244.1.2:80/tcp"], service: "web")
    private static let api = fe("10.96.0.2:80/tcp", ["10.244.2.1:80/tcp", "10.244.2.2:80/tcp"], service: "api")
    private static let db = fe("10.96.0.3:5432/tcp", ["10.244.3.1:5432/tcp"], service: "db")

    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var before: [DesiredFrontend]
        var after: [DesiredFrontend]
        var capacities = roomy
        /// Operations the subset plan must write (nil: not checked).
        var operations: Int?
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "first service into empty maps", before: [], after: [web], operations: 8),
        Case(name: "a service added beside others", before: [web, api], after: [web, api, db], operations: 5),
        Case(name: "a service removed: master, slots, members, rev_nat, backends", before: [web, api, db], after: [web, db],
             operations: 8),
        Case(name: "one endpoint moves", before: [web, api],
             after: [web, fe("10.96.0.2:80/tcp", ["10.244.2.1:80/tcp", "10.244.2.9:80/tcp"], service: "api")], operations: 5),
        Case(name: "an endpoint turns terminating", before: [web, api],
             after: [web, fe("10.96.0.2:80/tcp", ["10.244.2.1:80/tcp", "10.244.2.2:80/tcp"], service: "api",
                             terminating: ["10.244.2.2:80/tcp"])], operations: 1),
        Case(name: "affinity turned on", before: [web, api],
             after: [web, fe("10.96.0.2:80/tcp", ["10.244.2.1:80/tcp", "10.244.2.2:80/tcp"], service: "api", affinity: 60)],
             operations: 1),
        Case(name: "last endpoint gone, drop", before: [web, db],
             after: [web, fe("10.96.0.3:5432/tcp", [], service: "db", whenEmpty: .drop)], operations: 4),
        Case(name: "a backend shared with an unchanged service stays", before: [web, api],
             after: [web, fe("10.96.0.2:80/tcp", ["10.244.1.1:80/tcp"], service: "api")]),
        Case(name: "a service that no longer fits keeps what it had", before: [web, api],
             after: [web, fe("10.96.0.2:80/tcp", (1...6).map { "10.244.2.\($0):80/tcp" }, service: "api")],
             capacities: MapCapacities(services: 8, backends: 100, revNat: 100, members: 100), operations: 0),
        Case(name: "nothing changed", before: [web, api, db], after: [web, api, db], operations: 0),
    ]

    @Test("Table: the subset plan has the full plan's effect", arguments: cases)
    func table(_ c: Case) {
        let (subset, full, end, problems) = compareSubset(c.before, c.after, capacities: c.capacities)
        #expect(problems.isEmpty, "\(problems.prefix(3))")
        #expect(end == full.target)
        #expect(subset.rejected == full.rejected)
        // The subset writes exactly the full plan's operations, in the same order.
        #expect(subset.operations == full.operations)
        if let n = c.operations { #expect(subset.operations.count == n, "\(subset.operations)") }
    }

    @Test("Generated changes: the subset plan has the full plan's effect, every prefix is safe", arguments: 0..<300)
    func generated(seed: Int) {
        var rng = SplitMix64(seed: UInt64(seed))
        let before = randomDesired(&rng)
        var after = randomDesired(&rng)
        // Often only some services change, as in a real churn.
        if Bool.random(using: &rng) {
            let keep = Set(before.filter { _ in Bool.random(using: &rng) }.map(\.address))
            after = before.filter { keep.contains($0.address) } + after.filter { a in
                !keep.contains(a.address) && !before.contains { $0.address == a.address && keep.contains($0.address) } }
        }
        let tight = seed % 3 == 0 ? MapCapacities(services: 14, backends: 8, revNat: 4, members: 12) : roomy
        // Services the first plan rejected are retried too (the agent does so).
        let first = Planner.plan(desired: before, actual: MapState(), capacities: tight)
        let retried = Set(after.filter { f in first.rejected.contains { $0.service == f.service.serviceKey } }.map(\.address))
        let (subset, full, end, problems) = compareSubset(before, after, capacities: tight, extra: retried)
        #expect(problems.isEmpty, "\(problems.prefix(3))")
        #expect(end == full.target)
        #expect(subset.operations == full.operations)
    }

    @Test("The agent's running copy: indexes updated op by op plan like indexes rebuilt from the maps")
    func runningIndex() {
        var rng = SplitMix64(seed: 7)
        var desired = randomDesired(&rng)
        var running = IndexedMapState()
        running.apply(Planner.plan(desired: desired, actual: MapState(), capacities: roomy).operations)
        for _ in 0..<50 {
            let next = randomDesired(&rng)
            let changed = changedAddresses(desired, next)
            let a = Planner.plan(changed: changed, desired: next, actual: running, capacities: roomy)
            let b = Planner.plan(changed: changed, desired: next, actual: IndexedMapState(running.state), capacities: roomy)
            #expect(a == b)
            running.apply(a.operations)
            #expect(running.serviceEntryCount == running.state.serviceEntryCount)
            desired = next
        }
        #expect(Planner.plan(desired: desired, actual: running.state, capacities: roomy).operations.isEmpty)
    }

    @Test("A backend still used outside the scope is never deleted, even if the caller left its other user out")
    func keptUsers() {
        let shared = "10.244.1.1:80/tcp"
        let web = fe("10.96.0.1:80/tcp", [shared], service: "web")
        let api = fe("10.96.0.2:80/tcp", [shared, "10.244.2.1:80/tcp"], service: "api")
        let start = Planner.plan(desired: [web, api], actual: MapState(), capacities: roomy).target
        // api drops the shared backend, or goes away; web (not in the scope) keeps using it.
        for after in [[fe("10.96.0.2:80/tcp", ["10.244.2.1:80/tcp"], service: "api")], []] {
            let plan = Planner.plan(changed: [api.address], desired: after, actual: IndexedMapState(start), capacities: roomy)
            let (end, problems) = applyChecked(plan, to: start)
            #expect(problems.isEmpty, "\(problems.prefix(3))")
            #expect(end == Planner.plan(desired: [web] + after, actual: start, capacities: roomy).target)
        }
    }

    @Test("Ids freed by one change are reused by the next, never within the same plan")
    func idReuse() {
        let start = Planner.plan(desired: [Self.web, Self.api], actual: MapState(), capacities: roomy)
        var running = IndexedMapState()
        running.apply(start.operations)
        let gone = Planner.plan(changed: [Self.api.address], desired: [], actual: running, capacities: roomy)
        running.apply(gone.operations)
        let freed = start.target.masters[Self.api.address]!.revNatID
        let back = Planner.plan(changed: [Self.db.address], desired: [Self.db], actual: running, capacities: roomy)
        #expect(back.target.masters[Self.db.address]!.revNatID == freed)
        let oldBackends = Set(start.target.backends.filter { $0.value.address.port == 80 && $0.value.address.ip.description.hasPrefix("10.244.2") }.map(\.key))
        #expect(Set(back.target.backends.keys).isSubset(of: oldBackends))
    }

    @Test("Planning a few frontends is linear: a plan over 20,000 frontends touches only the changed one")
    func proportional() {
        let many = (0..<20_000).map { i in
            fe("10.\(96 + i / 65_536).\(i / 256 % 256).\(i % 256):80/tcp",
               (0..<3).map { "10.\(200 + i / 65_536).\(i / 256 % 256).\(i % 256):\(8000 + $0)/tcp" }, service: "s\(i)")
        }
        let start = IndexedMapState(Planner.plan(desired: many, actual: MapState(), capacities: MapCapacities(
            services: 100_000, backends: 100_000, revNat: 100_000, members: 100_000)).target)
        let moved = fe(many[500].address.description, ["10.250.0.1:80/tcp"], service: "s500")
        let plan = Planner.plan(changed: [moved.address], desired: [moved], actual: start, capacities: MapCapacities(
            services: 100_000, backends: 100_000, revNat: 100_000, members: 100_000))
        // 1 backend, 1 member, slot 1, master, slots 2–3, 3 members, 3 backends.
        #expect(plan.operations.count == 12, "\(plan.operations)")
        #expect(plan.target.masters.count == 1)
    }
}
