import Foundation
import VeerModel

/// `veerctl explain`: for each frontend of a service (or one frontend), what the agent decided
/// and why, next to what the kernel holds now. `-o json` prints this as it is.
public struct Explanation: Codable, Sendable {
    public struct Kernel: Codable, Sendable {
        /// Backends in the maps for this frontend, "ip:port".
        public var backends: [String]
        /// Whether a master entry exists at all.
        public var programmed: Bool
        /// Decided in, but not in the maps.
        public var missing: [String]
        /// In the maps, but not decided in.
        public var unexpected: [String]
        public var matches: Bool { programmed && missing.isEmpty && unexpected.isEmpty }
    }

    public struct Frontend: Codable, Sendable {
        public var decision: FrontendDecision
        public var kernel: Kernel
    }

    public var node: String
    public var zone: String?
    public var frontends: [Frontend]
    public var skipped: [SkipReason]

    /// `query`: "namespace/name", "namespace/name:port" or a frontend "ip:port[/proto]".
    public init(query: String, decisions: SavedDecisions, state: MapState) {
        node = decisions.node
        zone = decisions.zone
        // Filtered again: a decisions.json holds every service's.
        let query = DecisionQuery(query)
        let chosen = query.map { q in decisions.decisions.filter(q.matches) } ?? []
        frontends = chosen.map { d in
            let decided = Set(d.endpoints.filter(\.included).map(\.endpoint))
            var inKernel: [String] = []
            let programmed = d.address.flatMap { state.masters[$0] } != nil
            if let address = d.address {
                for id in (state.slots[address] ?? [:]).values {
                    if let be = state.backends[id]?.address { inKernel.append(be.hostPort) }
                }
            }
            return Frontend(decision: d, kernel: Kernel(
                backends: inKernel.sorted(), programmed: programmed,
                missing: decided.subtracting(inKernel).sorted(), unexpected: Set(inKernel).subtracting(decided).sorted()))
        }
        skipped = query.map { q in decisions.skipped.filter(q.matches) } ?? []
    }

    /// The text veerctl prints.
    public var text: String {
        var out: [String] = []
        if frontends.isEmpty && skipped.isEmpty {
            return "nothing on node \(node) matches; `veerctl services` lists what is programmed\n"
        }
        for s in skipped { out.append("SKIPPED \(s.kind) \(s.object): \(s.reason)") }
        for f in frontends {
            let d = f.decision
            out.append("")
            out.append("\(d.service)\(d.port.isEmpty ? "" : ":\(d.port)") \(d.kind) \(d.frontend) on node \(node)\(zone.map { " (zone \($0))" } ?? "")")
            out.append("  set:       \(d.set.rawValue) — \(d.setReason)")
            if let t = d.topology { out.append("  topology:  \(t.mode.rawValue) — \(t.reason)") }
            if let timeout = d.affinityTimeout { out.append("  affinity:  ClientIP, \(timeout)s, per client network namespace (this node's clients) or source address (outside clients)") }
            if d.backends == 0 {
                let what = d.whenEmpty == "drop" ? "dropped (connect fails with ETIMEDOUT)" : "refused (ECONNREFUSED)"
                out.append("  empty:     clients are \(what)\(d.emptyReason.map { " — \($0)" } ?? "")")
            }
            out.append(renderTable(["  ENDPOINT", "POD", "NODE", "VERDICT", "RULE", "WHY"], d.endpoints.map { e in
                ["  \(e.endpoint)", e.pod ?? "-", e.node ?? "-", e.included ? "in" : "out", e.rule.rawValue, e.reason]
            }))
            if f.kernel.matches {
                out.append("  kernel:    matches the decision (\(f.kernel.backends.count) backends)")
            } else if !f.kernel.programmed {
                out.append("  kernel:    DIFFERS: this frontend is not in the maps")
            } else {
                out.append("  kernel:    DIFFERS: \(f.kernel.backends.count) backends in the maps"
                    + (f.kernel.missing.isEmpty ? "" : "; decided but missing: \(f.kernel.missing.joined(separator: ", "))")
                    + (f.kernel.unexpected.isEmpty ? "" : "; in the maps but not decided: \(f.kernel.unexpected.joined(separator: ", "))"))
            }
        }
        return out.joined(separator: "\n") + "\n"
    }
}
