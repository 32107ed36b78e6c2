import Foundation
import Glibc
import Testing
import VeerDatapath
import VeerModel
import VeerTestSupport

// The image `make image` builds, run with podman as the DaemonSet runs it: the same command,
// capabilities, read-only root and mounts, but in the test's sandbox network namespace (never
// the host's, never pulling), attached to the sandbox's child cgroup and pinning under its
// own directory. The container is removed by name even when the test fails, before the
// sandbox is torn down.

private let repoRoot = KernelSandbox.repoRoot

/// The OCI archive: $VEER_IMAGE_ARCHIVE (set by `make test`), else where `make image` writes it.
private let archive = ProcessInfo.processInfo.environment["VEER_IMAGE_ARCHIVE"] ?? "\(repoRoot)/.build/veer-image.oci.tar"

/// Why the image tests cannot run here, or nil. A missing archive is a skip only outside
/// `make test`: there (VEER_IMAGE_ARCHIVE set) it is a failure.
private let unavailable: String? = {
    if let r = KernelSandbox.unavailableReason { return r }
    for tool in ["podman", "curl", "nsenter"] where KernelSandbox.run(["sh", "-c", "command -v \(tool)"]).status != 0 {
        return "\(tool) missing: run `make test` (it installs podman)"
    }
    if ProcessInfo.processInfo.environment["VEER_IMAGE_ARCHIVE"] == nil && access(archive, R_OK) != 0 {
        return "no image at \(archive): run `make image` (or `make test`, which builds it)"
    }
    return nil
}()

/// The revision the image must say it was built from: what `make` wrote, else git's HEAD.
private let expectedRevision: String? = {
    if let r = ProcessInfo.processInfo.environment["VEER_GIT_REVISION"] { return r }
    let git = KernelSandbox.run(["git", "-C", repoRoot, "rev-parse", "HEAD"])
    return git.status == 0 ? git.stdout.trimmingCharacters(in: .whitespacesAndNewlines) : nil
}()

/// runc where it is installed: crun (podman's default in Debian 12) refuses a host whose cgroups
/// are hybrid with a controller on the cgroup2 hierarchy ("cgroups in hybrid mode not
/// supported"), as this machine's are; runc runs there, and on a cgroup v2 host alike.
private let runtime: [String] = KernelSandbox.run(["sh", "-c", "command -v runc"]).status == 0 ? ["--runtime", "runc"] : []

private func podman(_ args: [String]) -> (status: Int32, stdout: String, stderr: String) {
    KernelSandbox.run(["podman"] + runtime + args)
}

/// podman's default limits (nofile 1048576) are above what a root without CAP_SYS_RESOURCE, as
/// in a CI container, may set, and the container would not start: ask for this process's own.
private let limits: [String] = {
    var nofile = rlimit(), nproc = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &nofile)
    getrlimit(Int32(__RLIMIT_NPROC.rawValue), &nproc)  // RLIMIT_NPROC is a macro Swift does not import
    let files = min(nofile.rlim_max, 1_048_576), procs = min(nproc.rlim_max, 32768)
    return ["--ulimit", "nofile=\(files):\(files)", "--ulimit", "nproc=\(procs):\(procs)"]
}()

/// Every container of this test process goes under a cgroup parent of its own, in every
/// hierarchy: podman's default (cgroupfs manager) is `libpod_parent`, shared and never removed.
/// `withImage` removes it once its containers are gone.
private let cgroupParent = "veer-img-\(getpid())"
private let containerOptions = limits + ["--cgroup-parent", "/\(cgroupParent)"]

/// The cgroup parent's directories, children first, in every cgroup hierarchy mounted (v1
/// controllers and v2 alike). Only empty cgroups can be removed, so a live container's stay.
private func removeCgroupParent() {
    let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
    for line in mounts.split(separator: "\n") {
        let f = line.split(separator: " ")
        guard f.count >= 3, f[2] == "cgroup" || f[2] == "cgroup2" else { continue }
        let top = "\(f[1])/\(cgroupParent)"
        guard let found = FileManager.default.enumerator(atPath: top) else { continue }
        var dirs: [String] = []
        while let sub = found.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: "\(top)/\(sub)", isDirectory: &isDir), isDir.boolValue { dirs.append("\(top)/\(sub)") }
        }
        for dir in dirs.sorted(by: { $0.count > $1.count }) + [top] { _ = rmdir(dir) }
    }
}

/// The image's ID, read from the archive itself (the digest of its config, which podman uses
/// as the ID): never a name, which another run's `podman load` could move to another image.
private func archiveImageID() throws -> String {
    func member(_ path: String) throws -> [String: Any] {
        let r = KernelSandbox.run(["tar", "-xOf", archive, path])
        guard r.status == 0, let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else {
            throw SandboxError("\(archive): cannot read \(path): \(r.stderr)")
        }
        return json
    }
    func blob(_ digest: Any?) throws -> [String: Any] {
        guard let d = digest as? String, d.hasPrefix("sha256:") else { throw SandboxError("\(archive): bad digest \(digest ?? "nil")") }
        return try member("blobs/sha256/\(d.dropFirst("sha256:".count))")
    }
    let index = try member("index.json")
    let manifest = try blob(((index["manifests"] as? [[String: Any]])?.first)?["digest"])
    guard let config = (manifest["config"] as? [String: Any])?["digest"] as? String else { throw SandboxError("\(archive): no config") }
    return String(config.dropFirst("sha256:".count))
}

/// Loads the archive into podman's storage for `body`, and removes it afterwards unless it was
/// there before (someone's own `podman load`).
private func withImage<T>(_ body: (String) throws -> T) throws -> T {
    let id = try archiveImageID()
    let existed = podman(["image", "exists", id]).status == 0
    if !existed {
        let load = podman(["load", "--quiet", "--input", archive])
        guard load.status == 0 else { throw SandboxError("podman load -i \(archive): \(load.stderr)") }
    }
    defer {
        removeCgroupParent()
        if !existed { _ = podman(["image", "rm", id]) }
    }
    try #require(podman(["image", "exists", id]).status == 0, "podman load did not store image \(id)")
    return try body(id)
}

/// Runs a container to completion with no network at all, removed afterwards.
private func runOnce(_ image: String, _ name: String, _ options: [String], _ command: [String]) -> (status: Int32, stdout: String, stderr: String) {
    defer { _ = podman(["rm", "--force", "--ignore", "--time", "0", name]) }
    return podman(["run", "--rm", "--pull=never", "--network=none", "--name", name] + containerOptions + options + [image] + command)
}

/// The metric names the dashboard's queries use, with a histogram's series folded into its family.
private func dashboardMetrics() throws -> Set<String> {
    let json = try String(contentsOfFile: "\(repoRoot)/deploy/grafana/veer.json", encoding: .utf8)
    var names = Set<String>()
    for line in json.split(separator: "\n") where line.contains("\"expr\"") || line.contains("label_values(") {
        for m in line.matches(of: #/\bveer_[a-z_]+/#) {
            var name = String(m.output)
            for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) { name = String(name.dropLast(suffix.count)) }
            names.insert(name)
        }
    }
    return names
}

@Suite("make image", .serialized, .disabled(if: unavailable != nil, Comment(rawValue: "skipped: \(unavailable ?? "")")))
struct ImageTests {
    @Test("The image runs veerctl and veerd --version, says its revision in labels, and is at most 60 MB")
    func versionAndLabels() throws {
        let revision = try #require(expectedRevision, "no git revision to compare with (set VEER_GIT_REVISION)")
        try withImage { image in
            let name = "veer-t\(getpid())-version"
            for binary in ["veerctl", "veerd"] {
                let r = runOnce(image, name, ["--read-only"], [binary, "--version"])
                #expect(r.status == 0, "\(binary) --version in the image: \(r.stderr)")
                #expect(r.stdout.contains("(git \(revision))"), "\(binary) --version says \(r.stdout), not revision \(revision)")
            }
            let inspect = podman(["image", "inspect", "--format", "{{json .Labels}}", image])
            let labels = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: String], "\(inspect.stdout)")
            #expect(labels["org.opencontainers.image.revision"] == revision, "\(labels)")
            #expect(labels["org.opencontainers.image.version"]?.isEmpty == false, "\(labels)")
            #expect(labels["org.opencontainers.image.source"]?.hasPrefix("https://") == true, "\(labels)")
            let size = try #require(try FileManager.default.attributesOfItem(atPath: archive)[.size] as? Int)
            #expect(size <= 60_000_000, "the archive is \(size / 1_000_000) MB")
        }
    }

    @Test("The DaemonSet's init container command mounts bpffs with the image's own sh, grep and mount")
    func initContainerMountsBPFFS() throws {
        // In the container's own mount namespace (privileged, as the init container is; no
        // volume, so nothing propagates to the host), where /sys/fs/bpf starts empty.
        let daemonSet = try String(contentsOfFile: "\(repoRoot)/deploy/daemonset.yaml", encoding: .utf8)
        let command = try #require(daemonSet.firstMatch(of: #/command: \["/bin/sh", "-c", "(.+)"\]/#).map { String($0.output.1) },
                                   "no /bin/sh -c command in deploy/daemonset.yaml")
        try withImage { image in
            let r = runOnce(image, "veer-t\(getpid())-init", ["--privileged"],
                            ["/bin/sh", "-c", "\(command) && grep ' /sys/fs/bpf bpf ' /proc/mounts"])
            #expect(r.status == 0, "the init container's command failed in the image: \(r.stderr)")
            #expect(r.stdout.contains("/sys/fs/bpf bpf"), "no bpffs mounted: \(r.stdout)")
        }
    }

    @Test("veerd from the image, run as the DaemonSet runs it, serves the demo's Service to a client in the sandbox; /metrics has every metric of the dashboard")
    func veerdServesTheDemo() throws {
        let cgroup2 = try #require(SystemCheck.cgroup2Mount())
        try withImage { img in
            try KernelSandbox.run { sb in
                // The demo's three web pods (examples/demo/manifests), served in the sandbox.
                let pods = ["10.244.1.11": "web-a", "10.244.2.12": "web-b", "10.244.3.13": "web-c"]
                try sb.addAddresses(Array(pods.keys))
                for (ip, pod) in pods { try sb.startServer(.tcp, ip, 8080, reply: pod) }

                let manifests = NSTemporaryDirectory() + "\(sb.name)-manifests"
                try? FileManager.default.removeItem(atPath: manifests)
                try FileManager.default.copyItem(atPath: "\(repoRoot)/examples/demo/manifests", toPath: manifests)
                defer { try? FileManager.default.removeItem(atPath: manifests) }
                try FileManager.default.createDirectory(atPath: "/run/veer", withIntermediateDirectories: true)

                let name = "\(sb.name)-veerd"
                // The DaemonSet's securityContext and volumes (deploy/daemonset.yaml), translated:
                // capabilities, read-only root, AppArmor unconfined, seccomp as kubelet's default
                // (Unconfined), hostPath mounts with HostToContainer (rslave) propagation.
                let log = NSTemporaryDirectory() + "\(name).log"
                FileManager.default.createFile(atPath: log, contents: nil)
                defer { try? FileManager.default.removeItem(atPath: log) }
                // Attached (not --detach), as VeerdTests runs veerd: the log goes to a file, and
                // `podman rm --force` below ends both the container and this podman.
                let container = Process()
                container.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                container.arguments = ["podman"] + runtime + [
                    "run", "--rm", "--pull=never", "--name", name,
                ] + containerOptions + [
                    "--network", "ns:\(sb.netnsPath)",
                    "--user", "0", "--cap-drop", "ALL", "--cap-add", "CAP_BPF,CAP_NET_ADMIN,CAP_SYS_ADMIN",
                    "--security-opt", "no-new-privileges", "--security-opt", "apparmor=unconfined",
                    "--security-opt", "seccomp=unconfined", "--read-only",
                    "--volume", "/sys/fs/bpf:/sys/fs/bpf:rslave",
                    "--volume", "\(cgroup2):/host/sys/fs/cgroup:ro,rslave",
                    "--volume", "/run/veer:/run/veer",
                    "--volume", "/run/netns:/run/netns:ro,rslave",
                    "--volume", "\(manifests):/etc/veer/manifests:ro",
                    img,
                    "veerd", "--manifests", "/etc/veer/manifests", "--node-name", "node-a",
                    "--cgroup", "/host/sys/fs/cgroup/\(sb.name)", "--bpffs", sb.pins.root,
                    "--metrics-address", "127.0.0.1:9965", "--log-level", "info",
                ]
                container.standardInput = FileHandle.nullDevice
                container.standardOutput = FileHandle(forWritingAtPath: log)
                container.standardError = FileHandle(forWritingAtPath: log)
                try container.run()
                // Removed by name whatever happens below, before the sandbox is torn down.
                defer {
                    _ = podman(["rm", "--force", "--ignore", "--time", "5", name])
                    if container.isRunning { kill(container.processIdentifier, SIGKILL) }
                    container.waitUntilExit()
                }
                func logs() -> String { "--- podman run and veerd log:\n" + ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "") }

                // Programmed: the web Service's ClusterIP has its three endpoints in the maps.
                let web = try #require(L4Address("10.96.0.10:80/tcp"))
                do { try waitFor("veerd in the container to program 10.96.0.10:80", timeout: 60) {
                    guard container.isRunning else { throw SandboxError("podman run exited") }
                    let state = try Datapath(pins: sb.pins).readState()
                    return state.masters[web].map { Int($0.count) } == 3
                } } catch { Issue.record("\(error)\n\(logs())"); return }

                // A client in the sandbox (its cgroup, its namespace) reaches the Service through it.
                let results = try sb.client(["tcp", "10.96.0.10", "80", "60"])
                #expect(results.count == 60 && results.allSatisfy(\.ok), "\(results.filter { !$0.ok }.prefix(5))\n\(logs())")
                let served = Set(results.map(\.reply))
                #expect(served.isSubset(of: Set(pods.values)) && served.count >= 2, "served by \(served)")

                // veerctl in the image reads the same pins.
                let ctl = podman(["exec", name, "veerctl", "services", "--bpffs", sb.pins.root])
                #expect(ctl.status == 0 && ctl.stdout.contains("default/web"), "\(ctl.stdout)\(ctl.stderr)")

                // A live scrape of the container's veerd, from inside the sandbox's namespace.
                let scrape = KernelSandbox.run(["nsenter", "--net=\(sb.netnsPath)", "curl", "-sf", "--max-time", "5",
                                                "http://127.0.0.1:9965/metrics"])
                try #require(scrape.status == 0, "scrape failed: \(scrape.stderr)")
                let exported = Set(scrape.stdout.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }
                    .map { String($0.split(separator: " ")[2]) })
                let used = try dashboardMetrics()
                #expect(used.count >= 10, "could not read the dashboard's metrics: \(used)")
                #expect(used.subtracting(exported).isEmpty, "the dashboard uses metrics veerd does not export: \(used.subtracting(exported).sorted())")
                #expect(scrape.stdout.contains("veer_endpoint_hits_total{namespace=\"default\",service=\"web\""), "no hits counted")
            }
        }
    }
}
