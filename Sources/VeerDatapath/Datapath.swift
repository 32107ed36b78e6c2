import CVeer
import Foundation
import VeerModel

/// Where a datapath's pins live: `<root>/<version>/maps/<map>` and `.../links/<program>`.
/// The version changes with any map layout change, so an upgrade never reuses maps of
/// another shape.
public struct PinLayout: Sendable, Hashable {
    public var root: String
    /// The schema version directory; another than `PinLayout.version` only to retire old pins.
    public var version: String

    public init(root: String = "/sys/fs/bpf/veer", version: String = PinLayout.version) {
        self.root = root
        self.version = version
    }

    public static var version: String { VEER_PIN_VERSION }
    public var directory: String { "\(root)/\(version)" }

    /// Pin directories of other schema versions under the same root (`v1` beside `v2`).
    public var otherVersions: [PinLayout] {
        ((try? listDirectory(root)) ?? []).filter { name in
            name != version && name.hasPrefix("v") && name.dropFirst().allSatisfy(\.isNumber) && name.count > 1
        }.sorted().map { PinLayout(root: root, version: $0) }
    }
    public var maps: String { "\(directory)/maps" }
    public var links: String { "\(directory)/links" }
}

/// The attached programs, by their names in bpf/veer_sock.bpf.c: four hooks per address
/// family, the release hook both share, and bind protection (post_bind4/6).
public let datapathPrograms = [
    "veer_connect4", "veer_sendmsg4", "veer_recvmsg4", "veer_getpeername4",
    "veer_connect6", "veer_sendmsg6", "veer_recvmsg6", "veer_getpeername6",
    "veer_sock_release",
    "veer_post_bind4", "veer_post_bind6",
]

/// Which sockets the programs translate.
public enum TranslationScope: Sendable, Hashable {
    /// Every socket in the cgroup, in any network namespace (the default).
    case allNamespaces
    /// Only sockets of the network namespace at this path (veerd: its own, the host's).
    /// Pods then reach the ClusterIP itself, so a mesh sidecar can intercept it.
    case hostNamespaceOnly(netns: String)
}

/// The pinned BPF datapath: typed access to every map, and the operations that load,
/// attach, adopt and remove it. Opening an instance only opens pins, so veerctl works
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
    private var retiredHits: [String: UInt64]
    /// A scrape reads `retiredHits` off the agent's actor while a sync may add to it.
    private let retiredLock = NSLock()
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

    /// Loads the object, pins its maps (reusing pinned ones: contents survive), and
    /// attaches every program to `cgroup` through pinned links. Links already pinned are
    /// adopted: their program is swapped in place, so there is no moment without one.
    /// `scope` is written before any program is attached or swapped, and on every install,
    /// so a restart without hostns-only turns it off.
    public static func install(object: String, cgroup: String, pins: PinLayout = PinLayout(),
                               capacities: MapCapacities? = nil,
                               scope: TranslationScope = .allNamespaces,
                               bindProtection: Bool = true) throws -> Datapath {
        try SystemCheck.requireRoot()
        try SystemCheck.requireCgroup2(cgroup)
        try SystemCheck.prepareBPFFS(for: pins.root)
        guard access(object, R_OK) == 0 else { throw DatapathError.objectNotFound(path: object) }
        var configEntry = veer_config()
        if case let .hostNamespaceOnly(netns) = scope {
            configEntry.hostns_cookie = try SystemCheck.netnsCookie(netns)
            configEntry.flags = UInt32(VEER_CFG_F_HOSTNS_ONLY)
        } else {
            // The host's namespace is the installer's (veerd's): bind protection applies there,
            // and an unbound socket there is the node itself for loadBalancerSourceRanges.
            configEntry.hostns_cookie = try SystemCheck.netnsCookie("/proc/self/ns/net")
        }
        if bindProtection { configEntry.flags |= UInt32(VEER_CFG_F_BIND_PROTECT) }
        var retired: [String] = []
        for dir in [pins.root, pins.directory, pins.maps, pins.links] {
            guard mkdir(dir, 0o700) == 0 || errno == EEXIST else {
                throw DatapathError.syscall(operation: "create pin directory \(dir)", errno: errno)
            }
        }

        veer_libbpf_log_capture(0)
        veer_libbpf_log_clear()
        guard let obj = bpf_object__open_file(object, nil) else {
            throw DatapathError.objectInvalid(path: object, detail: String(cString: strerror(errno)))
        }
        defer { bpf_object__close(obj) }

        var map = bpf_object__next_map(obj, nil)
        while let m = map {
            let name = String(cString: bpf_map__name(m))
            if let wanted = capacities?.maxEntries(forMap: name), let pinned = pinnedMaxEntries("\(pins.maps)/\(name)"),
               pinned != wanted {
                throw DatapathError.capacityMismatch(map: name, pinned: pinned, requested: wanted)
            }
            guard bpf_map__set_pin_path(m, "\(pins.maps)/\(name)") == 0 else {
                throw DatapathError.syscall(operation: "set pin path of \(name)", errno: errno)
            }
            if let size = capacities?.maxEntries(forMap: name) {
                bpf_map__set_max_entries(m, UInt32(size))
            }
            map = bpf_object__next_map(obj, m)
        }

        if bpf_object__load(obj) != 0 {
            let err = errno
            let log = capturedLog()
            if err == EPERM || err == EACCES { throw DatapathError.permissionDenied(log: log) }
            if log.contains("couldn't reuse pinned map") {
                throw DatapathError.schemaMismatch(pinDirectory: pins.directory, log: log)
            }
            throw DatapathError.verifierRejected(log: log)
        }
        try BPFMap<UInt32, veer_config>(pinned: "\(pins.maps)/veer_config", name: "veer_config").update(0, configEntry)

        let cgroupFD = open(cgroup, O_RDONLY | O_DIRECTORY)
        guard cgroupFD >= 0 else { throw DatapathError.noCgroup2(path: cgroup) }
        defer { close(cgroupFD) }
        let cgroupID = SystemCheck.cgroupID(cgroup)

        for name in datapathPrograms {
            guard let prog = bpf_object__find_program_by_name(obj, name) else {
                throw DatapathError.objectInvalid(path: object, detail: "program \(name) is missing")
            }
            let linkPin = "\(pins.links)/\(name)"
            if access(linkPin, F_OK) == 0, let link = bpf_link__open(linkPin) {
                defer { bpf_link__destroy(link) }
                let attachedTo = linkCgroupID(fd: bpf_link__fd(link))
                if attachedTo == cgroupID {
                    guard bpf_link__update_program(link, prog) == 0 else {
                        throw DatapathError.syscall(operation: "replace program in link \(linkPin)", errno: errno)
                    }
                    continue
                }
                if attachedTo != 0 {
                    throw DatapathError.attachedElsewhere(pinDirectory: pins.directory, cgroupID: attachedTo ?? 0,
                                                          requested: cgroup)
                }
                // The link's cgroup is gone (defunct link): replace it.
                _ = bpf_link__unpin(link)
            }
            guard let link = bpf_program__attach_cgroup(prog, cgroupFD) else {
                throw DatapathError.attachFailed(program: name, cgroup: cgroup, errno: errno)
            }
            defer { bpf_link__destroy(link) } // closes our fd only: the pin keeps it attached
            guard bpf_link__pin(link, linkPin) == 0 else {
                let err = errno
                _ = bpf_link__detach(link)
                throw DatapathError.syscall(operation: "pin link \(linkPin)", errno: err)
            }
        }
        // An in-place upgrade across a schema change leaves the old version's programs attached
        // beside the new ones, and the first attached runs first: with its maps no longer
        // written, it would keep translating to stale backends. Ours, under our root: retire
        // them once the new programs are in place, so there is no moment without a program.
        for old in pins.otherVersions {
            do {
                if try uninstall(pins: old) { retired.append(old.version) }
            } catch {
                throw DatapathError.syscall(operation: "retire pins of schema \(old.version) at \(old.directory)", errno: errno)
            }
        }
        let datapath = try Datapath(pins: pins)
        datapath.retiredVersions = retired
        return datapath
    }

    /// Detaches every program, removes every pin and directory. Returns false if nothing
    /// was installed.
    @discardableResult
    public static func uninstall(pins: PinLayout = PinLayout()) throws -> Bool {
        guard access(pins.directory, F_OK) == 0 else {
            // Even with the pins gone, the state directory goes (a veerd that never installed
            // leaves its lock file there).
            removeStateDirectory(pins)
            return false
        }
        for name in (try? listDirectory(pins.links)) ?? [] {
            let path = "\(pins.links)/\(name)"
            if let link = bpf_link__open(path) {
                _ = bpf_link__detach(link)
                bpf_link__destroy(link)
            }
            guard unlink(path) == 0 || errno == ENOENT else {
                throw DatapathError.syscall(operation: "unpin \(path)", errno: errno)
            }
        }
        for name in (try? listDirectory(pins.maps)) ?? [] {
            let path = "\(pins.maps)/\(name)"
            guard unlink(path) == 0 || errno == ENOENT else {
                throw DatapathError.syscall(operation: "unpin \(path)", errno: errno)
            }
        }
        removeStateDirectory(pins)
        for dir in [pins.links, pins.maps, pins.directory] where rmdir(dir) != 0 && errno != ENOENT {
            throw DatapathError.syscall(operation: "remove \(dir)", errno: errno)
        }
        _ = rmdir(pins.root) // only if empty: another version may still live there
        return true
    }

    /// The state directory and its now-empty parents up to /run/veer.
    private static func removeStateDirectory(_ pins: PinLayout) {
        var state = NamesFile.directory(pins)
        try? FileManager.default.removeItem(atPath: state)
        while state.count > "/run/veer".count, let slash = state.lastIndex(of: "/") {
            state = String(state[..<slash])
            if rmdir(state) != 0 { break }
        }
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

    // MARK: - State

    /// What the agent-written maps hold now.
    public func readState() throws -> MapState {
        var state = MapState()
        for (key, value) in try services.entries() {
            if key.slot == 0 {
                state.masters[key.frontend] = value.master
            } else {
                state.slots[key.frontend, default: [:]][key.slot] = value.count_or_backend
            }
        }
        for (id, value) in try backends.entries() { state.backends[id] = value.entry }
        for (id, value) in try revNat.entries() { state.revNat[id] = value.frontend }
        state.members = Set(try members.keys().map(\.member))
        return state
    }

    public var capacities: MapCapacities {
        MapCapacities(services: services.capacity, backends: backends.capacity,
                      revNat: revNat.capacity, members: members.capacity)
    }

    /// Applies operations in order. On a failure it stops and throws: the maps then hold
    /// a consistent prefix of the plan, and the next plan starts from what they hold.
    ///
    /// A run of consecutive updates of one map (backends, rev_nat, or slots and masters) is
    /// written with BPF_MAP_UPDATE_BATCH, which the kernel applies one entry at a time in the
    /// same order: the runs never cross another map or a delete, so every prefix a reader can
    /// see is a prefix of the plan, as with one syscall per operation. Members are inserted
    /// one by one (BPF_NOEXIST keeps an existing entry's counters; the batch takes BPF_ANY only).
    public func apply(_ operations: [MapOperation]) throws {
        var retiredChanged = false
        defer { if retiredChanged { RetiredHitsFile.write(retiredLock.withLock { retiredHits }, pins: pins) } }
        var i = operations.startIndex
        while i < operations.endIndex {
            // Runs of two or more updates of the same map: one batch.
            var backendKeys: [UInt32] = [], backendValues: [veer_backend] = []
            var revNatKeys: [UInt32] = [], revNatValues: [veer_rev_nat] = []
            var serviceKeys: [veer_svc_key] = [], serviceValues: [veer_svc_val] = []
            var memberKeys: [veer_member_key] = []
            var j = i
            scan: while j < operations.endIndex {
                // Which map the run so far writes: a run is one map's.
                let runMap = !backendKeys.isEmpty ? 1 : !revNatKeys.isEmpty ? 2 : !serviceKeys.isEmpty ? 3 : !memberKeys.isEmpty ? 4 : 0
                switch operations[j] {
                case let .upsertBackend(id, entry) where runMap == 0 || runMap == 1:
                    backendKeys.append(id); backendValues.append(veer_backend(entry))
                case let .upsertRevNat(id, address) where runMap == 0 || runMap == 2:
                    revNatKeys.append(id); revNatValues.append(veer_rev_nat(address))
                case let .upsertSlot(address, slot, backendID, revNatID) where runMap == 0 || runMap == 3:
                    serviceKeys.append(veer_svc_key(address, slot: slot))
                    serviceValues.append(veer_svc_val(backendID: backendID, revNatID: revNatID))
                case let .upsertMaster(address, master) where runMap == 0 || runMap == 3:
                    serviceKeys.append(veer_svc_key(address, slot: 0)); serviceValues.append(veer_svc_val(master))
                case let .upsertMember(key) where runMap == 0 || runMap == 4:
                    memberKeys.append(veer_member_key(key))
                default:
                    break scan
                }
                j += 1
            }
            if j - i >= 2 {
                if !backendKeys.isEmpty { try backends.updateBatch(backendKeys, backendValues) }
                if !revNatKeys.isEmpty { try revNat.updateBatch(revNatKeys, revNatValues) }
                if !serviceKeys.isEmpty { try services.updateBatch(serviceKeys, serviceValues) }
                if !memberKeys.isEmpty { try members.insertZeroPerCPU(batch: memberKeys) }
                i = j
                continue
            }
            let op = operations[i]
            i += 1
            switch op {
            case let .upsertBackend(id, entry):
                try backends.update(id, veer_backend(entry))
            case let .upsertRevNat(id, address):
                try revNat.update(id, veer_rev_nat(address))
            case let .upsertMember(key):
                try members.insertZeroPerCPU(veer_member_key(key))
            case let .upsertSlot(address, slot, backendID, revNatID):
                try services.update(veer_svc_key(address, slot: slot), veer_svc_val(backendID: backendID, revNatID: revNatID))
            case let .upsertMaster(address, master):
                try services.update(veer_svc_key(address, slot: 0), veer_svc_val(master))
            case let .deleteSlot(address, slot):
                try services.delete(veer_svc_key(address, slot: slot))
            case let .deleteMaster(address):
                try services.delete(veer_svc_key(address, slot: 0))
            case let .deleteMember(key):
                // Its rev_nat and backend entries are deleted only later in the plan.
                if let sum = try members.perCPUSum(veer_member_key(key)), sum > 0,
                   let frontend = try revNat.lookup(key.revNatID)?.frontend,
                   let backend = try backends.lookup(key.backendID)?.entry.address {
                    retiredLock.withLock { retiredHits[RetiredHitsFile.key(frontend, backend), default: 0] += sum }
                    retiredChanged = true
                }
                try members.delete(veer_member_key(key))
            case let .deleteRevNat(id):
                try revNat.delete(id)
            case let .deleteBackend(id):
                try backends.delete(id)
            }
        }
    }

    /// Reads the maps, plans against them and applies the plan.
    @discardableResult
    public func sync(_ desired: [DesiredFrontend]) throws -> Plan {
        let plan = Planner.plan(desired: desired, actual: try readState(), capacities: capacities)
        try apply(plan.operations)
        return plan
    }

    // MARK: - Counters and sockets

    /// Selections per (frontend, backend), summed over CPUs.
    public func hits() throws -> [MemberKey: UInt64] {
        var result: [MemberKey: UInt64] = [:]
        for (key, sum) in try members.perCPUSums() { result[key.member] = sum }
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
            result[stat] = try statsMap.perCPUSum(stat.index) ?? 0
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
        [
            ("veer_services", try services.keys().count, services.capacity),
            ("veer_backends", try backends.keys().count, backends.capacity),
            ("veer_rev_nat", try revNat.keys().count, revNat.capacity),
            ("veer_members", try members.keys().count, members.capacity),
            ("veer_sock_rev", try sockRev.keys().count, sockRev.capacity),
            ("veer_affinity", try affinity.keys().count, affinity.capacity),
        ]
    }

    // MARK: - Helpers

    static func capturedLog() -> String {
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        _ = veer_libbpf_log_copy(&buffer, buffer.count)
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    static func pinnedMaxEntries(_ path: String) -> Int? {
        let fd = bpf_obj_get(path)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = bpf_map_info()
        var len = UInt32(MemoryLayout<bpf_map_info>.size)
        return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? Int(info.max_entries) : nil
    }

    /// The cgroup id a pinned link is attached to; 0 for a defunct link.
    private static func linkCgroupID(fd: Int32) -> UInt64? {
        var info = bpf_link_info()
        var len = UInt32(MemoryLayout<bpf_link_info>.size)
        guard bpf_obj_get_info_by_fd(fd, &info, &len) == 0 else { return nil }
        return info.cgroup.cgroup_id
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

extension MapCapacities {
    /// The default sizes compiled into the object (veer_maps.h).
    public static let compiledDefaults = MapCapacities(
        services: Int(VEER_SERVICES_MAX), backends: Int(VEER_BACKENDS_MAX),
        revNat: Int(VEER_REV_NAT_MAX), members: Int(VEER_MEMBERS_MAX))

    func maxEntries(forMap name: String) -> Int? {
        switch name {
        case "veer_services": services
        case "veer_backends": backends
        case "veer_rev_nat": revNat
        case "veer_members": members
        default: nil
        }
    }
}

func listDirectory(_ path: String) throws -> [String] {
    guard let dir = opendir(path) else { throw DatapathError.syscall(operation: "list \(path)", errno: errno) }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafePointer(to: entry.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}
