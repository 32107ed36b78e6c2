import VeerModel

/// What a sync changed, as log lines: one per frontend programmed or removed, one per new skip
/// reason; nothing at steady state.
enum SyncLog {
    static func lines(_ plan: Plan, skipped: [SkipReason], desired: [L4Address: DesiredFrontend]) -> [String] {
        var lines: [String] = []
        var touched = Set<L4Address>()
        var removed = Set<L4Address>()
        for op in plan.operations {
            switch op {
            case let .upsertMaster(a, _), let .upsertSlot(a, _, _, _), let .deleteSlot(a, _): touched.insert(a)
            case let .deleteMaster(a): removed.insert(a)
            default: break
            }
        }
        for address in touched.subtracting(removed).sorted() {
            guard let f = desired[address], plan.target.masters[address] != nil else { continue }
            let backends = f.backends.isEmpty ? "no endpoints (\(f.whenEmpty == .drop ? "drop" : "reject"))"
                : f.backends.map { $0.podName ?? $0.address.description }.sorted().joined(separator: ", ")
            lines.append("programmed \(f.service) \(f.kind.rawValue) \(address) → \(backends)")
        }
        for address in removed.sorted() { lines.append("removed frontend \(address)") }
        for s in Set(skipped.map { "\($0)" }).sorted() { lines.append("skipped \(s)") }
        return lines
    }
}
