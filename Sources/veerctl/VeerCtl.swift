import ArgumentParser
import CVeerVersion
import Foundation
import VeerDatapath
import VeerModel

@main
struct VeerCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "veerctl",
        abstract: "Inspect Veer's BPF maps directly from their pins (works while veerd is down).",
        version: "\(String(cString: veer_version())) (git \(String(cString: veer_git_revision())))",
        subcommands: [Services.self, Backends.self, Stats.self, Sockets.self, Explain.self, Trace.self, Uninstall.self],
        defaultSubcommand: Services.self)
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

struct CommonOptions: ParsableArguments {
    @Option(help: "Root of Veer's pins on bpffs (the pin version directory is below it).")
    var bpffs = "/sys/fs/bpf/veer"

    @Option(name: .shortAndLong, help: "Output format: table or json.")
    var output: OutputFormat = .table

    var pins: PinLayout { PinLayout(root: bpffs) }

    func open() throws -> Datapath {
        guard geteuid() == 0 else { throw CtlError("veerctl reads BPF maps, which needs root (CAP_BPF): run it with sudo") }
        do { return try Datapath(pins: pins) } catch let error as DatapathError { throw CtlError(error.description) }
    }
}

/// A failure to report as it is: no usage text, exit status 1.
struct CtlError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

struct Services: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Frontends with their backends, pods and hit counts.")
    @OptionGroup var options: CommonOptions

    func run() throws {
        let inspection = try Inspection(datapath: options.open())
        if options.output == .json { return try printJSON(inspection.frontends) }
        print(inspection.servicesTable())
    }
}

struct Backends: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Backend entries and the frontends that use them.")
    @OptionGroup var options: CommonOptions

    struct Row: Codable { var id: UInt32; var address: String; var `protocol`: String; var terminating: Bool; var pod: String?; var zone: String?; var frontends: [String] }

    func run() throws {
        let inspection = try Inspection(datapath: options.open())
        var users: [UInt32: [String]] = [:]
        for f in inspection.frontends { for b in f.backends { users[b.id, default: []].append(f.frontend) } }
        let rows = inspection.state.backends.sorted { $0.key < $1.key }.map { id, be in
            let name = inspection.names.backend(be.address)
            return Row(id: id, address: be.address.hostPort, protocol: be.address.proto.description, terminating: be.flags & BackendEntry.flagTerminating != 0,
                       pod: name?.pod, zone: name?.zone, frontends: users[id] ?? [])
        }
        if options.output == .json { return try printJSON(rows) }
        print(renderTable(["ID", "BACKEND", "POD", "ZONE", "STATE", "FRONTENDS"], rows.map {
            ["\($0.id)", $0.address, $0.pod ?? "-", $0.zone ?? "-", $0.terminating ? "terminating" : "ready",
             $0.frontends.joined(separator: ",")]
        }))
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Datapath counters and map fill.")
    @OptionGroup var options: CommonOptions

    struct Report: Codable { var counters: [String: UInt64]; var maps: [MapFill]; var packetPath: [String: UInt64]? }
    struct MapFill: Codable { var map: String; var entries: Int; var capacity: Int }

    func run() throws {
        let dp = try options.open()
        let stats = try dp.stats()
        let packet = try PacketPath.pinnedStats(pins: options.pins)
        let report = Report(counters: Dictionary(uniqueKeysWithValues: stats.map { ($0.key.name, $0.value) }),
                            maps: try dp.fill().map { MapFill(map: $0.map, entries: $0.entries, capacity: $0.capacity) },
                            packetPath: packet.map { Dictionary(uniqueKeysWithValues: $0.map { ($0.key.name, $0.value) }) })
        if options.output == .json { return try printJSON(report) }
        print(renderTable(["COUNTER", "VALUE"], DatapathStat.allCases.map { [$0.name, "\(stats[$0] ?? 0)"] }))
        if let packet {
            print()
            print(renderTable(["PACKET PATH", "PACKETS"], PacketPathStat.allCases.map { [$0.name, "\(packet[$0] ?? 0)"] }))
        }
        print()
        print(renderTable(["MAP", "ENTRIES", "CAPACITY"], report.maps.map { [$0.map, "\($0.entries)", "\($0.capacity)"] }))
    }
}

struct Sockets: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Live translated sockets (reverse-translation entries).")
    @OptionGroup var options: CommonOptions

    struct Row: Codable { var cookie: UInt64; var frontend: String; var backend: String }

    func run() throws {
        let rows = try options.open().sockets().sorted { $0.cookie < $1.cookie }
            .map { Row(cookie: $0.cookie, frontend: $0.frontend.description, backend: $0.backend.description) }
        if options.output == .json { return try printJSON(rows) }
        print(renderTable(["COOKIE", "FRONTEND", "BACKEND"], rows.map { ["\($0.cookie)", $0.frontend, $0.backend] }))
    }
}

struct Explain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Why each endpoint is in or out of a service's frontends on this node, next to what the kernel holds.",
        discussion: """
            SERVICE is namespace/name or namespace/name:port; FRONTEND is ip:port or ip:port/proto. veerd makes the \
            decisions when asked, on its socket veerd.sock in the state directory; while veerd is down, explain shows \
            the decisions it saved when it stopped (decisions.json), and says so.
            """)
    @OptionGroup var options: CommonOptions

    @Argument(help: "namespace/name[:port] or ip:port[/proto]")
    var target: String

    func run() throws {
        let dp = try options.open()
        guard DecisionQuery(target) != nil else { throw CtlError("\(target): expected namespace/name, namespace/name:port or ip:port[/proto]") }
        let asked = try ExplainedDecisions(query: target, pins: options.pins)
        let explanation = Explanation(query: target, decisions: asked.decisions, state: try dp.readState())
        if explanation.frontends.isEmpty && explanation.skipped.isEmpty {
            throw CtlError("nothing on node \(explanation.node) matches \(target); `veerctl services` lists what is programmed")
        }
        if options.output == .json {
            // The JSON stays the documented Explanation; the note goes beside it.
            if let note = asked.note { FileHandle.standardError.write(Data((note + "\n").utf8)) }
            return try printJSON(explanation)
        }
        if let note = asked.note { print(note) }
        print(explanation.text, terminator: "")
    }
}

/// Set from a signal handler: a C function pointer cannot capture.
nonisolated(unsafe) var traceStopRequested: sig_atomic_t = 0

struct Trace: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stream translations as they happen (Ctrl-C stops). The programs write events only while a tracer runs.")
    @OptionGroup var options: CommonOptions

    @Option(help: "Only this service: namespace/name or namespace/name:port.")
    var service: String?

    @Option(help: "Only connections to this pod.")
    var pod: String?

    @Option(help: "Stop after this many events.")
    var count: Int?

    @Option(help: "Stop after this many seconds.")
    var duration: Double?

    struct Line: Codable {
        var time: String; var pid: UInt32; var command: String; var netnsCookie: UInt64
        var `protocol`: String; var frontend: String; var service: String?
        var verdict: String; var backend: String?; var pod: String?
    }

    func run() throws {
        let dp = try options.open()
        let tracer: Tracer
        do { tracer = try Tracer(pins: options.pins) } catch let e as DatapathError { throw CtlError(e.description) }
        let names = NamesFile.read(pins: options.pins) ?? ProgrammedNames()
        let droppedBefore = try dp.stats()[.traceDropped] ?? 0
        signal(SIGINT) { _ in traceStopRequested = 1 }
        signal(SIGTERM) { _ in traceStopRequested = 1 }
        try tracer.setEnabled(true)
        defer { try? tracer.setEnabled(false) }

        let started = Date()
        var shown = 0
        let formatter = DateFormatter()
        formatter.dateFormat = "HH:mm:ss.SSS"
        var mono = timespec()
        while traceStopRequested == 0 {
            if let duration, Date().timeIntervalSince(started) >= duration { break }
            for event in tracer.poll(timeoutMS: 100) {
                let fname = names.frontend(event.frontend)
                let serviceName = fname.map { $0.port.isEmpty ? "\($0.namespace)/\($0.service)" : "\($0.namespace)/\($0.service):\($0.port)" }
                let podName = event.backend.flatMap { names.backend($0)?.pod }
                if let service, serviceName != service, serviceName?.hasPrefix(service + ":") != true { continue }
                if let pod, podName != pod { continue }
                clock_gettime(CLOCK_MONOTONIC, &mono)
                let ageNS = Double(UInt64(mono.tv_sec) * 1_000_000_000 + UInt64(mono.tv_nsec)) - Double(event.timestampNS)
                let line = Line(time: formatter.string(from: Date().addingTimeInterval(-ageNS / 1e9)), pid: event.pid,
                                command: event.command, netnsCookie: event.netnsCookie,
                                protocol: event.frontend.proto.description,
                                frontend: event.frontend.hostPort, service: serviceName,
                                verdict: event.verdict.rawValue,
                                backend: event.backend?.hostPort, pod: podName)
                if options.output == .json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                    print(String(decoding: try encoder.encode(line), as: UTF8.self))
                } else {
                    let to = line.backend.map { "→ \($0)\(line.pod.map { " (\($0))" } ?? "")" }
                        ?? (line.verdict == "refused" ? "refused (no endpoints: ECONNREFUSED)" : "dropped (no local endpoint: ETIMEDOUT)")
                    print("\(line.time) \(line.command)[\(line.pid)] \(line.protocol) \(line.frontend)\(line.service.map { " (\($0))" } ?? "") \(to)")
                }
                shown += 1
                if let count, shown >= count { traceStopRequested = 1; break }
            }
            fflush(nil) // all streams: lines reach a pipe as they happen
        }
        let dropped = (try dp.stats()[.traceDropped] ?? 0) - droppedBefore
        if dropped > 0 {
            FileHandle.standardError.write(Data("veerctl: \(dropped) events were dropped: the ring buffer was full\n".utf8))
        }
    }
}

struct Uninstall: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Detach Veer's programs and remove every pin. Service traffic stops being translated.")
    @OptionGroup var options: CommonOptions
    @Flag(help: "Uninstall even while a veerd runs for these pins.")
    var force = false

    func run() throws {
        if !force, let holder = AgentLock.holder(options.pins) {
            throw CtlError("veerd (\(holder)) is running for \(options.pins.directory): stop it first, or pass --force (it would keep running with nothing attached)")
        }
        do {
            // The packet path first: its filters read the maps about to be unpinned.
            let detached = PacketPath.detachAll()
            if !detached.isEmpty { NATHooks.remove() }
            let removed = try Datapath.uninstall(pins: options.pins)
            print(removed ? "removed the datapath pinned at \(options.pins.directory)" : "nothing pinned at \(options.pins.directory)")
            if !detached.isEmpty { print("removed the packet path from \(detached.joined(separator: ", "))") }
        } catch let error as DatapathError {
            throw CtlError(error.description)
        }
    }
}
