import Foundation

/// What `veerctl` shows, built from what the maps hold and the names of what was programmed.
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

    public init(state: MapState, hits: [FrontendBackend: UInt64] = [:], names: ProgrammedNames) {
        self.state = state
        self.hits = hits
        self.names = names
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

extension Inspection {
    /// `veerctl services`: one line per frontend. Without hits (`showHits: false`) and with
    /// backends sorted by address, it depends only on what the maps serve, not on the order
    /// of writes: the golden scripts compare it.
    public func servicesTable(showHits: Bool = true) -> String {
        var table: [[String]] = []
        for f in frontends {
            let backends = showHits ? f.backends : f.backends.sorted { ($0.pod ?? $0.address, $0.address) < ($1.pod ?? $1.address, $1.address) }
            let list = backends.isEmpty
                ? (f.whenEmpty == "drop" ? "(none: dropped, Local set empty)" : "(none: refused)")
                : backends.map { b in
                    "\(b.pod ?? b.address)\(b.state == "terminating" ? " (terminating)" : "")\(showHits ? "=\(b.hits)" : "")"
                }.joined(separator: " ")
            var notes: [String] = []
            if let t = f.affinityTimeoutSeconds { notes.append("affinity \(t)s") }
            notes += f.problems
            table.append([f.service ?? "-", f.kind ?? "-", f.frontend, list, notes.joined(separator: "; ")])
        }
        return renderTable(["SERVICE", "KIND", "FRONTEND", showHits ? "BACKENDS (hits)" : "BACKENDS", "NOTES"], table)
    }
}

/// One (frontend, backend) address pair: what a hit counter counts.
public struct FrontendBackend: Hashable, Sendable {
    public var frontend: L4Address
    public var backend: L4Address

    public init(frontend: L4Address, backend: L4Address) {
        self.frontend = frontend
        self.backend = backend
    }
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
