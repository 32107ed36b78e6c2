import Foundation
import Logging
import VeerDatapath
import VeerKube
import VeerModel

public struct AgentConfiguration: Sendable {
    public var nodeName: String
    /// Overrides the Node's `topology.kubernetes.io/zone` label.
    public var zoneOverride: String?
    /// Overrides the Node's InternalIP/ExternalIP addresses for NodePorts.
    public var addressOverride: [IPAddress]?
    public var cgroup: String
    public var pins: PinLayout
    public var bpfObject: String
    /// nil: the sizes compiled into the object.
    public var capacities: MapCapacities?
    /// Protocols whose connected sockets are destroyed when their backend leaves the
    /// service. UDP by default: nothing else ever tells a UDP client its peer is gone.
    public var terminateProtocols: Set<L4Protocol> = [.udp]
    /// hostns-only: translate only sockets of this network namespace (veerd: its own,
    /// /proc/self/ns/net); nil translates every socket in the cgroup.
    public var hostNamespace: String?
    /// The packet path for clients outside the node; nil: off.
    public var packetPath: PacketPathConfiguration?
    /// NodePorts outside this range are skipped; nil: any.
    public var nodePortRange: ClosedRange<UInt16>?

    public init(nodeName: String, zoneOverride: String? = nil, addressOverride: [IPAddress]? = nil,
                cgroup: String, pins: PinLayout, bpfObject: String, capacities: MapCapacities? = nil) {
        self.nodeName = nodeName
        self.zoneOverride = zoneOverride
        self.addressOverride = addressOverride
        self.cgroup = cgroup
        self.pins = pins
        self.bpfObject = bpfObject
        self.capacities = capacities
    }
}

/// Where the packet path (tc) is attached.
public struct PacketPathConfiguration: Sendable {
    /// bpf/veer_tc.bpf.o.
    public var object: String
    /// nil: the interfaces holding the node's addresses (its Node's, or --node-address),
    /// looked up again on every full sync.
    public var interfaces: [String]?

    public init(object: String, interfaces: [String]? = nil) {
        self.object = object
        self.interfaces = interfaces
    }
}

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
    public let datapath: Datapath
    /// Frontends for clients outside the node (tc); nil when turned off.
    public let packetPath: PacketPath?
    private var packetPathErrors: UInt64 = 0
    private var conntrackFlowsDeleted: UInt64 = 0
    public let config: AgentConfiguration
    private let logger: Logger
    private let clock = ContinuousClock()

    private var store = ServiceStore()
    private var dirty = false
    private var syncing = false
    private var retryScheduled = false
    private var pendingSince: ContinuousClock.Instant?
    private var names = ProgrammedNames()
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []

    // Incremental state. `running` is what the maps hold, kept with every write; nil: read
    // them back (at start, and after a failed write left them in an unknown prefix).
    private var running: IndexedMapState?
    private var needsFullSync = true
    private var pendingServices: Set<ObjectKey> = []
    /// Per service, before cross-service conflicts are resolved.
    private var selections: [ObjectKey: SelectionResult] = [:]
    /// Services whose selection has a frontend at this address (keyed by its cluster scope:
    /// an external-scope entry belongs to whichever service wins the address itself).
    private var claims: [L4Address: Set<ObjectKey>] = [:]
    /// The winning frontend at each address: what the maps should serve.
    private var desired: [L4Address: DesiredFrontend] = [:]
    /// Frontends using each backend address (a shared backend's flags depend on all of them).
    private var backendUsers: [L4Address: Set<L4Address>] = [:]
    private var rejections: [String: PlanRejection] = [:]
    /// The names and decisions files are written off the reconcile loop, the latest state
    /// winning: at 10,000 services encoding them costs more than a change's whole sync.
    private var filesDirty = false
    private var writingFiles = false

    // Metrics
    // Fine buckets below 10 ms: a change's sync is meant to take a few (the 5 ms target is a bound).
    private static let fineBuckets = [0.00025, 0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1,
                                      0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
    private var syncDuration = Histogram(buckets: fineBuckets)
    private var programmingLatency = Histogram(buckets: fineBuckets)
    private var syncCount: UInt64 = 0
    private var syncErrors: UInt64 = 0
    private var mapOperations: UInt64 = 0
    private var rejectedObjects: [RejectionKey: UInt64] = [:]
    private var networkProgramming = Histogram(buckets: fineBuckets)
    /// EndpointSlice last-change-trigger-times waiting for the sync that writes them.
    private var pendingTriggers: [Date] = []

    private struct RejectionKey: Hashable, Comparable {
        var kind: String
        var field: String
        static func < (a: Self, b: Self) -> Bool { (a.kind, a.field) < (b.kind, b.field) }
    }
    private var serviceRejections: UInt64 = 0
    private var sourceProblems: [String: UInt64] = [:]
    private var socketsTerminated: [L4Protocol: UInt64] = [:]
    private var terminationFailures: UInt64 = 0
    private var apiStatistics: (@Sendable () -> [ResourceKind: KubeAPISource.Statistics])?
    private var events: KubeEventRecorder?

    /// Posts Events on this node's Node object (API source only).
    public func recordEvents(with recorder: KubeEventRecorder) {
        events = recorder
        let frontends = (try? datapath.readState().masters.count) ?? 0
        post(.normal, "Starting", "Starting veerd: datapath pinned at \(config.pins.directory), \(frontends) frontends adopted")
    }

    private func post(_ type: KubeEventRecorder.EventType, _ reason: String, _ message: String) {
        guard let events else { return }
        Task { await events.record(type, reason: reason, message: message) }
    }

    /// The API source's list/watch counters, exported with the agent's metrics.
    public func exportStatistics(of source: KubeAPISource) {
        apiStatistics = { source.statistics() }
    }

    /// Loads or adopts the datapath. Nothing is written to the maps before the source's
    /// first full list: a restarted agent must not blackhole what the maps already serve.
    public init(config: AgentConfiguration, logger: Logger) throws {
        self.config = config
        self.logger = logger
        datapath = try Datapath.install(object: config.bpfObject, cgroup: config.cgroup, pins: config.pins,
                                        capacities: config.capacities,
                                        scope: config.hostNamespace.map { .hostNamespaceOnly(netns: $0) } ?? .allNamespaces)
        names = NamesFile.read(pins: config.pins) ?? ProgrammedNames()
        if let pp = config.packetPath {
            packetPath = try PacketPath(object: pp.object, pins: config.pins)
            // Named interfaces are attached at once (replacing a predecessor's filter in place);
            // the node's own wait for its addresses, at the first full sync.
            if let names = pp.interfaces { try packetPath?.attach(all: names) }
            if (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8))?.hasPrefix("0") == true {
                logger.warning("net.ipv4.ip_forward is 0 in veerd's network namespace: the packet path cannot forward to pods (the CNI plugin normally turns it on)")
            }
        } else {
            packetPath = nil
        }
        let frontends = (try? datapath.readState().masters.count) ?? 0
        if !datapath.retiredVersions.isEmpty {
            logger.notice("retired the pins of an older schema (upgrade)", metadata: ["versions": "\(datapath.retiredVersions.joined(separator: ","))"])
        }
        logger.info("datapath ready", metadata: ["pins": "\(config.pins.directory)", "cgroup": "\(config.cgroup)",
                                                 "adopted_frontends": "\(frontends)"])
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

    public func ingest(_ event: SourceEvent) {
        let started = clock.now
        let change = store.apply(event)
        if case let .replaceAll(kind, objects) = event {
            // A full list: decoding it is part of what a start or relist costs (`make bench` reads it).
            logger.info("listed \(objects.count) \(kind.rawValue) objects: decoded and stored in \(Self.ms(clock.now - started)) ms")
        }
        for problem in change.rejected {
            // The field path without indices is the reason's label: bounded cardinality.
            let field = problem.field.replacingOccurrences(of: "\\[[0-9]+\\]", with: "[]", options: .regularExpression)
            rejectedObjects[RejectionKey(kind: problem.kind, field: field.isEmpty ? "document" : field), default: 0] += 1
            let text = "\(problem.kind) \(problem.object): \(problem.field.isEmpty ? "" : "\(problem.field): ")\(problem.message)"
            logger.warning("rejected \(text)", metadata: problem.origin.isEmpty ? [:] : ["origin": "\(problem.origin)"])
            post(.warning, "InvalidObject", "rejected \(text)")
        }
        for ignored in change.ignored {
            logger.info("ignored \(ignored.kind) \(ignored.object): \(ignored.message)")
        }
        if change.synced { logger.info("source synced: \(store.services.count) services, \(store.slices.count) endpoint slices") }
        guard !change.services.isEmpty || !change.nodes.isEmpty || change.synced else { return }
        pendingServices.formUnion(change.services)
        // This node's zone and addresses shape every service's selection; other nodes matter
        // only through the slices that name them.
        if change.synced || change.nodes.contains(config.nodeName) { needsFullSync = true }
        if case let .apply(raw) = event, raw.kind == .endpointSlice,
           let slice = store.slices[ObjectKey(namespace: raw.namespace, name: raw.name)],
           let stamp = slice.meta.annotations["endpoints.kubernetes.io/last-change-trigger-time"],
           let trigger = Self.rfc3339(stamp) {
            pendingTriggers.append(trigger)
        }
        if pendingSince == nil { pendingSince = clock.now }
        dirty = true
        startSyncing()
    }

    /// Called by a source for a problem that is not an object (a failed watch, a bad file).
    public func sourceProblem(_ category: String) {
        sourceProblems[category, default: 0] += 1
    }

    /// Returns once no change is waiting to be written (tests and the demo use it).
    public func waitUntilIdle() async {
        if !dirty && !syncing && !filesDirty && !writingFiles { return }
        await withCheckedContinuation { idleWaiters.append($0) }
    }

    public var isSynced: Bool { store.isSynced }
    public var datapathAttached: Bool { datapath.isAttached }
    /// The whole selection, conflicts resolved (merged on demand: the loop keeps it per service).
    public var selection: SelectionResult { Self.merged(selections) }

    private static func merged(_ selections: [ObjectKey: SelectionResult]) -> SelectionResult {
        Selector.merge(selections.sorted { $0.key < $1.key }.map(\.value))
    }

    private func startSyncing() {
        guard !syncing else { return }
        syncing = true
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

    private func resumeIdleWaiters() {
        guard !dirty && !syncing && !filesDirty && !writingFiles else { return }
        let waiters = idleWaiters
        idleWaiters = []
        waiters.forEach { $0.resume() }
    }

    private func syncOnce() {
        guard store.isSynced else { return }
        let node = NodeContext(nodeName: config.nodeName, node: store.nodes[config.nodeName],
                               zoneOverride: config.zoneOverride, addressOverride: config.addressOverride,
                               nodePortRange: config.nodePortRange)
        let started = clock.now
        do {
            let full = needsFullSync || running == nil
            let outcome = full ? try fullSync(node) : try incrementalSync(node)
            let plan = outcome.plan
            let elapsed = clock.now - started
            syncCount += 1
            mapOperations += UInt64(plan.operations.count)
            syncDuration.observe(elapsed.seconds)
            if let since = pendingSince, !plan.operations.isEmpty { programmingLatency.observe((clock.now - since).seconds) }
            pendingSince = nil
            // kube-proxy's network programming latency: from the change that triggered the
            // EndpointSlice update to the kernel holding it.
            let now = Date()
            for trigger in pendingTriggers { networkProgramming.observe(max(0, now.timeIntervalSince(trigger))) }
            pendingTriggers = []
            filesDirty = true
            logChanges(plan, outcome.skipped)
            if full { attachPacketPath(node) }
            if plan.operations.contains(where: { if case .deleteMember = $0 { true } else { false } }) {
                terminateStaleSockets()
                deleteStaleUDPFlows()
            }
            for rejection in plan.rejected {
                serviceRejections += 1
                logger.error("service \(rejection.service) not programmed: \(rejection.reason)")
                post(.warning, "ServiceRejected", "service \(rejection.service) not programmed: \(rejection.reason)")
            }
        } catch {
            syncErrors += 1
            // The maps hold some prefix of the plan: read them back and plan everything.
            running = nil
            needsFullSync = true
            logger.error("writing the maps failed, retrying in 1s: \(error)")
            scheduleRetry()
        }
    }

    /// Attaches the packet path to the interfaces holding the node's addresses that it is not
    /// on yet (a Node may gain an address); a failure is logged and counted, never fatal.
    private func attachPacketPath(_ node: NodeContext) {
        guard let packetPath, config.packetPath?.interfaces == nil else { return }
        let wanted = PacketPath.interfaces(holding: node.addresses)
        if wanted.isEmpty && packetPath.interfaces.isEmpty {
            logger.warning("packet path: no interface in veerd's network namespace holds the node's addresses \(node.addresses); pass --packet-path-interface")
        }
        do {
            let added = try packetPath.attach(all: wanted)
            if !added.isEmpty { logger.info("packet path attached", metadata: ["interfaces": "\(added.joined(separator: ","))"]) }
        } catch {
            packetPathErrors += 1
            logger.error("packet path: \(error)")
        }
    }

    /// Re-selects every service and plans the whole list against the running copy of the
    /// maps, or against the maps read back when there is none (start, adoption, failure).
    private func fullSync(_ node: NodeContext) throws -> (plan: Plan, skipped: [SkipReason]) {
        let t0 = clock.now
        let keys = store.serviceKeys
        var fresh: [ObjectKey: SelectionResult] = [:]
        for key in keys { fresh[key] = Selector.select(store, service: key, node: node) }
        let merged = Selector.merge(keys.map { fresh[$0]! })
        let t1 = clock.now
        let actual = try running?.state ?? datapath.readState()
        let plan = Planner.plan(desired: merged.frontends, actual: actual, capacities: datapath.capacities)
        let t2 = clock.now
        running = nil
        try datapath.apply(plan.operations)
        let t3 = clock.now
        running = IndexedMapState(plan.target)
        // One line per full sync (start, node change, recovery): what `make bench` times.
        let timing = "select \(Self.ms(t1 - t0)) ms, read+plan \(Self.ms(t2 - t1)) ms, write \(Self.ms(t3 - t2)) ms"
        logger.info("full sync: \(merged.frontends.count) frontends of \(keys.count) services, \(plan.operations.count) map operations; \(timing)")
        needsFullSync = false
        pendingServices = []
        selections = fresh
        claims = [:]
        for (key, result) in fresh {
            for f in result.frontends { claims[f.address.scoped(.cluster), default: []].insert(key) }
        }
        desired = Dictionary(merged.frontends.map { ($0.address, $0) }, uniquingKeysWith: { a, _ in a })
        backendUsers = [:]
        for f in merged.frontends {
            for b in f.backends { backendUsers[b.address, default: []].insert(f.address) }
        }
        rejections = Dictionary(plan.rejected.map { ($0.service, $0) }, uniquingKeysWith: { a, _ in a })
        let accepted = Set(plan.target.masters.keys)
        names = ProgrammedNames(merged.frontends.filter { accepted.contains($0.address) })
        return (plan, merged.skipped)
    }

    /// Re-selects the services the pending changes touched and plans only the frontends
    /// whose winner changed (plus those sharing a backend with them, and services rejected
    /// before, which may fit now) against the running copy of the maps.
    private func incrementalSync(_ node: NodeContext) throws -> (plan: Plan, skipped: [SkipReason]) {
        let touched = pendingServices
        pendingServices = []
        var changed = Set<L4Address>()
        var skipped: [SkipReason] = []
        for key in touched.sorted() {
            let old = selections[key]
            let new = Selector.select(store, service: key, node: node)
            selections[key] = store.services[key] == nil ? nil : new
            for f in old?.frontends ?? [] {
                let base = f.address.scoped(.cluster)
                claims[base]?.remove(key)
                if claims[base]?.isEmpty == true { claims[base] = nil }
                changed.insert(f.address)
            }
            for f in new.frontends {
                claims[f.address.scoped(.cluster), default: []].insert(key)
                changed.insert(f.address)
            }
            let before = Set(old?.skipped ?? [])
            skipped += new.skipped.filter { !before.contains($0) }
        }
        for rejection in rejections.values {
            let key = ObjectKey(namespace: String(rejection.service.prefix { $0 != "/" }),
                                name: String(rejection.service.drop { $0 != "/" }.dropFirst()))
            for f in selections[key]?.frontends ?? [] { changed.insert(f.address) }
        }
        // An external-scope entry follows the owner of its address: when that changes hands, the
        // new owner's entry (or none, for an eTP=Cluster owner) replaces the old one's.
        changed.formUnion(changed.filter { $0.scope == .cluster }.map { $0.scoped(.external) })
        var sharing = Set<L4Address>()
        for address in changed {
            let old = desired[address]
            let new = winner(at: address, skipped: &skipped)
            guard old != new else { continue }
            for b in old?.backends ?? [] {
                backendUsers[b.address]?.remove(address)
                if backendUsers[b.address]?.isEmpty == true { backendUsers[b.address] = nil }
                sharing.formUnion(backendUsers[b.address] ?? [])
            }
            for b in new?.backends ?? [] {
                backendUsers[b.address, default: []].insert(address)
                sharing.formUnion(backendUsers[b.address] ?? [])
            }
            desired[address] = new
        }
        changed.formUnion(sharing)

        let plan = Planner.plan(changed: changed, desired: changed.compactMap { desired[$0] }, actual: running!,
                                capacities: datapath.capacities)
        try datapath.apply(plan.operations)
        running?.apply(plan.operations)
        for address in changed {
            if plan.target.masters[address] != nil, let f = desired[address] {
                let one = ProgrammedNames([f])
                names.frontends.merge(one.frontends) { _, new in new }
                names.backends.merge(one.backends) { _, new in new }
            } else if running?.state.masters[address] == nil {
                names.frontends[address.description] = nil
            }
        }
        for service in Set(changed.compactMap { desired[$0]?.service.serviceKey }) { rejections[service] = nil }
        for rejection in plan.rejected { rejections[rejection.service] = rejection }
        return (plan, skipped)
    }

    /// The frontend that serves this address, by `Selector.merge`'s own rule (a ClusterIP beats
    /// a NodePort beats an externalIP beats an LB IP; ties go to the first service by name),
    /// applied to the services claiming it; the losers are reported as skipped.
    /// An external-scope address goes with the winner of its cluster-scope address.
    private func winner(at address: L4Address, skipped: inout [SkipReason]) -> DesiredFrontend? {
        let base = address.scoped(.cluster)
        let claimants = (claims[base] ?? []).sorted().compactMap { key -> SelectionResult? in
            guard let r = selections[key], let i = r.frontends.firstIndex(where: { $0.address == base }) else { return nil }
            return SelectionResult(frontends: [r.frontends[i]], decisions: [r.decisions[i]])
        }
        var winning = claimants.first?.frontends.first
        if claimants.count > 1 {
            let merged = Selector.merge(claimants)
            if address.scope == .cluster { skipped += merged.skipped }
            winning = merged.frontends.first
        }
        guard let winning, address.scope != .cluster else { return winning }
        let owner = ObjectKey(namespace: winning.service.namespace, name: winning.service.name)
        return selections[owner]?.frontends.first { $0.address == address }
    }

    /// Writes the names and decisions files for veerctl from the latest state, off the loop.
    /// Under churn it pauses between writes for a second or ten times the last write's time,
    /// whichever is longer: at 10,000 services a write costs a good part of a second, which
    /// would otherwise keep a core busy and delay the map writes that matter.
    private func startWritingFiles() {
        guard filesDirty, !writingFiles else { return }
        writingFiles = true
        Task.detached { [pins = config.pins] in
            let clock = ContinuousClock()
            var pause: Duration?
            while await self.filesPending() {
                // Only when more changed since the last write: an idle agent finishes at once.
                if let pause { try? await Task.sleep(for: pause) }
                guard let snapshot = await self.takeFilesSnapshot() else { break }
                let started = clock.now
                let selection = Self.merged(snapshot.selections)
                do {
                    try NamesFile.write(snapshot.names, pins: pins)
                    try DecisionsFile.write(SavedDecisions(node: snapshot.node, selection: selection), pins: pins)
                } catch {
                    await self.filesFailed(error)
                }
                pause = max(.seconds(1), (clock.now - started) * 10)
            }
        }
    }

    /// Whether the files are out of date; if not, the writer is done.
    private func filesPending() -> Bool {
        if filesDirty { return true }
        writingFiles = false
        resumeIdleWaiters()
        return false
    }

    private func takeFilesSnapshot() -> (names: ProgrammedNames, selections: [ObjectKey: SelectionResult], node: NodeContext)? {
        guard filesDirty else {
            writingFiles = false
            resumeIdleWaiters()
            return nil
        }
        filesDirty = false
        let node = NodeContext(nodeName: config.nodeName, node: store.nodes[config.nodeName],
                               zoneOverride: config.zoneOverride, addressOverride: config.addressOverride,
                               nodePortRange: config.nodePortRange)
        return (names, selections, node)
    }

    private func filesFailed(_ error: Error) {
        logger.warning("could not save the names of programmed services for veerctl: \(error)")
    }

    private func terminateStaleSockets() {
        guard !config.terminateProtocols.isEmpty else { return }
        do {
            let result = try datapath.terminateStaleSockets(protocols: config.terminateProtocols, state: running)
            for (proto, n) in result.destroyed where n > 0 {
                socketsTerminated[proto, default: 0] += UInt64(n)
                logger.info("terminated \(n) \(proto) socket(s) connected to removed backends")
                post(.normal, "SocketsTerminated", "terminated \(n) \(proto) socket(s) connected to removed backends")
            }
            for failure in result.failures.sorted() {
                terminationFailures += 1
                logger.warning("socket termination failed in a network namespace (needs CAP_SYS_ADMIN): \(failure)")
            }
        } catch {
            logger.warning("terminating sockets of removed backends failed: \(error)")
        }
    }

    /// The packet path's UDP flows to removed backends (kube-proxy deletes those conntrack
    /// entries too); TCP flows are left to end or time out, as kube-proxy leaves them.
    private func deleteStaleUDPFlows() {
        guard packetPath != nil, let state = running?.state else { return }
        do {
            let n = try PacketPath.deleteStaleUDPFlows(state: state)
            if n > 0 {
                conntrackFlowsDeleted += UInt64(n)
                logger.info("deleted \(n) UDP conntrack flow(s) translated to removed backends")
            }
        } catch {
            logger.warning("deleting UDP conntrack flows of removed backends failed: \(error)")
        }
    }

    private func scheduleRetry() {
        guard !retryScheduled else { return }
        retryScheduled = true
        Task {
            try? await Task.sleep(for: .seconds(1))
            self.retry()
        }
    }

    private func retry() {
        retryScheduled = false
        dirty = true
        startSyncing()
    }

    /// One line per frontend that changed; nothing at steady state.
    private func logChanges(_ plan: Plan, _ skipped: [SkipReason]) {
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
            logger.info("programmed \(f.service) \(f.kind.rawValue) \(address) → \(backends)")
        }
        for address in removed.sorted() { logger.info("removed frontend \(address)") }
        for s in Set(skipped.map { "\($0)" }).sorted() { logger.info("skipped \(s)") }
    }

    // MARK: - Metrics

    public func metricsText() -> String {
        var out = PrometheusText()
        let state = (try? datapath.readState()) ?? MapState()
        let hits = (try? datapath.hitsByAddress(state)) ?? [:]

        // Per endpoint and service port, summed over the frontends (ClusterIP, NodePort…) that share
        // them. Identity labels only: pod, node and zone come from veer_endpoint_info (a join), so
        // a pod's rename does not start a new counter series.
        struct Series: Hashable { var labels: [String] }
        var series: [Series: UInt64] = [:]
        var info = Set<Series>()
        for (pair, count) in hits {
            let (frontend, backend) = (pair.frontend, pair.backend)
            guard let fname = names.frontend(frontend) else { continue }
            let endpoint = backend.hostPort  // [fd00::1]:80 for IPv6
            let labels = [fname.namespace, fname.service, fname.port, frontend.proto.kubernetesName, endpoint]
            series[Series(labels: labels), default: 0] += count
            let bname = names.backend(backend)
            info.insert(Series(labels: [fname.namespace, fname.service, endpoint, bname?.pod ?? "", bname?.node ?? "", bname?.zone ?? ""]))
        }
        out.family("veer_endpoint_hits_total", .counter,
                   help: "Connections (TCP, connected UDP) and datagrams (unconnected UDP) the kernel sent to each endpoint.")
        let keys = ["namespace", "service", "port", "protocol", "endpoint"]
        for (s, count) in series.sorted(by: { $0.key.labels.lexicographicallyPrecedes($1.key.labels) }) {
            out.sample("veer_endpoint_hits_total", Array(zip(keys, s.labels)), Double(count))
        }
        out.family("veer_endpoint_info", .gauge,
                   help: "1 for each endpoint a service uses on this node, with its pod, node and zone: join it to veer_endpoint_hits_total.")
        let infoKeys = ["namespace", "service", "endpoint", "pod", "node", "zone"]
        for s in info.sorted(by: { $0.labels.lexicographicallyPrecedes($1.labels) }) {
            out.sample("veer_endpoint_info", Array(zip(infoKeys, s.labels)), 1)
        }

        out.family("veer_datapath_events_total", .counter, help: "Datapath events counted in the kernel.")
        let stats = (try? datapath.stats()) ?? [:]
        for stat in DatapathStat.allCases {
            out.sample("veer_datapath_events_total", ["event": stat.name], Double(stats[stat] ?? 0))
        }

        let fill = (try? datapath.fill()) ?? []
        out.family("veer_map_entries", .gauge, help: "Entries in each BPF map.")
        for f in fill { out.sample("veer_map_entries", ["map": f.map], Double(f.entries)) }
        out.family("veer_map_capacity", .gauge, help: "max_entries of each BPF map.")
        for f in fill { out.sample("veer_map_capacity", ["map": f.map], Double(f.capacity)) }

        out.family("veer_frontends", .gauge, help: "Frontends programmed on this node.")
        out.sample("veer_frontends", [], Double(state.masters.count))
        out.family("veer_backends", .gauge, help: "Backends programmed on this node.")
        out.sample("veer_backends", [], Double(state.backends.count))
        out.family("veer_synced", .gauge, help: "1 once the source's first full list has been programmed.")
        out.sample("veer_synced", [], store.isSynced ? 1 : 0)

        out.family("veer_sync_duration_seconds", .histogram, help: "Time to select, plan and write the maps.")
        syncDuration.write("veer_sync_duration_seconds", into: &out)
        out.family("veer_programming_latency_seconds", .histogram,
                   help: "Time from a source change arriving to the maps holding it.")
        programmingLatency.write("veer_programming_latency_seconds", into: &out)
        out.family("veer_network_programming_duration_seconds", .histogram,
                   help: "From an EndpointSlice's endpoints.kubernetes.io/last-change-trigger-time to the maps holding it, as kube-proxy measures it.")
        networkProgramming.write("veer_network_programming_duration_seconds", into: &out)
        out.family("veer_syncs_total", .counter, help: "Syncs of the maps.")
        out.sample("veer_syncs_total", [], Double(syncCount))
        out.family("veer_sync_errors_total", .counter, help: "Syncs that failed to write the maps (retried).")
        out.sample("veer_sync_errors_total", [], Double(syncErrors))
        out.family("veer_map_operations_total", .counter, help: "Map writes and deletes performed.")
        out.sample("veer_map_operations_total", [], Double(mapOperations))
        out.family("veer_rejected_objects_total", .counter,
                   help: "Objects (or parts of them) rejected as malformed, by kind and offending field.")
        for (key, n) in rejectedObjects.sorted(by: { $0.key < $1.key }) {
            out.sample("veer_rejected_objects_total", ["kind": key.kind, "field": key.field], Double(n))
        }
        out.family("veer_service_rejections_total", .counter, help: "Services not programmed because a map was full or a frontend was claimed twice.")
        out.sample("veer_service_rejections_total", [], Double(serviceRejections))
        out.family("veer_services_rejected", .gauge, help: "Services currently not programmed (map full, conflicting frontend).")
        out.sample("veer_services_rejected", [], Double(rejections.count))
        out.family("veer_sockets_terminated_total", .counter,
                   help: "Connected sockets destroyed because their backend left the service, by protocol.")
        for proto in [L4Protocol.tcp, .udp] {
            out.sample("veer_sockets_terminated_total", ["protocol": proto.kubernetesName], Double(socketsTerminated[proto] ?? 0))
        }
        if let stats = apiStatistics?() {
            let series: [(String, String, KeyPath<KubeAPISource.Statistics, Int>)] = [
                ("veer_source_lists_total", "Completed lists of a kind from the API server, the first included.", \.lists),
                ("veer_source_watches_total", "Watch requests the API server accepted; more than one means the watch restarted.", \.watches),
                ("veer_source_relists_total", "Relists forced by 410 Gone (the watch's resourceVersion expired).", \.expired),
                ("veer_source_failures_total", "Failed API requests: unreachable server, HTTP errors, broken streams.", \.failures),
                ("veer_source_skipped_total", "Watch events and list items that could not be used.", \.skipped),
            ]
            for (name, help, path) in series {
                out.family(name, .counter, help: help)
                for kind in ResourceKind.allCases {
                    out.sample(name, ["kind": kind.rawValue], Double(stats[kind]?[keyPath: path] ?? 0))
                }
            }
        }
        out.family("veer_socket_termination_failures_total", .counter,
                   help: "Network namespaces where terminating sockets failed (e.g. without CAP_SYS_ADMIN).")
        out.sample("veer_socket_termination_failures_total", [], Double(terminationFailures))
        if let packetPath, let stats = try? packetPath.stats() {
            out.family("veer_packet_path_packets_total", .counter,
                       help: "Packets from outside the node to a frontend, by what the packet path did (translated: a flow opened).")
            for stat in PacketPathStat.allCases {
                out.sample("veer_packet_path_packets_total", ["event": stat.name], Double(stats[stat] ?? 0))
            }
            out.family("veer_packet_path_interfaces", .gauge, help: "Interfaces the packet path is attached to.")
            out.sample("veer_packet_path_interfaces", [], Double(packetPath.interfaces.count))
            out.family("veer_packet_path_errors_total", .counter, help: "Failed attachments of the packet path.")
            out.sample("veer_packet_path_errors_total", [], Double(packetPathErrors))
            out.family("veer_packet_path_flows_deleted_total", .counter,
                       help: "UDP conntrack flows deleted because their backend left the frontend.")
            out.sample("veer_packet_path_flows_deleted_total", [], Double(conntrackFlowsDeleted))
        }
        out.family("veer_source_problems_total", .counter, help: "Problems a source reported (unreadable files, failed requests), by severity.")
        for (kind, n) in sourceProblems.sorted(by: { $0.key < $1.key }) {
            out.sample("veer_source_problems_total", ["problem": kind], Double(n))
        }
        return out.output
    }
}

extension Agent {
    static func rfc3339(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        if let d = f.date(from: text) { return d }
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: text)
    }
}

extension Agent {
    static func ms(_ d: Duration) -> String { String(format: "%.1f", d.seconds * 1000) }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
