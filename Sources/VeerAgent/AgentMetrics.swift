import Foundation
import NIOCore
import VeerDatapath
import VeerKube
import VeerModel

/// The agent's own counters and histograms, kept by the reconcile loop.
struct AgentCounters: Sendable {
    // Fine buckets below 10 ms: a change's sync is meant to take a few (the 5 ms target is a bound).
    static let fineBuckets = [0.00025, 0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1,
                              0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
    var syncDuration = Histogram(buckets: fineBuckets)
    var programmingLatency = Histogram(buckets: fineBuckets)
    var networkProgramming = Histogram(buckets: fineBuckets)
    var syncCount: UInt64 = 0
    var syncErrors: UInt64 = 0
    var mapOperations: UInt64 = 0
    var serviceRejections: UInt64 = 0
    var terminationFailures: UInt64 = 0
    var rejectedObjects: [RejectionKey: UInt64] = [:]
    var sourceProblems: [String: UInt64] = [:]
    var socketsTerminated: [L4Protocol: UInt64] = [:]
    var packetPathErrors: UInt64 = 0
    var conntrackFlowsDeleted: UInt64 = 0
    /// Bumped by every sync (the only place the names and the programmed ids change): a scrape's
    /// `HitLayout` built at one value holds for every later snapshot taken at the same one, and
    /// is patched for a later one with what the syncs between noted (`HitLayoutCache.note`).
    var programmedGeneration: UInt64 = 0

    struct RejectionKey: Hashable, Comparable {
        var kind: String
        var field: String
        static func < (a: Self, b: Self) -> Bool { (a.kind, a.field) < (b.kind, b.field) }
    }
}

/// How finely hit counters are exported.
public enum HitMetrics: String, Sendable, CaseIterable {
    /// `veer_endpoint_hits_total` and `veer_endpoint_info`: two series per endpoint.
    case endpoint
    /// `veer_service_hits_total`: one series per Service port.
    case service
}

/// One scrape: the agent's counters, names and programmed state as they were when it was taken
/// (values, copied cheaply on the agent's actor), rendered off it. Only the counters are read
/// from the kernel, in batches; which frontend and backend each counter's ids stand for is the
/// agent's own copy of what it wrote. At 100,000 endpoints a scrape still takes tens of
/// milliseconds, and no change may wait for it.
public struct MetricsSnapshot: Sendable {
    let counters: AgentCounters
    let names: ProgrammedNames
    /// What the agent wrote to the maps; nil before its first sync and after a failed write
    /// (the maps are then read back).
    let programmed: ProgrammedIDs?
    let synced: Bool
    let rejectedServices: Int
    let apiStatistics: [ResourceKind: KubeAPISource.Statistics]?
    let maps: any MapStore
    let hitMetrics: HitMetrics
    /// Series the agent rendered on its actor (health checks, address and source-range tables).
    let extra: [UInt8]
    let packetPath: PacketPath?
    /// The agent's kept hit layout (nil: built for this scrape alone).
    var layouts: HitLayoutCache? = nil

    /// The size of a streamed scrape's chunks: what a scrape holds of its text at a time (two
    /// in flight at most, one sent while the next is rendered).
    public static let chunkBytes = 2 << 20

    /// The exposition text, whole, in one buffer (tests, `veerctl`-style readers of a String).
    public func render() -> ByteBuffer {
        let (hits, ids) = hitSeries()
        // A large text gets at least 33 MB of (untouched, so not resident) capacity: past glibc's
        // highest dynamic mmap threshold (32 MB) the buffer is always its own mapping, returned
        // whole when freed, instead of a heap block the next scrapes' smaller ones fragment.
        let estimate = hits.estimatedBytes + 16_384 + extra.count
        var out = PrometheusText(reservingCapacity: estimate >= 4 << 20 ? max(estimate, 33 << 20) : estimate)
        write(hits, ids, into: &out)
        return out.buffer
    }

    /// The exposition text handed to `emit` in chunks of about `chunkBytes` as it is rendered
    /// (the listener's response body): a scrape holds a chunk or two of its text, not the whole
    /// (131 MB at 50,000 services). `emit` returns false once the receiver is gone, which ends
    /// the render early. Returns the bytes emitted and whether the text went out whole.
    public func render(chunkBytes: Int = chunkBytes, _ emit: @escaping @Sendable (ByteBuffer) -> Bool) -> (bytes: Int, complete: Bool) {
        let (hits, ids) = hitSeries()
        var out = PrometheusText(streamingChunksOf: chunkBytes, emit)
        write(hits, ids, into: &out)
        out.flush()
        return (out.bytesEmitted, !out.isAbandoned)
    }

    /// The hit series over the layout of the agent's names and ids (kept from an earlier scrape
    /// of the same generation), and the ids.
    private func hitSeries() -> (HitSeries, ProgrammedIDs) {
        let ids = programmed ?? ProgrammedIDs((try? maps.readState()) ?? MapState())
        let build = { HitLayout(ids, names: names, mode: hitMetrics) }
        // Only the agent's own copy of what it wrote has a generation; maps read back do not.
        let layout = programmed != nil
            ? layouts?.layout(generation: counters.programmedGeneration, mode: hitMetrics, build: build) {
                $0.patch(ids, names: names, change: $1)
            } ?? build()
            : build()
        return (HitSeries(layout, hits: (try? maps.memberHits()) ?? MemberHits()), ids)
    }

    private func write(_ hits: HitSeries, _ ids: ProgrammedIDs, into out: inout PrometheusText) {
        hits.write(into: &out)
        out.flushIfFull()

        out.family("veer_datapath_events_total", .counter, help: "Datapath events counted in the kernel.")
        let stats = (try? maps.stats()) ?? [:]
        for stat in DatapathStat.allCases {
            out.sample("veer_datapath_events_total", ["event": stat.name], Double(stats[stat] ?? 0))
        }

        let fill = (try? programmed.map { try maps.fill(agentWritten: $0.entries) } ?? maps.fill()) ?? []
        out.family("veer_map_entries", .gauge, help: "Entries in each BPF map.")
        for f in fill { out.sample("veer_map_entries", ["map": f.map], Double(f.entries)) }
        out.family("veer_map_capacity", .gauge, help: "max_entries of each BPF map.")
        for f in fill { out.sample("veer_map_capacity", ["map": f.map], Double(f.capacity)) }

        out.family("veer_frontends", .gauge, help: "Frontends programmed on this node.")
        out.sample("veer_frontends", [], Double(ids.frontends))
        out.family("veer_backends", .gauge, help: "Backends programmed on this node.")
        out.sample("veer_backends", [], Double(ids.backends.count))
        out.family("veer_synced", .gauge, help: "1 once the source's first full list has been programmed.")
        out.sample("veer_synced", [], synced ? 1 : 0)

        out.family("veer_sync_duration_seconds", .histogram, help: "Time to select, plan and write the maps.")
        counters.syncDuration.write("veer_sync_duration_seconds", into: &out)
        out.family("veer_programming_latency_seconds", .histogram,
                   help: "Time from a source change arriving to the maps holding it.")
        counters.programmingLatency.write("veer_programming_latency_seconds", into: &out)
        out.family("veer_network_programming_duration_seconds", .histogram,
                   help: "From an EndpointSlice's endpoints.kubernetes.io/last-change-trigger-time to the maps holding it, as kube-proxy measures it.")
        counters.networkProgramming.write("veer_network_programming_duration_seconds", into: &out)
        out.family("veer_syncs_total", .counter, help: "Syncs of the maps.")
        out.sample("veer_syncs_total", [], Double(counters.syncCount))
        out.family("veer_sync_errors_total", .counter, help: "Syncs that failed to write the maps (retried).")
        out.sample("veer_sync_errors_total", [], Double(counters.syncErrors))
        out.family("veer_map_operations_total", .counter, help: "Map writes and deletes performed.")
        out.sample("veer_map_operations_total", [], Double(counters.mapOperations))
        out.family("veer_rejected_objects_total", .counter,
                   help: "Objects (or parts of them) rejected as malformed, by kind and offending field.")
        for (key, n) in counters.rejectedObjects.sorted(by: { $0.key < $1.key }) {
            out.sample("veer_rejected_objects_total", ["kind": key.kind, "field": key.field], Double(n))
        }
        out.family("veer_service_rejections_total", .counter, help: "Services not programmed because a map was full or a frontend was claimed twice.")
        out.sample("veer_service_rejections_total", [], Double(counters.serviceRejections))
        out.family("veer_services_rejected", .gauge, help: "Services currently not programmed (map full, conflicting frontend).")
        out.sample("veer_services_rejected", [], Double(rejectedServices))
        out.family("veer_sockets_terminated_total", .counter,
                   help: "Connected sockets destroyed because their backend left the service, by protocol.")
        for proto in [L4Protocol.tcp, .udp] {
            out.sample("veer_sockets_terminated_total", ["protocol": proto.kubernetesName], Double(counters.socketsTerminated[proto] ?? 0))
        }
        if let stats = apiStatistics {
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
        out.sample("veer_socket_termination_failures_total", [], Double(counters.terminationFailures))
        if let packetPath, let stats = try? packetPath.stats() {
            out.family("veer_packet_path_packets_total", .counter,
                       help: "Packets from outside the node to a frontend, by what the packet path did (translated: a flow opened).")
            for stat in PacketPathStat.allCases {
                out.sample("veer_packet_path_packets_total", ["event": stat.name], Double(stats[stat] ?? 0))
            }
            out.family("veer_packet_path_interfaces", .gauge, help: "Interfaces the packet path is attached to.")
            out.sample("veer_packet_path_interfaces", [], Double(packetPath.interfaces.count))
            out.family("veer_packet_path_errors_total", .counter, help: "Failed attachments of the packet path.")
            out.sample("veer_packet_path_errors_total", [], Double(counters.packetPathErrors))
            out.family("veer_packet_path_flows_deleted_total", .counter,
                       help: "UDP conntrack flows deleted because their backend left the frontend.")
            out.sample("veer_packet_path_flows_deleted_total", [], Double(counters.conntrackFlowsDeleted))
        }
        out.family("veer_source_problems_total", .counter, help: "Problems a source reported (unreadable files, failed requests), by severity.")
        for (kind, n) in counters.sourceProblems.sorted(by: { $0.key < $1.key }) {
            out.sample("veer_source_problems_total", ["problem": kind], Double(n))
        }
        out.append(extra)
    }
}

/// As much of what the agent wrote to the maps as a scrape needs: which frontend and backend each
/// id stands for, and how many entries each map holds. From the running copy these are its
/// tables by id (in chunks), so a sync that writes while a scrape renders copies one chunk of
/// them, never a whole table, the members or the slots.
struct ProgrammedIDs: Sendable {
    var revNat: AddressesByID
    var backends: AddressesByID
    var frontends: Int
    var entries: MapEntryCounts

    init(_ state: MapState) {
        revNat = AddressesByID(state.revNat)
        backends = AddressesByID(state.backends)
        frontends = state.masters.count
        entries = MapEntryCounts(services: state.serviceEntryCount, backends: state.backends.count,
                                 revNat: state.revNat.count, members: state.members.count)
    }

    init(_ running: IndexedMapState) {
        let state = running.state
        revNat = running.revNatAddresses
        backends = running.backendAddresses
        frontends = state.masters.count
        entries = MapEntryCounts(services: running.serviceEntryCount, backends: state.backends.count,
                                 revNat: state.revNat.count, members: state.members.count)
    }
}

extension Agent {
    /// The metrics as Prometheus text. The snapshot is taken on the agent's actor; the
    /// rendering and the kernel reads run off it, so a scrape never delays a change.
    public nonisolated func metricsText() async -> String {
        String(buffer: await metricsBuffer())
    }

    /// The metrics as the listener sends them: no String of tens of megabytes in between, and
    /// no copy.
    /// Rendered on a thread of its own at a lower priority (nice 10; on Linux the nice value is
    /// per thread), as the state-file writer does: at 50,000 services a scrape takes a second or
    /// more of CPU, and on a pool thread of a 2-core node it held the watch stream's decoding
    /// and the syncs back (the agent bench's change → maps p99 with a scrape every 2 s: 4.9 ->
    /// 19 ms); here the scheduler prefers them.
    public nonisolated func metricsBuffer() async -> ByteBuffer {
        let snapshot = await metricsSnapshot()
        // `render` does not throw: `try?` only satisfies the thread runner's signature.
        return (try? await BackgroundThread.run(named: "veer-metrics") { snapshot.render() }) ?? ByteBuffer()
    }

    /// The metrics handed to `emit` in chunks as they are rendered, on the same thread of their
    /// own as `metricsBuffer`: `emit` may block that thread until the chunk before is sent (the
    /// listener's `BodyStream.write`), so a slow scraper holds a chunk or two of the text, and
    /// nothing waits on the agent's actor or on an event loop. Returns the bytes emitted and
    /// whether the text went out whole.
    public nonisolated func streamMetrics(chunkBytes: Int = MetricsSnapshot.chunkBytes,
                                          _ emit: @escaping @Sendable (ByteBuffer) -> Bool) async -> (bytes: Int, complete: Bool) {
        let snapshot = await metricsSnapshot()
        return (try? await BackgroundThread.run(named: "veer-metrics") { snapshot.render(chunkBytes: chunkBytes, emit) }) ?? (0, false)
    }

    /// /metrics as the listener serves it: streamed, chunk by chunk (chunked transfer encoding).
    public nonisolated func metricsResponse(chunkBytes: Int = MetricsSnapshot.chunkBytes) -> HTTPListener.Response {
        HTTPListener.Response(.ok, contentType: "text/plain; version=0.0.4; charset=utf-8") { body in
            _ = await self.streamMetrics(chunkBytes: chunkBytes) { body.write($0) }
        }
    }
}
