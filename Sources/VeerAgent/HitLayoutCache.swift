import Foundation
import VeerModel

/// What one incremental sync changed of what a `HitLayout` is built from: the backend ids whose
/// row may read differently (an entry written or deleted, or its names set again), and whether
/// the Service-port half may (a rev_nat entry written or deleted, or a frontend's names changed).
struct HitLayoutChange: Sendable, Equatable {
    var backendIDs: [UInt32] = []
    var ports = false

    init() {}

    /// The entries a plan writes and deletes, read before `programmed` (the running copy) applies
    /// it; `addresses` collects the backend addresses they hold (see `resolve(in:)`).
    init(_ operations: [MapOperation], before programmed: IndexedMapState, addresses: inout [L4Address]) {
        for op in operations {
            switch op {
            case let .upsertBackend(id, entry):
                backendIDs.append(id)
                addresses.append(entry.address)
            case let .deleteBackend(id):
                backendIDs.append(id)
                if let address = programmed.state.backends[id]?.address { addresses.append(address) }
            case .upsertRevNat, .deleteRevNat:
                ports = true
            default:
                break
            }
        }
    }

    /// Every backend id holding one of `addresses` now: a row without names of its own reads
    /// those of the lowest id holding its address (`ProgrammedNames.backend(id:at:)`), so its
    /// text changes with that id's names.
    mutating func resolve(_ addresses: [L4Address], in programmed: IndexedMapState) {
        for address in addresses { backendIDs.append(contentsOf: programmed.backendIDs(holding: address)) }
    }

    mutating func formUnion(_ other: HitLayoutChange) {
        backendIDs.append(contentsOf: other.backendIDs)
        ports = ports || other.ports
    }
}

/// The last scrape's `HitLayout`, kept for the next: keyed by `AgentCounters.programmedGeneration`,
/// which every sync bumps. Each sync says what it changed (`note`); a scrape at a later generation
/// takes the kept layout and patches the rows those syncs changed (`HitLayout.patch`) instead of
/// building it again: under churn (a change every 10 ms) every scrape used to rebuild it, most of a
/// scrape at 50,000 services. A full sync, or more changes than a patch is worth, drops it.
///
/// It is kept through syncs only while scrapes recur (two in a row at most `keptInterval`
/// apart, the last within twice their interval): it is about 160 bytes a backend (80 MB at
/// 50,000 × 10), which a scrape holds anyway at its peak, but which kept after a lone scrape
/// (or once the scrapes stop) raised the agent's RSS under churn by as much. Otherwise the first
/// sync after a scrape drops it and its memory is handed back, as before it was patched.
/// Owned by the agent: `note` runs on its actor, the rest on the scrapes' render threads.
final class HitLayoutCache: @unchecked Sendable {
    private let lock = NSLock()
    private var generation: UInt64 = 0
    private var layout: HitLayout?
    /// The changes of the syncs after `floor`, by generation: everything a layout built at
    /// `floor` or later needs to be brought up to a later generation.
    private var log: [(generation: UInt64, change: HitLayoutChange)] = []
    private var loggedIDs = 0
    private var floor: UInt64 = 0
    /// The generations of the layouts being built or patched now (a sync meanwhile logs for them).
    private var inFlight: [UInt64] = []
    private var builds = 0, patches = 0
    /// Backend ids logged past which the kept layout is dropped (a build costs about as much
    /// as patching this many rows, and the log stays small).
    static let patchLimit = 65_536
    /// The longest interval between scrapes that keeps a layout through syncs (Prometheus's
    /// default scrape interval is a minute).
    static let keptInterval = Duration.seconds(120)
    private let clock = ContinuousClock()
    private var lastScrape: ContinuousClock.Instant?
    private var scrapeInterval: Duration?
    private var onlyWhileScrapesRecur = true

    /// Keeps the layout through syncs whatever the scrapes' timing (a test's scrapes have none
    /// that means anything; it counts the patches).
    func keepThroughSyncs() { lock.withLock { onlyWhileScrapesRecur = false } }

    /// Whether the next scrape is due soon: the last two came at most `keptInterval` apart, and
    /// the last within twice that interval (and 5 s, for jitter) of `now`.
    private func scrapesRecur(_ now: ContinuousClock.Instant) -> Bool {
        guard onlyWhileScrapesRecur else { return true }
        guard let lastScrape, let scrapeInterval, scrapeInterval <= Self.keptInterval else { return false }
        return now - lastScrape <= scrapeInterval * 2 + .seconds(5)
    }

    /// Layouts built from scratch so far (a test's proof that a change did not rebuild it).
    var layoutsBuilt: Int { lock.withLock { builds } }
    /// Kept layouts patched for a later generation so far.
    var layoutsPatched: Int { lock.withLock { patches } }

    /// A sync at `generation` changed this (nil: anything; a full sync). Whether a kept layout
    /// was dropped (its memory is then worth handing back).
    @discardableResult
    func note(generation: UInt64, _ change: HitLayoutChange?) -> Bool {
        lock.withLock {
            let dropped: Bool
            if let change, layout != nil || !inFlight.isEmpty, loggedIDs + change.backendIDs.count <= Self.patchLimit,
               scrapesRecur(clock.now) {
                if change.ports || !change.backendIDs.isEmpty {
                    log.append((generation, change))
                    loggedIDs += change.backendIDs.count
                }
                return false
            } else if change != nil, layout == nil {
                // Nothing kept or on its way to be: nothing to patch later.
                dropped = false
            } else {
                dropped = layout != nil
                layout = nil
            }
            log = []
            loggedIDs = 0
            floor = generation
            return dropped
        }
    }

    /// The layout for `generation`: the kept one, the kept one patched (taken out of the cache
    /// for that, so it is not copied: a second scrape meanwhile builds its own), or one built
    /// now. Kept unless a newer one is. A stale layout is dropped before its successor is
    /// built, so the two are never held at once.
    func layout(generation: UInt64, mode: HitMetrics, build: () -> HitLayout,
                patch: (inout HitLayout, HitLayoutChange) -> Void) -> HitLayout {
        var base: HitLayout?
        var change = HitLayoutChange()
        let kept: HitLayout? = lock.withLock {
            let now = clock.now
            if let lastScrape { scrapeInterval = now - lastScrape }
            lastScrape = now
            if let layout, self.generation == generation, layout.mode == mode { return layout }
            if layout?.mode == mode, self.generation < generation, self.generation >= floor {
                base = layout
                for entry in log where entry.generation > self.generation && entry.generation <= generation {
                    change.formUnion(entry.change)
                }
            }
            if generation >= self.generation { layout = nil }
            inFlight.append(generation)
            return nil
        }
        if let kept { return kept }
        let patched = base != nil
        if base != nil { patch(&base!, change) }
        let fresh = base ?? build()
        base = nil
        lock.withLock {
            if patched { patches += 1 } else { builds += 1 }
            inFlight.remove(at: inFlight.firstIndex(of: generation)!)
            if generation >= floor, layout == nil || generation > self.generation {
                self.generation = generation
                layout = fresh
            }
            // Entries no layout kept or on its way needs any more.
            let needed = min(layout != nil ? self.generation : .max, inFlight.min() ?? .max)
            if needed == .max {
                log = []
                loggedIDs = 0
            } else if log.first.map({ $0.generation <= needed }) ?? false {
                log.removeAll { $0.generation <= needed }
                loggedIDs = log.reduce(0) { $0 + $1.change.backendIDs.count }
            }
        }
        return fresh
    }
}
