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
    [
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": ["name": "web-1", "namespace": "default", "labels": ["kubernetes.io/service-name": "web"]],
        "addressType": "IPv4",
        "ports": [["name": "http", "port": 8080, "protocol": "TCP"]],
        "endpoints": zip(backendIPs, pods).prefix(n).map { ip, pod in
            ["addresses": [ip], "conditions": ["ready": true], "targetRef": ["kind": "Pod", "name": pod]]
        },
    ]
}

private func serviceObject() -> [String: Any] { [
    "apiVersion": "v1", "kind": "Service",
    "metadata": ["name": "web", "namespace": "default"],
    "spec": ["clusterIP": vip, "ports": [["name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080]]],
] }

private func count(_ sb: KernelSandbox) -> Int? {
    (try? Datapath(pins: sb.pins).readState().masters[L4Address("\(vip):80/tcp")!]).map { Int($0.count) }
}

private func waitFor(_ what: String, _ condition: () -> Bool) throws {
    for _ in 0..<1500 { if condition() { return }; usleep(20_000) }
    throw SandboxError("timed out waiting for \(what)")
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
            let state: [String: Any] = ["services": [serviceObject()], "endpointslices": [slice(3)], "nodes": []]
            try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: "\(dir)/state.json"))
            let api = try FakeAPIServer(state: "\(dir)/state.json")
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
            try api.post("apply", ["resource": "endpointslices", "object": slice(2)])
            try waitFor("the watched update programmed") { count(sb) == 2 }

            try api.post("drop_watches", [:])
            usleep(200_000)
            try api.post("apply", ["resource": "endpointslices", "object": slice(3)])
            try waitFor("the update after a dropped watch") { count(sb) == 3 }

            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            let url = try #require(text.range(of: "http://127.0.0.1:[0-9]+/metrics", options: .regularExpression).map { String(text[$0]) })
            let metrics = KernelSandbox.run(["curl", "-s", url]).stdout
            let watches = metrics.split(separator: "\n").first { $0.hasPrefix("veer_source_watches_total{kind=\"EndpointSlice\"}") }
            #expect((watches?.split(separator: " ").last).flatMap { Int($0) } ?? 0 >= 2, "\(watches ?? "no series")")

            // Events on the Node, as kube-proxy posts them: the start, and an invalid object.
            try api.post("apply", ["resource": "services", "object": [
                "apiVersion": "v1", "kind": "Service", "metadata": ["name": "bad", "namespace": "default"],
                "spec": ["clusterIP": "10.96.0.300", "ports": [["port": 80]]]]])
            var events: [[String: Any]] = []
            for _ in 0..<500 where events.count < 2 {
                let r = KernelSandbox.run(["curl", "-s", "http://127.0.0.1:\(api.port)/_fake/events"])
                events = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]]) ?? []
                usleep(20_000)
            }
            let reasons = events.compactMap { $0["reason"] as? String }
            #expect(reasons.contains("Starting") && reasons.contains("InvalidObject"), "\(events)")
            #expect(events.allSatisfy { ($0["involvedObject"] as? [String: Any])?["kind"] as? String == "Node"
                && ($0["involvedObject"] as? [String: Any])?["name"] as? String == "node-a" })
            #expect(events.contains { ($0["message"] as? String)?.contains("default/bad") == true })

            // The API server goes away: nothing is removed, traffic flows.
            api.stop()
            usleep(500_000)
            #expect(count(sb) == 3)
            let results = try sb.client(["tcp", vip, "80", "30"])
            #expect(results.allSatisfy { $0.ok })
            #expect(veerd.isRunning, "veerd keeps retrying, it does not give up")
        }
    }
}
