import Foundation
import Glibc
import Testing
import VeerDatapath
import VeerModel
import VeerTestSupport

// IPv6, v4-mapped and hostns-only, through the real hooks in a sandbox. As in KernelTests,
// no VIP has a route in the sandbox: a missed rewrite fails with ENETUNREACH there.

private let vip4 = "10.96.0.10"
private let backends4 = ["10.244.1.11", "10.244.1.12", "10.244.1.13"]
private let pods4 = ["pod-a", "pod-b", "pod-c"]
private let vip6 = "fd00:96::10"
private let backends6 = ["fd00:244::11", "fd00:244::12", "fd00:244::13"]
private let pods6 = ["pod6-a", "pod6-b", "pod6-c"]
/// What an AF_INET6 socket (Java, some Go) writes for the IPv4 VIP.
private let mappedVIP = "::ffff:\(vip4)"

private func frontend(_ ip: String, _ port: UInt16, _ proto: L4Protocol, backends: [String],
                      backendPort: UInt16 = 8080, affinity: UInt32? = nil,
                      whenEmpty: EmptyBehavior = .reject) -> DesiredFrontend {
    DesiredFrontend(
        address: L4Address(ip: IPAddress(ip)!, port: port, proto: proto), kind: .clusterIP,
        service: ServicePortName(namespace: "default", name: "web", port: "p\(port)", proto: proto),
        backends: backends.map { DesiredBackend(address: L4Address(ip: IPAddress($0)!, port: backendPort, proto: proto)) },
        whenEmpty: whenEmpty, affinityTimeout: affinity)
}

/// The socket API's text for a peer: 10.96.0.10:80, [fd00:96::10]:80.
private func peer(_ ip: String, _ port: UInt16) -> String {
    L4Address(ip: IPAddress(ip)!, port: port, proto: .tcp).hostPort
}

/// A sandbox with IPv4 and IPv6 backends on :8080 for `protos`, each answering with its pod name.
private func withDualStackBackends<T>(_ protos: [L4Protocol], scope: TranslationScope? = nil,
                                      _ body: (KernelSandbox, Datapath) throws -> T) throws -> T {
    try KernelSandbox.run { sb in
        try sb.addAddresses(backends4 + backends6)
        for proto in protos {
            for (ip, name) in zip(backends4 + backends6, pods4 + pods6) { try sb.startServer(proto, ip, 8080, reply: name) }
        }
        return try body(sb, try sb.install(scope: scope ?? .allNamespaces))
    }
}

private func counts(_ results: [ProbeResult]) -> [String: Int] {
    results.filter(\.ok).reduce(into: [:]) { $0[$1.reply, default: 0] += 1 }
}

/// sock_release runs as the client exits; give the last ones a moment.
private func waitForNoReverseEntries(_ dp: Datapath) throws -> [TranslatedSocket] {
    try? waitFor("the released sockets' reverse entries deleted", timeout: 5) { try dp.sockets().isEmpty }
    return try dp.sockets()
}

@Suite("Dual stack in the kernel", .serialized,
       .disabled(if: KernelSandbox.unavailableReason != nil,
                 Comment(rawValue: "skipped: \(KernelSandbox.unavailableReason ?? "")")))
struct DualStackKernelTests {
    @Test("IPv6 TCP through a frontend reaches every backend; getpeername shows [VIP]:port; counters count it")
    func ipv6TCP() throws {
        try withDualStackBackends([.tcp]) { sb, dp in
            let plan = try dp.sync([frontend(vip6, 80, .tcp, backends: backends6)])
            let results = try sb.client(["tcp", vip6, "80", "150"])
            #expect(results.count == 150)
            #expect(results.allSatisfy { $0.ok }, "failures: \(results.filter { !$0.ok }.prefix(3))")
            #expect(results.allSatisfy { $0.peer == "[\(vip6)]:80" }, "\(results.prefix(3))")
            let perPod = counts(results)
            for pod in pods6 {
                // 50 expected each; 20 is > 4 standard deviations away.
                #expect((perPod[pod] ?? 0) >= 20, "\(pod) got \(perPod[pod] ?? 0) of 150: \(perPod)")
            }
            let hits = try dp.hits()
            let revNat = plan.target.masters.values.first!.revNatID
            for (ip, pod) in zip(backends6, pods6) {
                let id = plan.target.backends.first { $0.value.address.ip == IPAddress(ip)! }!.key
                #expect(hits[MemberKey(revNatID: revNat, backendID: id)] == UInt64(perPod[pod] ?? 0), "\(pod)")
            }
            let stats = try dp.stats()
            #expect(stats[.translated] == 150)
            #expect((stats[.reversed] ?? 0) >= 150, "getpeername6 reversed every connection")
            #expect(try waitForNoReverseEntries(dp).isEmpty, "sock_release removed the IPv6 reverse entries")
        }
    }

    @Test("IPv6 UDP: recvfrom reports [VIP]:port for sendto, getpeername for connected sockets; sockets spread")
    func ipv6UDP() throws {
        try withDualStackBackends([.udp]) { sb, dp in
            try dp.sync([frontend(vip6, 53, .udp, backends: backends6)])
            let unconnected = try sb.client(["udp-sendto", vip6, "53", "20"])
            #expect(unconnected.count == 20)
            #expect(unconnected.allSatisfy { $0.ok && $0.peer == "[\(vip6)]:53" }, "\(unconnected.prefix(3))")
            #expect(Set(unconnected.map(\.reply)).count == 1, "one socket stays on one backend")
            #expect(pods6.contains(unconnected.first?.reply ?? ""))

            let connected = try sb.client(["udp-connect", vip6, "53", "60"])
            #expect(connected.allSatisfy { $0.ok && $0.peer == "[\(vip6)]:53" }, "\(connected.prefix(3))")
            #expect(Set(connected.map(\.reply)) == Set(pods6), "new sockets spread: \(counts(connected))")
            #expect(try waitForNoReverseEntries(dp).isEmpty, "sock_release removed them, unconnected one included")
        }
    }

    @Test("v4-mapped: an AF_INET6 socket to ::ffff:VIP reaches the IPv4 backends and sees ::ffff:VIP (TCP, UDP)")
    func v4Mapped() throws {
        try withDualStackBackends([.tcp, .udp]) { sb, dp in
            let plan = try dp.sync([frontend(vip4, 80, .tcp, backends: backends4), frontend(vip4, 53, .udp, backends: backends4)])
            let tcp = try sb.client(["tcp", mappedVIP, "80", "60"])
            #expect(tcp.allSatisfy { $0.ok && $0.peer == "[\(mappedVIP)]:80" }, "\(tcp.filter { !$0.ok || $0.peer != "[\(mappedVIP)]:80" }.prefix(3))")
            #expect(Set(tcp.map(\.reply)) == Set(pods4), "\(counts(tcp))")

            let connected = try sb.client(["udp-connect", mappedVIP, "53", "30"])
            #expect(connected.allSatisfy { $0.ok && $0.peer == "[\(mappedVIP)]:53" }, "\(connected.prefix(3))")
            #expect(Set(connected.map(\.reply)).isSubset(of: Set(pods4)) && Set(connected.map(\.reply)).count > 1)

            let unconnected = try sb.client(["udp-sendto", mappedVIP, "53", "10"])
            #expect(unconnected.allSatisfy { $0.ok && $0.peer == "[\(mappedVIP)]:53" }, "\(unconnected.prefix(3))")
            #expect(Set(unconnected.map(\.reply)).count == 1)

            // An AF_INET client of the same service shares its frontend and counters.
            let plain = try sb.client(["tcp", vip4, "80", "10"])
            #expect(plain.allSatisfy { $0.ok && $0.peer == "\(vip4):80" })
            let tcpRevNat = plan.target.masters[L4Address("\(vip4):80/tcp")!]!.revNatID
            let tcpHits = try dp.hits().filter { $0.key.revNatID == tcpRevNat }.values.reduce(0, +)
            #expect(tcpHits == 70)
            #expect(try dp.stats()[.translated] == 60 + 30 + 10 + 10)
            #expect(try waitForNoReverseEntries(dp).isEmpty)
        }
    }

    @Test("IPv6 and v4-mapped refusals: ECONNREFUSED with no endpoints, ETIMEDOUT for an empty Local set, at once")
    func ipv6Refusals() throws {
        try withDualStackBackends([]) { sb, dp in
            try dp.sync([
                frontend(vip6, 80, .tcp, backends: []),
                frontend(vip6, 53, .udp, backends: []),
                frontend("fd00:96::11", 80, .tcp, backends: [], whenEmpty: .drop),
                frontend(vip4, 80, .tcp, backends: []),
            ])
            let start = monotonicNow()
            let refused = try sb.client(["tcp", vip6, "80", "2"]) + sb.client(["udp-connect", vip6, "53", "2"])
                + sb.client(["udp-sendto", vip6, "53", "2"]) + sb.client(["tcp", mappedVIP, "80", "2"])
            #expect(refused.allSatisfy { !$0.ok && $0.reply == "ECONNREFUSED" }, "\(refused)")
            let dropped = try sb.client(["tcp", "fd00:96::11", "80", "2"])
            #expect(dropped.allSatisfy { !$0.ok && $0.reply == "ETIMEDOUT" }, "\(dropped)")
            #expect(monotonicNow() - start < 2_000_000_000, "refusals must be immediate")
            let stats = try dp.stats()
            #expect(stats[.refused] == 8 && stats[.dropped] == 2)
        }
    }

    @Test("IPv6 session affinity: one client namespace sticks to one backend")
    func ipv6Affinity() throws {
        try withDualStackBackends([.tcp]) { sb, dp in
            try dp.sync([frontend(vip6, 80, .tcp, backends: backends6, affinity: 600)])
            let results = try sb.client(["tcp", vip6, "80", "40"])
            #expect(results.allSatisfy { $0.ok })
            #expect(Set(results.map(\.reply)).count == 1, "\(counts(results))")
        }
    }

    @Test("Dual-stack service: each family's frontend reaches its own family's backends only")
    func dualStackFrontends() throws {
        try withDualStackBackends([.tcp]) { sb, dp in
            try dp.sync([frontend(vip4, 80, .tcp, backends: backends4), frontend(vip6, 80, .tcp, backends: backends6)])
            let v4 = try sb.client(["tcp", vip4, "80", "60"])
            let v6 = try sb.client(["tcp", vip6, "80", "60"])
            #expect(v4.allSatisfy { $0.ok && $0.peer == peer(vip4, 80) })
            #expect(v6.allSatisfy { $0.ok && $0.peer == peer(vip6, 80) })
            #expect(Set(v4.map(\.reply)) == Set(pods4), "\(counts(v4))")
            #expect(Set(v6.map(\.reply)) == Set(pods6), "\(counts(v6))")
            // veerctl's rows print IPv6 bracketed.
            let rows = try Inspection(datapath: dp).frontends
            #expect(rows.map(\.frontend).sorted() == ["10.96.0.10:80/tcp", "[fd00:96::10]:80/tcp"])
            let v6Row = try #require(rows.first { $0.frontend.hasPrefix("[") })
            #expect(v6Row.backends.map(\.address).sorted() == backends6.map { "[\($0)]:8080" })
            #expect(try dp.readState().masters.count == 2)
        }
    }

    @Test("Trace events carry 16-byte addresses: an IPv6 translation, and a v4-mapped one as its IPv4 frontend")
    func traceBothFamilies() throws {
        try withDualStackBackends([.tcp]) { sb, dp in
            try dp.sync([frontend(vip4, 80, .tcp, backends: backends4), frontend(vip6, 80, .tcp, backends: backends6)])
            let tracer = try Tracer(pins: sb.pins)
            try tracer.setEnabled(true)
            let v6 = try sb.client(["tcp", vip6, "80", "5"])
            let mapped = try sb.client(["tcp", mappedVIP, "80", "5"])
            var events: [TraceEvent] = []
            for _ in 0..<50 where events.count < 10 { events += tracer.poll(timeoutMS: 100) }
            try tracer.setEnabled(false)
            #expect(events.count == 10)
            let fe6 = L4Address("[\(vip6)]:80/tcp")!, fe4 = L4Address("\(vip4):80/tcp")!
            #expect(events.filter { $0.frontend == fe6 }.compactMap { $0.backend?.hostPort }.sorted()
                    == v6.map { r in "[\(backends6[pods6.firstIndex(of: r.reply)!])]:8080" }.sorted())
            #expect(events.filter { $0.frontend == fe4 }.compactMap { $0.backend?.hostPort }.sorted()
                    == mapped.map { r in "\(backends4[pods4.firstIndex(of: r.reply)!]):8080" }.sorted())
        }
    }

    @Test("A backend of the other family is never half-translated: counted, and the connect passes untouched")
    func familyMismatchGuarded() throws {
        try withDualStackBackends([.tcp]) { sb, dp in
            // The agent never plans this (selection is per family); the programs still refuse it.
            try dp.sync([frontend(vip4, 80, .tcp, backends: [backends6[0]]), frontend(vip6, 80, .tcp, backends: [backends4[0]])])
            let v4 = try sb.client(["tcp", vip4, "80", "3"])
            let v6 = try sb.client(["tcp", vip6, "80", "3"])
            #expect((v4 + v6).allSatisfy { !$0.ok && $0.reply == "ENETUNREACH" }, "\(v4 + v6)")
            let stats = try dp.stats()
            #expect(stats[.familyMismatch] == 6)
            #expect(stats[.translated] == 0)
            #expect(try dp.sockets().isEmpty)
        }
    }

    @Test("hostns-only: the agent's namespace is translated; another namespace in the same cgroup reaches the VIP itself")
    func hostNamespaceOnly() throws {
        try KernelSandbox.run { sb in
            try sb.addAddresses(backends4 + backends6)
            for (ip, name) in zip(backends4 + backends6, pods4 + pods6) { try sb.startServer(.tcp, ip, 8080, reply: name) }
            // The "pod": its own namespace where the VIPs are local addresses served by a
            // stand-in for what a mesh sidecar would intercept.
            let pod = try sb.addNamespace()
            try sb.addAddresses([vip4, vip6], netns: pod)
            try sb.startServer(.tcp, vip4, 80, reply: "vip-itself", netns: pod)
            try sb.startServer(.tcp, vip6, 80, reply: "vip6-itself", netns: pod)

            // The sandbox namespace plays the host (veerd passes its own, /proc/self/ns/net).
            let dp = try sb.install(scope: .hostNamespaceOnly(netns: sb.netnsPath))
            #expect(try dp.hostNamespaceCookie() == SystemCheck.netnsCookie(sb.netnsPath))
            #expect(try dp.hostNamespaceCookie() != SystemCheck.netnsCookie(pod))
            try dp.sync([frontend(vip4, 80, .tcp, backends: backends4), frontend(vip6, 80, .tcp, backends: backends6)])

            let host4 = try sb.client(["tcp", vip4, "80", "20"])
            let host6 = try sb.client(["tcp", vip6, "80", "20"])
            #expect(host4.allSatisfy { $0.ok && pods4.contains($0.reply) }, "\(host4.prefix(3))")
            #expect(host6.allSatisfy { $0.ok && pods6.contains($0.reply) }, "\(host6.prefix(3))")

            let pod4 = try sb.client(["tcp", vip4, "80", "5"], netns: pod)
            let pod6 = try sb.client(["tcp", vip6, "80", "5"], netns: pod)
            let podMapped = try sb.client(["tcp", mappedVIP, "80", "5"], netns: pod)
            #expect(pod4.allSatisfy { $0.ok && $0.reply == "vip-itself" && $0.peer == peer(vip4, 80) }, "\(pod4)")
            #expect(pod6.allSatisfy { $0.ok && $0.reply == "vip6-itself" && $0.peer == peer(vip6, 80) }, "\(pod6)")
            #expect(podMapped.allSatisfy { $0.ok && $0.reply == "vip-itself" }, "\(podMapped)")
            let stats = try dp.stats()
            #expect(stats[.translated] == 40)
            #expect(stats[.otherNetns] == 15)

            // A restart without the mode turns it off: the pod's connects are translated again
            // (to backends its namespace has no route to), the VIP itself no longer answers.
            let again = try sb.install()
            #expect(try again.hostNamespaceCookie() == nil)
            let podAfter = try sb.client(["tcp", vip4, "80", "10"], netns: pod)
            #expect(podAfter.allSatisfy { !$0.ok }, "\(podAfter)")
            #expect(try again.stats()[.translated] == 50)
        }
    }

    @Test("A connected UDP socket of either family to a removed backend is destroyed (AF_INET6 and v4-mapped)")
    func staleIPv6SocketsAreTerminated() throws {
        try withDualStackBackends([.udp]) { sb, dp in
            for (target, vip, backends) in [(vip6, vip6, backends6), (mappedVIP, vip4, backends4)] {
                let fe = L4Address(ip: IPAddress(vip)!, port: 53, proto: .udp)
                try dp.sync([frontend(vip, 53, .udp, backends: backends)])
                let client = try sb.startClient(["udp-hold", target, "53", "800", "1000"])
                let victim = try waitForSocket(dp, to: fe).backend
                try dp.sync([frontend(vip, 53, .udp, backends: backends.filter { $0 != victim.ip.description })])
                let destroyed = try dp.terminateStaleSockets(protocols: [.udp])
                let terminated = monotonicNow()
                #expect(destroyed.destroyed[.udp] == 1 && destroyed.failures.isEmpty, "\(target): \(destroyed)")
                let results = sb.finish(client)
                let victimPod = (pods4 + pods6)[(backends4 + backends6).firstIndex(of: victim.ip.description)!]
                let after = results.filter { $0.startNS > terminated }
                #expect(!after.isEmpty)
                #expect(!after.contains { $0.reply == victimPod }, "\(target): \(victimPod) still answered after termination")
                #expect(after.filter(\.ok).allSatisfy { $0.peer == "[\(target)]:53" })
            }
        }
    }
}
