import Foundation
import Glibc
import Testing
import VeerDatapath
import VeerModel
import VeerTestSupport

// veerd as users run it: a real process reading a manifest directory, attached to the
// sandbox's child cgroup, with clients connecting through the kernel.

private let vip = "10.96.0.10"
private let backendIPs = ["10.244.1.11", "10.244.1.12", "10.244.1.13"]
private let pods = ["pod-a", "pod-b", "pod-c"]

private func serviceYAML(_ name: String = "web", ip: String = vip) -> String {
    Manifest.yaml(Manifest.service(name, clusterIP: ip))
}

/// `web-1` (or `<service>-1`): the backends as ready endpoints of their pods.
private func sliceYAML(_ endpoints: [(ip: String, pod: String)], service: String = "web", notReady: Set<String> = []) -> String {
    Manifest.yaml(Manifest.endpointSlice("\(service)-1", service: service, endpoints: endpoints.map {
        Manifest.endpoint($0.ip, ready: !notReady.contains($0.ip), pod: $0.pod)
    }))
}

/// A veerd process with its log; killed by pid at the end of the test.
private final class Veerd {
    let process = Process()
    let log: String
    let manifests: String

    /// `netns`: run veerd inside that network namespace (nsenter execs, so the pid is veerd's).
    init(_ sb: KernelSandbox, manifests: String, extra: [String] = [], netns: String? = nil) throws {
        self.manifests = manifests
        log = "\(manifests).veerd.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        let veerd = "\(KernelSandbox.veerBinaries)/veerd"
        // In the host's namespace the packet path stays off: no tc filter or nftables table
        // of a test may land there (the cluster tests run it in their nodes' namespaces).
        let args = ["--manifests", manifests, "--cgroup", sb.cgroup, "--bpffs", sb.pins.root,
                    "--node-name", "node-a", "--metrics-address", "127.0.0.1:0", "--healthz-bind-address", "127.0.0.1:0",
                    "--bpf-object", KernelSandbox.bpfObject] + (netns == nil ? ["--no-packet-path"] : []) + extra
        if let netns {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
            process.arguments = ["--net=\(netns)", veerd] + args
        } else {
            process.executableURL = URL(fileURLWithPath: veerd)
            process.arguments = args
        }
        process.standardError = FileHandle(forWritingAtPath: log)
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
    }

    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    var metricsURL: String? {
        logText.split(separator: "\n").lazy.compactMap { line in
            line.range(of: "http://127.0.0.1:[0-9]+/metrics", options: .regularExpression).map { String(line[$0]) }
        }.first
    }

    func signal(_ sig: Int32) {
        kill(process.processIdentifier, sig)
        process.waitUntilExit()
    }

    deinit { if process.isRunning { signal(SIGKILL) } }
}

private func backendCount(_ sb: KernelSandbox, _ frontend: String = "\(vip):80/tcp") -> Int? {
    guard let dp = try? Datapath(pins: sb.pins), let state = try? dp.readState() else { return nil }
    return state.masters[L4Address(frontend)!].map { Int($0.count) }
}

/// Connections the kernel has translated so far (veerctl stats' `translated`).
private func translated(_ sb: KernelSandbox) throws -> UInt64 { try Datapath(pins: sb.pins).stats()[.translated] ?? 0 }

private func withManifests<T>(_ files: [String: String], _ body: (String) throws -> T) throws -> T {
    let dir = NSTemporaryDirectory() + "veer-agent-\(getpid())-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer {
        try? FileManager.default.removeItem(atPath: dir)
        try? FileManager.default.removeItem(atPath: dir + ".veerd.log")
    }
    for (name, text) in files { try text.write(toFile: "\(dir)/\(name)", atomically: true, encoding: .utf8) }
    return try body(dir)
}

private func withBackends<T>(_ body: (KernelSandbox) throws -> T) throws -> T {
    try KernelSandbox.run { sb in
        try sb.addAddresses(backendIPs)
        for (ip, pod) in zip(backendIPs, pods) { try sb.startServer(.tcp, ip, 8080, reply: pod) }
        return try body(sb)
    }
}

private func fetch(_ url: String) -> String { KernelSandbox.run(["curl", "-s", "--max-time", "5", url]).stdout }

private let veerdUnavailable: String? = {
    if let r = KernelSandbox.unavailableReason { return r }
    if access("\(KernelSandbox.veerBinaries)/veerd", X_OK) != 0 { return "veerd not built: run `make test`" }
    return nil
}()

@Suite("veerd", .serialized, .disabled(if: veerdUnavailable != nil, Comment(rawValue: "skipped: \(veerdUnavailable ?? "")")))
struct VeerdTests {
    @Test("kill -9 leaves traffic flowing; a restart converges to the manifests with no failed connection")
    func killAndRestart() throws {
        try withBackends { sb in
            try withManifests(["web.yaml": serviceYAML(), "slice.yaml": sliceYAML(Array(zip(backendIPs, pods)))]) { dir in
                let first = try Veerd(sb, manifests: dir)
                try waitFor("3 backends programmed") { backendCount(sb) == 3 }
                let client = try sb.startClient(["tcp", vip, "80", "6000", "300"])
                try waitFor("the client's first connections translated") { try translated(sb) >= 50 }
                first.signal(SIGKILL)
                // While the agent is dead, pod-c goes away from the manifests.
                try sliceYAML(Array(zip(backendIPs, pods).prefix(2))).write(toFile: "\(dir)/slice.yaml", atomically: true, encoding: .utf8)
                let killedAt = try translated(sb)
                try waitFor("connections go on with the agent down") { try translated(sb) >= killedAt + 300 }
                #expect(backendCount(sb) == 3, "nothing changes while the agent is down")
                let second = try Veerd(sb, manifests: dir)
                try waitFor("restart converges to 2 backends") { backendCount(sb) == 2 }
                let converged = monotonicNow()
                let results = sb.finish(client)
                #expect(results.count == 6000)
                #expect(results.allSatisfy { $0.ok }, "failed: \(results.filter { !$0.ok }.prefix(3))")
                #expect(!results.contains { $0.reply == "pod-c" && $0.startNS > converged })
                #expect(second.logText.contains("adopted_frontends=1"), "\(second.logText)")
            }
        }
    }

    @Test("--hostns-only: clients in veerd's network namespace are translated, a pod's namespace reaches the ClusterIP itself")
    func hostNamespaceOnly() throws {
        try withBackends { sb in
            // The "pod": the VIP is a local address there, answered by a stand-in for a sidecar.
            let pod = try sb.addNamespace()
            try sb.addAddresses([vip], netns: pod)
            try sb.startServer(.tcp, vip, 80, reply: "vip-itself", netns: pod)
            try withManifests(["web.yaml": serviceYAML(), "slice.yaml": sliceYAML(Array(zip(backendIPs, pods)))]) { dir in
                // veerd runs in the sandbox's namespace, which plays the host's.
                let veerd = try Veerd(sb, manifests: dir, extra: ["--hostns-only"], netns: sb.netnsPath)
                try waitFor("programmed") { backendCount(sb) == 3 }
                #expect(try Datapath(pins: sb.pins).hostNamespaceCookie() == SystemCheck.netnsCookie(sb.netnsPath))
                let host = try sb.client(["tcp", vip, "80", "20"])
                #expect(host.allSatisfy { $0.ok && pods.contains($0.reply) && $0.peer == "\(vip):80" }, "\(host.prefix(3))")
                let inPod = try sb.client(["tcp", vip, "80", "10"], netns: pod)
                #expect(inPod.allSatisfy { $0.ok && $0.reply == "vip-itself" }, "\(inPod.prefix(3))")
                veerd.signal(SIGTERM)

                // Restarted without the flag, veerd translates every namespace again.
                let plain = try Veerd(sb, manifests: dir, netns: sb.netnsPath)
                try waitFor("adopted without hostns-only") { try Datapath(pins: sb.pins).hostNamespaceCookie() == nil }
                let after = try sb.client(["tcp", vip, "80", "5"], netns: pod)
                #expect(after.allSatisfy { !$0.ok || $0.reply != "vip-itself" }, "\(after)")
                plain.signal(SIGTERM)
            }
        }
    }

    @Test("Dual stack from manifests: each family of a dual-stack Service reaches its own pods, v4-mapped sockets the IPv4 ones; an IPv6-only Service has no IPv4 frontend")
    func dualStackFromManifests() throws {
        let vip6 = "fd00:96::10", v6only = "fd00:96::20"
        let pods6 = [("fd00:244::11", "pod6-a"), ("fd00:244::12", "pod6-b")]
        try withBackends { sb in
            try sb.addAddresses(pods6.map(\.0))
            for (ip, pod) in pods6 { try sb.startServer(.tcp, ip, 8080, reply: pod) }
            let dual = """
                apiVersion: v1
                kind: Service
                metadata: {name: web, namespace: default}
                spec:
                  ipFamilyPolicy: RequireDualStack
                  ipFamilies: [IPv4, IPv6]
                  clusterIP: \(vip)
                  clusterIPs: [\(vip), "\(vip6)"]
                  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
                ---
                apiVersion: v1
                kind: Service
                metadata: {name: only6, namespace: default}
                spec:
                  ipFamilies: [IPv6]
                  clusterIP: "\(v6only)"
                  clusterIPs: ["\(v6only)"]
                  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
                """
            func v6Slice(_ name: String, _ service: String) -> String {
                Manifest.yaml(Manifest.endpointSlice(name, service: service, addressType: "IPv6",
                                                     endpoints: pods6.map { Manifest.endpoint($0.0, pod: $0.1) }))
            }
            try withManifests(["svc.yaml": dual, "slice4.yaml": sliceYAML(Array(zip(backendIPs, pods))),
                               "slice6.yaml": v6Slice("web-6", "web"), "only6.yaml": v6Slice("only6-6", "only6")]) { dir in
                let veerd = try Veerd(sb, manifests: dir)
                try waitFor("both families programmed") {
                    backendCount(sb) == 3 && backendCount(sb, "[\(vip6)]:80/tcp") == 2 && backendCount(sb, "[\(v6only)]:80/tcp") == 2
                }
                let v4 = try sb.client(["tcp", vip, "80", "30"])
                #expect(v4.allSatisfy { $0.ok && pods.contains($0.reply) && $0.peer == "\(vip):80" }, "\(v4.prefix(3))")
                let v6 = try sb.client(["tcp", vip6, "80", "30"])
                #expect(v6.allSatisfy { $0.ok && $0.reply.hasPrefix("pod6-") && $0.peer == "[\(vip6)]:80" }, "\(v6.prefix(3))")
                #expect(Set(v6.map(\.reply)).count == 2)
                let mapped = try sb.client(["tcp", "::ffff:\(vip)", "80", "20"])
                #expect(mapped.allSatisfy { $0.ok && pods.contains($0.reply) && $0.peer == "[::ffff:\(vip)]:80" }, "\(mapped.prefix(3))")
                // Single-stack IPv6: one frontend, in its family only.
                let state = try Datapath(pins: sb.pins).readState()
                let only6 = state.masters.keys.filter { $0.port == 80 && ($0.ip == IPAddress(v6only)!) }
                #expect(only6.count == 1)
                #expect(state.masters.keys.filter { $0.ip.isIPv4 }.map(\.description).sorted() == ["\(vip):80/tcp"])
                // veerctl and the metrics print IPv6 the usual way.
                let rows = KernelSandbox.run(["\(KernelSandbox.veerBinaries)/veerctl", "services", "--bpffs", sb.pins.root]).stdout
                #expect(rows.contains("[\(vip6)]:80"), "\(rows)")
                let metrics = fetch(try #require(veerd.metricsURL))
                #expect(metrics.contains("endpoint=\"[fd00:244::11]:8080\""), "\(metrics.split(separator: "\n").filter { $0.contains("endpoint_hits") }.prefix(4))")
                veerd.signal(SIGTERM)
            }
        }
    }

    @Test("Uninstall refuses while veerd runs for the pins (it would serve nothing and look healthy); --force and a stopped veerd proceed")
    func uninstallUnderRunningAgent() throws {
        try withBackends { sb in
            try withManifests(["web.yaml": serviceYAML() + "\n---\n" + sliceYAML(Array(zip(backendIPs, pods)))]) { dir in
                let veerd = try Veerd(sb, manifests: dir)
                try waitFor("programmed") { backendCount(sb) == 3 }
                for tool in ["veerctl", "veerd"] {
                    let refused = KernelSandbox.run(["\(KernelSandbox.veerBinaries)/\(tool)", "uninstall", "--bpffs", sb.pins.root])
                    #expect(refused.status != 0, "\(tool): \(refused.stdout)")
                    #expect(refused.stderr.contains("veerd (pid \(veerd.process.processIdentifier)) is running"), "\(tool): \(refused.stderr)")
                }
                #expect(try Datapath(pins: sb.pins).isAttached)
                #expect(try sb.client(["tcp", vip, "80", "5"]).allSatisfy { $0.ok && pods.contains($0.reply) })
                veerd.signal(SIGTERM)
                let removed = KernelSandbox.run(["\(KernelSandbox.veerBinaries)/veerctl", "uninstall", "--bpffs", sb.pins.root])
                #expect(removed.status == 0 && removed.stdout.contains("removed the datapath"), "\(removed)")

                // --force removes it under a running agent.
                let again = try Veerd(sb, manifests: dir)
                try waitFor("programmed again") { backendCount(sb) == 3 }
                let forced = KernelSandbox.run(["\(KernelSandbox.veerBinaries)/veerctl", "uninstall", "--force", "--bpffs", sb.pins.root])
                #expect(forced.status == 0 && access(sb.pins.directory, F_OK) != 0, "\(forced)")
                again.signal(SIGKILL)
            }
        }
    }

    @Test("SIGTERM stops veerd gracefully and the datapath keeps serving")
    func sigtermLeavesDatapath() throws {
        try withBackends { sb in
            try withManifests(["web.yaml": serviceYAML() + "\n---\n" + sliceYAML(Array(zip(backendIPs, pods)))]) { dir in
                let veerd = try Veerd(sb, manifests: dir)
                try waitFor("programmed") { backendCount(sb) == 3 }
                veerd.signal(SIGTERM)
                #expect(veerd.process.terminationReason == .exit && veerd.process.terminationStatus == 0,
                        "exit \(veerd.process.terminationStatus): \(veerd.logText)")
                let results = try sb.client(["tcp", vip, "80", "30"])
                #expect(results.allSatisfy { $0.ok && $0.peer == "\(vip):80" })
            }
        }
    }

    @Test("/metrics passes promtool and counts what each pod served")
    func metrics() throws {
        try withBackends { sb in
            try withManifests(["web.yaml": serviceYAML(), "slice.yaml": sliceYAML(Array(zip(backendIPs, pods)))]) { dir in
                let veerd = try Veerd(sb, manifests: dir)
                try waitFor("programmed") { backendCount(sb) == 3 }
                let results = try sb.client(["tcp", vip, "80", "90"])
                #expect(results.allSatisfy { $0.ok })
                let url = try #require(veerd.metricsURL, "\(veerd.logText)")
                let text = fetch(url)
                try text.write(toFile: dir + "/metrics.txt", atomically: true, encoding: .utf8)
                let check = KernelSandbox.run(["sh", "-c", "promtool check metrics < '\(dir)/metrics.txt'"])
                #expect(check.status == 0, "promtool: \(check.stdout) \(check.stderr)")
                for (ip, pod) in zip(backendIPs, pods) {
                    let served = results.filter { $0.reply == pod }.count
                    let endpoint = "endpoint=\"\(ip):8080\""
                    let line = text.split(separator: "\n").first { $0.hasPrefix("veer_endpoint_hits_total{") && $0.contains(endpoint) }
                    #expect(line?.hasSuffix(" \(served)") == true, "\(pod) served \(served): \(line ?? "no series")")
                    #expect(line?.contains("namespace=\"default\",service=\"web\",port=\"http\",protocol=\"TCP\",\(endpoint)}") == true)
                    // The names come from the info series, one per endpoint.
                    let info = text.split(separator: "\n").filter { $0.hasPrefix("veer_endpoint_info{") && $0.contains(endpoint) }
                    #expect(info == ["veer_endpoint_info{namespace=\"default\",service=\"web\",\(endpoint),pod=\"\(pod)\",node=\"\",zone=\"\"} 1"], "\(info)")
                }
                #expect(fetch(url.replacingOccurrences(of: "/metrics", with: "/healthz")) == "ok\n")
            }
        }
    }

    @Test("A malformed object is skipped with a logged reason; everything else stays programmed")
    func malformedObject() throws {
        try withBackends { sb in
            let bad = serviceYAML("broken", ip: "10.96.0.300")
            try withManifests(["web.yaml": serviceYAML() + "\n---\n" + sliceYAML(Array(zip(backendIPs, pods))),
                               "broken.yaml": bad]) { dir in
                let veerd = try Veerd(sb, manifests: dir)
                try waitFor("programmed") { backendCount(sb) == 3 }
                #expect(veerd.logText.contains("default/broken"), "\(veerd.logText)")
                let metrics = fetch(try #require(veerd.metricsURL))
                #expect(metrics.contains("veer_rejected_objects_total{kind=\"Service\",field=\"spec.clusterIP\"} 1"), "\(metrics)")
                #expect(try sb.client(["tcp", vip, "80", "10"]).allSatisfy { $0.ok })
            }
        }
    }

    @Test("A full map rejects a service whole, with an error and a metric; the other service is programmed")
    func fullMap() throws {
        try withBackends { sb in
            try withManifests([
                "big.yaml": serviceYAML("big", ip: "10.96.0.20") + "\n---\n" + sliceYAML(Array(zip(backendIPs, pods)), service: "big"),
                "web.yaml": serviceYAML() + "\n---\n" + sliceYAML(Array(zip(backendIPs, pods))),
            ]) { dir in
                // 1 master + 3 slots each: only one of the two fits in 6 entries.
                let veerd = try Veerd(sb, manifests: dir, extra: ["--max-service-entries", "6"])
                try waitFor("one service programmed") { backendCount(sb, "10.96.0.20:80/tcp") == 3 }
                #expect(backendCount(sb) == nil, "default/web must not be half-written")
                try waitFor("the error is logged") { veerd.logText.contains("service default/web not programmed") }
                let metrics = fetch(try #require(veerd.metricsURL))
                #expect(metrics.contains("veer_services_rejected 1"))
                #expect(metrics.contains("veer_map_capacity{map=\"veer_services\"} 6"))
            }
        }
    }

    @Test("veerctl shows the services, pods and hit counts the kernel holds, also while veerd is down")
    func veerctl() throws {
        try withBackends { sb in
            try withManifests(["web.yaml": serviceYAML() + "\n---\n" + sliceYAML(Array(zip(backendIPs, pods)))]) { dir in
                let veerd = try Veerd(sb, manifests: dir)
                try waitFor("programmed") { backendCount(sb) == 3 }
                let results = try sb.client(["tcp", vip, "80", "60"])
                #expect(results.allSatisfy { $0.ok })
                veerd.signal(SIGKILL)
                let n = pods.map { pod in results.filter { $0.reply == pod }.count }
                let ctl = "\(KernelSandbox.veerBinaries)/veerctl"

                let table = KernelSandbox.run([ctl, "services", "--bpffs", sb.pins.root])
                #expect(table.status == 0, "\(table.stderr)")
                #expect(table.stdout == """
                    SERVICE           KIND       FRONTEND           BACKENDS (hits)                 NOTES
                    default/web:http  clusterIP  10.96.0.10:80/tcp  pod-a=\(n[0]) pod-b=\(n[1]) pod-c=\(n[2])

                    """.replacingOccurrences(of: "(hits)                 NOTES", with: "(hits)" + String(repeating: " ", count: max(2, "pod-a=\(n[0]) pod-b=\(n[1]) pod-c=\(n[2])".count - "BACKENDS (hits)".count + 2)) + "NOTES"))

                struct Backend: Decodable { var address: String; var hits: UInt64; var pod: String? }
                struct Frontend: Decodable { var frontend: String; var service: String?; var backends: [Backend] }
                let json = KernelSandbox.run([ctl, "services", "-o", "json", "--bpffs", sb.pins.root])
                let rows = try JSONDecoder().decode([Frontend].self, from: Data(json.stdout.utf8))
                #expect(rows.count == 1)
                #expect(rows.first?.frontend == "10.96.0.10:80/tcp" && rows.first?.service == "default/web:http")
                #expect(rows.first?.backends.map(\.address) == backendIPs.map { "\($0):8080" })
                #expect(rows.first?.backends.map(\.hits) == n.map(UInt64.init))

                let none = KernelSandbox.run([ctl, "services", "--bpffs", "/sys/fs/bpf/veer-nothing-here-\(getpid())"])
                #expect(none.status != 0 && none.stderr.contains("no Veer datapath is pinned"), "\(none.stderr)")
            }
        }
    }

    @Test("veerctl explain gives every endpoint its verdict and rule, and shows where the kernel differs")
    func explain() throws {
        try withBackends { sb in
            let slice = sliceYAML(Array(zip(backendIPs, pods)), notReady: ["10.244.1.12"])
            try withManifests(["web.yaml": serviceYAML() + "\n---\n" + slice]) { dir in
                let veerd = try Veerd(sb, manifests: dir)
                try waitFor("programmed without pod-b") { backendCount(sb) == 2 }
                let ctl = "\(KernelSandbox.veerBinaries)/veerctl"
                // veerd answers on its socket, root-only, and writes no decisions.json while it runs.
                let socket = DecisionsSocket.path(sb.pins)
                var st = stat()
                #expect(stat(socket, &st) == 0 && st.st_mode & S_IFMT == S_IFSOCK && st.st_mode & 0o777 == 0o600,
                        "\(socket) is \(String(st.st_mode, radix: 8))")
                #expect(access(DecisionsFile.path(sb.pins), F_OK) != 0)
                let text = KernelSandbox.run([ctl, "explain", "default/web", "--bpffs", sb.pins.root]).stdout
                #expect(!text.contains("not running"), "\(text)")
                let podB = text.split(separator: "\n").first { $0.contains("10.244.1.12:8080") }
                #expect(podB?.contains("pod-b") == true && podB?.contains(" out ") == true && podB?.contains("notReady") == true, "\(text)")
                #expect(text.contains("kernel:    matches the decision (2 backends)"), "\(text)")
                let nothing = KernelSandbox.run([ctl, "explain", "default/nope", "--bpffs", sb.pins.root])
                #expect(nothing.status != 0 && nothing.stderr.contains("nothing on node node-a matches default/nope"), "\(nothing.stderr)")

                // A graceful stop closes the socket and saves the decisions once.
                veerd.signal(SIGTERM)
                #expect(access(socket, F_OK) != 0, "the socket is removed at shutdown")
                let mode = try FileManager.default.attributesOfItem(atPath: DecisionsFile.path(sb.pins))[.posixPermissions] as? Int
                #expect(mode == 0o600)
                let saved = KernelSandbox.run([ctl, "explain", "default/web", "--bpffs", sb.pins.root]).stdout
                #expect(saved.hasPrefix("veerd is not running: decisions as it saved them when it stopped, at "), "\(saved)")
                #expect(saved.contains("kernel:    matches the decision (2 backends)"), "\(saved)")

                // The maps drift from the decision (veerd down, something else wrote them): explain says so.
                let dp = try Datapath(pins: sb.pins)
                let drifted = DesiredFrontend(
                    address: L4Address("\(vip):80/tcp")!, kind: .clusterIP,
                    service: ServicePortName(namespace: "default", name: "web", port: "http", proto: .tcp),
                    backends: backendIPs.map { DesiredBackend(address: L4Address("\($0):8080/tcp")!) })
                try dp.sync([drifted])
                let json = KernelSandbox.run([ctl, "explain", "\(vip):80/tcp", "-o", "json", "--bpffs", sb.pins.root])
                struct Out: Decodable {
                    struct Kernel: Decodable { var unexpected: [String]; var missing: [String] }
                    struct F: Decodable { var kernel: Kernel }
                    var frontends: [F]
                }
                let out = try JSONDecoder().decode(Out.self, from: Data(json.stdout.utf8))
                #expect(out.frontends.count == 1)
                #expect(out.frontends.first?.kernel.unexpected == ["10.244.1.12:8080"])
                #expect(out.frontends.first?.kernel.missing == [])
                let again = KernelSandbox.run([ctl, "explain", "default/web:http", "--bpffs", sb.pins.root]).stdout
                #expect(again.contains("DIFFERS") && again.contains("in the maps but not decided: 10.244.1.12:8080"), "\(again)")

                // Neither veerd nor saved decisions: the error names the socket.
                DecisionsFile.remove(pins: sb.pins)
                let none = KernelSandbox.run([ctl, "explain", "default/web", "--bpffs", sb.pins.root])
                #expect(none.status != 0 && none.stderr.contains("veerd is not running") && none.stderr.contains(socket), "\(none.stderr)")
            }
        }
    }

    @Test("NodePort on the node's address and on loopback, externalIPs and LB IPs all reach the pods, with the frontend shown as peer")
    func otherFrontends() throws {
        try withBackends { sb in
            let node = """
            apiVersion: v1
            kind: Node
            metadata: {name: node-a, labels: {topology.kubernetes.io/zone: zone-a}}
            status: {addresses: [{type: InternalIP, address: 192.0.2.10}]}
            """
            let service = """
            apiVersion: v1
            kind: Service
            metadata: {name: web, namespace: default}
            spec:
              type: LoadBalancer
              clusterIP: \(vip)
              externalIPs: [198.51.100.7]
              ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080, nodePort: 30080}]
            status: {loadBalancer: {ingress: [{ip: 203.0.113.9}]}}
            """
            try withManifests(["node.yaml": node, "web.yaml": service + "\n---\n" + sliceYAML(Array(zip(backendIPs, pods)))]) { dir in
                let veerd = try Veerd(sb, manifests: dir)
                defer { if backendCount(sb) == nil { Issue.record("veerd log:\n\(veerd.logText)") } }
                for frontend in ["\(vip):80", "192.0.2.10:30080", "127.0.0.1:30080", "198.51.100.7:80", "203.0.113.9:80"] {
                    try waitFor("\(frontend) programmed") { backendCount(sb, "\(frontend)/tcp") == 3 }
                    let parts = frontend.split(separator: ":").map(String.init)
                    let results = try sb.client(["tcp", parts[0], parts[1], "30"])
                    #expect(results.allSatisfy { $0.ok && $0.peer == frontend }, "\(frontend): \(results.prefix(2))")
                    #expect(Set(results.map(\.reply)).isSubset(of: Set(pods)) && Set(results.map(\.reply)).count > 1)
                }
            }
        }
    }

    @Test("veerctl trace shows each connection with its service and pod, and refusals")
    func trace() throws {
        try withBackends { sb in
            try withManifests(["web.yaml": serviceYAML() + "\n---\n" + sliceYAML(Array(zip(backendIPs, pods))),
                               "empty.yaml": serviceYAML("empty", ip: "10.96.0.44")]) { dir in
                let veerd = try Veerd(sb, manifests: dir)
                do { try waitFor("programmed") { backendCount(sb) == 3 && backendCount(sb, "10.96.0.44:80/tcp") == 0 } } catch {
                    Issue.record("veerd log:\n\(veerd.logText)")
                    throw error
                }
                let tracer = Process()
                tracer.executableURL = URL(fileURLWithPath: "\(KernelSandbox.veerBinaries)/veerctl")
                tracer.arguments = ["trace", "--bpffs", sb.pins.root, "--count", "12", "--duration", "20"]
                let out = Pipe()
                tracer.standardOutput = out
                try tracer.run()
                defer { if tracer.isRunning { kill(tracer.processIdentifier, SIGKILL) } }
                // The tracer turns the events on when it starts; connect once it has.
                try waitFor("the tracer to attach") {
                    (try? Datapath(pins: sb.pins).stats()[.traced]) != nil && self.tracing(sb)
                }
                let results = try sb.client(["tcp", vip, "80", "10"]) + sb.client(["tcp", "10.96.0.44", "80", "2"])
                let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                tracer.waitUntilExit()
                let lines = text.split(separator: "\n")
                #expect(lines.count == 12, "\(text)")
                for r in results where r.ok {
                    let ip = backendIPs[pods.firstIndex(of: r.reply)!]
                    #expect(lines.contains { $0.contains("veer-probe[") && $0.contains("10.96.0.10:80 (default/web:http) → \(ip):8080 (\(r.reply))") })
                }
                #expect(lines.filter { $0.contains("10.96.0.44:80 (default/empty:http) refused") }.count == 2, "\(text)")
                #expect(try Datapath(pins: sb.pins).stats()[.traced] == 12)
            }
        }
    }

    /// Whether a tracer has turned event writing on.
    private func tracing(_ sb: KernelSandbox) -> Bool {
        let r = KernelSandbox.run(["bpftool", "-j", "map", "dump", "pinned", "\(sb.pins.maps)/veer_trace_on"])
        return r.stdout.contains("\"value\":1") || r.stdout.contains("\"value\": 1")
    }
}

// kube-proxy's nftables promises for addresses no frontend serves, and Cilium's bind protection.
extension VeerdTests {
    @Test("Unexposed ClusterIP port: ECONNREFUSED; unallocated service-CIDR address: ETIMEDOUT at once; other addresses untouched; bind onto a NodePort: EADDRINUSE in the host's namespace only")
    func addressesNoServiceUses() throws {
        let node = """
            apiVersion: v1
            kind: Node
            metadata: {name: node-a}
            status: {addresses: [{type: InternalIP, address: 192.0.2.10}]}
            """
        let service = """
            apiVersion: v1
            kind: Service
            metadata: {name: web, namespace: default}
            spec:
              type: NodePort
              clusterIP: \(vip)
              ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080, nodePort: 30080}]
            """
        try withBackends { sb in
            try sb.addAddresses(["192.0.2.10"])
            let pod = try sb.addNamespace()
            try withManifests(["node.yaml": node, "web.yaml": service + "\n---\n" + sliceYAML(Array(zip(backendIPs, pods)))]) { dir in
                // veerd in the sandbox's namespace, which plays the host's.
                let veerd = try Veerd(sb, manifests: dir, extra: ["--service-cidr", "10.96.0.0/16"], netns: sb.netnsPath)
                defer { if backendCount(sb) == nil { Issue.record("veerd log:\n\(veerd.logText)") } }
                try waitFor("programmed") { backendCount(sb) == 3 && backendCount(sb, "192.0.2.10:30080/tcp") == 3 }
                try waitFor("the address table") { try Datapath(pins: sb.pins).serviceAddressesEnabled }
                #expect(try Datapath(pins: sb.pins).readServiceAddresses() == [
                    ServiceAddressEntry(prefix: IPPrefix("10.96.0.0/16")!, rule: .drop),
                    ServiceAddressEntry(prefix: IPPrefix("\(vip)/32")!, rule: .refuse),
                ])
                let served = try sb.client(["tcp", vip, "80", "5"])
                #expect(served.allSatisfy { $0.ok && pods.contains($0.reply) }, "\(served)")

                func replies(_ args: [String], netns: String? = nil) throws -> Set<String> { Set(try sb.client(args, netns: netns).map(\.reply)) }
                // A port the Service does not expose: refused, as kube-proxy REJECTs it; UDP too.
                #expect(try replies(["tcp", vip, "81", "3"]) == ["ECONNREFUSED"])
                #expect(try replies(["udp-connect", vip, "53", "2"]) == ["ECONNREFUSED"])
                // No Service holds 10.96.0.99: dropped, so the connect fails at once with ETIMEDOUT.
                #expect(try replies(["tcp", "10.96.0.99", "80", "3"]) == ["ETIMEDOUT"])
                // Outside the service CIDR: not ours; the kernel's own answer (no route here).
                #expect(try replies(["tcp", "10.97.0.1", "80", "2"]) == ["ENETUNREACH"])
                // A pod's own namespace is translated too, so it gets the same answers.
                #expect(try replies(["tcp", vip, "81", "2"], netns: pod) == ["ECONNREFUSED"])
                let stats = try Datapath(pins: sb.pins).stats()
                #expect((stats[.portRefused] ?? 0) >= 7 && (stats[.unallocated] ?? 0) >= 3, "\(stats)")

                // Bind protection: a NodePort on the node address, on 0.0.0.0 and on :: is taken.
                #expect(try replies(["bind-tcp", "192.0.2.10", "30080", "1"]) == ["EADDRINUSE"])
                #expect(try replies(["bind-tcp", "0.0.0.0", "30080", "1"]) == ["EADDRINUSE"])
                #expect(try replies(["bind-tcp", "::", "30080", "1"]) == ["EADDRINUSE"])
                #expect(try replies(["bind-tcp", "::ffff:192.0.2.10", "30080", "1"]) == ["EADDRINUSE"])
                // Another port, another protocol, or a pod's own namespace: free to bind.
                #expect(try replies(["bind-tcp", "192.0.2.10", "30081", "1"]) == ["bound"])
                #expect(try replies(["bind-udp", "0.0.0.0", "30080", "1"]) == ["bound"])
                #expect(try replies(["bind-tcp", "0.0.0.0", "30080", "1"], netns: pod) == ["bound"])
                #expect((try Datapath(pins: sb.pins).stats()[.bindDenied] ?? 0) >= 4)
                veerd.signal(SIGTERM)

                // Without --service-cidr and with --no-bind-protection: the CIDR rule and the
                // protection are gone; unexposed ports are still refused.
                let plain = try Veerd(sb, manifests: dir, extra: ["--no-bind-protection"], netns: sb.netnsPath)
                try waitFor("the CIDR entry removed") {
                    try Datapath(pins: sb.pins).readServiceAddresses() == [ServiceAddressEntry(prefix: IPPrefix("\(vip)/32")!, rule: .refuse)]
                }
                #expect(try replies(["tcp", "10.96.0.99", "80", "2"]) == ["ENETUNREACH"])
                #expect(try replies(["tcp", vip, "81", "2"]) == ["ECONNREFUSED"])
                #expect(try replies(["bind-tcp", "0.0.0.0", "30080", "1"]) == ["bound"])
                plain.signal(SIGTERM)
            }
        }
    }
}

extension VeerdTests {
    @Test("loadBalancerSourceRanges at connect(): the LB IP only, by bound source, host (node address) and pod (podCIDRs); bad ranges skipped")
    func sourceRanges() throws {
        func manifests(ranges: [String], podCIDRs: [String]) -> String {
            """
            apiVersion: v1
            kind: Node
            metadata: {name: node-a}
            spec: {podCIDRs: [\(podCIDRs.joined(separator: ", "))]}
            status: {addresses: [{type: InternalIP, address: 192.0.2.10}]}
            ---
            apiVersion: v1
            kind: Service
            metadata: {name: web, namespace: default}
            spec:
              type: LoadBalancer
              clusterIP: \(vip)
              loadBalancerSourceRanges: [\(ranges.map { "\"\($0)\"" }.joined(separator: ", "))]
              ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080, nodePort: 30080}]
            status: {loadBalancer: {ingress: [{ip: 203.0.113.9}]}}
            """
        }
        try withBackends { sb in
            try sb.addAddresses(["192.0.2.10", "198.51.100.5"])
            // The "pod" reaches the backends' addresses on its own loopback: a translated connect succeeds there.
            let pod = try sb.addNamespace()
            try sb.addAddresses(backendIPs, netns: pod)
            for ip in backendIPs { try sb.startServer(.tcp, ip, 8080, reply: "in-pod", netns: pod) }
            func replies(_ ip: String, port: Int = 80, source: String? = nil, netns: String? = nil) -> Set<String> {
                let r = KernelSandbox.run((source.map { ["env", "VEER_PROBE_SOURCE=\($0)"] } ?? [])
                    + [KernelSandbox.probe, "--cgroup", sb.cgroup, "--netns", netns ?? sb.netnsPath, "tcp", ip, "\(port)", "3"])
                return Set(r.stdout.split(separator: "\n").map { ProbeResult(String($0)) }.map { $0.ok ? "ok" : $0.reply })
            }
            // The node's address is inside, the pods' range too: everyone on the node may connect,
            // except a socket bound to a source outside the ranges.
            try withManifests(["all.yaml": manifests(ranges: ["192.0.2.0/24", "10.244.0.0/16"], podCIDRs: ["10.244.1.0/24"])
                                + "\n---\n" + sliceYAML(Array(zip(backendIPs, pods)))]) { dir in
                let veerd = try Veerd(sb, manifests: dir, netns: sb.netnsPath)
                defer { if backendCount(sb, "203.0.113.9:80/tcp") == nil { Issue.record("veerd log:\n\(veerd.logText)") } }
                try waitFor("programmed") { backendCount(sb, "203.0.113.9:80/tcp") == 3 }
                try waitFor("the ranges") { try Datapath(pins: sb.pins).readSourceRanges().count == 5 }
                #expect(replies("203.0.113.9") == ["ok"], "host, unbound: the node address is in a range")
                #expect(replies("203.0.113.9", netns: pod) == ["ok"], "pod, unbound: the podCIDR is in a range")
                #expect(replies("203.0.113.9", source: "192.0.2.10") == ["ok"])
                #expect(replies("203.0.113.9", source: "198.51.100.5") == ["ETIMEDOUT"], "bound outside every range: dropped")
                // Only the LB IP is filtered, as in kube-proxy: the ClusterIP and NodePort serve anyone.
                #expect(replies(vip, source: "198.51.100.5") == ["ok"])
                #expect(replies("192.0.2.10", port: 30080, source: "198.51.100.5") == ["ok"])
                #expect((try Datapath(pins: sb.pins).stats()[.sourceDenied] ?? 0) >= 3)
                veerd.signal(SIGTERM)
            }
            // A bad range is skipped, the rest applies: the node (198.51.100.0/24 holds neither
            // 192.0.2.10 nor the pods) is denied; a socket bound inside the range is served.
            try withManifests(["all.yaml": manifests(ranges: ["not-a-cidr", "198.51.100.0/24"], podCIDRs: [])
                                + "\n---\n" + sliceYAML(Array(zip(backendIPs, pods)))]) { dir in
                let veerd = try Veerd(sb, manifests: dir, netns: sb.netnsPath)
                try waitFor("the new ranges") {
                    try Datapath(pins: sb.pins).readSourceRanges().contains { $0.prefix == IPPrefix("198.51.100.0/24") }
                }
                #expect(veerd.logText.contains("spec.loadBalancerSourceRanges: \"not-a-cidr\" is not a CIDR"), "\(veerd.logText)")
                #expect(replies("203.0.113.9") == ["ETIMEDOUT"], "host, unbound: no node address in a range")
                #expect(replies("203.0.113.9", netns: pod) == ["ETIMEDOUT"], "pod, unbound: no podCIDRs on the Node")
                #expect(replies("203.0.113.9", source: "198.51.100.5") == ["ok"])
                #expect(replies(vip) == ["ok"])
                veerd.signal(SIGTERM)
            }
        }
    }
}
