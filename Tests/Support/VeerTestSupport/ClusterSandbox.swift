import Foundation
import Glibc
import VeerDatapath
import VeerModel

/// A small cluster's data plane on one machine, for end-to-end tests.
///
/// - One **bridge** namespace holds `br0` (192.168.77.254/24) and the fake API server on it.
/// - Each **node** is a network namespace joined to the bridge by a veth (no link to the host),
///   with its own child cgroup, pin directory and `veerd`. Node k has address 192.168.77.(10+k),
///   zone `zone-a/b/c…`, and pod addresses 10.244.k.x on its loopback, routed from the other nodes
///   through their node address.
/// - **Dual stack**: every node also has fd00:77::(10+k)/64 on the bridge (both in its Node's
///   `status.addresses`), isolated pods fd00:244:k::x beside their IPv4 address, the outside client
///   fd00:77::200; the nodes route each other's pod /64 and forward IPv6 as they do IPv4.
/// - Every agent runs in its node's namespace and lists/watches the one API server over the
///   bridge, through the Kubernetes source (`veerd --api-server`): the production path.
/// - Pods are `veer-probe serve-tcp` processes on pod addresses, answering with their name;
///   clients are `veer-probe` processes inside a node's cgroup and namespace.
/// - An **isolated pod** (`addPod(isolated: true)`) lives in a namespace of its own behind a
///   veth pair, as a CNI plugin makes it: the node routes its /32 to the veth and forwards.
/// - The **outside client** (`addOutsideClient`) is a namespace on the bridge (192.168.77.200)
///   with no route to any pod: it reaches nodes, and LB IPs / externalIPs only through the
///   routes a test gives it (`routeOutside`), as a router in front of the cluster would.
///
/// `ClusterSandbox.run` tears all of it down (processes by pid, datapaths, pins, cgroups,
/// namespaces, state files) even when the test fails.
public final class ClusterSandbox: @unchecked Sendable {
    public struct Node: Sendable {
        public let index: Int          // 1-based
        public let name: String        // node-1 …
        public let zone: String        // zone-a …
        public let address: String     // 192.168.77.(10+index)
        public let address6: String    // fd00:77::(10+index)
        public let netns: String
        public var netnsPath: String { "/run/netns/\(netns)" }
        public let cgroup: String
        public let pins: PinLayout
    }

    public struct Pod: Sendable, Hashable {
        public let name: String
        public let ip: String
        public let node: Int
        /// The pod's own namespace; nil for a pod on its node's loopback.
        public var netns: String? = nil
        /// The pod's IPv6 address (an isolated pod's fd00:244:node::x), nil for a loopback pod.
        public var ip6: String? = nil
        /// The node's end of the pod's veth (an isolated pod), in the node's namespace.
        public var nodeVeth: String? = nil
    }

    public static let outsideAddress = "192.168.77.200"
    public static let outsideAddress6 = "fd00:77::200"
    public private(set) var outsideNetns: String?
    public var outsideNetnsPath: String? { outsideNetns.map { "/run/netns/\($0)" } }
    private var podNamespaces: [String] = []

    public let name: String
    public let nodes: [Node]
    public let bridgeNetns: String
    public let directory: String
    public static let apiAddress = "192.168.77.254"
    public static let apiPort = 6443
    public var apiURL: String { "http://\(Self.apiAddress):\(Self.apiPort)" }

    public private(set) var api: FakeAPIServer?
    private var agents: [Int: VeerdProcess] = [:]
    private var retiredAgents: [VeerdProcess] = []
    private var pods: [Pod: Process] = [:]
    private var podCount: [Int: Int] = [:]
    /// A dual-stack pod's second server (its IPv6 address), ended by pid with the pods.
    private var pods6: [Pod: Process] = [:]
    private var loads: [LoadClient] = []
    private var agentStarts = 0

    nonisolated(unsafe) private static var counter = 0
    private static let lock = NSLock()

    private init(nodeCount: Int) throws {
        let n = Self.lock.withLock { Self.counter += 1; return Self.counter }
        // "veer-c" never collides with the kernel tests' "veer-t" or the bench's sandboxes.
        let name = "veer-c\(getpid())-\(n)"
        self.name = name
        bridgeNetns = "\(name)-br"
        directory = NSTemporaryDirectory() + name
        let cg2 = SystemCheck.cgroup2Mount()!
        let zones = ["zone-a", "zone-b", "zone-c"]
        nodes = (1...nodeCount).map { k in
            Node(index: k, name: "node-\(k)", zone: zones[(k - 1) % zones.count], address: "192.168.77.\(10 + k)",
                 address6: "fd00:77::\(10 + k)",
                 netns: "\(name)-\(k)", cgroup: "\(cg2)/\(name)-\(k)", pins: PinLayout(root: "/sys/fs/bpf/\(name)-\(k)"))
        }
    }

    /// Builds the network and starts the API server (no agents yet: `startAgents`).
    private func setUp() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try addNetns(bridgeNetns)
        // A fixed MAC: a bridge without one takes the lowest of its ports' MACs, so adding a port
        // later (the outside client's, right after the agents start) could change it under a
        // node that had already resolved the API server's address. Frames to the old MAC are
        // then "other host" to the bridge's IP stack and dropped until the ARP entry ages out
        // (20-50 s): node-1's veerd saw connect timeouts on every list for that long.
        try sh(["ip", "-n", bridgeNetns, "link", "add", "br0", "address", "02:77:00:00:00:fe", "type", "bridge"])
        try sh(["ip", "-n", bridgeNetns, "addr", "add", "\(Self.apiAddress)/24", "dev", "br0"])
        try sh(["ip", "-n", bridgeNetns, "link", "set", "br0", "up"])
        for node in nodes {
            try addNetns(node.netns)
            // Both ends are created inside our namespaces: nothing ever touches the host's.
            try sh(["ip", "-n", node.netns, "link", "add", "eth0", "type", "veth", "peer", "name", "n\(node.index)", "netns", bridgeNetns])
            try sh(["ip", "-n", bridgeNetns, "link", "set", "n\(node.index)", "master", "br0", "up"])
            try sh(["ip", "-n", node.netns, "addr", "add", "\(node.address)/24", "dev", "eth0"])
            try sh(["ip", "-n", node.netns, "addr", "add", "\(node.address6)/64", "dev", "eth0", "nodad"])
            try sh(["ip", "-n", node.netns, "link", "set", "eth0", "up"])
            for other in nodes where other.index != node.index {
                try sh(["ip", "-n", node.netns, "route", "add", "10.244.\(other.index).0/24", "via", other.address])
                try sh(["ip", "-n", node.netns, "-6", "route", "add", "fd00:244:\(other.index)::/64", "via", other.address6])
            }
            // As a CNI plugin does: pods behind veths (and the packet path's DNAT) need it.
            try sh(["nsenter", "--net=\(node.netnsPath)", "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])
            guard mkdir(node.cgroup, 0o755) == 0 else { throw SandboxError("mkdir \(node.cgroup): \(String(cString: strerror(errno)))") }
        }
        try startAPIServer()
    }

    /// Runs `body` on a fresh cluster of `nodes` nodes and always tears it down. Async, so
    /// that its long waits give the test runner's few threads back to the other suites.
    public static func run<T>(nodes: Int = 3, _ body: (ClusterSandbox) async throws -> T) async throws -> T {
        let cluster = try ClusterSandbox(nodeCount: nodes)
        defer { cluster.teardown() }
        try cluster.setUp()
        return try await body(cluster)
    }

    // MARK: control plane

    /// The Node objects the agents find their zone and NodePort addresses in.
    public var nodeObjects: [[String: Any]] {
        nodes.map { n in [
            "apiVersion": "v1", "kind": "Node",
            "metadata": ["name": n.name, "labels": ["topology.kubernetes.io/zone": n.zone, "kubernetes.io/hostname": n.name]],
            "status": ["addresses": [["type": "InternalIP", "address": n.address], ["type": "InternalIP", "address": n.address6]]],
        ] }
    }

    /// Starts (or restarts) the API server on the bridge with `state` plus the Nodes.
    /// `rvStart` above the old counter models a restart whose history is gone (410 on resume).
    public func startAPIServer(services: [[String: Any]] = [], slices: [[String: Any]] = [], rvStart: Int = 1000) throws {
        let state: [String: Any] = ["services": services, "endpointslices": slices, "nodes": nodeObjects]
        api = try FakeAPIServer(netns: "/run/netns/\(bridgeNetns)", host: Self.apiAddress, state: state,
                                port: Self.apiPort, rvStart: rvStart)
    }

    public func stopAPIServer() { api?.stop() }

    public func apply(_ resource: String, _ object: [String: Any]) throws {
        try require(api).post("apply", ["resource": resource, "object": object])
    }

    public func delete(_ resource: String, name: String, namespace: String = "default") throws {
        try require(api).post("delete", ["resource": resource, "name": name, "namespace": namespace])
    }

    private func require(_ api: FakeAPIServer?) throws -> FakeAPIServer {
        guard let api, api.isRunning else { throw SandboxError("the fake API server is not running") }
        return api
    }

    // MARK: agents

    /// Starts veerd on `node` in its namespace, watching the API server.
    @discardableResult
    public func startAgent(_ node: Int, extra: [String] = []) throws -> VeerdProcess {
        agentStarts += 1
        let n = nodes[node - 1]
        let agent = try VeerdProcess(
            netns: n.netnsPath,
            arguments: ["--api-server", apiURL, "--node-name", n.name, "--cgroup", n.cgroup, "--bpffs", n.pins.root,
                        "--bpf-object", KernelSandbox.bpfObject] + extra,
            log: "\(directory)/veerd-\(n.name)-\(agentStarts).log", home: directory)
        if let old = agents[node] { retiredAgents.append(old) }
        agents[node] = agent
        return agent
    }

    public func startAgents(extra: [String] = []) throws {
        for n in nodes { try startAgent(n.index, extra: extra) }
    }

    public func agent(_ node: Int) -> VeerdProcess? { agents[node] }

    /// The metrics text of a node's agent (default metrics address, in the node's namespace).
    public func metrics(_ node: Int, address: String = "127.0.0.1:9965") -> String {
        KernelSandbox.run(["nsenter", "--net=\(nodes[node - 1].netnsPath)", "curl", "-s", "--max-time", "5", "http://\(address)/metrics"]).stdout
    }

    // MARK: pods

    /// Puts a pod on `node`: an address from the node's pod range on its loopback and a server
    /// there answering with `name`.
    @discardableResult
    public func addPod(_ name: String, on node: Int, port: UInt16 = 8080) throws -> Pod {
        let k = (podCount[node] ?? 0) + 1
        podCount[node] = k
        let n = nodes[node - 1]
        let pod = Pod(name: name, ip: "10.244.\(node).\(10 + k)", node: node)
        try sh(["ip", "-n", n.netns, "addr", "add", "\(pod.ip)/32", "dev", "lo"])
        let p = Process()
        p.executableURL = URL(fileURLWithPath: KernelSandbox.probe)
        p.arguments = ["--netns", n.netnsPath, "serve-tcp", pod.ip, "\(port)", name]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        pods[pod] = p
        guard out.fileHandleForReading.readLine() == "ready" else { throw SandboxError("pod \(name) on \(pod.ip) did not start") }
        return pod
    }

    /// Puts a pod in a network namespace of its own on `node`, behind a veth pair (`eth0` in
    /// the pod, `pod<k>` on the node, which routes the pod's /32 there), serving HTTP that
    /// answers "NAME CLIENT_IP:PORT" (`veer-probe serve-whoami`) on `port`.
    @discardableResult
    public func addIsolatedPod(_ name: String, on node: Int, port: UInt16 = 8080, serve: String = "serve-whoami") throws -> Pod {
        let k = (podCount[node] ?? 0) + 1
        podCount[node] = k
        let n = nodes[node - 1]
        let netns = "\(n.netns)-p\(k)"
        var pod = Pod(name: name, ip: "10.244.\(node).\(10 + k)", node: node)
        pod.netns = netns
        pod.ip6 = "fd00:244:\(node)::\(10 + k)"
        pod.nodeVeth = "pod\(k)"
        try addNetns(netns)
        podNamespaces.append(netns)
        try sh(["ip", "-n", n.netns, "link", "add", "pod\(k)", "type", "veth", "peer", "name", "eth0", "netns", netns])
        try sh(["ip", "-n", n.netns, "link", "set", "pod\(k)", "up"])
        try sh(["ip", "-n", n.netns, "route", "add", "\(pod.ip)/32", "dev", "pod\(k)"])
        try sh(["ip", "-n", n.netns, "-6", "route", "add", "\(pod.ip6!)/128", "dev", "pod\(k)"])
        try sh(["ip", "-n", netns, "addr", "add", "\(pod.ip)/32", "dev", "eth0"])
        try sh(["ip", "-n", netns, "addr", "add", "\(pod.ip6!)/128", "dev", "eth0", "nodad"])
        try sh(["ip", "-n", netns, "link", "set", "eth0", "up"])
        // The pod's gateway is a link-local address the node holds on every pod veth (the ptp
        // plugin's scheme): the pod's traffic goes to the node, which routes it.
        try sh(["ip", "-n", n.netns, "addr", "add", "169.254.1.1/32", "dev", "pod\(k)"])
        try sh(["ip", "-n", netns, "route", "add", "169.254.1.1", "dev", "eth0"])
        try sh(["ip", "-n", netns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"])
        // IPv6 the same way: fe80::1 on the node's side of every pod veth.
        try sh(["ip", "-n", n.netns, "addr", "add", "fe80::1/64", "dev", "pod\(k)", "nodad"])
        try sh(["ip", "-n", netns, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0"])
        // One server on the IPv6 address too (a dual-stack pod listens on both families).
        if serve != "serve-tcp" {
            let p6 = Process()
            p6.executableURL = URL(fileURLWithPath: KernelSandbox.probe)
            p6.arguments = ["--netns", "/run/netns/\(netns)", serve, pod.ip6!, "\(port)", name]
            let out6 = Pipe()
            p6.standardOutput = out6
            try p6.run()
            pods6[pod] = p6
            guard out6.fileHandleForReading.readLine() == "ready" else { throw SandboxError("pod \(name) on \(pod.ip6!) did not start") }
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: KernelSandbox.probe)
        p.arguments = ["--netns", "/run/netns/\(netns)", serve, pod.ip, "\(port)", name]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        pods[pod] = p
        guard out.fileHandleForReading.readLine() == "ready" else { throw SandboxError("pod \(name) on \(pod.ip) did not start") }
        return pod
    }

    // MARK: the outside client

    /// Adds the outside client's namespace on the bridge; routes to nothing but the bridge.
    public func addOutsideClient() throws {
        guard outsideNetns == nil else { return }
        let netns = "\(name)-out"
        try addNetns(netns)
        outsideNetns = netns
        try sh(["ip", "-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name", "out0", "netns", bridgeNetns])
        try sh(["ip", "-n", bridgeNetns, "link", "set", "out0", "master", "br0", "up"])
        try sh(["ip", "-n", netns, "addr", "add", "\(Self.outsideAddress)/24", "dev", "eth0"])
        try sh(["ip", "-n", netns, "addr", "add", "\(Self.outsideAddress6)/64", "dev", "eth0", "nodad"])
        try sh(["ip", "-n", netns, "link", "set", "eth0", "up"])
    }

    /// Gives the outside client `count` more addresses of each family on the bridge
    /// (192.168.77.201… and fd00:77::201…), so a test can play several outside clients
    /// (`curlOutside(_:from:)`). Returns them, IPv4 first.
    @discardableResult
    public func addOutsideAddresses(_ count: Int) throws -> (v4: [String], v6: [String]) {
        guard let outsideNetns else { throw SandboxError("no outside client: addOutsideClient first") }
        let v4 = (1...count).map { "192.168.77.\(200 + $0)" }, v6 = (1...count).map { "fd00:77::\(200 + $0)" }
        for a in v4 { try sh(["ip", "-n", outsideNetns, "addr", "replace", "\(a)/24", "dev", "eth0"]) }
        for a in v6 { try sh(["ip", "-n", outsideNetns, "addr", "replace", "\(a)/64", "dev", "eth0", "nodad"]) }
        return (v4, v6)
    }

    /// Routes `prefix` (an LB IP, an externalIP) from the outside client to `node`.
    public func routeOutside(_ prefix: String, via node: Int) throws {
        guard let outsideNetns else { throw SandboxError("no outside client: addOutsideClient first") }
        let n = nodes[node - 1]
        let v6 = prefix.contains(":")
        try sh(["ip", "-n", outsideNetns] + (v6 ? ["-6"] : []) + ["route", "replace", prefix, "via", v6 ? n.address6 : n.address])
    }

    /// `curl` from the outside client: (exit status, body). A short timeout: a dropped
    /// connection is an expected outcome of some tests.
    /// `from`: one of the client's addresses (`addOutsideAddresses`) as the source.
    public func curlOutside(_ url: String, from source: String? = nil, timeout: Double = 5) throws -> (status: Int32, body: String) {
        guard let path = outsideNetnsPath else { throw SandboxError("no outside client: addOutsideClient first") }
        let r = KernelSandbox.run(["nsenter", "--net=\(path)", "curl", "-sS", "--max-time", "\(timeout)"]
                                  + (source.map { ["--interface", $0] } ?? []) + [url])
        return (r.status, r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// A `veer-probe` client in the outside namespace running until stopped (e.g. `udp-hold`:
    /// one flow held open), its results in a file.
    public func startOutsideLoad(_ args: [String]) throws -> LoadClient {
        guard let path = outsideNetnsPath else { throw SandboxError("no outside client: addOutsideClient first") }
        let load = try LoadClient(arguments: ["--netns", path] + args, output: "\(directory)/outside-load-\(loads.count).txt", node: 0)
        loads.append(load)
        return load
    }

    /// `curl` from a pod's own namespace (an isolated pod).
    public func curlFromPod(_ pod: Pod, _ url: String, timeout: Double = 5) throws -> (status: Int32, body: String) {
        guard let netns = pod.netns else { throw SandboxError("pod \(pod.name) has no namespace of its own") }
        let r = KernelSandbox.run(["nsenter", "--net=/run/netns/\(netns)", "curl", "-sS", "--max-time", "\(timeout)", url])
        return (r.status, r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Sets the MTU of the node's end of an isolated pod's veth: the node then forwards at most
    /// `mtu` bytes to the pod and answers bigger packets with "fragmentation needed" / "packet too
    /// big", while the pod itself still advertises a 1500-byte path (its own end stays at 1500).
    public func setNodeSideMTU(_ pod: Pod, _ mtu: Int) throws {
        guard let veth = pod.nodeVeth else { throw SandboxError("pod \(pod.name) has no veth of its own") }
        try sh(["ip", "-n", nodes[pod.node - 1].netns, "link", "set", veth, "mtu", "\(mtu)"])
    }

    /// Stops a pod's server (its address stays, so a connection to it is refused).
    public func stopPod(_ pod: Pod) {
        for p in [pods[pod], pods6[pod]].compactMap({ $0 }) where p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
    }

    // MARK: clients

    /// Runs a probe client on `node` (in its cgroup and namespace) and returns its results.
    public func client(_ node: Int, _ args: [String]) throws -> [ProbeResult] {
        let n = nodes[node - 1]
        let r = KernelSandbox.run([KernelSandbox.probe, "--cgroup", n.cgroup, "--netns", n.netnsPath] + args)
        guard r.status == 0 else { throw SandboxError("probe \(args) on \(n.name) exited \(r.status): \(r.stderr)") }
        return r.stdout.split(separator: "\n").map { ProbeResult(String($0)) }
    }

    /// `count` TCP connections from `node` to ip:port.
    public func connect(_ node: Int, _ ip: String, _ port: UInt16, count: Int = 30) throws -> [ProbeResult] {
        try client(node, ["tcp", ip, "\(port)", "\(count)"])
    }

    /// A client on `node` connecting to ip:port in a loop until stopped; results go to a file
    /// (a pipe would fill and stall the client).
    public func startLoad(_ node: Int, _ ip: String, _ port: UInt16, gapMicroseconds: Int = 3000) throws -> LoadClient {
        let n = nodes[node - 1]
        let load = try LoadClient(arguments: ["--cgroup", n.cgroup, "--netns", n.netnsPath, "tcp", ip, "\(port)", "100000000", "\(gapMicroseconds)"],
                                  output: "\(directory)/load-\(loads.count)-\(n.name).txt", node: node)
        loads.append(load)
        return load
    }

    // MARK: datapath state

    /// The backends ("ip:port") a node's maps hold for `frontend` ("ip:port/proto"), or nil when
    /// it is not programmed there.
    public func backends(_ node: Int, _ frontend: String) -> [String]? {
        guard let address = L4Address(frontend), let dp = try? Datapath(pins: nodes[node - 1].pins),
              let state = try? dp.readState(), let master = state.masters[address] else { return nil }
        let slots = state.slots[address] ?? [:]
        return (0..<Int(master.count)).compactMap { i in
            slots[UInt16(i + 1)].flatMap { state.backends[$0] }.map { "\($0.address.ip):\($0.address.port)" }
        }.sorted()
    }

    public func state(_ node: Int) throws -> MapState { try Datapath(pins: nodes[node - 1].pins).readState() }

    /// Polls until `condition` holds (every 50 ms, so quick machines finish quickly), or throws
    /// after `timeout` seconds: the machine is shared and slow, timeouts are generous.
    public func waitUntil(_ what: String, timeout: Double = 30, _ condition: () throws -> Bool) async throws {
        do {
            try await waitFor(what, timeout: timeout, every: .milliseconds(50)) { try condition() }
        } catch let error as SandboxError {
            throw SandboxError("\(error.description)\n\(agentLogs())")
        }
    }

    /// Waits until every node's maps hold exactly `expected(node)` for `frontend`.
    public func waitForBackends(_ frontend: String, timeout: Double = 30, _ expected: (Node) -> [String]?) async throws {
        try await waitUntil("\(frontend) programmed on every node", timeout: timeout) {
            nodes.allSatisfy { backends($0.index, frontend) == expected($0).map { $0.sorted() } }
        }
    }

    /// The tail of every agent's log, for failure messages.
    public func agentLogs() -> String {
        (retiredAgents + agents.keys.sorted().compactMap { agents[$0] }).map { a in
            "--- \(a.log)\n" + a.logText.split(separator: "\n").suffix(15).joined(separator: "\n")
        }.joined(separator: "\n")
    }

    // MARK: teardown

    public func teardown() {
        for l in loads { l.kill() }
        for (_, p) in pods6 where p.isRunning { Glibc.kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        for a in Array(agents.values) + retiredAgents { a.kill() }
        for (_, p) in pods where p.isRunning { Glibc.kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        api?.stop()
        for ns in podNamespaces { _ = KernelSandbox.run(["ip", "netns", "del", ns]) }
        if let outsideNetns { _ = KernelSandbox.run(["ip", "netns", "del", outsideNetns]) }
        for n in nodes {
            _ = try? Datapath.uninstall(pins: n.pins)
            _ = rmdir(n.pins.root)
            // A client still exiting keeps the cgroup busy for a moment.
            for _ in 0..<100 where rmdir(n.cgroup) != 0 && errno != ENOENT { usleep(20_000) }
            _ = KernelSandbox.run(["ip", "netns", "del", n.netns])
        }
        _ = KernelSandbox.run(["ip", "netns", "del", bridgeNetns])
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A namespace of ours with loopback up, and no IPv6 duplicate address detection: an
    /// address is usable at once (nothing else is on these links to collide with).
    private func addNetns(_ netns: String) throws {
        try sh(["ip", "netns", "add", netns])
        try sh(["ip", "-n", netns, "link", "set", "lo", "up"])
        try sh(["nsenter", "--net=/run/netns/\(netns)", "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0"])
    }

    private func sh(_ args: [String]) throws {
        let r = KernelSandbox.run(args)
        guard r.status == 0 else { throw SandboxError("\(args.joined(separator: " ")): \(r.stderr)") }
    }
}

/// A veerd process, optionally in a network namespace (through `nsenter`, which execs it: the
/// pid is veerd's own). Killed by pid; its stderr goes to `log`.
public final class VeerdProcess: @unchecked Sendable {
    public let process = Process()
    public let log: String

    public init(netns: String?, arguments: [String], log: String, home: String) throws {
        self.log = log
        let veerd = "\(KernelSandbox.veerBinaries)/veerd"
        process.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        process.arguments = netns.map { ["--net=\($0)", veerd] + arguments } ?? [veerd] + arguments
        if netns == nil { process.executableURL = URL(fileURLWithPath: veerd); process.arguments = arguments }
        // Hermetic: no kubeconfig of the machine's is read.
        process.environment = ["HOME": home, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"]
        FileManager.default.createFile(atPath: log, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: log)
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }
    public var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// Sends `sig` and waits (bounded) for the exit; SIGKILL if it does not come.
    public func signal(_ sig: Int32, wait seconds: Double = 20) {
        guard process.isRunning else { return }
        Glibc.kill(pid, sig)
        _ = waitForExit(timeout: seconds)
        if process.isRunning { Glibc.kill(pid, SIGKILL); process.waitUntilExit() }
    }

    /// Waits (bounded) for the process to exit on its own; false if it is still running.
    public func waitForExit(timeout: Double) -> Bool {
        (try? waitFor("veerd (pid \(pid)) to exit", timeout: timeout) { !process.isRunning }) != nil
    }

    public func kill() { signal(SIGKILL) }
}

/// A probe client connecting in a loop; `stop` ends it and returns every attempt.
public final class LoadClient: @unchecked Sendable {
    private let process = Process()
    private let output: String
    public let node: Int

    init(arguments: [String], output: String, node: Int) throws {
        self.output = output
        self.node = node
        FileManager.default.createFile(atPath: output, contents: nil)
        process.executableURL = URL(fileURLWithPath: KernelSandbox.probe)
        process.arguments = arguments
        process.standardOutput = FileHandle(forWritingAtPath: output)
        try process.run()
    }

    /// Results so far (the client writes whole lines).
    public var results: [ProbeResult] {
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map { ProbeResult(String($0)) }
    }

    public func stop() -> [ProbeResult] {
        kill()
        return results
    }

    func kill() {
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
    }
}

/// A pause that frees the thread (the test runner has only as many as there are cores).
public func pause(seconds: Double) async throws {
    try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
}
