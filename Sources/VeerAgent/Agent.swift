import Foundation
import Logging
import VeerDatapath
import VeerKube
import VeerModel

/// The reconcile loop: source events update the store; after the first full list every
/// change re-selects the services it touches, plans their frontends against the agent's
/// copy of what the maps hold, and writes the difference.
///
/// The first sync, a change of this node, and a sync after a failed write re-select
/// everything and plan in full (after a failure, against the maps read back). Every other
/// sync costs in proportion to the services it touches, not to the services there are.
///
/// Events that arrive while a sync runs are coalesced into the next one, so churn costs
/// one sync per burst while a lone change reaches the maps at once.
public actor Agent {
    /// The maps: the kernel's (`Datapath`, installed by the daemon) or a test's in memory.
    public let maps: any MapStore
    /// Frontends for clients outside the node (tc), installed by the daemon; nil when off.
    public let packetPath: PacketPath?
    public let config: AgentConfiguration
    let logger: Logger
    private let clock = ContinuousClock()

    private(set) var store = ServiceStore()
    private(set) var dirty = false
    private(set) var syncing = false
    private var retryScheduled = false
    private var pendingSince: ContinuousClock.Instant?
    /// The names behind the programmed addresses. After the first full sync its backend rows are
    /// by the maps' ids, resolved by the running copy's index of them (`names`).
    private var storedNames = ProgrammedNames()
    private var namesByMapIDs = false
    /// The running copy while a full sync replaces it or after a failed write: its ids are
    /// still those the names' rows were set by.
    private var namesIndex: IndexedMapState?
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []

    // Incremental state. `running` is what the maps hold, kept with every write; nil: read
    // them back (at start, and after a failed write left them in an unknown prefix).
    private(set) var running: IndexedMapState?
    private var needsFullSync = true
    private var pendingServices: Set<ObjectKey> = []
    /// Each service's selection and the winner at each frontend address.
    private(set) var index = FrontendIndex()
    /// Services a plan rejected (a map full), by service.
    private var rejections: [ObjectKey: PlanRejection] = [:]
    /// names.json is written off the reconcile loop, the latest state winning: at 10,000
    /// services encoding it costs more than a change's whole sync.
    var filesDirty = false
    var writingFiles = false
    /// A full sync's transient memory (the plan's parts, the selections' working sets, the
    /// first names.json's parts) goes back to the system once that file is written: glibc kept
    /// it, free, and veerd's RSS at 10,000 services stayed 7 MB higher (StateFileWriter.swift).
    var heapRelease = HeapReleaseAfterFiles.none

    var counters = AgentCounters()
    /// The scrapes' hit layout, kept and patched across syncs (HitLayoutCache.swift).
    let hitLayouts = HitLayoutCache()
    /// EndpointSlice last-change-trigger-times waiting for the sync that writes them.
    private var pendingTriggers: [Date] = []
    private var apiStatistics: (@Sendable () -> [ResourceKind: KubeAPISource.Statistics])?
    private var events: KubeEventRecorder?
    /// kube-proxy's /healthz state; the daemon serves it (ProxyHealthServer.swift).
    public let proxyHealth: ProxyHealth
    /// The healthCheckNodePort servers and what they should serve (HealthChecks.swift).
    var healthChecks = HealthCheckState()
    /// The ClusterIPs in use and what the service_ips trie holds (UnusedAddresses.swift).
    var serviceAddresses = ServiceAddressState()
    /// A sync has written the maps since start: the address table may be written outside one.
    var programmed = false
    /// loadBalancerSourceRanges entries as programmed (SourceRangeSync.swift).
    var sourceRanges = SourceRangeState()

    /// Posts Events on this node's Node object (API source only).
    public func recordEvents(with recorder: KubeEventRecorder) {
        events = recorder
        let frontends = (try? maps.readState().masters.count) ?? 0
        post(.normal, "Starting", "Starting veerd: datapath pinned at \(config.pins.directory), \(frontends) frontends adopted")
    }

    func post(_ type: KubeEventRecorder.EventType, _ reason: String, _ message: String) {
        guard let events else { return }
        // Fire and forget: an Event is best effort and must never hold up a sync.
        Task { await events.record(type, reason: reason, message: message) }
    }

    /// The API source's list/watch counters, exported with the agent's metrics.
    public func exportStatistics(of source: KubeAPISource) {
        apiStatistics = { source.statistics() }
    }

    /// Nothing is written to the maps before the source's first full list: a restarted agent
    /// must not blackhole what the maps already serve.
    public init(config: AgentConfiguration, maps: any MapStore, packetPath: PacketPath? = nil, logger: Logger) {
        self.config = config
        self.maps = maps
        self.packetPath = packetPath
        self.logger = logger
        proxyHealth = ProxyHealth(timeout: config.healthTimeout)
        // The first full sync is pending from the start: healthy during the bound, as kube-proxy
        // is while starting up, but a veerd that never syncs (no API server) turns 503.
        proxyHealth.queuedUpdate()
        storedNames = config.writesStateFiles ? NamesFile.read(pins: config.pins) ?? ProgrammedNames() : ProgrammedNames()
    }

    /// Consumes a source until it ends or the task is cancelled.
    public func run<Events: AsyncSequence & Sendable>(_ events: Events) async where Events.Element == SourceEvent {
        do {
            for try await event in events {
                ingest(event)
                if Task.isCancelled { break }
            }
        } catch {
            logger.error("source ended: \(error)")
        }
    }

    /// Events that arrived together (a manifest step, a list): all stored before the next sync
    /// plans, so the outcome does not depend on how the loop interleaves with their delivery.
    public func ingest(_ events: [SourceEvent]) {
        for event in events { ingest(event) }
    }

    public func ingest(_ event: SourceEvent) {
        if case let .batch(events) = event { return ingest(events) }
        let started = clock.now
        let change = store.apply(event)
        if case let .replaceAll(kind, objects) = event {
            // A full list: decoding it is part of what a start or relist costs (`make bench` reads it).
            logger.info("listed \(objects.count) \(kind.rawValue) objects: decoded and stored in \(Self.ms(clock.now - started)) ms")
        }
        for problem in change.rejected {
            // The field path without indices is the reason's label: bounded cardinality.
            let field = problem.field.replacingOccurrences(of: "\\[[0-9]+\\]", with: "[]", options: .regularExpression)
            counters.rejectedObjects[AgentCounters.RejectionKey(kind: problem.kind, field: field.isEmpty ? "document" : field), default: 0] += 1
            let text = "\(problem.kind) \(problem.object): \(problem.field.isEmpty ? "" : "\(problem.field): ")\(problem.message)"
            logger.warning("rejected \(text)", metadata: problem.origin.isEmpty ? [:] : ["origin": "\(problem.origin)"])
            post(.warning, "InvalidObject", "rejected \(text)")
        }
        for ignored in change.ignored {
            logger.info("ignored \(ignored.kind) \(ignored.object): \(ignored.message)")
        }
        if change.synced { logger.info("source synced: \(store.services.count) services, \(store.slices.count) endpoint slices") }
        guard !change.services.isEmpty || !change.nodes.isEmpty || change.synced else {
            // Nothing to write: the maps already hold everything received.
            if !dirty && !syncing { proxyHealth.updated() }
            return
        }
        if store.isSynced { proxyHealth.queuedUpdate() }
        pendingServices.formUnion(change.services)
        // This node's zone and addresses shape every service's selection; other nodes matter
        // only through the slices that name them.
        if change.synced || change.nodes.contains(config.nodeName) { needsFullSync = true }
        if case let .apply(raw) = event, raw.kind == .endpointSlice,
           let slice = store.slices[ObjectKey(namespace: raw.namespace, name: raw.name)],
           let stamp = slice.meta.annotations["endpoints.kubernetes.io/last-change-trigger-time"],
           let trigger = RFC3339.date(stamp) {
            pendingTriggers.append(trigger)
        }
        if pendingSince == nil { pendingSince = clock.now }
        dirty = true
        startSyncing()
    }

    /// Called by a source for a problem that is not an object (a failed watch, a bad file).
    public func sourceProblem(_ category: String) {
        counters.sourceProblems[category, default: 0] += 1
    }

    /// Returns once no change is waiting to be written (tests and the demo use it).
    public func waitUntilIdle() async {
        if !dirty && !syncing && !filesDirty && !writingFiles { return }
        await withCheckedContinuation { idleWaiters.append($0) }
    }

    public var isSynced: Bool { store.isSynced }
    /// The names behind the programmed addresses (what names.json holds).
    public var programmedNames: ProgrammedNames { names }

    /// The names with their backend rows resolved (shares the running copy's table: no copy).
    var names: ProgrammedNames {
        guard namesByMapIDs, let ids = (running ?? namesIndex)?.backendIDTable else { return storedNames }
        return storedNames.resolving(by: ids)
    }
    /// Services not programmed now (a map full), with the reason.
    public var rejectedServices: [PlanRejection] { rejections.values.sorted { $0.service < $1.service } }
    public var datapathAttached: Bool { maps.isAttached }

    var nodeContext: NodeContext {
        NodeContext(nodeName: config.nodeName, node: store.nodes[config.nodeName],
                    zoneOverride: config.zoneOverride, addressOverride: config.addressOverride,
                    nodePortRange: config.nodePortRange)
    }

    private func startSyncing() {
        guard !syncing else { return }
        syncing = true
        // Unstructured on purpose: `ingest` is the agent's API (sources, tests, the bench call it
        // with no `run` scope around it), and a sync must start from it alone. The loop is one task
        // at a time (`syncing`), holds only the actor, and `waitUntilIdle` awaits its end.
        Task { await self.syncLoop() }
    }

    private func syncLoop() async {
        while dirty {
            // Let events already queued land first: one sync per burst.
            await Task.yield()
            dirty = false
            syncOnce()
        }
        syncing = false
        startWritingFiles()
        resumeIdleWaiters()
    }

    func resumeIdleWaiters() {
        guard !dirty && !syncing && !filesDirty && !writingFiles else { return }
        let waiters = idleWaiters
        idleWaiters = []
        waiters.forEach { $0.resume() }
    }

    private func syncOnce() {
        guard store.isSynced else { return }
        // The names and the programmed ids change only here: a scrape's kept layout is patched
        // at the next scrape with what this sync notes it changed (an incremental sync's few
        // rows); anything else (a full sync, a failed one, or any sync while scrapes do not
        // recur: HitLayoutCache) drops it now rather than holding it until the next scrape. A
        // dropped layout's memory goes back to the system too, off the actor: without that,
        // glibc kept it, and the largest RSS under churn was 40-55 MB higher at 50,000-100,000
        // services.
        counters.programmedGeneration &+= 1
        var layoutChange: HitLayoutChange?
        defer {
            if hitLayouts.note(generation: counters.programmedGeneration, layoutChange) {
                HeapRelease.inBackground()
            }
        }
        let node = nodeContext
        let started = clock.now
        let full = needsFullSync || running == nil
        let touched = pendingServices
        do {
            let outcome = full ? try fullSync(node) : try incrementalSync(node)
            layoutChange = outcome.layoutChange
            let elapsed = clock.now - started
            counters.syncCount += 1
            counters.mapOperations += UInt64(outcome.operations)
            counters.syncDuration.observe(elapsed.seconds)
            if let since = pendingSince, outcome.operations > 0 { counters.programmingLatency.observe((clock.now - since).seconds) }
            pendingSince = nil
            // kube-proxy's network programming latency: from the change that triggered the
            // EndpointSlice update to the kernel holding it.
            let now = Date()
            for trigger in pendingTriggers { counters.networkProgramming.observe(max(0, now.timeIntervalSince(trigger))) }
            pendingTriggers = []
            filesDirty = true
            syncHealth(full ? nil : touched)
            syncServiceAddresses()
            syncSourceRanges(full ? nil : touched)
            for line in outcome.log.lines { logger.info("\(line)") }
            if outcome.log.omitted > 0 {
                logger.info("… and \(outcome.log.omitted) more lines of this full sync, not logged (`veerctl services` lists what is programmed)")
            }
            if full {
                attachPacketPath(node)
                heapRelease = .afterNextWrite
            }
            if outcome.deletesMembers {
                terminateStaleSockets()
                deleteStaleUDPFlows()
            }
            // A plan counts old and new entries together (old ones are deleted last), so a
            // service rejected by a plan that also freed entries may fit now: plan once more.
            if !outcome.rejected.isEmpty, outcome.deletes { dirty = true }
            for rejection in outcome.rejected {
                counters.serviceRejections += 1
                logger.error("service \(rejection.service) not programmed: \(rejection.reason)")
                post(.warning, "ServiceRejected", "service \(rejection.service) not programmed: \(rejection.reason)")
            }
        } catch {
            counters.syncErrors += 1
            // The maps hold some prefix of the plan: read them back and plan everything.
            if running != nil { namesIndex = running }
            running = nil
            needsFullSync = true
            logger.error("writing the maps failed, retrying in \(config.retryDelay): \(error)")
            scheduleRetry()
        }
    }

    /// What `syncOnce` needs of a sync once its plan is written: the operations themselves are
    /// not kept (at 50,000 services they are 1.6 million, 64 MB, and were alive while the agent
    /// built its copy of the maps: the highest RSS of a start).
    private struct SyncOutcome {
        var operations: Int
        var deletesMembers: Bool
        var deletes: Bool
        var rejected: [PlanRejection]
        /// Log lines, built only when they are logged. A full sync (every start) keeps the first
        /// `SyncLog.fullSyncLines`: at 50,000 services its lines were 50,000, megabytes of log
        /// at every restart, written while changes waited.
        var log: (lines: [String], omitted: Int)
        /// What an incremental sync changed of a scrape's kept layout (nil: anything).
        var layoutChange: HitLayoutChange?

        init(_ plan: Plan, skipped: [SkipReason], desired: FrontendIndex, logged: Bool) {
            operations = plan.operations.count
            deletesMembers = plan.operations.contains { if case .deleteMember = $0 { true } else { false } }
            deletes = plan.operations.contains(where: \.isDelete)
            rejected = plan.rejected
            log = logged ? SyncLog.lines(plan, skipped: skipped, desired: desired.desired) : ([], 0)
        }

        /// A full sync's, whose operations were counted as they were written.
        init(written: WrittenOperations, target: MapState, rejected: [PlanRejection], skipped: [SkipReason],
             desired: FrontendIndex, logged: Bool) {
            operations = written.count
            deletesMembers = written.deletesMembers
            deletes = written.deletes
            self.rejected = rejected
            log = logged ? SyncLog.lines(written.changes, target: target, skipped: skipped, desired: desired.desired,
                                         limit: SyncLog.fullSyncLines) : ([], 0)
        }
    }

    /// Operations a full sync writes at a time.
    private static let writePart = 65_536

    /// What a full sync's operations did, noted as they were made and written.
    private struct WrittenOperations {
        var count = 0
        var deletesMembers = false
        var deletes = false
        var changes = SyncLog.Changes()
        let logged: Bool

        mutating func note(_ op: MapOperation) {
            count += 1
            if case .deleteMember = op { deletesMembers = true }
            if op.isDelete { deletes = true }
            if logged { changes.note(op) }
        }
    }

    /// Re-selects every service and plans the whole list against the running copy of the
    /// maps, or against the maps read back when there is none (start, adoption, failure).
    private func fullSync(_ node: NodeContext) throws -> SyncOutcome {
        let t0 = clock.now
        let keys = store.serviceKeys
        // Without verdicts: `veerctl explain` gets them from a selection made when it reads them.
        let selections = Selector.select(store, services: keys, node: node, explain: false)
        let fresh = Dictionary(uniqueKeysWithValues: zip(keys, selections))
        let merged = Selector.merge(selections)
        let t1 = clock.now
        let actual = try running?.state ?? maps.readState()
        let plan = Planner.planTarget(desired: merged.frontends, actual: actual, capacities: maps.capacities)
        let t2 = clock.now
        if running != nil { namesIndex = running }
        running = nil
        // Written as they are made, in parts of 65,536 (each part's runs still batched and split
        // across CPUs): the plan's operations are never all held at once.
        var written = WrittenOperations(logged: logger.logLevel <= .info)
        var part: [MapOperation] = []
        part.reserveCapacity(Self.writePart)
        try plan.forEachOperation { op in
            written.note(op)
            part.append(op)
            if part.count == Self.writePart {
                try maps.apply(part)
                part.removeAll(keepingCapacity: true)
            }
        }
        try maps.apply(part)
        part = []
        let t3 = clock.now
        // One line per full sync (start, node change, recovery): what `make bench` times.
        let timing = "select \(Self.ms(t1 - t0)) ms, read+plan \(Self.ms(t2 - t1)) ms, write \(Self.ms(t3 - t2)) ms"
        logger.info("full sync: \(merged.frontends.count) frontends of \(keys.count) services, \(written.count) map operations; \(timing)")
        index = FrontendIndex(selections: fresh, merged: merged)
        let outcome = SyncOutcome(written: written, target: plan.target, rejected: plan.rejected, skipped: merged.skipped,
                                  desired: index, logged: written.logged)
        running = IndexedMapState(plan.target)
        namesIndex = nil
        needsFullSync = false
        pendingServices = []
        rebuildClusterIPs()
        rejections = Dictionary(plan.rejected.map { ($0.service, $0) }, uniquingKeysWith: { a, _ in a })
        // Backend names by the maps' ids: the running copy's index finds them by address.
        var freshNames = ProgrammedNames()
        freshNames.frontends.reserveCapacity(plan.target.masters.count)
        freshNames.reserveBackendRows(maxID: plan.target.backends.keys.max() ?? 0)
        for f in merged.frontends where plan.target.masters[f.address] != nil {
            freshNames.setProgrammed(f, in: running)
        }
        storedNames = freshNames
        namesByMapIDs = true
        return outcome
    }

    /// Re-selects the services the pending changes touched and plans only the frontends
    /// whose winner changed (plus those sharing a backend with them, and services rejected
    /// before, which may fit now) against the running copy of the maps.
    private func incrementalSync(_ node: NodeContext) throws -> SyncOutcome {
        let touched = pendingServices.sorted()
        pendingServices = []
        let rejected = Set(rejections.keys.flatMap { index.selections[$0]?.frontends.map(\.address) ?? [] })
        let (changed, skipped) = index.update(
            touched.map { key in (key, store.services[key] == nil ? nil : Selector.select(store, service: key, node: node, explain: false)) },
            recheck: rejected, programmed: running!)

        let plan = Planner.plan(changed: changed, desired: changed.compactMap { index.desired($0) }, actual: running!,
                                capacities: maps.capacities)
        // What a scrape's kept layout must patch: the entries written and deleted, and below,
        // the names set again (every id holding those backends' addresses).
        var layoutAddresses: [L4Address] = []
        var layoutChange = HitLayoutChange(plan.operations, before: running!, addresses: &layoutAddresses)
        try maps.apply(plan.operations)
        running?.apply(plan.operations)
        // A deleted backend entry's names go with it (ids are reused only by later plans).
        for op in plan.operations { if case let .deleteBackend(id) = op { storedNames.removeBackend(id: id) } }
        trackClusterIPs(changed)
        for address in changed {
            let named = storedNames.frontend(address)
            if plan.target.masters[address] != nil, let f = index.desired(address) {
                storedNames.setProgrammed(f, in: running)
                layoutAddresses.append(contentsOf: f.backends.map(\.address))
            } else if running?.state.masters[address] == nil {
                storedNames.frontends[address] = nil
            }
            if storedNames.frontend(address) != named { layoutChange.ports = true }
        }
        layoutChange.resolve(layoutAddresses, in: running!)
        for service in Set(changed.compactMap { index.desired($0)?.service.serviceKey }) { rejections[service] = nil }
        for rejection in plan.rejected { rejections[rejection.service] = rejection }
        var outcome = SyncOutcome(plan, skipped: skipped, desired: index, logged: logger.logLevel <= .info)
        outcome.layoutChange = layoutChange
        return outcome
    }

    private func scheduleRetry() {
        guard !retryScheduled else { return }
        retryScheduled = true
        // Unstructured for the reason `startSyncing` gives: a failed sync started by `ingest`
        // must retry without a `run` scope. One timer at a time (`retryScheduled`).
        Task {
            try? await Task.sleep(for: self.config.retryDelay)
            self.retry()
        }
    }

    private func retry() {
        retryScheduled = false
        dirty = true
        startSyncing()
    }

    /// The counters, names and programmed state as they are now, for a scrape to render off the
    /// actor: copy-on-write values, so taking them costs no copy (a sync that writes while a
    /// render holds them copies what it changes).
    func metricsSnapshot() -> MetricsSnapshot {
        // The health, address and source-range tables' few series are read here, on the actor.
        var extra = PrometheusText()
        writeHealthMetrics(into: &extra)
        writeServiceAddressMetrics(into: &extra)
        writeSourceRangeMetrics(into: &extra)
        return MetricsSnapshot(counters: counters, names: names, programmed: running.map(ProgrammedIDs.init), synced: store.isSynced,
                               rejectedServices: rejections.count, apiStatistics: apiStatistics?(), maps: maps,
                               hitMetrics: config.hitMetrics, extra: extra.bytes, packetPath: packetPath, layouts: hitLayouts)
    }
}
