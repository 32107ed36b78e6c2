import Foundation
import Glibc
import Testing
import VeerDatapath
import VeerModel
import VeerTestSupport

// Security properties a node relies on, checked on a running cluster.

extension ClusterTests {
    @Test("Pins and state files are root-only; /metrics listens on loopback unless told otherwise")
    func filePermissionsAndMetricsAddress() async throws {
        try await withCluster(agents: false) { cluster in
            let pods = try cluster.addPods("web", perNode: 1)
            try cluster.apply("services", ClusterObjects.service("web", clusterIP: vip))
            try cluster.apply("endpointslices", ClusterObjects.slice("web", pods, in: cluster))
            try cluster.startAgent(1)   // the default metrics address
            try cluster.startAgent(2, extra: ["--metrics-address", "0.0.0.0:9966"])
            try await cluster.waitUntil("programmed") { [1, 2].allSatisfy { cluster.backends($0, frontend) == endpoints(pods) } }
            try await cluster.waitUntil("names written") { access(NamesFile.path(cluster.nodes[0].pins), F_OK) == 0 }

            let pins = cluster.nodes[0].pins
            var checked = 0
            for dir in [pins.root, pins.directory, pins.maps, pins.links, NamesFile.directory(pins)] {
                #expect(mode(dir) & 0o077 == 0, "\(dir) is \(String(mode(dir), radix: 8))")
                for entry in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
                    let path = "\(dir)/\(entry)"
                    #expect(mode(path) & 0o077 == 0, "\(path) is \(String(mode(path), radix: 8))")
                    checked += 1
                }
            }
            #expect(checked >= 10, "maps, links and state files were all checked (\(checked))")
            // veerctl explain's socket is among them: veerd answers any process that may connect.
            let socket = DecisionsSocket.path(pins)
            var st = stat()
            #expect(stat(socket, &st) == 0 && st.st_mode & S_IFMT == S_IFSOCK && mode(socket) == 0o600,
                    "\(socket) is \(String(st.st_mode, radix: 8))")

            // node-1: default → 127.0.0.1 only, so another node cannot scrape it.
            // kube-proxy's /healthz port is on every address by design (load balancers probe it); nothing else is.
            let listening1 = listeners(cluster, 1).filter { !$0.hasSuffix(":10256") }
            #expect(listening1.contains("127.0.0.1:9965") && !listening1.contains { $0.hasPrefix("0.0.0.0:") || $0.hasPrefix("*:") },
                    "\(listening1)")
            #expect(listeners(cluster, 1).contains("0.0.0.0:10256"), "\(listeners(cluster, 1))")
            #expect(cluster.metrics(1).contains("veer_"))
            let fromNode3 = KernelSandbox.run(["nsenter", "--net=\(cluster.nodes[2].netnsPath)", "curl", "-s", "--max-time", "3",
                                               "http://\(cluster.nodes[0].address):9965/metrics"])
            #expect(fromNode3.status != 0, "node-1's metrics are not reachable from node-3")
            // node-2 was told otherwise.
            #expect(listeners(cluster, 2).contains("0.0.0.0:9966"), "\(listeners(cluster, 2))")
        }
    }

    @Test("Traffic to a non-service address is never rewritten")
    func nonServiceTrafficUntouched() async throws {
        try await withCluster { cluster in
            let pods = try cluster.addPods("web", perNode: 1)
            try await cluster.deploy(ClusterObjects.service("web", clusterIP: vip), slice: ClusterObjects.slice("web", pods, in: cluster),
                               frontend: frontend) { _ in endpoints(pods) }
            let dp = try Datapath(pins: cluster.nodes[0].pins)
            let before = try dp.stats()[.translated] ?? 0
            // A pod on another node, directly: it answers itself, with its own address as peer.
            let direct = try cluster.connect(1, pods[1].ip, 8080, count: 20)
            #expect(direct.allSatisfy { $0.ok && $0.reply == pods[1].name && $0.peer == "\(pods[1].ip):8080" }, "\(direct.prefix(2))")
            // The service IP on another port is refused (kube-proxy nftables REJECTs it), never
            // translated; an unused address with no service CIDR configured is not ours at all.
            let otherPort = try cluster.connect(1, vip, 81, count: 3)
            let unused = try cluster.connect(1, "10.96.0.99", 80, count: 3)
            #expect(otherPort.allSatisfy { !$0.ok && $0.reply == "ECONNREFUSED" }, "\(otherPort.map(\.reply))")
            #expect(unused.allSatisfy { !$0.ok && $0.reply == "ENETUNREACH" }, "\(unused.map(\.reply))")
            #expect(try dp.stats()[.translated] ?? 0 == before, "nothing was translated")
        }
    }

    @Test("A frontend claiming the node's own address or loopback is honoured only as a NodePort of the right service type")
    func nodeLocalFrontends() async throws {
        try await withCluster { cluster in
            let pods = try cluster.addPods("web", perNode: 1)
            let node1 = cluster.nodes[0]
            // A ClusterIP service grabbing node-1's address as external IP and LB IP, loopback as
            // an external IP, and a nodePort its type does not allow.
            let hijack = ClusterObjects.service("hijack", clusterIP: vip, nodePort: 30081,
                                                spec: ["externalIPs": [node1.address, "127.0.0.1", "198.51.100.8"]],
                                                status: ["loadBalancer": ["ingress": [["ip": node1.address]]]])
            // A cluster IP that is node-2's address.
            let squat = ClusterObjects.service("squat", clusterIP: cluster.nodes[1].address)
            try cluster.apply("services", hijack)
            try cluster.apply("services", squat)
            try cluster.apply("endpointslices", ClusterObjects.slice("hijack", pods, in: cluster))
            try cluster.apply("endpointslices", ClusterObjects.slice("squat", pods, in: cluster))
            // Its plain frontends are programmed (so the agent has seen everything)…
            try await cluster.waitForBackends(frontend) { _ in endpoints(pods) }
            try await cluster.waitForBackends("198.51.100.8:80/tcp") { _ in endpoints(pods) }
            // …its node-local ones are not, on any node.
            for node in cluster.nodes {
                for claimed in ["127.0.0.1:80/tcp", "\(node.address):30081/tcp", "127.0.0.1:30081/tcp"] {
                    #expect(cluster.backends(node.index, claimed) == nil, "\(node.name) honours \(claimed)")
                }
            }
            #expect(cluster.backends(1, "\(node1.address):80/tcp") == nil, "node-1 lets an external IP take its own address")
            // Elsewhere node-1's address is just an external IP, as kube-proxy treats it.
            #expect(cluster.backends(2, "\(node1.address):80/tcp") == endpoints(pods))
            #expect(cluster.backends(2, "\(cluster.nodes[1].address):80/tcp") == nil, "node-2 does not let a cluster IP take its address")
            // node-2's own address:80 stays its own: nothing listens there, so the connect is refused, not translated.
            let own = try cluster.connect(2, cluster.nodes[1].address, 80, count: 3)
            #expect(own.allSatisfy { $0.reply == "ECONNREFUSED" }, "\(own.map(\.reply))")
            // The skip is reported with its rule.
            let metrics = cluster.metrics(1)
            #expect(metrics.contains("nodeLocalAddress") || cluster.agent(1)?.logText.contains("this node's own address") == true,
                    "\(cluster.agentLogs())")
        }
    }
}

private func mode(_ path: String) -> mode_t {
    var st = stat()
    return stat(path, &st) == 0 ? st.st_mode & 0o777 : 0o777
}

/// Listening TCP sockets in a node's namespace, as "ip:port".
private func listeners(_ cluster: ClusterSandbox, _ node: Int) -> [String] {
    let r = KernelSandbox.run(["nsenter", "--net=\(cluster.nodes[node - 1].netnsPath)", "ss", "-Hltn"])
    return r.stdout.split(separator: "\n").compactMap { line in
        let f = line.split(separator: " ", omittingEmptySubsequences: true)
        return f.count >= 4 ? String(f[3]) : nil
    }
}
