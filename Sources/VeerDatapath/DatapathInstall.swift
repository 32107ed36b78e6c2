import CVeer
import Foundation
import VeerModel

// Loading, attaching, adopting and removing the datapath: the programs, their pinned links and maps.
extension Datapath {
    /// Loads the object, pins its maps (reusing pinned ones: contents survive), and
    /// attaches every program to `cgroup` through pinned links. Links already pinned are
    /// adopted: their program is swapped in place, so there is no moment without one.
    /// `scope` is written before any program is attached or swapped, and on every install,
    /// so a restart without hostns-only turns it off.
    public static func install(object: String, cgroup: String, pins: PinLayout = PinLayout(),
                               capacities: MapCapacities? = nil,
                               tables: TableCapacities = TableCapacities(),
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
            let requested = capacities?.maxEntries(forMap: name) ?? tables.maxEntries(forMap: name)
            if let wanted = requested, let pinned = pinnedMaxEntries("\(pins.maps)/\(name)"),
               pinned != wanted {
                throw DatapathError.capacityMismatch(map: name, pinned: pinned, requested: wanted)
            }
            guard bpf_map__set_pin_path(m, "\(pins.maps)/\(name)") == 0 else {
                throw DatapathError.syscall(operation: "set pin path of \(name)", errno: errno)
            }
            if let size = requested {
                bpf_map__set_max_entries(m, UInt32(size))
            } else if let pinned = pinnedMaxEntries("\(pins.maps)/\(name)") {
                // Not asked to resize: keep what is pinned (an earlier flag, or an older
                // default), which libbpf would otherwise refuse to reuse.
                bpf_map__set_max_entries(m, UInt32(pinned))
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
    static func removeStateDirectory(_ pins: PinLayout) {
        var state = NamesFile.directory(pins)
        try? FileManager.default.removeItem(atPath: state)
        while state.count > "/run/veer".count, let slash = state.lastIndex(of: "/") {
            state = String(state[..<slash])
            if rmdir(state) != 0 { break }
        }
    }

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
    static func linkCgroupID(fd: Int32) -> UInt64? {
        var info = bpf_link_info()
        var len = UInt32(MemoryLayout<bpf_link_info>.size)
        guard bpf_obj_get_info_by_fd(fd, &info, &len) == 0 else { return nil }
        return info.cgroup.cgroup_id
    }
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

/// The sizes of the maps the planner never fills (veer_maps.h's defaults); nil: the compiled
/// default, or what is pinned. Each is requested on its own, unlike the planner's four.
public struct TableCapacities: Hashable, Sendable {
    /// veer_service_ips: a ClusterIP per Service and family, and the service CIDRs.
    public var serviceIPs: Int?
    /// veer_source_ranges: one per restricted frontend and range.
    public var sourceRanges: Int?
    /// veer_sock_rev (LRU): translated sockets.
    public var sockRev: Int?
    /// veer_affinity (LRU): (client, frontend) pairs.
    public var affinity: Int?

    public init(serviceIPs: Int? = nil, sourceRanges: Int? = nil, sockRev: Int? = nil, affinity: Int? = nil) {
        self.serviceIPs = serviceIPs
        self.sourceRanges = sourceRanges
        self.sockRev = sockRev
        self.affinity = affinity
    }

    func maxEntries(forMap name: String) -> Int? {
        switch name {
        case "veer_service_ips": serviceIPs
        case "veer_source_ranges": sourceRanges
        case "veer_sock_rev": sockRev
        case "veer_affinity": affinity
        default: nil
        }
    }
}
