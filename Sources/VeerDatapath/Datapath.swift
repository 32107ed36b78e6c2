import CVeer
import Foundation
import VeerModel

/// while the agent is down.
public final class Datapath: @unchecked Sendable {
    public let pins: PinLayout
    let services: BPFMap<veer_svc_key, veer_svc_val>
    let backends: BPFMap<UInt32, veer_backend>
    let revNat: BPFMap<UInt32, veer_rev_nat>
    let members: BPFMap<veer_member_key, veer_member_val>
    let sockRev: BPFMap<veer_sock_rev_key, veer_sock_rev_val>
    let affinity: BPFMap<veer_affinity_key, veer_affinity_val>
    let statsMap: BPFMap<UInt32, UInt64>
    let config: BPFMap<UInt32, veer_config>
    let serviceIPs: BPFMap<veer_lpm_addr_key, veer_service_ip>
    let sourceRanges: BPFMap<veer_src_range_key, veer_src_range_val>
    /// Hits of (frontend, backend) pairs whose member entry was deleted, so a counter stays
    /// monotonic when a backend leaves a frontend and comes back (readiness flapping).
    var retiredHits: [String: UInt64] {
        didSet { retiredPairs = nil }
    }
    /// `retiredHits` by address pair, parsed by the first scrape after they changed (not by
    /// every scrape: after churn they are thousands of text keys).
    var retiredPairs: [FrontendBackend: UInt64]?
    /// A scrape reads `retiredHits` off the agent's actor while a sync may add to it; it
    /// guards `retiredPairs` too.
    let retiredLock = NSLock()
    /// Schema versions whose pins `install` found under the root and removed (an upgrade).
    public internal(set) var retiredVersions: [String] = []

    /// Opens an installed datapath's maps.
    public init(pins: PinLayout = PinLayout()) throws {
        self.pins = pins
        guard access(pins.maps, F_OK) == 0 else {
            if let other = pins.otherVersions.first {
                throw DatapathError.versionMismatch(pinned: other.version, supported: PinLayout.version, root: pins.root)
            }
            throw DatapathError.notInstalled(pinDirectory: pins.directory)
        }
        func path(_ name: String) -> String { "\(pins.maps)/\(name)" }
        services = try BPFMap(pinned: path("veer_services"), name: "veer_services")
        backends = try BPFMap(pinned: path("veer_backends"), name: "veer_backends")
        revNat = try BPFMap(pinned: path("veer_rev_nat"), name: "veer_rev_nat")
        members = try BPFMap(pinned: path("veer_members"), name: "veer_members")
        sockRev = try BPFMap(pinned: path("veer_sock_rev"), name: "veer_sock_rev")
        affinity = try BPFMap(pinned: path("veer_affinity"), name: "veer_affinity")
        statsMap = try BPFMap(pinned: path("veer_stats"), name: "veer_stats")
        config = try BPFMap(pinned: path("veer_config"), name: "veer_config")
        serviceIPs = try BPFMap(pinned: path("veer_service_ips"), name: "veer_service_ips")
        sourceRanges = try BPFMap(pinned: path("veer_source_ranges"), name: "veer_source_ranges")
        retiredHits = RetiredHitsFile.read(pins: pins)
    }


    /// Every program's pinned link is in place.
    public var isAttached: Bool {
        datapathPrograms.allSatisfy { access("\(pins.links)/\($0)", F_OK) == 0 }
    }

    /// The scope the programs translate in, as the config map holds it: the netns cookie
    /// when hostns-only, nil when every namespace is translated.
    public func hostNamespaceCookie() throws -> UInt64? {
        guard let entry = try config.lookup(0), entry.flags & UInt32(VEER_CFG_F_HOSTNS_ONLY) != 0 else { return nil }
        return entry.hostns_cookie
    }

    // MARK: - Counters and sockets

    /// Selections per (frontend, backend), summed over CPUs.
    public func hits() throws -> [MemberKey: UInt64] {
        var result: [MemberKey: UInt64] = [:]
        for (key, sum) in try members.counters() { result[key.member] = sum }
        return result
    }

    /// Selections per (frontend, backend) address pair currently programmed, including what
    /// earlier memberships of the same pair counted: monotonic, as a Prometheus counter must be.
    public func hitsByAddress(_ state: MapState) throws -> [FrontendBackend: UInt64] {
        var result: [FrontendBackend: UInt64] = [:]
        let retiredHits = retiredLock.withLock { self.retiredHits }
        for (member, count) in try hits() {
            guard let frontend = state.revNat[member.revNatID], let backend = state.backends[member.backendID]?.address else { continue }
            let pair = FrontendBackend(frontend: frontend, backend: backend)
            result[pair] = count + (retiredHits[RetiredHitsFile.key(frontend, backend)] ?? 0)
        }
        return result
    }

    public func stats() throws -> [DatapathStat: UInt64] {
        var result: [DatapathStat: UInt64] = [:]
        for stat in DatapathStat.allCases {
            result[stat] = try statsMap.counter(stat.index) ?? 0
        }
        return result
    }

    /// Sockets the datapath has translated and not yet seen released.
    public func sockets() throws -> [TranslatedSocket] {
        try sockRev.entries().map { key, value in
            TranslatedSocket(cookie: key.cookie,
                             backend: L4Address(be: key.addr, port: key.port, proto: key.proto),
                             frontend: L4Address(be: value.addr, port: value.port, proto: value.proto),
                             revNatID: value.rev_nat_id)
        }
    }

    /// How full each map is: (name, entries, capacity).
    public func fill() throws -> [(map: String, entries: Int, capacity: Int)] {
        try fill(counted: nil)
    }

    /// Every map's row; the agent-written four counted from `counted` when given, else key by key.
    func fill(counted: MapEntryCounts?) throws -> [(map: String, entries: Int, capacity: Int)] {
        [
            ("veer_services", try counted?.services ?? services.keys().count, services.capacity),
            ("veer_backends", try counted?.backends ?? backends.keys().count, backends.capacity),
            ("veer_rev_nat", try counted?.revNat ?? revNat.keys().count, revNat.capacity),
            ("veer_members", try counted?.members ?? members.keys().count, members.capacity),
            ("veer_sock_rev", try sockRev.keys().count, sockRev.capacity),
            ("veer_affinity", try affinity.keys().count, affinity.capacity),
            ("veer_service_ips", try serviceIPs.keys().count, serviceIPs.capacity),
            ("veer_source_ranges", try sourceRanges.keys().count, sourceRanges.capacity),
        ]
    }
}

/// retired-hits.json in the state directory, beside names.json.
enum RetiredHitsFile {
    static func path(_ pins: PinLayout) -> String { "\(NamesFile.directory(pins))/retired-hits.json" }
    static func key(_ frontend: L4Address, _ backend: L4Address) -> String { "\(frontend) \(backend)" }

    static func read(pins: PinLayout) -> [String: UInt64] {
        readState([String: UInt64].self, from: path(pins)) ?? [:]
    }

    static func write(_ hits: [String: UInt64], pins: PinLayout) {
        try? writeState(hits, to: path(pins), pins: pins)
    }
}

public struct TranslatedSocket: Hashable, Sendable {
    public var cookie: UInt64
    public var backend: L4Address
    public var frontend: L4Address
    public var revNatID: UInt32
}
