import Foundation
import Glibc
import Testing
import VeerDatapath
import VeerTestSupport

/// `make demo` is the first thing a newcomer runs: its steps run here too, so it cannot
/// silently rot. The script itself fails loudly when a step does not show what it claims.
@Suite("make demo")
struct DemoTests {
    static let unavailable: String? = {
        if let r = KernelSandbox.unavailableReason { return r }
        for tool in ["dnsmasq", "dig", "curl", "nsenter"] where KernelSandbox.run(["sh", "-c", "command -v \(tool)"]).status != 0 {
            return "\(tool) missing: run `make test`"
        }
        if access("\(KernelSandbox.veerBinaries)/veerd", X_OK) != 0 { return "veerd not built: run `make test`" }
        return nil
    }()

    @Test("The demo shows (a)–(g) and cleans up after itself",
          .disabled(if: unavailable != nil, Comment(rawValue: "skipped: \(unavailable ?? "")")))
    func demoRuns() throws {
        let script = "\(KernelSandbox.repoRoot)/examples/demo/run.sh"
        let r = KernelSandbox.run(["env", "VEER_BIN=\(KernelSandbox.veerBinaries)", "VEER_PROBE=\(KernelSandbox.probe)",
                                   "VEER_BPF_OBJECT=\(KernelSandbox.bpfObject)", script])
        #expect(r.status == 0, "demo failed:\n\(r.stdout)\n\(r.stderr)")
        for step in ["(a) 100 requests", "(b) web-b's readiness", "(c) Topology-aware hints", "(d) DNS through",
                     "(e) What the kernel holds", "(f) From outside the node", "(g) Tearing everything down", "Done."] {
            #expect(r.stdout.contains(step), "missing step \(step)")
        }
        #expect(r.stdout.contains("100 web-a"), "zone hints keep all 100 in zone-a")
        // (f): the script checks each claim itself and fails otherwise; these are what a reader sees.
        #expect(r.stdout.contains("front-b saw 192.168.50.11"), "eTP=Cluster masquerades to node-1")
        #expect(r.stdout.contains("mario 192.168.50.200:"), "eTP=Local: mario sees the outside client's own address")
        #expect(r.stdout.contains("curl exit 28"), "eTP=Local: the node without an endpoint drops silently")
        #expect(r.stdout.contains("\"localEndpoints\": 1") && r.stdout.contains("HTTP 200"), "node-2's health check: 200, one endpoint")
        #expect(r.stdout.contains("\"localEndpoints\": 0") && r.stdout.contains("HTTP 503"), "node-1's health check: 503, none")
        #expect(r.stdout.contains("node-1: veer_endpoint_hits_total"), "per-pod hit counters of node-1")
        // Nothing of the demo's is left behind.
        let leftovers = ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/bpf")) ?? [])
            .filter { $0.hasPrefix("veer-demo-") }
        #expect(leftovers.isEmpty, "pins left: \(leftovers)")
        #expect(!KernelSandbox.run(["ip", "netns", "list"]).stdout.contains("veer-demo-"))
        let cgroups = ((try? FileManager.default.contentsOfDirectory(atPath: SystemCheck.cgroup2Mount() ?? "/sys/fs/cgroup")) ?? [])
            .filter { $0.hasPrefix("veer-demo-") }
        #expect(cgroups.isEmpty, "cgroups left: \(cgroups)")
    }
}
