import Foundation
import Testing
import VeerModel
import VeerTestSupport

// IPv6 from outside the node: the sandbox is dual stack (nodes fd00:77::1k, pods fd00:244:k::x,
// the outside client fd00:77::200), the Services are dual stack, and the outside client reaches
// them over IPv6 through the same packet path and the kernel's IPv6 conntrack and NAT.

/// The IPv6 ClusterIP of the dual-stack test services.
let vip6 = "fd00:96::10"

extension ClusterSandbox {
    /// Applies a dual-stack service with its IPv4 and IPv6 slices, and waits until every node
    /// programs `expected` pods behind the IPv6 ClusterIP (and the IPv4 one).
    func deployDualStack(_ service: [String: Any], name: String, pods: [Pod],
                         states: [String: ClusterObjects.PodState] = [:]) async throws {
        try apply("services", service)
        try apply("endpointslices", ClusterObjects.slice(name, pods, in: self, states: states))
        try apply("endpointslices", ClusterObjects.slice(name, pods, in: self, states: states, ipv6: true))
        try await waitForBackends("[\(vip6)]:80/tcp") { _ in pods.compactMap(\.ip6).map { "\($0):8080" } }
        try await waitForBackends(frontend) { _ in endpoints(pods) }
    }
}

extension ClusterTests {
    @Test("IPv6 from outside: NodePort, LB IP and externalIP of a dual-stack service, the only pod on node-3: served through node-1, masqueraded to node-1's IPv6 address")
    func externalIPv6ClusterPolicy() async throws {
        try await withCluster { cluster in
            try cluster.addOutsideClient()
            let pod = try cluster.addIsolatedPod("web-3", on: 3)
            let node1 = cluster.nodes[0]
            let (lb4, lb6, ext4, ext6) = ("203.0.113.9", "2001:db8:113::9", "198.51.100.7", "2001:db8:51::7")
            let service = ClusterObjects.service("web", clusterIP: vip, clusterIP6: vip6, nodePort: 30180,
                                                 spec: ["type": "LoadBalancer", "externalIPs": [ext4, ext6]],
                                                 status: ["loadBalancer": ["ingress": [["ip": lb4], ["ip": lb6]]]])
            try await cluster.deployDualStack(service, name: "web", pods: [pod])
            for prefix in ["\(lb4)/32", "\(ext4)/32", "\(lb6)/128", "\(ext6)/128"] { try cluster.routeOutside(prefix, via: 1) }
            let v6 = ["http://[\(node1.address6)]:30180/", "http://[\(lb6)]/", "http://[\(ext6)]/"]
            for url in v6 {
                try await cluster.waitUntil("\(url) served from outside") { try cluster.curlOutside(url).status == 0 }
                for _ in 0..<3 {
                    let r = try cluster.curlOutside(url)
                    // curl connected to the frontend and got the pod's answer: the reply came back
                    // from the frontend's address. The pod saw node-1's IPv6 address: masqueraded.
                    #expect(r.status == 0 && WhoAmI(r.body) == WhoAmI("web-3 \(node1.address6):1"), "\(url): exit \(r.status) \(r.body)")
                }
            }
            // The same service's IPv4 frontends beside them, masqueraded to node-1's IPv4 address.
            for url in ["http://\(node1.address):30180/", "http://\(lb4)/", "http://\(ext4)/"] {
                let r = try cluster.curlOutside(url)
                #expect(r.status == 0 && WhoAmI(r.body) == WhoAmI("web-3 \(node1.address):1"), "\(url): exit \(r.status) \(r.body)")
            }
            // The outside client cannot reach the pod's IPv6 address itself.
            #expect(try cluster.curlOutside("http://[\(pod.ip6!)]:8080/", timeout: 1).status != 0)
            // veerctl's counters: the IPv6 flows opened on node-1's packet path.
            #expect(!cluster.metrics(1).contains("veer_packet_path_packets_total{event=\"translated\"} 0\n"))
        }
    }

    @Test("IPv6 from outside, eTP=Local: through NodePort, LB IP and externalIP the pod sees the client's own IPv6 address; a node with no local endpoint drops silently")
    func externalIPv6LocalPolicy() async throws {
        try await withCluster { cluster in
            try cluster.addOutsideClient()
            let web2 = try cluster.addIsolatedPod("web-2", on: 2)
            let web3 = try cluster.addIsolatedPod("web-3", on: 3)
            let (lb6, ext6) = ("2001:db8:113::19", "2001:db8:51::19")
            let service = ClusterObjects.service("local", clusterIP: vip, clusterIP6: vip6, nodePort: 30181,
                                                 spec: ["type": "LoadBalancer", "externalTrafficPolicy": "Local", "externalIPs": [ext6]],
                                                 status: ["loadBalancer": ["ingress": [["ip": lb6]]]])
            try await cluster.deployDualStack(service, name: "local", pods: [web2, web3])
            try await cluster.waitUntil("IPv6 external-scope entries") {
                cluster.nodes.allSatisfy { n in
                    (try? cluster.state(n.index).masters.keys.contains { $0.scope == .external && $0.port == 30181 && !$0.ip.isIPv4 }) == true
                }
            }
            for (node, pod) in [(2, "web-2"), (3, "web-3")] {
                let url = "http://[\(cluster.nodes[node - 1].address6)]:30181/"
                for _ in 0..<3 {
                    let r = try cluster.curlOutside(url)
                    #expect(r.status == 0 && WhoAmI(r.body) == WhoAmI("\(pod) \(ClusterSandbox.outsideAddress6):1"), "\(url): exit \(r.status) \(r.body)")
                }
            }
            // The LB IP routed to node-3 and the externalIP to node-2: each node's local pod, the
            // client's address preserved.
            try cluster.routeOutside("\(lb6)/128", via: 3)
            try cluster.routeOutside("\(ext6)/128", via: 2)
            for (url, pod) in [("http://[\(lb6)]/", "web-3"), ("http://[\(ext6)]/", "web-2")] {
                let r = try cluster.curlOutside(url)
                #expect(r.status == 0 && WhoAmI(r.body) == WhoAmI("\(pod) \(ClusterSandbox.outsideAddress6):1"), "\(url): exit \(r.status) \(r.body)")
            }
            // node-1 has no endpoint: the SYN is dropped, silently (curl times out, no RST).
            let dropped = try cluster.curlOutside("http://[\(cluster.nodes[0].address6)]:30181/", timeout: 2)
            #expect(dropped.status == 28, "curl exit \(dropped.status) (28 = timed out): \(dropped.body)")
            #expect(!cluster.metrics(1).contains("veer_packet_path_packets_total{event=\"dropped\"} 0\n"))
        }
    }
}

extension ClusterTests {
    @Test("A UDP datagram bigger than the link, fragmented by the outside client, opens its flow at a NodePort: IPv4 and IPv6 (whose first fragment carries a fragment header before UDP)")
    func externalFragmentedUDP() async throws {
        try await withCluster { cluster in
            try cluster.addOutsideClient()
            let pod = try cluster.addIsolatedPod("dns-3", on: 3, serve: "serve-udp")
            var service = ClusterObjects.service("dns", clusterIP: vip, clusterIP6: vip6, spec: ["type": "NodePort"])
            if var spec = service["spec"] as? [String: Any] {
                spec["ports"] = [["name": "http", "port": 80, "protocol": "UDP", "targetPort": 8080, "nodePort": 30210]]
                service["spec"] = spec
            }
            try cluster.apply("services", service)
            for v6 in [false, true] {
                var slice = ClusterObjects.slice("dns", [pod], in: cluster, ipv6: v6)
                slice["ports"] = [["name": "http", "port": 8080, "protocol": "UDP"]]
                try cluster.apply("endpointslices", slice)
            }
            try await cluster.waitForBackends("[\(vip6)]:80/udp") { _ in ["\(pod.ip6!):8080"] }
            let node1 = cluster.nodes[0]
            for (family, address) in [("AF_INET", node1.address), ("AF_INET6", node1.address6)] {
                // One 4000-byte datagram on one connected socket: the kernel sends it as three
                // fragments; only the first carries the UDP header.
                let script = """
                import socket
                s = socket.socket(socket.\(family), socket.SOCK_DGRAM)
                s.settimeout(2)
                s.connect(("\(address)", 30210))
                for _ in range(3):
                    s.send(b"q" * 4000)
                    try:
                        print(s.recv(100).decode().strip()); break
                    except OSError as e:
                        print("err", e)
                """
                let r = KernelSandbox.run(["nsenter", "--net=\(cluster.outsideNetnsPath!)", "python3", "-c", script])
                #expect(r.stdout.split(separator: "\n").last == "dns-3", "\(family): \(r.stdout) \(r.stderr)")
            }
        }
    }
}
