// veer-bench: the Swift half of `make bench` (Tests/bench/run.sh). It installs Veer's
// datapath on the bench's child cgroup with maps sized for the scale, and writes the
// frontends of Tests/bench/gen.py through the real Planner and Datapath, timing each part.
//
//   veer-bench install OBJECT CGROUP PIN_ROOT FRONTENDS_FILE
//       installs, then writes every frontend with the same map operations, in the same
//       order, as a Planner run against empty maps (see `fill`): the Planner itself is too
//       slow at 50,000 services to sit in front of the data-plane measurement, so it is
//       timed on its own by `plan`. Prints
//       "veer-load frontends=F ops=O parse_s= install_s= apply_s= total_s= rss_mb="
//   veer-bench plan FRONTENDS_FILE
//       times Planner.plan against empty maps: "veer-plan frontends=F ops=O plan_s= rss_mb="
//   veer-bench churn PIN_ROOT FRONTENDS_FILE RATE SECONDS
//       moves one endpoint of one random service, at most RATE times a second, each planned
//       and written as the agent does (Planner.plan of the changed frontend against the
//       running copy of the maps, then the writes), and prints the latencies of that part
//       alone (no source, no selection: Tests/bench/agent_bench.py measures the agent):
//       "veer-churn changes=N rate=ACHIEVED p50_ms= p99_ms= max_ms= rss_mb="
//   veer-bench pipeline SERVICES ENDPOINTS
//       the agent's whole pipeline in one process, into maps in memory (Pipeline.swift)
//   veer-bench uninstall PIN_ROOT
import Foundation
import Glibc
import VeerDatapath
import VeerModel

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func rssMB() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("veer-bench: \(message)\n".utf8))
    exit(2)
}

/// One line per frontend: VIP PORT PROTO EP:PORT...
func readFrontends(_ path: String) -> [DesiredFrontend] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { fail("cannot read \(path)") }
    var result: [DesiredFrontend] = []
    for (n, line) in text.split(separator: "\n").enumerated() {
        let f = line.split(separator: " ")
        guard f.count >= 3, let ip = IPAddress(f[0]), let port = UInt16(f[1]),
              let proto = L4Protocol.allCases.first(where: { $0.description == f[2] }) else {
            fail("\(path):\(n + 1): bad line")
        }
        let backends = f.dropFirst(3).map { text -> DesiredBackend in
            guard let a = L4Address("\(text)/\(proto)") else { fail("\(path):\(n + 1): bad endpoint \(text)") }
            return DesiredBackend(address: a)
        }
        result.append(DesiredFrontend(
            address: L4Address(ip: ip, port: port, proto: proto), kind: .clusterIP,
            service: ServicePortName(namespace: "bench", name: "svc-\(ip)", port: "\(port)", proto: proto),
            backends: backends))
    }
    return result
}

func capacities(for frontends: [DesiredFrontend]) -> MapCapacities {
    let backends = frontends.reduce(0) { $0 + $1.backends.count }
    // Room for a churn of a few percent on top; never below the compiled defaults.
    func size(_ n: Int, _ floor: Int) -> Int { max(floor, n + n / 8 + 1024) }
    let d = MapCapacities.compiledDefaults
    return MapCapacities(services: size(frontends.count + backends, d.services),
                         backends: size(backends, d.backends),
                         revNat: size(frontends.count, d.revNat),
                         members: size(backends, d.members))
}

/// The operations a Planner run against empty maps produces for distinct frontends with
/// distinct backends, built directly: backends, rev_nat, members, slots, then masters.
func fill(_ desired: [DesiredFrontend]) -> [MapOperation] {
    var backends: [MapOperation] = [], revNat: [MapOperation] = [], members: [MapOperation] = []
    var slots: [MapOperation] = [], masters: [MapOperation] = []
    var nextBackend: UInt32 = 1
    for (k, frontend) in desired.enumerated() {
        let revNatID = UInt32(k + 1)
        revNat.append(.upsertRevNat(id: revNatID, frontend.address))
        for (slot, backend) in frontend.backends.enumerated() {
            let id = nextBackend
            nextBackend += 1
            backends.append(.upsertBackend(id: id, BackendEntry(address: backend.address)))
            members.append(.upsertMember(MemberKey(revNatID: revNatID, backendID: id)))
            slots.append(.upsertSlot(frontend.address, slot: UInt16(slot + 1), backendID: id, revNatID: revNatID))
        }
        masters.append(.upsertMaster(frontend.address, MasterEntry(count: UInt32(frontend.backends.count), revNatID: revNatID)))
    }
    return backends + revNat + members + slots + masters
}

let args = CommandLine.arguments
switch args.count > 1 ? args[1] : "" {
case "install" where args.count == 6:
    let t0 = now()
    let desired = readFrontends(args[5])
    let caps = capacities(for: desired)
    do {
        let t1 = now()
        let dp = try Datapath.install(object: args[2], cgroup: args[3], pins: PinLayout(root: args[4]), capacities: caps)
        let t2 = now()
        let ops = fill(desired)
        try dp.apply(ops)
        let t3 = now()
        print(String(format: "veer-load frontends=%d ops=%d parse_s=%.3f install_s=%.3f apply_s=%.3f total_s=%.3f rss_mb=%.1f",
                     desired.count, ops.count, t1 - t0, t2 - t1, t3 - t2, t3 - t1, rssMB()))
    } catch {
        fail("\(error)")
    }
case "plan" where args.count == 3:
    let desired = readFrontends(args[2])
    let t0 = now()
    let plan = Planner.plan(desired: desired, actual: MapState(), capacities: capacities(for: desired))
    let t1 = now()
    guard plan.rejected.isEmpty else { fail("planner rejected: \(plan.rejected.prefix(3))") }
    guard plan.operations.count == fill(desired).count else { fail("planner and fill disagree on the op count") }
    print(String(format: "veer-plan frontends=%d ops=%d plan_s=%.3f rss_mb=%.1f",
                 desired.count, plan.operations.count, t1 - t0, rssMB()))
case "churn" where args.count == 6:
    guard let rate = Double(args[4]), let seconds = Double(args[5]), rate > 0 else { fail("bad rate/seconds") }
    var desired = readFrontends(args[3])
    do {
        let dp = try Datapath(pins: PinLayout(root: args[2]))
        let caps = dp.capacities
        var running = IndexedMapState(try dp.readState())
        var latencies: [Double] = []
        var rng = SystemRandomNumberGenerator()
        let start = now()
        var k = 0
        while now() - start < seconds {
            let due = start + Double(k) / rate
            if due > now() { usleep(UInt32((due - now()) * 1e6)) }
            // One EndpointSlice change: one endpoint of one service moves to a new address.
            let i = Int.random(in: 0..<desired.count, using: &rng)
            let j = Int.random(in: 0..<desired[i].backends.count, using: &rng)
            let t0 = now()
            var address = desired[i].backends[j].address
            address.ip = IPAddress(ipv4: 0x0B00_0000 + UInt32(k)) // 11.0.0.0/8: fresh, never a real endpoint
            desired[i].backends[j] = DesiredBackend(address: address)
            // What the agent does per change (Agent.swift, incrementalSync): plan the changed
            // frontend against its copy of the maps, write, keep the copy.
            let plan = Planner.plan(changed: [desired[i].address], desired: [desired[i]], actual: running, capacities: caps)
            guard plan.rejected.isEmpty else { fail("rejected: \(plan.rejected)") }
            try dp.apply(plan.operations)
            running.apply(plan.operations)
            latencies.append((now() - t0) * 1000)
            k += 1
        }
        let achieved = Double(k) / (now() - start)
        latencies.sort()
        func q(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        print(String(format: "veer-churn changes=%d rate=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f rss_mb=%.1f",
                     latencies.count, achieved, q(0.5), q(0.99), latencies.last ?? 0, rssMB()))
    } catch {
        fail("\(error)")
    }
case "pipeline" where args.count == 4:
    guard let n = Int(args[2]), let e = Int(args[3]), n > 0, e > 0 else { fail("pipeline SERVICES ENDPOINTS") }
    let done = DispatchSemaphore(value: 0)
    // Detached: top-level code is on the main actor, which the semaphore holds.
    Task.detached {
        await PipelineBench.run(services: n, endpoints: e)
        done.signal()
    }
    done.wait()
case "uninstall" where args.count == 3:
    do { try Datapath.uninstall(pins: PinLayout(root: args[2])) } catch { fail("\(error)") }
default:
    fail("usage: veer-bench install OBJECT CGROUP PIN_ROOT FRONTENDS | plan FRONTENDS | churn PIN_ROOT FRONTENDS RATE SECONDS | pipeline SERVICES ENDPOINTS | uninstall PIN_ROOT")
}
