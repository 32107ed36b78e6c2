/// What the maps should serve, kept per service so that a change costs in proportion to the
/// services it touches: each service's own selection and the services claiming each frontend
/// address. The winner at an address (by `DesiredFrontend.precedes`, the rule `Selector.merge`
/// applies) is found from those when asked (`desired(_:)`): nearly every address has one
/// claimant, and a table of winners held every frontend a second time (17 MB at 100,000
/// services). Pure; the agent keeps one and hands the planner the addresses
/// whose winner changed, with the programmed frontends sharing a backend with them (found by
/// the maps' backend ids in `IndexedMapState`, not by a table of backend addresses here).
public struct FrontendIndex: Sendable {
    /// Per service, before cross-service claims are resolved.
    public private(set) var selections: [ObjectKey: SelectionResult] = [:]
    /// Services whose selection has a frontend at this address, keyed by its cluster scope: an
    /// external-scope entry belongs to whichever service wins the address itself.
    private var claims: [L4Address: CompactSet<ObjectKey>] = [:]

    public init() {}

    /// Every service anew (a full sync). `merged` is `Selector.merge` of the selections, which
    /// the caller has computed for its plan already.
    public init(selections: [ObjectKey: SelectionResult], merged: SelectionResult) {
        self.selections = selections
        // Sized up front: growing these tables a step at a time was a tenth of a large sync.
        claims.reserveCapacity(merged.frontends.count)
        for (key, result) in selections {
            for f in result.frontends { claims[f.address.scoped(.cluster), default: CompactSet()].insert(key) }
        }
    }

    /// The winning frontend at this address: what the maps should serve there.
    public func desired(_ address: L4Address) -> DesiredFrontend? {
        var ignored: [SkipReason] = []
        return winner(at: address, skipped: &ignored)
    }

    /// Every address with its winning frontend, in no order.
    public func forEachDesired(_ body: (L4Address, DesiredFrontend) throws -> Void) rethrows {
        for (base, _) in claims {
            guard let f = desired(base) else { continue }
            try body(base, f)
            let external = base.scoped(.external)
            if let e = selections[f.service.serviceKey]?.frontends.first(where: { $0.address == external }) { try body(external, e) }
        }
    }

    /// The services whose selection has a frontend at this address (or at its cluster scope).
    public func claimants(of address: L4Address) -> [ObjectKey] {
        (claims[address.scoped(.cluster)] ?? CompactSet()).sorted()
    }

    /// The whole selection, claims resolved.
    public var merged: SelectionResult { Selector.merge(selections.sorted { $0.key < $1.key }.map(\.value)) }

    /// Replaces these services' selections (nil: the service is gone). Returns the frontend
    /// addresses to plan: those the services had or have, those in `recheck` (e.g. frontends of
    /// services a plan rejected, which may fit now), and every frontend sharing a backend with
    /// one whose winner changed (the subset planner's precondition); and the skip reasons that
    /// are new.
    ///
    /// The sharing frontends are the programmed ones, from `programmed` (what the maps hold): the
    /// precondition is about the backend entries' flags, which only programmed frontends set. A
    /// desired frontend not programmed is either changed here or rejected (and in `recheck`).
    public mutating func update(_ changes: [(key: ObjectKey, selection: SelectionResult?)],
                                recheck: Set<L4Address> = [],
                                programmed: IndexedMapState) -> (changed: Set<L4Address>, skipped: [SkipReason]) {
        // The addresses the services had or have, and their winners before the change.
        var changed = recheck
        for (key, new) in changes {
            for f in selections[key]?.frontends ?? [] { changed.insert(f.address) }
            for f in new?.frontends ?? [] { changed.insert(f.address) }
        }
        // An external-scope entry follows the owner of its address: when that changes hands, the
        // new owner's entry (or none, for an eTP=Cluster owner) replaces the old one's.
        changed.formUnion(changed.filter { $0.scope == .cluster }.map { $0.scoped(.external) })
        let before = changed.map { desired($0) }
        var skipped: [SkipReason] = []
        for (key, new) in changes {
            let old = selections[key]
            selections[key] = new
            for f in old?.frontends ?? [] {
                let base = f.address.scoped(.cluster)
                claims[base]?.remove(key)
                if claims[base]?.isEmpty == true { claims[base] = nil }
            }
            for f in new?.frontends ?? [] { claims[f.address.scoped(.cluster), default: CompactSet()].insert(key) }
            let before = Set(old?.skipped ?? [])
            skipped += (new?.skipped ?? []).filter { !before.contains($0) }
        }
        var sharing = Set<L4Address>()
        for (address, old) in zip(changed, before) {
            let new = winner(at: address, skipped: &skipped)
            guard old != new else { continue }
            for b in old?.backends ?? [] { sharing.formUnion(programmed.frontends(usingBackend: b.address)) }
            for b in new?.backends ?? [] { sharing.formUnion(programmed.frontends(usingBackend: b.address)) }
        }
        return (changed.union(sharing), skipped)
    }

    /// The frontend that serves this address among the services claiming it; the losers are
    /// reported as skipped. An external-scope address goes with the winner of its cluster-scope
    /// address.
    private func winner(at address: L4Address, skipped: inout [SkipReason]) -> DesiredFrontend? {
        let base = address.scoped(.cluster)
        guard let claimers = claims[base] else { return nil }
        // One claimant (nearly every address): its first frontend there, no merge.
        if claimers.count == 1, let key = claimers.first(where: { _ in true }) {
            guard let winning = selections[key]?.frontends.first(where: { $0.address == base }) else { return nil }
            guard address.scope != .cluster else { return winning }
            return selections[key]?.frontends.first { $0.address == address }
        }
        let claimants = claimers.sorted().compactMap { key -> SelectionResult? in
            guard let r = selections[key], let i = r.frontends.firstIndex(where: { $0.address == base }) else { return nil }
            return SelectionResult(frontends: [r.frontends[i]], decisions: r.decisions.isEmpty ? [] : [r.decisions[i]])
        }
        var winning = claimants.first?.frontends.first
        if claimants.count > 1 {
            let merged = Selector.merge(claimants)
            if address.scope == .cluster { skipped += merged.skipped }
            winning = merged.frontends.first
        }
        guard let winning, address.scope != .cluster else { return winning }
        return selections[winning.service.serviceKey]?.frontends.first { $0.address == address }
    }
}
