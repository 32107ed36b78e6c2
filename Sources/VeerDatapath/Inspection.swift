import Foundation
import VeerModel

/// What `veerctl` shows, built from the pinned maps (and the names file beside them).
/// Rows are Codable: `-o json` prints them as they are.
public struct Inspection: Sendable {
    public struct BackendRow: Codable, Hashable, Sendable {
        public var id: UInt32
        public var slot: UInt16
        /// "ip:port"; the protocol is the frontend's.
        public var address: String
        /// "ready" or "terminating" (chosen through the serving+terminating fallback).
        public var state: String
        public var pod: String?
        public var zone: String?
        public var hits: UInt64
    }

    public struct FrontendRow: Codable, Hashable, Sendable {
        public var frontend: String
        public var service: String?
        public var kind: String?
        public var revNatID: UInt32
        /// "reject" or "drop" when there are no backends, else nil.
        public var whenEmpty: String?
        public var affinityTimeoutSeconds: UInt32?
        public var backends: [BackendRow]
        /// Master count and slots disagree (never expected; a sign of a torn write).
        public var problems: [String]
    }

    public var state: MapState
    public var hits: [FrontendBackend: UInt64]
    public var names: ProgrammedNames

    public init(datapath: Datapath) throws {
        state = try datapath.readState()
        hits = try datapath.hitsByAddress(state)
        names = NamesFile.read(pins: datapath.pins) ?? ProgrammedNames()
    }

    public var frontends: [FrontendRow] {
        state.masters.keys.sorted().map { address in
            let master = state.masters[address]!
            let slots = state.slots[address] ?? [:]
            var problems: [String] = []
            let rows: [BackendRow] = slots.keys.sorted().compactMap { slot in
                let id = slots[slot]!
                guard let be = state.backends[id] else {
                    problems.append("slot \(slot) names missing backend \(id)")
                    return nil
                }
                if slot > master.count { problems.append("slot \(slot) beyond count \(master.count)") }
                let name = names.backend(be.address)
                return BackendRow(id: id, slot: slot, address: be.address.hostPort,
                                  state: be.flags & BackendEntry.flagTerminating != 0 ? "terminating" : "ready",
                                  pod: name?.pod, zone: name?.zone,
                                  hits: hits[FrontendBackend(frontend: address, backend: be.address)] ?? 0)
            }
            if rows.count < master.count { problems.append("count \(master.count) but \(rows.count) slots") }
            let name = names.frontend(address)
            return FrontendRow(
                frontend: address.description,
                service: name.map { $0.port.isEmpty ? "\($0.namespace)/\($0.service)" : "\($0.namespace)/\($0.service):\($0.port)" },
                kind: name?.kind, revNatID: master.revNatID,
                whenEmpty: master.count > 0 ? nil : (master.flags & MasterEntry.flagEmptyDrop != 0 ? "drop" : "reject"),
                affinityTimeoutSeconds: master.flags & MasterEntry.flagAffinity != 0 ? master.affinityTimeout : nil,
                backends: rows, problems: problems)
        }
    }
}

/// names.json: written by the agent, read by anyone. bpffs holds only pinned objects, so
/// it lives in a state directory that mirrors the pin path under /run/veer and, like the
/// pins, does not survive a reboot.
public enum NamesFile {
    public static func directory(_ pins: PinLayout) -> String { "/run/veer\(pins.directory)" }
    public static func path(_ pins: PinLayout) -> String { "\(directory(pins))/names.json" }

    public static func read(pins: PinLayout) -> ProgrammedNames? {
        readState(ProgrammedNames.self, from: path(pins))
    }

    public static func write(_ names: ProgrammedNames, pins: PinLayout) throws {
        try writeState(names, to: path(pins), pins: pins)
    }
}

/// Reads one JSON state file; nil when it is missing or unreadable (veerctl then shows addresses).
func readState<T: Decodable>(_ type: T.Type, from path: String) -> T? {
    guard let data = FileManager.default.contents(atPath: path) else { return nil }
    return try? JSONDecoder().decode(type, from: data)
}

/// Writes one JSON state file into the state directory: to a temporary file, then renamed,
/// so a reader (veerctl) never sees half a file.
func writeState<T: Encodable>(_ value: T, to path: String, pins: PinLayout) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let data = try encoder.encode(value)
    try ensureStateDirectory(pins)
    let tmp = path + ".tmp"
    // Root-only, like the pins: the names say which pods serve what.
    guard FileManager.default.createFile(atPath: tmp, contents: data, attributes: [.posixPermissions: 0o600]) else {
        throw DatapathError.syscall(operation: "write \(tmp)", errno: errno)
    }
    guard rename(tmp, path) == 0 else { throw DatapathError.syscall(operation: "rename \(tmp)", errno: errno) }
}

/// Plain aligned columns, like kubectl's.
public func renderTable(_ header: [String], _ rows: [[String]]) -> String {
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i] + 2, withPad: " ", startingAt: 0) }
            .joined().replacingOccurrences(of: " +$", with: "", options: .regularExpression)
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}
