// The deployment manifests and the operator docs, checked against what the code really does:
// the RBAC rules veerd needs and no more, the mounts and environment the DaemonSet must have,
// every flag against the built veerd's --help, and every metric against the source that emits it.
// The manifests checked are the ones a user applies: deploy/ rendered by `kubectl kustomize`.
// Needs no privileges; needs the built veerd (`make test` builds it and sets VEER_BIN) and kubectl.
import Foundation
import Testing
import Yams

// MARK: - Where things are

let repoRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

func text(_ relativePath: String) throws -> String {
    try String(contentsOf: repoRoot.appendingPathComponent(relativePath), encoding: .utf8)
}

struct Manifest {
    var file: String
    var object: [String: Any]
    var kind: String { object["kind"] as? String ?? "" }
    var name: String { (object["metadata"] as? [String: Any])?["name"] as? String ?? "" }
    var namespace: String? { (object["metadata"] as? [String: Any])?["namespace"] as? String }
}

/// The YAML files of a directory of the repository (deploy/ by default).
func yamlFiles(_ directory: String = "deploy") throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: repoRoot.appendingPathComponent(directory).path)
        .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
}

/// kubectl, from the machine image (kustomize is built in): $KUBECTL, else on PATH.
func kubectl() throws -> String {
    let candidates = [ProcessInfo.processInfo.environment["KUBECTL"]].compactMap { $0 }
        + ((ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin") + ":/usr/local/bin:/usr/bin")
            .split(separator: ":").map { "\($0)/kubectl" }
    return try #require(candidates.first { FileManager.default.isExecutableFile(atPath: $0) },
                        "kubectl not found: the deploy tests render deploy/ with `kubectl kustomize` (set KUBECTL=/path/to/kubectl)")
}

/// `kubectl kustomize <directory>`: the YAML a user applies with `kubectl apply -k`.
func renderKustomization(_ directory: String) throws -> String {
    let r = try run(try kubectl(), ["kustomize", repoRoot.appendingPathComponent(directory).path])
    try #require(r.status == 0, "kubectl kustomize \(directory) failed: \(r.stderr)")
    return r.stdout
}

private let renderCache = RenderCache()
private final class RenderCache: @unchecked Sendable {
    let lock = NSLock()
    var rendered: [String: [Manifest]] = [:]
}

/// The objects `kubectl kustomize <directory>` renders (deploy/ by default), parsed.
func manifests(_ directory: String = "deploy") throws -> [Manifest] {
    if let cached = renderCache.lock.withLock({ renderCache.rendered[directory] }) { return cached }
    var result: [Manifest] = []
    for document in try Yams.load_all(yaml: try renderKustomization(directory)) {
        guard let object = document as? [String: Any] else { continue } // an empty document
        result.append(Manifest(file: "kubectl kustomize \(directory)", object: object))
    }
    renderCache.lock.withLock { renderCache.rendered[directory] = result }
    return result
}

func one(_ kind: String, in directory: String = "deploy") throws -> Manifest {
    let found = try manifests(directory).filter { $0.kind == kind }
    try #require(found.count == 1, "\(directory)/ must render exactly one \(kind), renders \(found.count)")
    return found[0]
}

// Small typed accessors over Yams' [String: Any].
func dict(_ any: Any?) -> [String: Any] { any as? [String: Any] ?? [:] }
func list(_ any: Any?) -> [[String: Any]] { (any as? [Any] ?? []).compactMap { $0 as? [String: Any] } }
func strings(_ any: Any?) -> [String] { (any as? [Any] ?? []).map { "\($0)" } }

struct PodSpec {
    let spec: [String: Any]
    var containers: [[String: Any]] { list(spec["containers"]) }
    var initContainers: [[String: Any]] { list(spec["initContainers"]) }
    var volumes: [[String: Any]] { list(spec["volumes"]) }

    func container(_ name: String) throws -> [String: Any] {
        try #require(containers.first { $0["name"] as? String == name }, "no container \(name)")
    }

    /// The hostPath a volume mount of `container` comes from, with the mount itself.
    func hostMounts(_ container: [String: Any]) -> [(hostPath: String, mount: [String: Any])] {
        list(container["volumeMounts"]).compactMap { mount in
            guard let volume = volumes.first(where: { $0["name"] as? String == mount["name"] as? String }),
                  let path = dict(volume["hostPath"])["path"] as? String else { return nil }
            return (path, mount)
        }
    }
}

func daemonSetPod(_ directory: String = "deploy") throws -> PodSpec {
    let ds = try one("DaemonSet", in: directory)
    return PodSpec(spec: dict(dict(dict(ds.object["spec"])["template"])["spec"]))
}

func args(_ container: [String: Any]) -> [String] { strings(container["command"]) + strings(container["args"]) }

/// `--flag=value` or `--flag value` → the value of the first occurrence.
func flagValue(_ args: [String], _ flag: String) -> String? {
    for (i, a) in args.enumerated() {
        if a.hasPrefix(flag + "=") { return String(a.dropFirst(flag.count + 1)) }
        if a == flag, i + 1 < args.count { return args[i + 1] }
    }
    return nil
}

func flagNames(in words: [String]) -> [String] {
    words.filter { $0.hasPrefix("--") }.map { String($0.split(separator: "=", maxSplits: 1)[0]) }
}

// MARK: - The built veerd

/// `$VEER_BIN/veerd` (set by `make test`), else `<repo>/.build/debug/veerd`.
func veerdBinary() throws -> String {
    // When VEER_BIN is set, only that one: never a stale debug build in place of the one under test.
    let path = ProcessInfo.processInfo.environment["VEER_BIN"].map { "\($0)/veerd" }
        ?? repoRoot.appendingPathComponent(".build/debug/veerd").path
    try #require(FileManager.default.isExecutableFile(atPath: path), """
        veerd is not built: no executable at \(path). \
        Run `make build` (or `make test`, which builds it and sets VEER_BIN), then test again.
        """)
    return path
}

/// Runs a program to completion: its exit status, standard output and standard error.
func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read stderr on another thread so neither pipe can fill and block the child.
    nonisolated(unsafe) var errData = Data()
    let done = DispatchSemaphore(value: 0)
    DispatchQueue.global().async {
        errData = err.fileHandleForReading.readDataToEndOfFile()
        done.signal()
    }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    done.wait()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

/// The long options listed under OPTIONS in `veerd <subcommand> --help`, without --help.
func veerdFlags(_ subcommand: String) throws -> Set<String> {
    let help = try run(try veerdBinary(), [subcommand, "--help"]).stdout
    var flags = Set<String>()
    var inOptions = false
    for line in help.split(separator: "\n", omittingEmptySubsequences: false) {
        if line.hasPrefix("OPTIONS:") { inOptions = true; continue }
        if inOptions, !line.isEmpty, !line.hasPrefix(" ") { inOptions = false }
        guard inOptions else { continue }
        // An option line starts with the flag, after "-x, " for those with a short name.
        let trimmed = line.drop { $0 == " " }
        let first = trimmed.split(separator: " ").first.map(String.init) ?? ""
        let candidate = first.hasPrefix("-") && !first.hasPrefix("--")
            ? trimmed.split(separator: " ").dropFirst().first.map(String.init) ?? "" : first
        if candidate.hasPrefix("--") { flags.insert(candidate.trimmingCharacters(in: CharacterSet(charactersIn: ","))) }
    }
    flags.remove("--help")
    return flags
}

// MARK: - Every manifest

@Suite("deploy/ manifests")
struct ManifestTests {
    @Test("deploy/ renders with kubectl kustomize, and every object names its kind, name and (if namespaced) kube-system")
    func everyManifestParses() throws {
        let files = try yamlFiles()
        #expect(files.contains("kustomization.yaml") && files.contains("daemonset.yaml") && files.contains("rbac.yaml"), "\(files)")
        let all = try manifests()
        #expect(Set(all.map(\.kind)) == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet"],
                "\(all.map { "\($0.kind)/\($0.name)" })")
        for m in all {
            #expect(m.object["apiVersion"] is String, "\(m.file): an object without apiVersion")
            #expect(!m.kind.isEmpty && !m.name.isEmpty, "\(m.file): an object without kind or metadata.name")
            if !["ClusterRole", "ClusterRoleBinding"].contains(m.kind) {
                #expect(m.namespace == "kube-system", "\(m.file): \(m.kind) \(m.name) must be in kube-system")
            }
        }
    }

    @Test("The ClusterRole grants exactly what veerd reads (and events), with no wildcard and no other write")
    func rbacLeastPrivilege() throws {
        let role = try one("ClusterRole")
        struct Grant: Hashable, CustomStringConvertible {
            var group: String, resource: String, verb: String
            var description: String { "\(group.isEmpty ? "core" : group)/\(resource):\(verb)" }
        }
        var granted = Set<Grant>()
        for rule in list(role.object["rules"]) {
            #expect(rule["resourceNames"] == nil && rule["nonResourceURLs"] == nil, "unexpected rule shape: \(rule)")
            for group in strings(rule["apiGroups"]) {
                for resource in strings(rule["resources"]) {
                    for verb in strings(rule["verbs"]) { granted.insert(Grant(group: group, resource: resource, verb: verb)) }
                }
            }
        }
        #expect(!granted.contains { $0.group == "*" || $0.resource == "*" || $0.verb == "*" }, "wildcard in \(granted)")
        let reads: Set<Grant> = [
            Grant(group: "", resource: "services", verb: "list"), Grant(group: "", resource: "services", verb: "watch"),
            Grant(group: "discovery.k8s.io", resource: "endpointslices", verb: "list"),
            Grant(group: "discovery.k8s.io", resource: "endpointslices", verb: "watch"),
            Grant(group: "", resource: "nodes", verb: "get"), Grant(group: "", resource: "nodes", verb: "list"),
            Grant(group: "", resource: "nodes", verb: "watch"),
            Grant(group: "networking.k8s.io", resource: "servicecidrs", verb: "list"),
            Grant(group: "networking.k8s.io", resource: "servicecidrs", verb: "watch"),
        ]
        let events: Set<Grant> = [
            Grant(group: "", resource: "events", verb: "create"), Grant(group: "", resource: "events", verb: "patch"),
            Grant(group: "events.k8s.io", resource: "events", verb: "create"),
            Grant(group: "events.k8s.io", resource: "events", verb: "patch"),
        ]
        #expect(granted == reads.union(events), """
            missing: \(reads.union(events).subtracting(granted).sorted { "\($0)" < "\($1)" }); \
            extra: \(granted.subtracting(reads.union(events)).sorted { "\($0)" < "\($1)" })
            """)
        let writes: Set<String> = ["create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate"]
        for g in granted where writes.contains(g.verb) {
            #expect(g.resource == "events", "write verb \(g) on something other than events")
        }
    }

    @Test("The ClusterRoleBinding binds that role to the ServiceAccount the DaemonSet runs as")
    func rbacBinding() throws {
        let sa = try one("ServiceAccount"), role = try one("ClusterRole"), binding = try one("ClusterRoleBinding")
        let ref = dict(binding.object["roleRef"])
        #expect(ref["kind"] as? String == "ClusterRole" && ref["name"] as? String == role.name)
        #expect(ref["apiGroup"] as? String == "rbac.authorization.k8s.io")
        let subjects = list(binding.object["subjects"])
        #expect(subjects.count == 1)
        #expect(subjects.first?["kind"] as? String == "ServiceAccount")
        #expect(subjects.first?["name"] as? String == sa.name && subjects.first?["namespace"] as? String == sa.namespace)
        #expect(try daemonSetPod().spec["serviceAccountName"] as? String == sa.name)
    }

    @Test("The DaemonSet runs on every node, in the host network, node-critical, with requests")
    func daemonSetScheduling() throws {
        let pod = try daemonSetPod()
        #expect(pod.spec["hostNetwork"] as? Bool == true)
        #expect(pod.spec["hostPID"] as? Bool != true, "hostPID is not needed (docs/operations.md)")
        #expect(pod.spec["priorityClassName"] as? String == "system-node-critical")
        // Cluster DNS is a Service veerd itself programs: the pod resolves with the node's resolv.conf.
        #expect(pod.spec["dnsPolicy"] as? String == "Default")
        let tolerations = list(pod.spec["tolerations"])
        #expect(tolerations.contains { $0["operator"] as? String == "Exists" && $0["key"] == nil && $0["effect"] == nil },
                "tolerate every taint, so that veerd runs on every node")
        let veerd = try pod.container("veerd")
        let requests = dict(dict(veerd["resources"])["requests"])
        #expect(requests["cpu"] != nil && requests["memory"] != nil)
    }

    @Test("NODE_NAME comes from spec.nodeName and is passed as --node-name")
    func nodeName() throws {
        let veerd = try daemonSetPod().container("veerd")
        let env = list(veerd["env"]).first { $0["name"] as? String == "NODE_NAME" }
        let fieldPath = dict(dict(dict(env?["valueFrom"])["fieldRef"]))["fieldPath"] as? String
        #expect(fieldPath == "spec.nodeName")
        #expect(flagValue(args(veerd), "--node-name") == "$(NODE_NAME)")
    }

    @Test("The API server is a real address passed with --api-server, never the kubernetes ClusterIP")
    func apiServer() throws {
        let veerd = try daemonSetPod().container("veerd")
        let value = try #require(flagValue(args(veerd), "--api-server"), "--api-server is missing")
        #expect(!value.contains("KUBERNETES_SERVICE") && !value.contains("kubernetes.default"))
        // A $(VAR) reference must come from the ConfigMap in deploy/, which holds an https URL.
        if value.hasPrefix("$("), value.hasSuffix(")") {
            let variable = String(value.dropFirst(2).dropLast())
            let env = try #require(list(veerd["env"]).first { $0["name"] as? String == variable }, "\(variable) is not set")
            let ref = dict(dict(env["valueFrom"])["configMapKeyRef"])
            let map = try manifests().first { $0.kind == "ConfigMap" && $0.name == ref["name"] as? String }
            let url = try #require(dict(map?.object["data"])[ref["key"] as? String ?? ""] as? String,
                                   "\(variable) must come from a ConfigMap in deploy/")
            #expect(url.hasPrefix("https://"))
            #expect(!url.contains("10.96.0.1:") && !url.contains("kubernetes.default"))
        } else {
            #expect(value.hasPrefix("https://"))
        }
    }

    @Test("Mounts: host bpffs, the host's cgroup2 root (passed as --cgroup), /run/veer, /run/netns")
    func mounts() throws {
        let pod = try daemonSetPod()
        let veerd = try pod.container("veerd")
        let mounts = pod.hostMounts(veerd)
        let a = args(veerd)

        let bpffs = try #require(mounts.first { $0.hostPath == "/sys/fs/bpf" }, "veerd does not mount the host's /sys/fs/bpf")
        #expect(bpffs.mount["mountPath"] as? String == "/sys/fs/bpf")
        #expect(bpffs.mount["readOnly"] as? Bool != true)
        #expect(["HostToContainer", "Bidirectional"].contains(bpffs.mount["mountPropagation"] as? String ?? ""),
                "veerd must see a bpffs mounted on the host after it started")
        let pins = flagValue(a, "--bpffs") ?? "/sys/fs/bpf/veer"
        #expect(pins.hasPrefix("/sys/fs/bpf/"), "--bpffs \(pins) is not on the mounted bpffs")

        // Something must be able to mount bpffs onto the host when the host has none, and
        // Kubernetes allows Bidirectional propagation only in privileged containers.
        let mounters = (pod.initContainers + pod.containers).filter { c in
            pod.hostMounts(c).contains { $0.hostPath == "/sys/fs/bpf" && $0.mount["mountPropagation"] as? String == "Bidirectional" }
        }
        #expect(!mounters.isEmpty, "no container mounts /sys/fs/bpf with Bidirectional propagation")
        for c in mounters {
            #expect(dict(c["securityContext"])["privileged"] as? Bool == true,
                    "\(c["name"] ?? "?"): Bidirectional propagation needs privileged: true")
        }

        let cgroup = try #require(mounts.first { $0.hostPath == "/sys/fs/cgroup" }, "veerd does not mount the host's /sys/fs/cgroup")
        let cgroupPath = try #require(cgroup.mount["mountPath"] as? String)
        #expect(cgroupPath != "/sys/fs/cgroup", "that path is the container's own, namespaced cgroup")
        let flag = try #require(flagValue(a, "--cgroup"),
                                "--cgroup must be passed: the default would be the container's own cgroup")
        #expect(flag == cgroupPath || flag == cgroupPath + "/unified", "--cgroup \(flag) is not the mounted host cgroup2 \(cgroupPath)")

        let run = try #require(mounts.first { $0.hostPath == "/run/veer" }, "veerd does not mount the host's /run/veer")
        #expect(run.mount["mountPath"] as? String == "/run/veer" && run.mount["readOnly"] as? Bool != true)

        // Socket termination finds the pods' network namespaces where the runtime pins them.
        if pod.spec["hostPID"] as? Bool != true {
            let netns = try #require(mounts.first { $0.hostPath == "/run/netns" },
                                     "without hostPID, veerd must mount the host's /run/netns to reach pods' network namespaces")
            #expect(netns.mount["mountPath"] as? String == "/run/netns")
            #expect(netns.mount["mountPropagation"] as? String == "HostToContainer", "new pods' netns pins must appear")
        }
    }

    @Test("veerd runs as root with exactly CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN, or privileged")
    func privileges() throws {
        let veerd = try daemonSetPod().container("veerd")
        let sc = dict(veerd["securityContext"])
        #expect(sc["runAsUser"] as? Int ?? 0 == 0, "veerd checks for uid 0")
        if sc["privileged"] as? Bool == true { return }
        let caps = dict(sc["capabilities"])
        #expect(strings(caps["drop"]) == ["ALL"])
        #expect(Set(strings(caps["add"])) == ["BPF", "NET_ADMIN", "SYS_ADMIN"])
        #expect(dict(sc["appArmorProfile"])["type"] as? String == "Unconfined",
                "the runtime's default AppArmor profile denies creating pins below /sys/fs")
    }

    @Test("The metrics address, port and probe agree; /metrics is not on 0.0.0.0")
    func metricsPort() throws {
        let veerd = try daemonSetPod().container("veerd")
        let address = try #require(flagValue(args(veerd), "--metrics-address"))
        let port = try #require(Int(address.split(separator: ":").last ?? ""))
        #expect(!address.hasPrefix("0.0.0.0:"), "/metrics names every service and pod on the node")
        #expect(list(veerd["ports"]).contains { $0["containerPort"] as? Int == port })
        let probe = dict(dict(veerd["readinessProbe"])["httpGet"])
        #expect(probe["port"] as? Int == port && probe["path"] as? String == "/readyz")
    }

    @Test("Every --flag in the DaemonSet and in the systemd unit is a flag of the built veerd")
    func flagsExist() throws {
        let known = try veerdFlags("run")
        #expect(known.contains("--manifests") && known.contains("--node-name"), "could not parse veerd run --help: \(known)")

        for directory in ["deploy", overlayExample] {
            let veerd = try daemonSetPod(directory).container("veerd")
            #expect(strings(veerd["command"]).first == "veerd")
            let used = flagNames(in: args(veerd))
            #expect(!used.isEmpty)
            for flag in used { #expect(known.contains(flag), "DaemonSet (\(directory)): veerd has no flag \(flag)") }
        }

        let unit = try text("deploy/veerd.service")
        let execLines = unit.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { $0.hasPrefix("ExecStart=") || $0.hasPrefix("#ExecStart=") }
        #expect(execLines.contains { $0.hasPrefix("ExecStart=") })
        for line in execLines {
            let words = line.split(separator: " ").map(String.init)
            #expect(words.first?.hasSuffix("/veerd") == true, "\(line)")
            for flag in flagNames(in: words) { #expect(known.contains(flag), "veerd.service: veerd has no flag \(flag) in \(line)") }
        }
    }
}

// MARK: - The systemd unit

@Suite("deploy/veerd.service")
struct SystemdUnitTests {
    /// key → values, over every section; comments skipped.
    private func unit() throws -> [String: [String]] {
        var result: [String: [String]] = [:]
        for raw in try text("deploy/veerd.service").split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard !line.isEmpty, !line.hasPrefix("#"), !line.hasPrefix(";"), !line.hasPrefix("["),
                  let eq = line.firstIndex(of: "=") else { continue }
            result[String(line[..<eq]), default: []].append(String(line[line.index(after: eq)...]))
        }
        return result
    }

    @Test("Reads manifests or the API, restarts always, and stopping never uninstalls")
    func lifecycle() throws {
        let u = try unit()
        let start = try #require(u["ExecStart"]?.first)
        #expect(u["ExecStart"]?.count == 1)
        #expect(start.contains("--manifests /etc/veer/manifests") || start.contains("--kubeconfig"))
        #expect(u["Restart"] == ["always"])
        for key in ["ExecStop", "ExecStopPost", "ExecReload"] {
            #expect(u[key] == nil, "\(key): stopping veerd must leave the datapath serving")
        }
        for (key, values) in u where key.hasPrefix("Exec") {
            #expect(!values.contains { $0.contains("uninstall") }, "\(key) uninstalls the datapath")
        }
        #expect(u["KillSignal"] ?? ["SIGTERM"] == ["SIGTERM"])
    }

    @Test("Capabilities: exactly CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN and CAP_SYS_PTRACE")
    func capabilities() throws {
        let u = try unit()
        func caps(_ key: String) -> Set<String> {
            Set((u[key] ?? []).flatMap { $0.split(separator: " ").map(String.init) })
        }
        #expect(caps("CapabilityBoundingSet") == ["CAP_BPF", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"])
        #expect(caps("AmbientCapabilities").isSubset(of: caps("CapabilityBoundingSet")))
        #expect((u["User"] ?? ["root"]) == ["root"], "veerd checks for uid 0")
        // /sys must stay writable for pins on bpffs.
        #expect(u["ProtectKernelTunables"] == nil && u["ProtectSystem"] != ["strict"])
    }
}

// MARK: - docs/operations.md against the code

@Suite("docs/operations.md")
struct OperationsDocTests {
    /// `| `name` | type | labels | ... |` rows of the metrics table.
    private func documentedMetrics() throws -> [String: (type: String, labels: Set<String>)] {
        var result: [String: (String, Set<String>)] = [:]
        for line in try text("docs/operations.md").split(separator: "\n") where line.hasPrefix("| `veer_") {
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count > 3 else { continue }
            let name = cells[1].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
            let labels = Set(cells[3].split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " `")) }
                .filter { !$0.isEmpty && $0 != "—" && $0 != "-" })
            result[name] = (cells[2], labels)
        }
        return result
    }

    /// Every `out.family("veer_…", .type` in the agent, with the label names of its samples.
    private func emittedMetrics() throws -> [String: (type: String, labels: Set<String>)] {
        // The agent's metrics, and those its extensions write (health checks, the address table).
        let source = try ["AgentMetrics.swift", "HitSeries.swift", "HealthChecks.swift", "UnusedAddresses.swift", "SourceRangeSync.swift"]
            .map { try text("Sources/VeerAgent/\($0)") }.joined(separator: "\n")
        let family = try Regex(#"out\.family\("(veer_[a-z_]+)",\s*\.(counter|gauge|histogram)"#)
        let sample = try Regex(#"out\.sample\("(veer_[a-z_]+)",\s*([^\n]*)"#)
        let quotedKey = try Regex(#""([a-z_]+)":"#)
        let zipKeys = try Regex(#"zip\(([a-zA-Z]+),"#)
        var result: [String: (String, Set<String>)] = [:]
        for m in source.matches(of: family) {
            result[String(m.output[1].substring ?? "")] = (String(m.output[2].substring ?? ""), [])
        }
        for m in source.matches(of: sample) {
            let name = String(m.output[1].substring ?? ""), rest = String(m.output[2].substring ?? "")
            var labels = Set(rest.matches(of: quotedKey).map { String($0.output[1].substring ?? "") })
            // Labels given as `zip(someKeys, values)`: read `let someKeys = [...]`.
            if let z = rest.firstMatch(of: zipKeys),
               let keys = source.firstMatch(of: try Regex("let \(z.output[1].substring ?? "") = \\[([^\\]]*)\\]")) {
                labels.formUnion(String(keys.output[1].substring ?? "").split(separator: ",")
                    .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " \"")) })
            }
            result[name]?.1.formUnion(labels)
        }
        // Labels declared in a table the writer builds its label text from (HitSeries.swift):
        // `"veer_…": ["label", …]` rows.
        for row in source.matches(of: try Regex(#""(veer_[a-z_]+)":\s*\[([^\]]*)\]"#)) {
            let name = String(row.output[1].substring ?? "")
            result[name]?.1.formUnion(String(row.output[2].substring ?? "").matches(of: try Regex(#""([a-z_]+)""#))
                .map { String($0.output[1].substring ?? "") })
        }
        // Families declared in a table and written in a loop: `("veer_…", "help", …)` rows,
        // then `out.family(name, .type, …)` and `out.sample(name, [labels], …)`.
        if let loop = source.firstMatch(of: try Regex(#"out\.family\(name,\s*\.(counter|gauge|histogram)"#)) {
            let type = String(loop.output[1].substring ?? "")
            var labels = Set<String>()
            if let sample = source.firstMatch(of: try Regex(#"out\.sample\(name,\s*\[([^\]]*)\]"#)) {
                labels = Set(String(sample.output[1].substring ?? "").matches(of: quotedKey).map { String($0.output[1].substring ?? "") })
            }
            for row in source.matches(of: try Regex(#"\("(veer_[a-z_]+)",\s*""#)) {
                result[String(row.output[1].substring ?? "")] = (type, labels)
            }
        }
        return result
    }

    @Test("Every metric in the docs is emitted by the agent, and every emitted metric is documented, with its type and labels")
    func metricsMatchSource() throws {
        let documented = try documentedMetrics(), emitted = try emittedMetrics()
        #expect(emitted.count >= 10, "could not read the metric families from the agent: \(emitted.keys.sorted())")
        #expect(Set(documented.keys) == Set(emitted.keys), """
            documented, not emitted: \(Set(documented.keys).subtracting(emitted.keys).sorted()); \
            emitted, not documented: \(Set(emitted.keys).subtracting(documented.keys).sorted())
            """)
        for (name, doc) in documented {
            guard let code = emitted[name] else { continue }
            #expect(doc.type == code.type, "\(name): documented as \(doc.type), emitted as \(code.type)")
            #expect(doc.labels == code.labels, "\(name): documented labels \(doc.labels.sorted()), emitted \(code.labels.sorted())")
        }
    }

    @Test("Bad values of the health and address flags stop veerd with a message naming the flag, before it touches anything", arguments: [
        (["--service-cidr", "10.96.0.0/33"], "--service-cidr 10.96.0.0/33 is not a CIDR"),
        (["--service-cidr", "10.96.0.0"], "--service-cidr 10.96.0.0 is not a CIDR"),
        (["--healthz-bind-address", "10256"], "--healthz-bind-address must be HOST:PORT"),
        (["--healthz-bind-address", "0.0.0.0:99999"], "--healthz-bind-address must be HOST:PORT"),
        (["--healthz-timeout", "0"], "--healthz-timeout must be a positive number of seconds"),
    ])
    func badFlagValues(_ flags: [String], _ message: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try veerdBinary())
        // A manifest directory that does not exist: validation must fail before anything is read.
        process.arguments = ["run", "--manifests", "/nonexistent-veer-\(getpid())"] + flags
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus != 0)
        #expect(text.contains(message), "\(text)")
    }

    @Test("Every veerd flag is documented, and every documented flag exists")
    func flagsMatchHelp() throws {
        let known = try veerdFlags("run").union(try veerdFlags("uninstall"))
        let doc = try text("docs/operations.md")
        var documented = Set<String>()
        for line in doc.split(separator: "\n") where line.hasPrefix("| `--") {
            let cell = line.split(separator: "|")[0].trimmingCharacters(in: CharacterSet(charactersIn: " `"))
            documented.insert(String(cell.split(separator: " ")[0]))
        }
        #expect(documented == known, """
            in --help, not documented: \(known.subtracting(documented).sorted()); \
            documented, not in --help: \(documented.subtracting(known).sorted())
            """)
    }

    /// The stored properties of `struct NAME` in a source file (multi-line or one-line bodies).
    private func fields(of name: String, in source: String) throws -> [String] {
        let body = try #require(source.firstMatch(of: try Regex("struct \(name): [^{]*\\{([^}]*)\\}")),
                                "struct \(name) not found")
        return String(body.output[1].substring ?? "").matches(of: try Regex(#"var ([a-zA-Z]+):"#))
            .map { String($0.output[1].substring ?? "") }
    }

    @Test("veerctl services -o json: the documented keys are exactly the encoded fields")
    func servicesJSONDocumented() throws {
        let source = try text("Sources/VeerModel/Inspection.swift")
        let expected = Set(try fields(of: "FrontendRow", in: source).filter { $0 != "backends" } + ["backends"]
            + (try fields(of: "BackendRow", in: source)).map { "backends[].\($0)" })
        let doc = try text("docs/operations.md")
        let start = try #require(doc.range(of: "`veerctl services -o json`: an array of frontends."))
        let end = try #require(doc.range(of: "`veerctl backends -o json`", range: start.upperBound..<doc.endIndex))
        var documented = Set<String>()
        for line in doc[start.upperBound..<end.lowerBound].split(separator: "\n") where line.hasPrefix("| `") {
            let keyCell = line.split(separator: "|")[0]
            documented.formUnion(keyCell.matches(of: try Regex("`([a-zA-Z\\[\\].]+)`")).map { String($0.output[1].substring ?? "") })
        }
        #expect(documented == expected, """
            encoded, not documented: \(expected.subtracting(documented).sorted()); \
            documented, not encoded: \(documented.subtracting(expected).sorted())
            """)
    }

    @Test("veerctl backends, stats and sockets -o json: every encoded key is in the docs")
    func otherJSONDocumented() throws {
        let source = try text("Sources/veerctl/VeerCtl.swift")
        let doc = try text("docs/operations.md")
        var keys: [String] = []
        for row in source.matches(of: try Regex(#"struct (Row|Report|MapFill): Codable \{([^}]*)\}"#)) {
            keys += String(row.output[2].substring ?? "").matches(of: try Regex(#"var ([a-zA-Z]+):"#))
                .map { String($0.output[1].substring ?? "") }
        }
        #expect(keys.count >= 10, "could not read the JSON rows of VeerCtl.swift: \(keys)")
        for key in keys { #expect(doc.contains("\"\(key)\":"), "-o json key \(key) is not documented") }
    }

    @Test("Every datapath counter (veerctl stats, veer_datapath_events_total) is documented")
    func countersDocumented() throws {
        let source = try text("Sources/VeerDatapath/MapLayout.swift")
        let names = source.matches(of: try Regex(#"case \.[a-zA-Z]+: "([a-z_]+)""#)).map { String($0.output[1].substring ?? "") }
        #expect(names.count >= 6, "could not read DatapathStat names: \(names)")
        let doc = try text("docs/operations.md")
        for name in names { #expect(doc.contains("| `\(name)` |"), "counter \(name) is not in the counters table") }
    }
}
