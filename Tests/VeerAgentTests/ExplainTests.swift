import Foundation
import Glibc
import Testing
import VeerDatapath
import VeerModel
import VeerTestSupport

// `veerctl explain` against a live agent: one case per selection rule, each asserting the
// verdict and the rule the selector gave every endpoint, as the CLI prints them.

private func svc(_ name: String, _ ip: String, spec: [String: Any] = [:]) -> [String: Any] {
    Manifest.service(name, clusterIP: ip, spec: spec)
}

private func slice(_ service: String, name: String? = nil, port: String = "http", _ endpoints: [[String: Any]]) -> [String: Any] {
    Manifest.endpointSlice(name ?? service + "-1", service: service, portName: port, endpoints: endpoints)
}

private func ep(_ ip: String, ready: Bool = true, serving: Bool? = nil, terminating: Bool = false,
                node: String = "node-a", zone: String = "zone-a", hint: String? = nil) -> [String: Any] {
    Manifest.endpoint(ip, ready: ready, serving: serving ?? ready, terminating: terminating, node: node, zone: zone, hint: hint)
}

private let manifests = Manifest.yaml([
    Manifest.node("node-a", zone: "zone-a"),
    svc("mixed", "10.96.1.1"), slice("mixed", [ep("10.1.0.1"), ep("10.1.0.2", ready: false),
                                              ep("10.1.0.3", ready: false, serving: true, terminating: true)]),
    svc("fallback", "10.96.1.2"), slice("fallback", [ep("10.1.0.4", ready: false, serving: true, terminating: true)]),
    svc("zones", "10.96.1.3"), slice("zones", [ep("10.1.0.5", hint: "zone-a"), ep("10.1.0.6", zone: "zone-b", hint: "zone-b")]),
    svc("safeguard", "10.96.1.4"), slice("safeguard", [ep("10.1.0.7", hint: "zone-a"), ep("10.1.0.8", zone: "zone-b")]),
    svc("local", "10.96.1.5", spec: ["internalTrafficPolicy": "Local"]), slice("local", [ep("10.1.0.9"), ep("10.1.0.10", node: "node-b")]),
    svc("localempty", "10.96.1.6", spec: ["internalTrafficPolicy": "Local"]), slice("localempty", [ep("10.1.0.11", node: "node-b")]),
    svc("empty", "10.96.1.7"),
    svc("dup", "10.96.1.8"), slice("dup", name: "dup-1", [ep("10.1.0.12")]), slice("dup", name: "dup-2", [ep("10.1.0.12")]),
    svc("ports", "10.96.1.9"), slice("ports", port: "metrics", [ep("10.1.0.13")]),
    svc("headless", "None"),
])

/// Expected: endpoint → (in, rule); whenEmpty when the set is empty.
private struct Case: Sendable, CustomTestStringConvertible {
    var service: String
    var endpoints: [String: (Bool, String)]
    var whenEmpty: String? = nil
    var testDescription: String { service }
}

private let cases: [Case] = [
    Case(service: "mixed", endpoints: ["10.1.0.1:8080": (true, "ready"), "10.1.0.2:8080": (false, "notReady"),
                                       "10.1.0.3:8080": (false, "terminatingNotNeeded")]),
    Case(service: "fallback", endpoints: ["10.1.0.4:8080": (true, "terminatingFallback")]),
    Case(service: "zones", endpoints: ["10.1.0.5:8080": (true, "hintedForThisZone"), "10.1.0.6:8080": (false, "hintedForOtherZone")]),
    Case(service: "safeguard", endpoints: ["10.1.0.7:8080": (true, "readyHintsIgnored"), "10.1.0.8:8080": (true, "readyHintsIgnored")]),
    Case(service: "local", endpoints: ["10.1.0.9:8080": (true, "localReady"), "10.1.0.10:8080": (false, "notOnThisNode")]),
    Case(service: "localempty", endpoints: ["10.1.0.11:8080": (false, "notOnThisNode")], whenEmpty: "drop"),
    Case(service: "empty", endpoints: [:], whenEmpty: "reject"),
    Case(service: "ports", endpoints: ["10.1.0.13": (false, "portMismatch")], whenEmpty: "reject"),
]

@Suite("veerctl explain, rule by rule", .serialized,
       .disabled(if: KernelSandbox.unavailableReason != nil, Comment(rawValue: "skipped: \(KernelSandbox.unavailableReason ?? "")")))
struct ExplainTests {
    @Test("Every endpoint's verdict and rule, the empty-set outcome, duplicates and skipped services")
    func rules() throws {
        try KernelSandbox.run { sb in
            let dir = NSTemporaryDirectory() + "veer-explain-\(getpid())"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try manifests.write(toFile: "\(dir)/all.yaml", atomically: true, encoding: .utf8)
            let veerd = Process()
            veerd.executableURL = URL(fileURLWithPath: "\(KernelSandbox.veerBinaries)/veerd")
            veerd.arguments = ["--manifests", dir, "--cgroup", sb.cgroup, "--bpffs", sb.pins.root, "--node-name", "node-a",
                               "--metrics-address", "127.0.0.1:0", "--healthz-bind-address", "127.0.0.1:0", "--bpf-object", KernelSandbox.bpfObject,
                               "--no-packet-path"] // the host's namespace: no tc filter, no nftables table
            veerd.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try veerd.run()
            defer { kill(veerd.processIdentifier, SIGKILL); veerd.waitUntilExit() }
            // veerd answers on its socket once its first list is programmed.
            try waitFor("veerd answers on \(DecisionsSocket.path(sb.pins))") {
                guard case let .decisions(d)? = try? DecisionsSocket.ask("default/ports", pins: sb.pins) else { return false }
                return !d.decisions.isEmpty
            }

            let ctl = "\(KernelSandbox.veerBinaries)/veerctl"
            for c in cases {
                let r = KernelSandbox.run([ctl, "explain", "default/\(c.service)", "-o", "json", "--bpffs", sb.pins.root])
                let explanation = try JSONDecoder().decode(Explanation.self, from: Data(r.stdout.utf8))
                let f = try #require(explanation.frontends.first, "\(c.service): \(r.stdout) \(r.stderr)")
                var got: [String: (Bool, String)] = [:]
                for e in f.decision.endpoints { got[e.endpoint] = (e.included, e.rule.rawValue) }
                #expect(got.keys.sorted() == c.endpoints.keys.sorted(), "\(c.service)")
                for (endpoint, want) in c.endpoints {
                    #expect(got[endpoint]?.0 == want.0 && got[endpoint]?.1 == want.1,
                            "\(c.service) \(endpoint): got \(String(describing: got[endpoint])), want \(want)")
                }
                if let whenEmpty = c.whenEmpty {
                    #expect(f.decision.backends == 0 && f.decision.whenEmpty == whenEmpty, "\(c.service)")
                }
                #expect(f.kernel.matches, "\(c.service): the kernel holds what was decided")
            }

            let dup = try JSONDecoder().decode(Explanation.self, from: Data(
                KernelSandbox.run([ctl, "explain", "default/dup", "-o", "json", "--bpffs", sb.pins.root]).stdout.utf8))
            let rules = dup.frontends.first?.decision.endpoints.map(\.rule.rawValue).sorted()
            #expect(rules == ["duplicate", "ready"], "\(String(describing: rules))")

            let headless = KernelSandbox.run([ctl, "explain", "default/headless", "--bpffs", sb.pins.root]).stdout
            #expect(headless.hasPrefix("SKIPPED Service default/headless"), "\(headless)")

            // The socket's answer is the asked service's decisions only; a bad target is refused.
            guard case let .decisions(one)? = try? DecisionsSocket.ask("default/mixed", pins: sb.pins) else {
                Issue.record("no answer for default/mixed"); return
            }
            #expect(one.node == "node-a" && one.zone == "zone-a")
            #expect(one.decisions.map(\.service.name) == ["mixed"] && one.decisions.first?.endpoints.count == 3)
            #expect(throws: DecisionsSocket.Failed.self) { try DecisionsSocket.ask("mixed", pins: sb.pins) }
            let byAddress = KernelSandbox.run([ctl, "explain", "10.96.1.9:80", "--bpffs", sb.pins.root])
            #expect(byAddress.stdout.contains("default/ports:http clusterIP 10.96.1.9:80/tcp on node node-a"), "\(byAddress.stdout)")
        }
    }
}
