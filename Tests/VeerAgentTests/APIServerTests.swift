import Foundation
import Glibc
import Testing
import VeerDatapath
import VeerModel
import VeerTestSupport

// veerd against a fake API server that speaks the real list/watch protocol (checked against
// kubectl and the Python client in VeerKubeTests): the production path, end to end.

private let vip = "10.96.0.10"
private let backendIPs = ["10.244.1.11", "10.244.1.12", "10.244.1.13"]
private let pods = ["pod-a", "pod-b", "pod-c"]

private func slice(_ n: Int) -> [String: Any] {
    Manifest.endpointSlice("web-1", service: "web",
                           endpoints: zip(backendIPs, pods).prefix(n).map { Manifest.endpoint($0, pod: $1) })
}

private func count(_ sb: KernelSandbox) -> Int? {
    (try? Datapath(pins: sb.pins).readState().masters[L4Address("\(vip):80/tcp")!]).map { Int($0.count) }
}

/// The value of one series on veerd's /metrics (0 while absent).
private func metric(_ url: String, _ series: String) -> Int {
    let line = KernelSandbox.run(["curl", "-s", "--max-time", "5", url]).stdout.split(separator: "\n")
        .first { $0.hasPrefix(series + " ") }
    return (line?.split(separator: " ").last).flatMap { Int(Double($0) ?? 0) } ?? 0
}

@Suite("veerd with the Kubernetes API", .serialized,
       .disabled(if: KernelSandbox.unavailableReason != nil, Comment(rawValue: "skipped: \(KernelSandbox.unavailableReason ?? "")")))
struct APIServerTests {
    @Test("Watch updates reach the maps; a dropped watch resumes; an unreachable API server leaves the last state serving")
    func listWatchEndToEnd() throws {
        try KernelSandbox.run { sb in
            try sb.addAddresses(backendIPs)
            for (ip, pod) in zip(backendIPs, pods) { try sb.startServer(.tcp, ip, 8080, reply: pod) }
            let dir = NSTemporaryDirectory() + "veer-api-\(getpid())"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let api = try FakeAPIServer(state: ["services": [Manifest.service("web", clusterIP: vip)],
                                                "endpointslices": [slice(3)], "nodes": []])
            defer { api.stop() }

            let veerd = Process()
            veerd.executableURL = URL(fileURLWithPath: "\(KernelSandbox.veerBinaries)/veerd")
            veerd.arguments = ["--api-server", "http://127.0.0.1:\(api.port)", "--node-name", "node-a",
                               "--cgroup", sb.cgroup, "--bpffs", sb.pins.root, "--metrics-address", "127.0.0.1:0", "--healthz-bind-address", "127.0.0.1:0",
                               "--bpf-object", KernelSandbox.bpfObject,
                               "--no-packet-path"] // the host's namespace: no tc filter, no nftables table
            // Hermetic: no kubeconfig of the machine's is read.
            veerd.environment = ["HOME": dir, "PATH": "/usr/bin:/bin"]
            let log = "\(dir)/veerd.log"
            FileManager.default.createFile(atPath: log, contents: nil)
            veerd.standardError = FileHandle(forWritingAtPath: log)
            try veerd.run()
            defer { if veerd.isRunning { kill(veerd.processIdentifier, SIGKILL); veerd.waitUntilExit() } }

            try waitFor("the listed service programmed") { count(sb) == 3 }
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            let url = try #require(text.range(of: "http://127.0.0.1:[0-9]+/metrics", options: .regularExpression).map { String(text[$0]) })
            let sliceWatches = "veer_source_watches_total{kind=\"EndpointSlice\"}"
            try waitFor("the EndpointSlice watch open") { metric(url, sliceWatches) >= 1 }
            try api.post("apply", ["resource": "endpointslices", "object": slice(2)])
            try waitFor("the watched update programmed") { count(sb) == 2 }

            // The watch is dropped and resumed (a second watch request), then an update arrives.
            let watches = metric(url, sliceWatches)
            try api.post("drop_watches")
            try waitFor("the dropped watch resumed") { metric(url, sliceWatches) > watches }
            try api.post("apply", ["resource": "endpointslices", "object": slice(3)])
            try waitFor("the update after a dropped watch") { count(sb) == 3 }

            // Events on the Node, as kube-proxy posts them: the start, and an invalid object.
            try api.post("apply", ["resource": "services", "object": [
                "apiVersion": "v1", "kind": "Service", "metadata": ["name": "bad", "namespace": "default"],
                "spec": ["clusterIP": "10.96.0.300", "ports": [["port": 80]]]]])
            var events: [[String: Any]] = []
            try waitFor("the Starting and InvalidObject events posted") {
                events = api.postedEvents()
                return events.count >= 2
            }
            let reasons = events.compactMap { $0["reason"] as? String }
            #expect(reasons.contains("Starting") && reasons.contains("InvalidObject"), "\(events)")
            #expect(events.allSatisfy { ($0["involvedObject"] as? [String: Any])?["kind"] as? String == "Node"
                && ($0["involvedObject"] as? [String: Any])?["name"] as? String == "node-a" })
            #expect(events.contains { ($0["message"] as? String)?.contains("default/bad") == true })

            // The API server goes away: nothing is removed, traffic flows.
            let failures = "veer_source_failures_total{kind=\"EndpointSlice\"}"
            let failed = metric(url, failures)
            api.stop()
            try waitFor("veerd to find the API server gone") { metric(url, failures) > failed }
            #expect(count(sb) == 3)
            let results = try sb.client(["tcp", vip, "80", "30"])
            #expect(results.allSatisfy { $0.ok })
            #expect(veerd.isRunning, "veerd keeps retrying, it does not give up")
        }
    }
}
