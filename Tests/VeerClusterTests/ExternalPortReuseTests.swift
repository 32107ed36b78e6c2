import Foundation
import Testing
import VeerTestSupport

// A client outside the node that reuses its TCP source port soon after a connection to a
// NodePort closed: the new SYN carries the 5-tuple of a conntrack entry still in TIME_WAIT (or
// CLOSE after an RST). The kernel reopens such a connection as a new one; the packet path must
// give that new one its NAT too, or the SYN reaches the node's own closed port and is refused
// (what kube-proxy's nftables rules never do: their DNAT runs on every new connection).

extension ClusterSandbox {
    /// One HTTP request from the outside namespace, from source port `localPort`. Python rather
    /// than curl: it reads to the server's FIN before closing, so the TIME_WAIT stays on the
    /// server's side and the port is free for the next connection at once (curl, closing after
    /// Content-Length, races the server's FIN and sometimes keeps the port in TIME_WAIT itself).
    /// With `abort`, the connection is reset instead (SO_LINGER 0) as soon as it is established,
    /// leaving the node's conntrack entry in CLOSE. Exit 0: the connection was established.
    fileprivate func connectOutside(_ host: String, _ port: Int, localPort: Int, abort: Bool = false) throws -> (status: Int32, body: String, error: String) {
        guard let path = outsideNetnsPath else { throw SandboxError("no outside client: addOutsideClient first") }
        let script = """
            import socket, struct, sys
            host, port, local, abort = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", local))
            s.settimeout(5)
            s.connect((host, port))
            if abort:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
                sys.exit(0)
            s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
            reply = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
            s.close()
            sys.stdout.write(reply.split(b"\\r\\n\\r\\n", 1)[-1].decode())
            """
        let r = KernelSandbox.run(["nsenter", "--net=\(path)", "python3", "-c", script, host, "\(port)", "\(localPort)", abort ? "1" : "0"])
        return (r.status, r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), r.stderr)
    }
}

extension ClusterTests {
    @Test("One client source port for consecutive connections to a NodePort (eTP=Cluster, pod on another node): each one is served, after a FIN close and after an RST")
    func externalPortReuseCluster() async throws {
        try await withCluster { cluster in
            try cluster.addOutsideClient()
            let pod = try cluster.addIsolatedPod("web-3", on: 3)
            let node1 = cluster.nodes[0].address
            try await cluster.deploy(ClusterObjects.service("web", clusterIP: vip, nodePort: 30090, spec: ["type": "NodePort"]),
                                     slice: ClusterObjects.slice("web", [pod], in: cluster), frontend: frontend) { _ in endpoints([pod]) }
            let url = "http://\(node1):30090/"
            try await cluster.waitUntil("\(url) from outside") { try cluster.curlOutside(url).status == 0 }

            // Each connection closes with FINs: node-1's entry for the 5-tuple sits in TIME_WAIT
            // when the next SYN comes.
            for i in 1...4 {
                let r = try cluster.connectOutside(node1, 30090, localPort: 41000)
                #expect(r.status == 0 && WhoAmI(r.body) == WhoAmI("web-3 \(node1):1"), "connection \(i): exit \(r.status) \(r.body) \(r.error)")
            }
            // An aborted connection (RST from the client): the entry is in CLOSE.
            let reset = try cluster.connectOutside(node1, 30090, localPort: 41001, abort: true)
            #expect(reset.status == 0, "the connection to abort: \(reset.error)")
            for i in 1...2 {
                let r = try cluster.connectOutside(node1, 30090, localPort: 41001)
                #expect(r.status == 0 && WhoAmI(r.body) == WhoAmI("web-3 \(node1):1"), "after the RST, connection \(i): exit \(r.status) \(r.body) \(r.error)")
            }
            // The conntrack entry of the last one carries Veer's NAT: its reply comes from the pod.
            let ct = KernelSandbox.run(["nsenter", "--net=\(cluster.nodes[0].netnsPath)", "cat", "/proc/net/nf_conntrack"]).stdout
            #expect(ct.split(separator: "\n").contains { $0.contains("sport=41001 dport=30090") && $0.contains("src=\(pod.ip)") }, "\(ct)")
        }
    }

    @Test("One client source port for consecutive connections to an eTP=Local NodePort: each one is served, with the client's address")
    func externalPortReuseLocal() async throws {
        try await withCluster { cluster in
            try cluster.addOutsideClient()
            let pod = try cluster.addIsolatedPod("web-2", on: 2)
            let node2 = cluster.nodes[1].address
            try await cluster.deploy(ClusterObjects.service("local", clusterIP: vip, nodePort: 30091,
                                                            spec: ["type": "NodePort", "externalTrafficPolicy": "Local"]),
                                     slice: ClusterObjects.slice("local", [pod], in: cluster), frontend: frontend) { _ in endpoints([pod]) }
            let url = "http://\(node2):30091/"
            try await cluster.waitUntil("\(url) from outside") { try cluster.curlOutside(url).status == 0 }
            let seen = WhoAmI("web-2 \(ClusterSandbox.outsideAddress):1")
            for i in 1...4 {
                let r = try cluster.connectOutside(node2, 30091, localPort: 41010)
                #expect(r.status == 0 && WhoAmI(r.body) == seen, "connection \(i): exit \(r.status) \(r.body) \(r.error)")
            }
            let reset = try cluster.connectOutside(node2, 30091, localPort: 41011, abort: true)
            #expect(reset.status == 0, "the connection to abort: \(reset.error)")
            let r = try cluster.connectOutside(node2, 30091, localPort: 41011)
            #expect(r.status == 0 && WhoAmI(r.body) == seen, "after the RST: exit \(r.status) \(r.body) \(r.error)")
        }
    }

    @Test("One client source port to three frontends of one eTP=Local Service with one pod (LB IP, externalIP, NodePort), each closed before the next: each one is served, with the client's address")
    func externalPortAcrossFrontendsLocal() async throws {
        // The three flows translate to the same pod:port and keep the client's address, so their
        // reply tuples (pod -> client:port) are one: while the first is in TIME_WAIT the second
        // needs another client port, which conntrack picks, as it does under kube-proxy's DNAT.
        try await withCluster { cluster in
            try cluster.addOutsideClient()
            let pod = try cluster.addIsolatedPod("web-1", on: 1)
            let node1 = cluster.nodes[0].address
            let (lbIP, extIP) = ("203.0.113.31", "198.51.100.31")
            try await cluster.deploy(ClusterObjects.service("local", clusterIP: vip, nodePort: 30092,
                                                            spec: ["type": "LoadBalancer", "externalIPs": [extIP], "externalTrafficPolicy": "Local"],
                                                            status: ["loadBalancer": ["ingress": [["ip": lbIP]]]]),
                                     slice: ClusterObjects.slice("local", [pod], in: cluster), frontend: frontend) { _ in endpoints([pod]) }
            try cluster.routeOutside("\(lbIP)/32", via: 1)
            try cluster.routeOutside("\(extIP)/32", via: 1)
            for url in ["http://\(lbIP)/", "http://\(extIP)/", "http://\(node1):30092/"] {
                try await cluster.waitUntil("\(url) from outside") { try cluster.curlOutside(url).status == 0 }
            }
            let seen = WhoAmI("web-1 \(ClusterSandbox.outsideAddress):1")
            for (host, port) in [(lbIP, 80), (extIP, 80), (node1, 30092), (lbIP, 80)] {
                let r = try cluster.connectOutside(host, port, localPort: 41020)
                #expect(r.status == 0 && WhoAmI(r.body) == seen, "\(host):\(port) from port 41020: exit \(r.status) \(r.body) \(r.error)")
            }
            // The externalIP's flow carries the DNAT to the pod (its reply comes from the pod).
            let ct = KernelSandbox.run(["nsenter", "--net=\(cluster.nodes[0].netnsPath)", "cat", "/proc/net/nf_conntrack"]).stdout
            #expect(ct.split(separator: "\n").contains { $0.contains("dst=\(extIP) sport=41020 dport=80 src=\(pod.ip)") }, "\(ct)")
        }
    }
}
