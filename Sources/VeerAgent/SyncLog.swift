import VeerModel

/// What a sync changed, as log lines: one per frontend programmed or removed, one per new skip
/// reason; nothing at steady state.
enum SyncLog {
    /// At most this many lines of a full sync are logged; an incremental sync logs all of its own.
    static let fullSyncLines = 200

    /// The lines, the first `limit` of them only, and how many more there were.
    static func lines(_ plan: Plan, skipped: [SkipReason], desired: (L4Address) -> DesiredFrontend?,
                      limit: Int = .max) -> (lines: [String], omitted: Int) {
        var changes = Changes()
        for op in plan.operations { changes.note(op) }
        return lines(changes, target: plan.target, skipped: skipped, desired: desired, limit: limit)
    }

    /// The frontends a plan's operations write or remove, noted as they are written.
    struct Changes {
        var touched = Set<L4Address>()
        var removed = Set<L4Address>()

        mutating func note(_ op: MapOperation) {
            switch op {
            case let .upsertMaster(a, _), let .upsertSlot(a, _, _, _), let .deleteSlot(a, _): touched.insert(a)
            case let .deleteMaster(a): removed.insert(a)
            default: break
            }
        }
    }

    static func lines(_ changes: Changes, target: MapState, skipped: [SkipReason], desired: (L4Address) -> DesiredFrontend?,
                      limit: Int = .max) -> (lines: [String], omitted: Int) {
        let (touched, removed) = (changes.touched, changes.removed)
        var lines: [String] = []
        var omitted = 0
        func add(_ line: @autoclosure () -> String) {
            if lines.count < limit { lines.append(line()) } else { omitted += 1 }
        }
        for address in touched.subtracting(removed).sorted() {
            guard let f = desired(address), target.masters[address] != nil else { continue }
            add("programmed \(f.service) \(f.kind.rawValue) \(address) → \(Self.backends(f))")
        }
        for address in removed.sorted() { add("removed frontend \(address)") }
        for s in Set(skipped.map { "\($0)" }).sorted() { add("skipped \(s)") }
        return (lines, omitted)
    }

    private static func backends(_ f: DesiredFrontend) -> String {
        f.backends.isEmpty ? "no endpoints (\(f.whenEmpty == .drop ? "drop" : "reject"))"
            : f.backends.map { $0.podName ?? $0.address.description }.sorted().joined(separator: ", ")
    }
}
