import Foundation
import Logging
import Testing
import VeerAgent
import VeerDatapath
import VeerKube
import VeerModel
import VeerTestSupport

// Golden scripts (golden/*.txt): Services, EndpointSlices and Nodes in real YAML go through
// the agent's own loop; after each step the maps are dumped as `veerctl services` prints them
// (without hit counts, backends sorted) and compared with the script. Each script runs:
//   - against maps in memory;
//   - with every step's documents in reverse order (a slice before its service, …);
//   - with 10% of map writes failing: the agent's retries must reach the same dump;
//   - against the kernel's maps, as root (skipped with a reason elsewhere).
// VEER_GOLDEN_UPDATE=1 rewrites the expected dumps from the in-memory run, for review in git diff.
//
// A script: `#` lines describe it; `> apply` is followed by YAML; `> delete KIND NAMESPACE/NAME`
// (`NAME` for a Node); `> expect` is followed by the dump; `> capacities services=N backends=N
// rev_nat=N members=N` sizes the maps and `> service-cidrs CIDR…` gives --service-cidr (both
// before the first step). The node is `node-a`. After the services table the dump lists the
// address table (ClusterIPs refused on unexposed ports, service CIDRs dropped) and the
// loadBalancerSourceRanges table by frontend, when they hold anything.

private let goldenDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("golden").path
private let updating = ProcessInfo.processInfo.environment["VEER_GOLDEN_UPDATE"] == "1"

struct GoldenScript: CustomStringConvertible, Sendable {
    enum Command: Sendable {
        case apply(String)
        case delete(ResourceKind, namespace: String, name: String)
        case expect(String)
        case capacities(MapCapacities)
        case serviceCIDRs([IPPrefix])
    }
    let name: String
    let preamble: [String]
    /// Each command with its header line, for rewriting the file.
    let commands: [(header: String, command: Command)]
    var description: String { name }

    init(name: String, text: String) throws {
        self.name = name
        var preamble: [String] = []
        var blocks: [(String, [String])] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("> ") { blocks.append((line, [])) } else if blocks.isEmpty { preamble.append(line) } else { blocks[blocks.count - 1].1.append(line) }
        }
        self.preamble = preamble
        commands = try blocks.map { header, body in
            let words = header.dropFirst(2).split(separator: " ").map(String.init)
            let text = body.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
            switch words.first {
            case "apply": return (header, .apply(text))
            case "expect": return (header, .expect(text))
            case "delete":
                guard words.count == 3, let kind = ResourceKind(rawValue: words[1]) else { throw SandboxError("\(name): bad \(header)") }
                let parts = words[2].split(separator: "/").map(String.init)
                return (header, .delete(kind, namespace: parts.count == 2 ? parts[0] : "", name: parts.last!))
            case "service-cidrs":
                let prefixes = words.dropFirst().compactMap { IPPrefix($0) }
                guard prefixes.count == words.count - 1 else { throw SandboxError("\(name): bad \(header)") }
                return (header, .serviceCIDRs(prefixes))
            case "capacities":
                var v: [String: Int] = [:]
                for w in words.dropFirst() {
                    let kv = w.split(separator: "=")
                    guard kv.count == 2, let n = Int(kv[1]) else { throw SandboxError("\(name): bad \(header)") }
                    v[String(kv[0])] = n
                }
                guard let s = v["services"], let b = v["backends"], let r = v["rev_nat"], let m = v["members"] else {
                    throw SandboxError("\(name): capacities needs services, backends, rev_nat and members")
                }
                return (header, .capacities(MapCapacities(services: s, backends: b, revNat: r, members: m)))
            default: throw SandboxError("\(name): unknown command \(header)")
            }
        }
    }

    var capacities: MapCapacities {
        for case let .capacities(c) in commands.map(\.command) { return c }
        return defaultCapacities
    }

    /// The file with these dumps in place of its expect bodies.
    func rewritten(with dumps: [String]) -> String {
        var out = preamble
        var next = dumps.makeIterator()
        for (header, command) in commands {
            out.append(header)
            switch command {
            case let .apply(text): out.append(text)
            case .expect: out.append(next.next() ?? "")
            default: break
            }
        }
        return out.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines) + "\n"
    }

    static func all() -> [GoldenScript] {
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: goldenDirectory)) ?? []).filter { $0.hasSuffix(".txt") }.sorted()
        return files.map { file in
            let text = (try? String(contentsOfFile: "\(goldenDirectory)/\(file)", encoding: .utf8)) ?? ""
            return (try? GoldenScript(name: String(file.dropLast(4)), text: text)) ?? GoldenScript(broken: file)
        }
    }

    private init(broken file: String) {
        name = "\(file) (does not parse)"
        preamble = []
        commands = []
    }
}

enum GoldenMode: Sendable { case memory, reversed, faulty, kernel }

/// veerd's own defaults; a script that tests a full map names its small capacities. The kernel
/// mode pays nothing for the size: the agent-written maps allocate entries as they are used.
private let defaultCapacities = MapCapacities.compiledDefaults

/// Runs a script in one mode and returns the dumps at its expect steps.
private func run(_ script: GoldenScript, _ mode: GoldenMode, maps: (MapCapacities) throws -> any MapStore) async throws -> [String] {
    let store = try maps(script.capacities)
    var config = AgentConfiguration(nodeName: "node-a", pins: PinLayout(root: "/nonexistent"))
    for case let .serviceCIDRs(c) in script.commands.map(\.command) { config.serviceCIDRs = c }
    config.writesStateFiles = false
    config.terminateProtocols = []
    config.retryDelay = .milliseconds(2)
    var logger = Logger(label: "golden")
    logger.logLevel = .critical
    let agent = Agent(config: config, maps: store, logger: logger)
    for kind in ResourceKind.allCases { await agent.ingest(.replaceAll(kind, [])) }
    await agent.ingest(.synced)
    var dumps: [String] = []
    for (_, command) in script.commands {
        switch command {
        case let .apply(yaml):
            let parsed = ManifestParser.parse(Data(yaml.utf8), origin: script.name)
            #expect(parsed.errors.isEmpty, "\(script.name): \(parsed.errors)")
            // A step's documents arrive together; which of them fits a full map must not depend
            // on when the loop happens to run between them.
            await agent.ingest(mode == .reversed ? parsed.events.reversed() : parsed.events)
        case let .delete(kind, namespace, name):
            await agent.ingest(.delete(kind, namespace: namespace, name: name))
        case .expect:
            dumps.append(await settledDump(agent, store, expected: mode == .faulty ? expectedDump(script, at: dumps.count) : nil))
        case .capacities, .serviceCIDRs:
            break
        }
    }
    return dumps
}

private func expectedDump(_ script: GoldenScript, at index: Int) -> String? {
    script.commands.compactMap { if case let .expect(text) = $0.command { text } else { nil } }.dropFirst(index).first
}

/// The dump once the agent is idle. With failing writes, idle is not converged (a retry is
/// on a timer): wait until the dump is the expected one, or give up and return what is there.
private func settledDump(_ agent: Agent, _ store: any MapStore, expected: String?) async -> String {
    try? await waitFor("the expected dump", timeout: 20, every: .milliseconds(2)) {
        await agent.waitUntilIdle()
        guard let expected else { return true }
        return await dump(agent, store) == expected
    }
    return await dump(agent, store)
}

private func dump(_ agent: Agent, _ store: any MapStore) async -> String {
    let state = (try? store.readState()) ?? MapState()
    var text = Inspection(state: state, names: await agent.programmedNames).servicesTable(showHits: false)
    for r in await agent.rejectedServices { text += "\nrejected \(r.service): \(r.reason)" }
    // The address table: its entries carry no ids, so they print as they are.
    let addresses = ((try? store.readServiceAddresses()) ?? []).sorted()
    if !addresses.isEmpty { text += "\naddresses: " + addresses.map(\.description).joined(separator: ", ") }
    // The source-range table is keyed by frontend id, which depends on the order of writes:
    // print each entry under its frontend's address.
    var ranges: [String: [String]] = [:]
    for e in (try? store.readSourceRanges()) ?? [] {
        let frontend = state.revNat[e.revNatID]?.description ?? "rev_nat \(e.revNatID) (no frontend)"
        let client: String
        switch e.prefix?.description {
        case nil: client = "*"
        case "0.0.0.0/32": client = "unbound host socket"
        case "0.0.0.1/32": client = "unbound pod socket"
        case let p?: client = p
        }
        ranges[frontend, default: []].append("\(client) \(e.allow ? "allow" : "deny")")
    }
    for (frontend, entries) in ranges.sorted(by: { $0.key < $1.key }) {
        text += "\nsource ranges \(frontend): " + entries.sorted().joined(separator: ", ")
    }
    return text
}

private func expects(_ script: GoldenScript) -> [String] {
    script.commands.compactMap { if case let .expect(text) = $0.command { text } else { nil } }
}

private func compare(_ script: GoldenScript, _ mode: GoldenMode, _ dumps: [String]) {
    for (k, (got, want)) in zip(dumps, expects(script)).enumerated() where got != want {
        Issue.record("\(script.name) [\(mode)] expect #\(k + 1):\n--- got\n\(got)\n--- want\n\(want)")
    }
}

// One script at a time: 120 agents syncing at once (retrying every 2 ms under injected faults)
// would hold the test runner's two threads long enough to starve the async suites beside them.
@Suite("Golden scripts", .serialized)
struct GoldenScriptTests {
    @Test("there are golden scripts, each parses and expects something")
    func scriptsExist() {
        let scripts = GoldenScript.all()
        #expect(scripts.count >= 25)
        for s in scripts { #expect(!expects(s).isEmpty, "\(s.name) has no expect step") }
    }

    @Test("in memory, as written (VEER_GOLDEN_UPDATE=1 rewrites the expected dumps)", arguments: GoldenScript.all())
    func memory(_ script: GoldenScript) async throws {
        let dumps = try await run(script, .memory) { MemoryMapStore(capacities: $0) }
        if updating {
            try script.rewritten(with: dumps).write(toFile: "\(goldenDirectory)/\(script.name).txt", atomically: true, encoding: .utf8)
        } else {
            compare(script, .memory, dumps)
        }
    }

    @Test("in memory, each step's documents in reverse order", arguments: GoldenScript.all())
    func reversed(_ script: GoldenScript) async throws {
        compare(script, .reversed, try await run(script, .reversed) { MemoryMapStore(capacities: $0) })
    }

    @Test("in memory, 10% of map writes failing: retries converge to the same dumps", arguments: GoldenScript.all())
    func faulty(_ script: GoldenScript) async throws {
        // A seed per script, the same every run.
        let seed = script.name.utf8.reduce(UInt64(5381)) { $0 &* 33 &+ UInt64($1) }
        let store = MemoryMapStore(failureRate: 0.1, seed: seed)
        let dumps = try await run(script, .faulty) { caps in
            caps == defaultCapacities ? store : MemoryMapStore(capacities: caps, failureRate: 0.1, seed: seed)
        }
        compare(script, .faulty, dumps)
        let writes = store.writes
        if writes.attempted >= 30 { #expect(writes.failed > 0, "\(script.name): \(writes.attempted) writes and none failed") }
    }

    // One at a time, loads off the test runner's threads: 28 BPF loads at once would starve
    // the async suites running beside this one.
    @Test("against the kernel's maps", .serialized, .disabled(if: KernelSandbox.unavailableReason != nil,
                                                               Comment(rawValue: "skipped: \(KernelSandbox.unavailableReason ?? "")")),
          arguments: GoldenScript.all())
    func kernel(_ script: GoldenScript) async throws {
        try await KernelSandbox.runAsync { sb in
            let (cgroup, pins, capacities) = (sb.cgroup, sb.pins, script.capacities)
            let datapath = try await onThread {
                try Datapath.install(object: KernelSandbox.bpfObject, cgroup: cgroup, pins: pins, capacities: capacities)
            }
            compare(script, .kernel, try await run(script, .kernel) { _ in datapath })
        }
    }
}
