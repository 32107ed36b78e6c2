import CVeer
import Foundation
import Glibc
import Testing
import VeerDatapath
import VeerModel
import VeerTestSupport

// Kernel tests: real programs attached to a child cgroup, real sockets in a private
// network namespace. The VIP range has no route there, so a missed rewrite fails with
// ENETUNREACH inside the sandbox and never reaches a network.

private let vip = "10.96.0.10"
private let backendIPs = ["10.244.1.11", "10.244.1.12", "10.244.1.13"]
private let podNames = ["pod-a", "pod-b", "pod-c"]

private func frontend(_ ip: String = vip, _ port: UInt16 = 80, _ proto: L4Protocol = .tcp,
                      backends: [String], backendPort: UInt16 = 8080, affinity: UInt32? = nil,
                      whenEmpty: EmptyBehavior = .reject) -> DesiredFrontend {
    DesiredFrontend(
        address: L4Address(ip: IPAddress(ip)!, port: port, proto: proto), kind: .clusterIP,
        service: ServicePortName(namespace: "default", name: "web", port: "http", proto: proto),
        backends: backends.map { DesiredBackend(address: L4Address(ip: IPAddress($0)!, port: backendPort, proto: proto)) },
        whenEmpty: whenEmpty, affinityTimeout: affinity)
}

/// A sandbox with three backends serving `proto` on :8080, answering with their pod names.
private func withBackends<T>(_ protos: [L4Protocol] = [.tcp], _ body: (KernelSandbox, Datapath) throws -> T) throws -> T {
    try KernelSandbox.run { sb in
        try sb.addAddresses(backendIPs)
        for proto in protos {
            for (ip, name) in zip(backendIPs, podNames) { try sb.startServer(proto, ip, 8080, reply: name) }
        }
        return try body(sb, try sb.install())
    }
}

/// The first translated socket of `frontend` (a client just started): its backend.
func waitForSocket(_ dp: Datapath, to frontend: L4Address) throws -> TranslatedSocket {
    var used: TranslatedSocket?
    try waitFor("a socket translated for \(frontend)", timeout: 5) {
        used = try dp.sockets().first { $0.frontend == frontend }
        return used != nil
    }
    return try #require(used)
}

private func waitForLinks(_ sb: KernelSandbox, count: Int) throws {
    try waitFor("\(count) links on the cgroup", timeout: 5) { try linkIDs(sb).count == count }
}

private func waitForGone(links: Set<UInt32>, programs: Set<UInt32>, maps: Set<UInt32>) throws {
    try waitFor("programs, maps and links freed", timeout: 5) {
        let live = (links: Set(try bpftoolIDs(["link", "show"]).map(\.id)),
                    programs: Set(try bpftoolIDs(["prog", "show"]).map(\.id)),
                    maps: Set(try bpftoolIDs(["map", "show"]).map(\.id)))
        return live.links.isDisjoint(with: links) && live.programs.isDisjoint(with: programs) && live.maps.isDisjoint(with: maps)
    }
}

/// Connections and datagrams the kernel has translated so far.
private func translated(_ dp: Datapath) throws -> UInt64 { try dp.stats()[.translated] ?? 0 }

/// Waits until the kernel has translated `count` in all: the client is running, or has made
/// that much progress, whatever the machine's speed.
private func waitForTranslated(_ dp: Datapath, _ count: UInt64, _ what: String) throws {
    try waitFor("\(count) translated: \(what)") { try translated(dp) >= count }
}

private func counts(_ results: [ProbeResult]) -> [String: Int] {
    results.filter(\.ok).reduce(into: [:]) { $0[$1.reply, default: 0] += 1 }
}

@Suite("Datapath in the kernel", .serialized,
       .disabled(if: KernelSandbox.unavailableReason != nil,
                 Comment(rawValue: "skipped: \(KernelSandbox.unavailableReason ?? "")")))
struct KernelTests {
    @Test("TCP through a frontend reaches every backend, and getpeername shows the frontend")
    func tcpSpreadsOverBackends() throws {
        try withBackends { sb, dp in
            try dp.sync([frontend(backends: backendIPs)])
            let results = try sb.client(["tcp", vip, "80", "300"])
            #expect(results.count == 300)
            #expect(results.allSatisfy { $0.ok }, "failures: \(results.filter { !$0.ok }.prefix(3))")
            #expect(results.allSatisfy { $0.peer == "\(vip):80" })
            let perPod = counts(results)
            for pod in podNames {
                // 100 expected each; 50 is > 7 standard deviations away.
                #expect((perPod[pod] ?? 0) >= 50, "\(pod) got \(perPod[pod] ?? 0) of 300: \(perPod)")
            }
        }
    }

    @Test("Counters equal the connections each backend accepted")
    func countersMatchAccepted() throws {
        try withBackends { sb, dp in
            let plan = try dp.sync([frontend(backends: backendIPs)])
            let results = try sb.client(["tcp", vip, "80", "120"])
            #expect(results.allSatisfy { $0.ok })
            let hits = try dp.hits()
            let perPod = counts(results)
            for (i, ip) in backendIPs.enumerated() {
                let id = plan.target.backends.first { $0.value.address.ip == IPAddress(ip)! }!.key
                let revNat = plan.target.masters.values.first!.revNatID
                #expect(hits[MemberKey(revNatID: revNat, backendID: id)] == UInt64(perPod[podNames[i]] ?? 0))
            }
            #expect(try dp.stats()[.translated] == 120)
        }
    }

    @Test("The maps read back exactly what a large plan wrote (batched writes in parallel parts, batched reads across several chunks)")
    func readBackAtScale() throws {
        try KernelSandbox.run { sb in
            let dp = try sb.install()
            // 50,000 backends and members and 60,000 service entries: every run is long enough
            // to be written in parallel parts (more than five chunks of 8,192 or 4,096).
            let desired = (0..<10_000).map { i in
                frontend("10.97.\(i / 250).\(i % 250 + 1)", 80, .tcp,
                         backends: (0..<5).map { j in let k = i * 5 + j; return "10.245.\(k / 256 % 256).\(k % 256)" })
            }
            let plan = try dp.sync(desired)
            #expect(plan.target.serviceEntryCount == 10_000 * 6)
            #expect(plan.target.backends.count == 50_000)
            #expect(try dp.readState() == plan.target)
            #expect(try dp.sync(desired).operations.isEmpty, "replanning against what was read back is empty")
        }
    }

    @Test("A backend that leaves and comes back keeps counting from where it was")
    func countersSurviveMembershipChurn() throws {
        try withBackends { sb, dp in
            try dp.sync([frontend(backends: backendIPs)])
            var results = try sb.client(["tcp", vip, "80", "60"])
            try dp.sync([frontend(backends: Array(backendIPs.prefix(2)))])
            results += try sb.client(["tcp", vip, "80", "30"])
            try dp.sync([frontend(backends: backendIPs)])
            results += try sb.client(["tcp", vip, "80", "60"])
            #expect(results.allSatisfy { $0.ok })
            let hits = try dp.hitsByAddress(try dp.readState())
            let perPod = counts(results)
            for (ip, pod) in zip(backendIPs, podNames) {
                let pair = FrontendBackend(frontend: L4Address("\(vip):80/tcp")!, backend: L4Address("\(ip):8080/tcp")!)
                #expect(hits[pair] == UInt64(perPod[pod] ?? 0), "\(pod)")
            }
            // A fresh reader (veerctl) sees the same totals.
            #expect(try Datapath(pins: sb.pins).hitsByAddress(try dp.readState()) == hits)
            // What a scrape reads (the members' counts by id, in batches, and the retired counts
            // by address pair) adds up to the same totals.
            func scraped() throws -> [FrontendBackend: UInt64] {
                let read = try dp.memberHits()
                let state = try dp.readState()
                #expect(!read.retired.isEmpty, "the backend that left had counted")
                var byPair: [FrontendBackend: UInt64] = [:]
                for (member, count) in zip(read.members, read.counts) {
                    let pair = FrontendBackend(frontend: try #require(state.revNat[member.revNatID]),
                                               backend: try #require(state.backends[member.backendID]).address)
                    byPair[pair] = count + (read.retired[pair] ?? 0)
                }
                return byPair
            }
            #expect(try scraped() == hits)
            // The retired counts are parsed once and kept: a second departure must still show
            // in the next scrape.
            try dp.sync([frontend(backends: Array(backendIPs.prefix(2)))])
            results += try sb.client(["tcp", vip, "80", "30"])
            try dp.sync([frontend(backends: backendIPs)])
            let again = try dp.hitsByAddress(try dp.readState())
            #expect(again.values.reduce(0, +) == UInt64(results.count))
            #expect(try scraped() == again)
        }
    }

    @Test("Unconnected UDP: recvfrom reports the frontend; connected UDP: getpeername does")
    func udpReverseTranslation() throws {
        try withBackends([.udp]) { sb, dp in
            try dp.sync([frontend(vip, 53, .udp, backends: backendIPs)])
            let unconnected = try sb.client(["udp-sendto", vip, "53", "20"])
            #expect(unconnected.count == 20)
            #expect(unconnected.allSatisfy { $0.ok && $0.peer == "\(vip):53" }, "\(unconnected.prefix(3))")
            // One socket stays on one backend.
            #expect(Set(unconnected.map(\.reply)).count == 1)

            let connected = try sb.client(["udp-connect", vip, "53", "60"])
            #expect(connected.allSatisfy { $0.ok && $0.peer == "\(vip):53" }, "\(connected.prefix(3))")
            #expect(Set(connected.map(\.reply)).count == 3, "new sockets spread: \(counts(connected))")
        }
    }

    @Test("A UDP socket keeps its backend while the service grows and shrinks around it")
    func udpStickiness() throws {
        try withBackends([.udp]) { sb, dp in
            try dp.sync([frontend(vip, 53, .udp, backends: backendIPs)])
            // Probe runs 3 rounds on one socket with pauses, so we can change the set between them.
            let client = try sb.startClient(["udp-sendto", vip, "53", "3000"])
            try waitForTranslated(dp, 1, "the socket's first datagrams")
            try dp.sync([frontend(vip, 53, .udp, backends: Array(backendIPs.prefix(2)) + backendIPs.suffix(1))])
            try dp.sync([frontend(vip, 53, .udp, backends: backendIPs + ["10.244.1.99"])])
            let results = sb.finish(client)
            #expect(results.count == 3000)
            #expect(results.allSatisfy { $0.ok })
            #expect(Set(results.map(\.reply)).count == 1, "\(counts(results))")
        }
    }

    @Test("No backends: connect and sendto fail at once with ECONNREFUSED; Local-only drop gives ETIMEDOUT")
    func emptyFrontends() throws {
        try withBackends { sb, dp in
            try dp.sync([
                frontend(backends: []),
                frontend(vip, 53, .udp, backends: []),
                frontend("10.96.0.11", 80, .tcp, backends: [], whenEmpty: .drop),
            ])
            let start = monotonicNow()
            let tcp = try sb.client(["tcp", vip, "80", "3"])
            let udpConnect = try sb.client(["udp-connect", vip, "53", "3"])
            let udpSendto = try sb.client(["udp-sendto", vip, "53", "3"])
            for r in tcp + udpConnect + udpSendto {
                #expect(!r.ok && r.reply == "ECONNREFUSED", "\(r)")
            }
            let dropped = try sb.client(["tcp", "10.96.0.11", "80", "2"])
            #expect(dropped.allSatisfy { !$0.ok && $0.reply == "ETIMEDOUT" }, "\(dropped)")
            #expect(monotonicNow() - start < 2_000_000_000, "refusals must be immediate")
            let stats = try dp.stats()
            #expect(stats[.refused] == 9)
            #expect(stats[.dropped] == 2)
        }
    }

    @Test("A destination that is not a frontend passes untouched")
    func nonFrontendUntouched() throws {
        try withBackends { sb, dp in
            try dp.sync([frontend(backends: [backendIPs[0]])])
            // Direct to a backend: reaches exactly it, peer is itself.
            let direct = try sb.client(["tcp", backendIPs[1], "8080", "5"])
            #expect(direct.allSatisfy { $0.ok && $0.reply == "pod-b" && $0.peer == "\(backendIPs[1]):8080" })
            // The VIP on another port is not a frontend: no route in the sandbox.
            let otherPort = try sb.client(["tcp", vip, "81", "1"])
            #expect(otherPort.first?.reply == "ENETUNREACH")
            #expect(try dp.stats()[.translated] == 0)
        }
    }

    @Test("Shrinking 3 → 2 and growing back under load: no failed connect, no new connection to a removed backend")
    func shrinkAndGrowUnderLoad() throws {
        try withBackends { sb, dp in
            try dp.sync([frontend(backends: backendIPs)])
            let client = try sb.startClient(["tcp", vip, "80", "4000", "200"])
            try waitForTranslated(dp, 500, "connections before the shrink")
            try dp.sync([frontend(backends: Array(backendIPs.prefix(2)))])
            let shrunk = monotonicNow()
            try waitForTranslated(dp, try translated(dp) + 500, "connections while shrunk")
            try dp.sync([frontend(backends: backendIPs)])
            let grown = monotonicNow()
            let results = sb.finish(client)
            #expect(results.count == 4000)
            #expect(results.filter { !$0.ok }.isEmpty, "failed: \(results.filter { !$0.ok }.prefix(5))")
            let late = results.filter { $0.reply == "pod-c" && $0.startNS > shrunk && $0.startNS < grown }
            #expect(late.isEmpty, "\(late.count) connections reached the removed backend after the update")
            #expect(results.contains { $0.reply == "pod-c" && $0.startNS > grown }, "pod-c is back after growing")
            #expect(results.contains { $0.startNS > shrunk && $0.startNS < grown }, "the client ran during the shrink")
        }
    }

    @Test("Session affinity: one client namespace sticks to one backend until the timeout")
    func sessionAffinity() throws {
        try withBackends { sb, dp in
            try dp.sync([frontend(backends: backendIPs, affinity: 1)])
            let first = try sb.client(["tcp", vip, "80", "40"])
            #expect(first.allSatisfy { $0.ok })
            #expect(Set(first.map(\.reply)).count == 1, "\(counts(first))")
            // After the timeout the pick is free again: within a few expiries it moves.
            var seen = Set(first.map(\.reply))
            for _ in 0..<10 where seen.count == 1 {
                usleep(1_200_000)
                let next = try sb.client(["tcp", vip, "80", "10"])
                #expect(Set(next.map(\.reply)).count == 1, "sticks within a period: \(counts(next))")
                seen.formUnion(next.map(\.reply))
            }
            #expect(seen.count > 1, "affinity never expired")
            let stats = try dp.stats()
            #expect(stats[.affinityFailed] == 0, "every affinity write went in: \(stats)")
        }
    }

    @Test("A connected UDP socket to a removed backend is destroyed; the client reconnects to a live one")
    func staleUDPSocketsAreTerminated() throws {
        // The client holds its socket for 4 s: the sync and scan below must happen while it lives,
        // also on a machine busy with other suites.
        try withBackends([.udp]) { sb, dp in
            try dp.sync([frontend(vip, 53, .udp, backends: backendIPs)])
            let client = try sb.startClient(["udp-hold", vip, "53", "4000", "1000"])
            let victim = try waitForSocket(dp, to: L4Address("\(vip):53/udp")!).backend
            let remaining = backendIPs.filter { $0 != victim.ip.description }
            try dp.sync([frontend(vip, 53, .udp, backends: remaining)])
            // The removed pod still answers: without termination the socket would stay on it.
            #expect(try dp.staleSockets(dp.readState()).map(\.backend) == [victim])
            let destroyed = try dp.terminateStaleSockets(protocols: [.udp])
            let terminated = monotonicNow()
            #expect(destroyed.destroyed[.udp] == 1 && destroyed.failures.isEmpty, "\(destroyed.failures)")
            let results = sb.finish(client)
            let victimPod = podNames[backendIPs.firstIndex(of: victim.ip.description)!]
            let after = results.filter { $0.startNS > terminated }
            #expect(!after.isEmpty)
            #expect(!after.contains { $0.reply == victimPod }, "\(victimPod) still answered after termination")
            // The blocked recv gets ECONNABORTED, or the next send EDESTADDRREQ: the socket was
            // disconnected under the application, which reconnects.
            let errors = results.filter { !$0.ok }
            #expect(errors.count == 1 && ["ECONNABORTED", "EDESTADDRREQ"].contains(errors.first?.reply), "\(errors)")
            #expect(after.filter(\.ok).allSatisfy { $0.peer == "\(vip):53" })
            #expect(try dp.staleSockets(dp.readState()).isEmpty)
        }
    }

    @Test("Trace: one event per connection with its frontend and backend; nothing written without a tracer; a full buffer counts drops")
    func trace() throws {
        try withBackends { sb, dp in
            try dp.sync([frontend(backends: backendIPs), frontend("10.96.0.99", 80, .tcp, backends: [])])
            let tracer = try Tracer(pins: sb.pins)
            _ = try sb.client(["tcp", vip, "80", "20"])
            #expect(try dp.stats()[.traced] == 0, "no tracer, no events")
            #expect(tracer.poll(timeoutMS: 0).isEmpty)

            try tracer.setEnabled(true)
            let results = try sb.client(["tcp", vip, "80", "30"]) + sb.client(["tcp", "10.96.0.99", "80", "2"])
            var events: [TraceEvent] = []
            for _ in 0..<50 where events.count < 32 { events += tracer.poll(timeoutMS: 100) }
            #expect(events.count == 32)
            let translated = events.filter { $0.verdict == .translated }
            #expect(translated.count == 30)
            #expect(translated.allSatisfy { $0.frontend == L4Address("\(vip):80/tcp")! && $0.command == "veer-probe" && $0.pid > 0 })
            for (ip, pod) in zip(backendIPs, podNames) {
                #expect(translated.filter { $0.backend?.ip.description == ip }.count == results.filter { $0.reply == pod }.count)
            }
            #expect(events.filter { $0.verdict == .refused }.map(\.frontend) == Array(repeating: L4Address("10.96.0.99:80/tcp")!, count: 2))

            // Nobody reads: the buffer fills, and what does not fit is counted, not lost silently.
            _ = try sb.client(["tcp", vip, "80", "5000"])
            let stats = try dp.stats()
            #expect((stats[.traceDropped] ?? 0) > 0)
            #expect((stats[.traced] ?? 0) + (stats[.traceDropped] ?? 0) == 32 + 5000)
            try tracer.setEnabled(false)
        }
    }

    @Test("Released sockets leave no reverse entries, connected or not")
    func sockReleaseCleansUp() throws {
        try withBackends([.tcp, .udp]) { sb, dp in
            try dp.sync([frontend(backends: backendIPs), frontend(vip, 53, .udp, backends: backendIPs)])
            _ = try sb.client(["tcp", vip, "80", "20"])
            _ = try sb.client(["udp-connect", vip, "53", "20"])
            _ = try sb.client(["udp-sendto", vip, "53", "20"])
            let stats = try dp.stats()
            #expect(stats[.translated] == 60)
            let left = try dp.sockets()
            #expect(left.isEmpty, "left: \(left.prefix(3))")
            // Each release deleted an entry that was there: a delete that worked is not a failure.
            #expect(stats[.sockRevDeleteFailed] == 0 && stats[.sockStateFailed] == 0 && stats[.sockRevFailed] == 0, "\(stats)")
        }
    }

    @Test("A restart adopts the pins: same links and maps, no failed connect while it reloads")
    func adoptWhileServing() throws {
        try withBackends { sb, dp in
            try dp.sync([frontend(backends: backendIPs)])
            let linksBefore = try linkIDs(sb)
            let client = try sb.startClient(["tcp", vip, "80", "3000", "100"])
            for _ in 0..<5 {
                try waitForTranslated(dp, try translated(dp) + 100, "connections between reinstalls")
                let again = try sb.install()
                #expect(try again.readState() == dp.readState())
            }
            let results = sb.finish(client)
            #expect(results.count == 3000)
            #expect(results.allSatisfy { $0.ok }, "failed: \(results.filter { !$0.ok }.prefix(3))")
            #expect(try linkIDs(sb) == linksBefore)
        }
    }

    @Test("An in-place upgrade retires the old schema's pins: its stale maps stop deciding at once")
    func upgradeRetiresOldSchema() throws {
        try withBackends { sb, _ in
            // The node as an older release left it: programs attached under another schema
            // version's pins, translating with maps nobody writes any more.
            let old = PinLayout(root: sb.pins.root, version: "v1")
            #expect(sb.pins.otherVersions.isEmpty)
            _ = try Datapath.uninstall(pins: sb.pins)
            let stale = try Datapath.install(object: KernelSandbox.bpfObject, cgroup: sb.cgroup, pins: old)
            try stale.sync([frontend(backends: [backendIPs[0]])])
            #expect(Set(try sb.client(["tcp", vip, "80", "10"]).map(\.reply)) == ["pod-a"])

            let current = try sb.install()
            #expect(current.retiredVersions == ["v1"])
            #expect(access(old.directory, F_OK) != 0)
            #expect(sb.pins.otherVersions.isEmpty)
            try? waitForLinks(sb, count: datapathPrograms.count)  // the retired links are freed asynchronously
            #expect(try linkIDs(sb).count == datapathPrograms.count)
            try current.sync([frontend(backends: [backendIPs[1], backendIPs[2]])])
            let after = try sb.client(["tcp", vip, "80", "40"])
            #expect(after.allSatisfy { $0.ok && $0.reply != "pod-a" }, "\(counts(after))")
            let attached = KernelSandbox.run(["bpftool", "cgroup", "show", sb.cgroup]).stdout
            #expect(attached.components(separatedBy: "veer_connect4").count - 1 == 1, "\(attached)")
        }
    }

    @Test("Uninstall leaves none of our programs, maps or links in the kernel")
    func uninstallLeavesNothing() throws {
        try KernelSandbox.run { sb in
            // Our own map fds would keep the maps alive: hold them only in this scope.
            let (links, ourProgs, mapIDs) = try {
                let dp = try sb.install()
                try dp.sync([frontend(backends: backendIPs)])
                let links = try linkIDs(sb)
                let progs = try bpftoolIDs(["prog", "show"]).filter { $0.name.hasPrefix("veer_") }
                let ourProgs = Set(try links.map { try programOfLink($0) })
                #expect(links.count == datapathPrograms.count && links.count == 11, "nine translation hooks and post_bind4/6")
                #expect(ourProgs.isSubset(of: Set(progs.map(\.id))))
                let pinned = try pinnedMapIDs(sb)
                #expect(pinned.count == 13, "eleven maps, veer_service_ips and veer_source_ranges")
                #expect(try mapIDsOfPrograms(ourProgs).isSubset(of: pinned))
                return (links, ourProgs, pinned)
            }()
            #expect(try Datapath.uninstall(pins: sb.pins))
            #expect(access(sb.pins.directory, F_OK) != 0)
            // The kernel frees them asynchronously.
            #expect((try? waitForGone(links: links, programs: ourProgs, maps: mapIDs)) != nil,
                    "programs, maps or links survived uninstall")
            let cgroupProgs = KernelSandbox.run(["bpftool", "cgroup", "show", sb.cgroup]).stdout
            #expect(!cgroupProgs.contains("veer_"))
        }
    }

    @Test("Capacities: a restart without flags adopts the pinned sizes; a different size asked for fails and names the map")
    func capacitiesAdoptPinned() throws {
        try KernelSandbox.run { sb in
            let small = MapCapacities(services: 64, backends: 32, revNat: 16, members: 32)
            _ = try Datapath.install(object: KernelSandbox.bpfObject, cgroup: sb.cgroup, pins: sb.pins, capacities: small,
                                     tables: TableCapacities(serviceIPs: 8, sockRev: 128))
            // No flags: every map keeps the size it was pinned with, the others their default.
            let again = try Datapath.install(object: KernelSandbox.bpfObject, cgroup: sb.cgroup, pins: sb.pins)
            let sizes = Dictionary(uniqueKeysWithValues: try again.fill().map { ($0.map, $0.capacity) })
            #expect(sizes["veer_services"] == 64 && sizes["veer_backends"] == 32 && sizes["veer_rev_nat"] == 16 && sizes["veer_members"] == 32, "\(sizes)")
            #expect(sizes["veer_service_ips"] == 8 && sizes["veer_sock_rev"] == 128, "\(sizes)")
            #expect(sizes["veer_source_ranges"] == Int(VEER_SOURCE_RANGES_MAX) && sizes["veer_affinity"] == Int(VEER_AFFINITY_MAX), "\(sizes)")
            // The scrape's form (the agent-written maps as the agent counted them) lists the same maps.
            #expect(try again.fill(agentWritten: MapEntryCounts(services: 0, backends: 0, revNat: 0, members: 0)).map(\.map) == again.fill().map(\.map))
            // One table asked for on its own: the others are not, so their pinned sizes stand.
            #expect(throws: DatapathError.capacityMismatch(map: "veer_service_ips", pinned: 8, requested: 16)) {
                try Datapath.install(object: KernelSandbox.bpfObject, cgroup: sb.cgroup, pins: sb.pins, tables: TableCapacities(serviceIPs: 16))
            }
            let same = try Datapath.install(object: KernelSandbox.bpfObject, cgroup: sb.cgroup, pins: sb.pins, tables: TableCapacities(serviceIPs: 8))
            #expect(try same.fill().first { $0.map == "veer_service_ips" }?.capacity == 8)
        }
    }

    @Test("Errors name what failed: missing object, a directory that is not cgroup2")
    func clearErrors() throws {
        try KernelSandbox.run { sb in
            #expect(throws: DatapathError.objectNotFound(path: "/nonexistent/veer.o")) {
                try Datapath.install(object: "/nonexistent/veer.o", cgroup: sb.cgroup, pins: sb.pins)
            }
            #expect(throws: DatapathError.noCgroup2(path: "/tmp")) {
                try Datapath.install(object: KernelSandbox.bpfObject, cgroup: "/tmp", pins: sb.pins)
            }
        }
    }
}

// MARK: - bpftool views, to check from outside our own code

private struct BPFObjectID: Hashable { var id: UInt32; var name: String }

private func bpftoolIDs(_ args: [String]) throws -> [BPFObjectID] {
    let r = KernelSandbox.run(["bpftool", "-j"] + args)
    guard r.status == 0, let array = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] else {
        throw SandboxError("bpftool \(args): \(r.stderr)")
    }
    return array.compactMap { o in (o["id"] as? Int).map { BPFObjectID(id: UInt32($0), name: o["name"] as? String ?? "") } }
}

private func linkIDs(_ sb: KernelSandbox) throws -> Set<UInt32> {
    let r = KernelSandbox.run(["bpftool", "-j", "link", "show"])
    let links = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] ?? []
    let cgid = try FileManager.default.attributesOfItem(atPath: sb.cgroup)[.systemFileNumber] as? UInt64
    return Set(links.filter { ($0["cgroup_id"] as? UInt64) == cgid || ($0["cgroup_id"] as? Int).map(UInt64.init) == cgid }
        .compactMap { ($0["id"] as? Int).map(UInt32.init) })
}

private func programOfLink(_ id: UInt32) throws -> UInt32 {
    let r = KernelSandbox.run(["bpftool", "-j", "link", "show", "id", "\(id)"])
    let o = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
    guard let prog = o?["prog_id"] as? Int else { throw SandboxError("link \(id) has no program") }
    return UInt32(prog)
}

private func pinnedMapIDs(_ sb: KernelSandbox) throws -> Set<UInt32> {
    var ids = Set<UInt32>()
    for name in try FileManager.default.contentsOfDirectory(atPath: sb.pins.maps) {
        let r = KernelSandbox.run(["bpftool", "-j", "map", "show", "pinned", "\(sb.pins.maps)/\(name)"])
        let o = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        if let id = o?["id"] as? Int { ids.insert(UInt32(id)) }
    }
    return ids
}

private func mapIDsOfPrograms(_ progs: Set<UInt32>) throws -> Set<UInt32> {
    var ids = Set<UInt32>()
    for p in progs {
        let r = KernelSandbox.run(["bpftool", "-j", "prog", "show", "id", "\(p)"])
        let o = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        for m in o?["map_ids"] as? [Int] ?? [] { ids.insert(UInt32(m)) }
    }
    return ids
}
