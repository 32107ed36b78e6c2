import Foundation
import Glibc
import Testing
import VeerModel
import VeerTestSupport

// Clients outside the node: the outside namespace on the bridge curls NodePorts, LB IPs and
// externalIPs of the nodes; pods live in namespaces of their own behind veths. Everything
// goes through the packet path (bpf/veer_tc.bpf.c) and the kernel's conntrack and NAT.

/// The pod's answer (`veer-probe serve-whoami`): its name and the address it saw the client at.
struct WhoAmI: Equatable {
    let pod: String
    let client: String  // IP only

    init?(_ body: String) {
        let f = body.split(separator: " ")
        guard f.count == 2, let colon = f[1].lastIndex(of: ":") else { return nil }
        pod = String(f[0])
        // An IPv6 peer prints as [addr]:port.
        client = String(f[1][..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
    }
}

extension ClusterTests {
    @Test("NodePort, LB IP and externalIP from outside, the only pod on node-3: served through node-1, masqueraded to node-1's address")
    func externalClusterPolicy() async throws {
        try await withCluster { cluster in
            try cluster.addOutsideClient()
            let pod = try cluster.addIsolatedPod("web-3", on: 3)
            let node1 = cluster.nodes[0]
            let service = ClusterObjects.service("web", clusterIP: vip, nodePort: 30080,
                                                 spec: ["type": "LoadBalancer", "externalIPs": ["198.51.100.7"]],
                                                 status: ["loadBalancer": ["ingress": [["ip": "203.0.113.9"]]]])
            try await cluster.deploy(service, slice: ClusterObjects.slice("web", [pod], in: cluster), frontend: frontend) { _ in
                endpoints([pod])
            }
            // A router in front of the cluster sends the LB IP and the externalIP to node-1.
            try cluster.routeOutside("203.0.113.9/32", via: 1)
            try cluster.routeOutside("198.51.100.7/32", via: 1)
            for url in ["http://\(node1.address):30080/", "http://203.0.113.9/", "http://198.51.100.7/"] {
                try await cluster.waitUntil("\(url) served from outside") { try cluster.curlOutside(url).status == 0 }
                for _ in 0..<5 {
                    let r = try cluster.curlOutside(url)
                    #expect(r.status == 0, "\(url): curl exit \(r.status)")
                    // The reply reached curl, which connected to the frontend: it came from there.
                    // The pod saw node-1's address: eTP=Cluster masquerades, as kube-proxy does.
                    #expect(WhoAmI(r.body) == WhoAmI("web-3 \(node1.address):1"), "\(url): \(r.body)")
                }
            }
            // The outside client cannot reach the pod itself: only the node path served it.
            #expect(try cluster.curlOutside("http://\(pod.ip):8080/", timeout: 1).status != 0)
            let metrics = cluster.metrics(1)
            #expect(metrics.contains("veer_packet_path_packets_total{event=\"translated\"}"), "\(metrics.prefix(300))")

            // veerctl reads the same counters from the pins.
            let ctlStats = KernelSandbox.run(["\(KernelSandbox.veerBinaries)/veerctl", "stats", "--bpffs", cluster.nodes[0].pins.root])
            #expect(ctlStats.stdout.contains("PACKET PATH") && ctlStats.stdout.contains("translated"), "\(ctlStats.stdout) \(ctlStats.stderr)")

            // Uninstall (veerd stopped first) takes the tc filter and the nftables table with it.
            let node = cluster.nodes[0]
            let filters = { KernelSandbox.run(["nsenter", "--net=\(node.netnsPath)", "tc", "filter", "show", "dev", "eth0", "ingress"]).stdout }
            #expect(filters().contains("veer_tc_ingress"))
            cluster.agent(1)?.kill()
            let un = KernelSandbox.run(["nsenter", "--net=\(node.netnsPath)", "\(KernelSandbox.veerBinaries)/veerctl", "uninstall", "--bpffs", node.pins.root])
            #expect(un.status == 0 && un.stdout.contains("removed the packet path from eth0"), "\(un.stdout) \(un.stderr)")
            #expect(!filters().contains("veer_tc_ingress"), "\(filters())")
            // Nothing translates any more: the NodePort is the node's own closed port again.
            #expect(try cluster.curlOutside("http://\(node1.address):30080/", timeout: 2).status != 0)
        }
    }

    @Test("eTP=Local from outside: the pod sees the client's address; no local endpoint drops; terminating-only local endpoints serve")
    func externalLocalPolicy() async throws {
        try await withCluster { cluster in
            try cluster.addOutsideClient()
            let web2 = try cluster.addIsolatedPod("web-2", on: 2)
            let web3 = try cluster.addIsolatedPod("web-3", on: 3)
            let service = ClusterObjects.service("local", clusterIP: vip, nodePort: 30081,
                                                 spec: ["type": "NodePort", "externalTrafficPolicy": "Local"])
            try await cluster.deploy(service, slice: ClusterObjects.slice("local", [web2, web3], in: cluster),
                                     frontend: frontend) { _ in endpoints([web2, web3]) }
            // The node's own clients keep the Cluster set; outside clients get the Local one.
            try await cluster.waitUntil("external-scope entries") {
                cluster.nodes.allSatisfy { n in (try? cluster.state(n.index).masters.keys.contains { $0.scope == .external && $0.port == 30081 }) == true }
            }
            for (node, pod) in [(2, "web-2"), (3, "web-3")] {
                let url = "http://\(cluster.nodes[node - 1].address):30081/"
                for _ in 0..<5 {
                    let r = try cluster.curlOutside(url)
                    #expect(r.status == 0 && WhoAmI(r.body) == WhoAmI("\(pod) \(ClusterSandbox.outsideAddress):1"),
                            "\(url): exit \(r.status) \(r.body)")
                }
            }
            // node-1 has no endpoint: the SYN is dropped, silently (curl times out, no RST).
            let dropped = try cluster.curlOutside("http://\(cluster.nodes[0].address):30081/", timeout: 2)
            #expect(dropped.status == 28, "curl exit \(dropped.status) (28 = timed out): \(dropped.body)")
            #expect(cluster.metrics(1).contains("veer_packet_path_packets_total{event=\"dropped\"} "))
            #expect(!cluster.metrics(1).contains("veer_packet_path_packets_total{event=\"dropped\"} 0\n"))

            // web-3 terminates (still serving); web-2 stays ready. node-3's only local endpoint is
            // terminating: kube-proxy's fallback serves it rather than dropping.
            try cluster.apply("endpointslices", ClusterObjects.slice("local", [web2, web3], in: cluster, states: ["web-3": .terminating]))
            try await cluster.waitUntil("node-1's short-circuited cluster set loses web-3") {
                cluster.backends(1, "\(cluster.nodes[0].address):30081/tcp") == endpoints([web2])
            }
            let r = try cluster.curlOutside("http://\(cluster.nodes[2].address):30081/")
            #expect(r.status == 0 && WhoAmI(r.body)?.pod == "web-3", "exit \(r.status) \(r.body)")
        }
    }

    @Test("A pod on node-2 reaches node-3's IP:nodePort; the pod behind it is on node-1")
    func podToAnotherNodesNodePort() async throws {
        try await withCluster { cluster in
            let client = try cluster.addIsolatedPod("client-2", on: 2)
            let web = try cluster.addIsolatedPod("web-1", on: 1)
            try await cluster.deploy(ClusterObjects.service("web", clusterIP: vip, nodePort: 30082, spec: ["type": "NodePort"]),
                                     slice: ClusterObjects.slice("web", [web], in: cluster), frontend: frontend) { _ in endpoints([web]) }
            let url = "http://\(cluster.nodes[2].address):30082/"
            try await cluster.waitUntil("\(url) from the pod") { try cluster.curlFromPod(client, url).status == 0 }
            let r = try cluster.curlFromPod(client, url)
            #expect(WhoAmI(r.body) == WhoAmI("web-1 \(cluster.nodes[2].address):1"), "\(r.body)")
        }
    }

    @Test("kill -9 of veerd with external UDP flows open: they keep working, and new flows succeed after the restart")
    func externalFlowsSurviveAgentKill() async throws {
        try await withCluster { cluster in
            try cluster.addOutsideClient()
            let pods = try [cluster.addIsolatedPod("dns-2", on: 2, serve: "serve-udp"),
                            cluster.addIsolatedPod("dns-3", on: 3, serve: "serve-udp")]
            var service = ClusterObjects.service("dns", clusterIP: vip, spec: ["type": "NodePort"])
            if var spec = service["spec"] as? [String: Any] {
                spec["ports"] = [["name": "http", "port": 80, "protocol": "UDP", "targetPort": 8080, "nodePort": 30053]]
                service["spec"] = spec
            }
            var slice = ClusterObjects.slice("dns", pods, in: cluster)
            slice["ports"] = [["name": "http", "port": 8080, "protocol": "UDP"]]
            try await cluster.deploy(service, slice: slice, frontend: "\(vip):80/udp") { _ in endpoints(pods) }
            let node1 = cluster.nodes[0].address
            // Eight flows, each one connected UDP socket asking every 5 ms.
            let loads = try (0..<8).map { _ in try cluster.startOutsideLoad(["udp-hold", node1, "30053", "100000000", "5000"]) }
            try await cluster.waitUntil("the flows answer") { loads.allSatisfy { $0.results.count > 20 } }
            cluster.agent(1)?.kill()
            try await pause(seconds: 1) // the flows run on while no agent exists: what is asserted
            try cluster.startAgent(1)
            try await cluster.waitUntil("the restarted agent serves") { cluster.metrics(1).contains("veer_synced 1") }
            let before = loads.map { $0.results.count }
            try await cluster.waitUntil("the flows keep answering") { zip(loads, before).allSatisfy { $0.results.count > $1 + 20 } }
            for load in loads {
                let results = load.stop()
                #expect(results.allSatisfy { $0.ok }, "\(failures(results))")
                // One flow, one backend: conntrack kept it where it was.
                #expect(Set(results.map(\.reply)).count == 1, "\(Set(results.map(\.reply)))")
            }
            // New flows after the restart.
            let fresh = KernelSandbox.run([KernelSandbox.probe, "--netns", cluster.outsideNetnsPath!, "udp-connect", node1, "30053", "20"])
            let results = fresh.stdout.split(separator: "\n").map { ProbeResult(String($0)) }
            #expect(results.count == 20 && results.allSatisfy { $0.ok }, "\(failures(results))")
        }
    }

    @Test("Bad input beside good: a NodePort outside the range, an LB IP of the other family, a hostname-only ingress are skipped; the rest is served from outside")
    func externalBadInput() async throws {
        try await withCluster(agents: false) { cluster in
            try cluster.startAgents(extra: ["--node-port-range", "30000-32767"])
            try cluster.addOutsideClient()
            let pod = try cluster.addIsolatedPod("web-2", on: 2)
            let service = ClusterObjects.service("web", clusterIP: vip, nodePort: 30083,
                                                 spec: ["type": "LoadBalancer"],
                                                 status: ["loadBalancer": ["ingress": [["ip": "2001:db8::9"], ["hostname": "lb.example"],
                                                                                       ["ip": "203.0.113.10"]]]])
            try await cluster.deploy(service, slice: ClusterObjects.slice("web", [pod], in: cluster), frontend: frontend) { _ in endpoints([pod]) }
            try cluster.routeOutside("203.0.113.10/32", via: 1)
            for url in ["http://203.0.113.10/", "http://\(cluster.nodes[0].address):30083/"] {
                try await cluster.waitUntil("\(url) from outside") { try cluster.curlOutside(url).status == 0 }
                #expect(WhoAmI(try cluster.curlOutside(url).body)?.pod == "web-2")
            }
            // A NodePort outside the range: skipped with its reason, its ClusterIP still served.
            try cluster.apply("services", ClusterObjects.service("low", clusterIP: "10.96.0.20", nodePort: 8081, spec: ["type": "NodePort"]))
            try cluster.apply("endpointslices", ClusterObjects.slice("low", [pod], in: cluster))
            try await cluster.waitUntil("the low service's ClusterIP programmed") { cluster.backends(1, "10.96.0.20:80/tcp") == endpoints([pod]) }
            #expect(cluster.backends(1, "\(cluster.nodes[0].address):8081/tcp") == nil)
            #expect(try cluster.curlOutside("http://\(cluster.nodes[0].address):8081/", timeout: 2).status != 0)
            // The good service is untouched by its neighbours' bad input.
            #expect(WhoAmI(try cluster.curlOutside("http://203.0.113.10/").body)?.pod == "web-2")
            try await cluster.waitUntil("the skips logged") {
                let log = cluster.agent(1)?.logText ?? ""
                return log.contains("2001:db8::9") && log.contains("nodePort 8081 is outside the node port range 30000-32767")
            }
        }
    }
}

extension ClusterTests {
    @Test("500 concurrent connections from outside while the backends churn: every one is answered by a pod")
    func externalChurn() async throws {
        try await withCluster { cluster in
            try cluster.addOutsideClient()
            var pods: [ClusterSandbox.Pod] = []
            for node in [2, 3] { for i in 1...3 { pods.append(try cluster.addIsolatedPod("web-\(node)-\(i)", on: node)) } }
            try await cluster.deploy(ClusterObjects.service("web", clusterIP: vip, nodePort: 30084, spec: ["type": "NodePort"]),
                                     slice: ClusterObjects.slice("web", pods, in: cluster), frontend: frontend) { _ in endpoints(pods) }
            let url = "http://\(cluster.nodes[0].address):30084/"
            try await cluster.waitUntil("\(url) from outside") { try cluster.curlOutside(url).status == 0 }
            // A pod leaving the slice keeps serving (a terminating pod finishes its connections),
            // so a flow opened to it just before it left must still succeed. Each batch of 500
            // parallel connections runs while the slice changes under it, every 20 ms.
            let outside = cluster.outsideNetnsPath!
            var answered: [String: Int] = [:]
            var rounds = 0
            for _ in 0..<4 {
                let out = "\(cluster.directory)/churn-\(rounds).txt", err = "\(cluster.directory)/churn-\(rounds).err"
                FileManager.default.createFile(atPath: out, contents: nil)
                FileManager.default.createFile(atPath: err, contents: nil)
                let curl = Process()
                curl.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
                curl.arguments = ["--net=\(outside)", "curl", "-sS", "--parallel", "--parallel-immediate", "--parallel-max", "500",
                                  "--max-time", "20", "\(url)[1-500]"]
                curl.standardOutput = FileHandle(forWritingAtPath: out)
                curl.standardError = FileHandle(forWritingAtPath: err)
                try curl.run()
                repeat {
                    rounds += 1
                    let kept = pods.enumerated().filter { ($0.offset + rounds) % 3 != 0 }.map(\.element)
                    try cluster.apply("endpointslices", ClusterObjects.slice("web", kept, in: cluster))
                    try await Task.sleep(for: .milliseconds(20))
                } while curl.isRunning
                curl.waitUntilExit()
                let body = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
                let lines = body.split(separator: "\n").compactMap { WhoAmI(String($0)) }
                let errors = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
                #expect(curl.terminationStatus == 0 && lines.count == 500,
                        "exit \(curl.terminationStatus), \(lines.count) answers: \(errors.prefix(400))")
                for l in lines { answered[l.pod, default: 0] += 1 }
            }
            #expect(rounds >= 4, "the backends changed while the connections ran (\(rounds) slice updates)")
            #expect(Set(answered.keys).isSubset(of: Set(pods.map(\.name))) && answered.count > 1, "\(answered)")
        }
    }
}

extension ClusterTests {
    @Test("An external-scope entry follows its address's owner: an eTP=Cluster service taking over an LB IP removes the eTP=Local one's")
    func externalEntryFollowsOwner() async throws {
        try await withCluster { cluster in
            let pod = try cluster.addIsolatedPod("web-2", on: 2)
            let lbIP = "203.0.113.20"
            let lb = L4Address("\(lbIP):80/tcp")!
            // "b" (eTP=Local) owns the LB IP first: it has an external-scope entry.
            try cluster.apply("services", ClusterObjects.service("b", clusterIP: "10.96.0.21", nodePort: 30085,
                                                                 spec: ["type": "LoadBalancer", "externalTrafficPolicy": "Local"],
                                                                 status: ["loadBalancer": ["ingress": [["ip": lbIP]]]]))
            try cluster.apply("endpointslices", ClusterObjects.slice("b", [pod], in: cluster))
            try await cluster.waitUntil("b's external entry") { try cluster.state(1).masters[lb.scoped(.external)] != nil }
            // "a" (eTP=Cluster) claims it too and wins by name; b itself does not change.
            try cluster.apply("services", ClusterObjects.service("a", clusterIP: "10.96.0.22", nodePort: 30086,
                                                                 spec: ["type": "LoadBalancer"],
                                                                 status: ["loadBalancer": ["ingress": [["ip": lbIP]]]]))
            try cluster.apply("endpointslices", ClusterObjects.slice("a", [pod], in: cluster))
            try await cluster.waitUntil("a owns the LB IP, and no external entry is left") {
                let state = try cluster.state(1)
                guard let master = state.masters[lb], state.masters[lb.scoped(.external)] == nil else { return false }
                return (master.flags & MasterEntry.flagExternalLocal) == 0
            }
        }
    }
}

extension ClusterTests {
    @Test("ICMP errors about a translated flow reach the client translated: a UDP NodePort whose pod does not listen refuses at once")
    func externalICMPTranslated() async throws {
        try await withCluster { cluster in
            try cluster.addOutsideClient()
            // The pod serves TCP only: its kernel answers UDP to :8080 with port unreachable.
            let pod = try cluster.addIsolatedPod("tcp-only-3", on: 3)
            var service = ClusterObjects.service("u", clusterIP: vip, spec: ["type": "NodePort"])
            if var spec = service["spec"] as? [String: Any] {
                spec["ports"] = [["name": "http", "port": 80, "protocol": "UDP", "targetPort": 8080, "nodePort": 30087]]
                service["spec"] = spec
            }
            var slice = ClusterObjects.slice("u", [pod], in: cluster)
            slice["ports"] = [["name": "http", "port": 8080, "protocol": "UDP"]]
            try await cluster.deploy(service, slice: slice, frontend: "\(vip):80/udp") { _ in endpoints([pod]) }
            // A connected UDP socket sees ECONNREFUSED only if the ICMP error names its own flow
            // (node-1:30087 from the client's port): the kernel translated the embedded header
            // back through both NATs. Untranslated, the error would be dropped and recv time out.
            let r = KernelSandbox.run([KernelSandbox.probe, "--netns", cluster.outsideNetnsPath!, "udp-connect",
                                       cluster.nodes[0].address, "30087", "3"])
            let results = r.stdout.split(separator: "\n").map { ProbeResult(String($0)) }
            #expect(results.count == 3 && results.allSatisfy { !$0.ok && $0.reply == "ECONNREFUSED" }, "\(results.map(\.reply)) \(r.stderr)")
            // And the refusal came from the pod, not from node-1's own stack (which would also
            // refuse an untranslated datagram): the datagrams reached node-3, masqueraded.
            let ct3 = KernelSandbox.run(["nsenter", "--net=\(cluster.nodes[2].netnsPath)", "cat", "/proc/net/nf_conntrack"]).stdout
            #expect(ct3.split(separator: "\n").contains { $0.contains("udp") && $0.contains("src=\(cluster.nodes[0].address) dst=\(pod.ip)") && $0.contains("dport=8080") },
                    "\(ct3)")
        }
    }
}

extension ClusterTests {
    @Test("A UDP flow from outside to a backend that leaves the service moves to a live one (its conntrack entry is deleted)")
    func externalUDPFlowLeavesRemovedBackend() async throws {
        try await withCluster { cluster in
            try cluster.addOutsideClient()
            let stay = try cluster.addIsolatedPod("dns-2", on: 2, serve: "serve-udp")
            let leave = try cluster.addIsolatedPod("dns-3", on: 3, serve: "serve-udp")
            var service = ClusterObjects.service("dns", clusterIP: vip, spec: ["type": "NodePort"])
            if var spec = service["spec"] as? [String: Any] {
                spec["ports"] = [["name": "http", "port": 80, "protocol": "UDP", "targetPort": 8080, "nodePort": 30088]]
                service["spec"] = spec
            }
            func slice(_ pods: [ClusterSandbox.Pod]) -> [String: Any] {
                var s = ClusterObjects.slice("dns", pods, in: cluster)
                s["ports"] = [["name": "http", "port": 8080, "protocol": "UDP"]]
                return s
            }
            try await cluster.deploy(service, slice: slice([stay, leave]), frontend: "\(vip):80/udp") { _ in endpoints([stay, leave]) }
            let node1 = cluster.nodes[0].address
            // Twelve flows: some land on dns-3 (all on dns-2 has odds of 1 in 4096).
            let loads = try (0..<12).map { _ in try cluster.startOutsideLoad(["udp-hold", node1, "30088", "100000000", "5000"]) }
            try await cluster.waitUntil("the flows answer") { loads.allSatisfy { $0.results.count > 5 } }
            let onLeaving = Set(loads.indices.filter { loads[$0].results.last?.reply == "dns-3" })
            #expect(!onLeaving.isEmpty, "no flow reached dns-3")
            // dns-3 leaves the slice; its process keeps answering, as a terminating pod does.
            try cluster.apply("endpointslices", slice([stay]))
            try await cluster.waitForBackends("\(vip):80/udp") { _ in endpoints([stay]) }
            try await cluster.waitUntil("every flow answered by dns-2") {
                loads.allSatisfy { l in let r = l.results.suffix(3); return r.count == 3 && r.allSatisfy { $0.ok && $0.reply == "dns-2" } }
            }
            for (i, load) in loads.enumerated() {
                let results = load.stop()
                // A flow that was on dns-3 may lose the one datagram in flight when its conntrack
                // entry goes (dns-3's reply then comes back untranslated), as with kube-proxy's
                // conntrack cleanup; every other datagram of every flow is answered.
                #expect(results.filter { !$0.ok }.count <= (onLeaving.contains(i) ? 1 : 0), "flow \(i): \(failures(results))")
            }
            #expect(cluster.metrics(1).contains("veer_packet_path_flows_deleted_total "))
            #expect(!cluster.metrics(1).contains("veer_packet_path_flows_deleted_total 0\n"))
        }
    }
}
