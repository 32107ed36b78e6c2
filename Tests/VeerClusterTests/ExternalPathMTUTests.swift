import Foundation
import Testing
import VeerTestSupport

// ICMP "fragmentation needed" (IPv4) and "packet too big" (IPv6) about a translated flow: the
// router that sends one addresses the packet it could not forward, i.e. the translated flow
// (masqueraded source, pod destination). The client only learns the smaller path MTU if the
// error reaches it translated back to its own flow (its address and port, the frontend it sent
// to); otherwise its full-sized segments vanish and a large upload stalls for good (Linux does no
// MTU probing by default). The pod's veth carries 1280 bytes on the node's side, 1500 on the
// pod's, so the pod still advertises a 1500-byte MSS and the client's first segments are too big.

extension ClusterSandbox {
    /// Uploads `bytes` from the outside client to `url` (curl, one POST) and returns how many
    /// bytes the pod read (its X-Received header), or nil when curl failed.
    func uploadOutside(_ url: String, bytes: Int, timeout: Double = 20) throws -> Int? {
        guard let path = outsideNetnsPath else { throw SandboxError("no outside client: addOutsideClient first") }
        let file = "\(directory)/upload-\(bytes).bin"
        if !FileManager.default.fileExists(atPath: file) {
            FileManager.default.createFile(atPath: file, contents: Data(repeating: 0x5a, count: bytes))
        }
        // No "Expect: 100-continue": the pod's server does not send the interim response.
        let r = KernelSandbox.run(["nsenter", "--net=\(path)", "curl", "-sS", "-D", "-", "-o", "/dev/null", "-H", "Expect:",
                                   "--data-binary", "@\(file)", "--max-time", "\(timeout)", url])
        guard r.status == 0 else { return nil }
        let header = r.stdout.split(separator: "\r\n").first { $0.lowercased().hasPrefix("x-received:") }
        return header.flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
    }

    /// The path MTU the outside client has learned towards `address` (its route cache), if any.
    func outsidePathMTU(to address: String) throws -> Int? {
        guard let outsideNetns else { throw SandboxError("no outside client: addOutsideClient first") }
        let out = KernelSandbox.run(["ip", "-n", outsideNetns] + (address.contains(":") ? ["-6"] : []) + ["route", "get", address]).stdout
        let words = out.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard let i = words.firstIndex(of: "mtu"), i + 1 < words.count else { return nil }
        return Int(words[i + 1])
    }
}

extension ClusterTests {
    @Test("Fragmentation needed / packet too big about a translated flow reaches the outside client translated: a large upload through a narrower pod link completes, eTP=Cluster and eTP=Local, IPv4 and IPv6",
          arguments: ["Cluster", "Local"])
    func externalPathMTU(policy: String) async throws {
        try await withCluster { cluster in
            try cluster.addOutsideClient()
            // eTP=Cluster: node-1 forwards to node-3, which sends the error to node-1's address (the
            // masqueraded source), and node-1's conntrack must translate it back. eTP=Local: node-3
            // itself forwards to its pod and sends the error, about a packet it already translated.
            let pod = try cluster.addIsolatedPod("sink-3", on: 3)
            try cluster.setNodeSideMTU(pod, 1280)
            let entry = policy == "Cluster" ? cluster.nodes[0] : cluster.nodes[2]
            let service = ClusterObjects.service("sink", clusterIP: vip, clusterIP6: vip6, nodePort: 30190,
                                                 spec: ["type": "NodePort", "externalTrafficPolicy": policy])
            try await cluster.deployDualStack(service, name: "sink", pods: [pod])
            let bytes = 4 << 20
            for address in [entry.address, entry.address6] {
                let url = address.contains(":") ? "http://[\(address)]:30190/" : "http://\(address):30190/"
                try await cluster.waitUntil("\(url) served from outside") { try cluster.curlOutside(url).status == 0 }
                #expect(try cluster.outsidePathMTU(to: address) == nil, "no smaller path MTU known before the upload")
                let received = try cluster.uploadOutside(url, bytes: bytes)
                #expect(received == bytes, "\(url): the pod read \(received.map(String.init) ?? "nothing (curl failed)") of \(bytes) bytes")
                // The client learned the narrower path from an ICMP error that names its own flow.
                let learned = try cluster.outsidePathMTU(to: address)
                #expect(learned == 1280, "\(url): route cache \(learned.map(String.init) ?? "without an mtu")")
            }
        }
    }
}
