import CVeer
import Foundation
import VeerModel

/// The packet path's counters (enum veer_pkt_stat), by name.
public enum PacketPathStat: UInt32, CaseIterable, Sendable {
    case translated = 0, tracked, untracked, dropped, refused, slotMissing, familyMismatch, ctFailed, noRoute, sourceDenied, affinity

    public var name: String {
        switch self {
        case .translated: "translated"
        case .tracked: "tracked"
        case .untracked: "untracked"
        case .dropped: "dropped"
        case .refused: "refused"
        case .slotMissing: "slot_missing"
        case .familyMismatch: "family_mismatch"
        case .ctFailed: "conntrack_failed"
        case .noRoute: "no_route"
        case .sourceDenied: "source_denied"
        case .affinity: "affinity"
        }
    }
}

/// Frontends served to clients outside the node: bpf/veer_tc.bpf.c at tc ingress (clsact)
/// of the interfaces that hold the node's addresses. It reads the socket datapath's pinned
/// maps (so `Datapath.install` runs first) and hands each new flow to the kernel's conntrack
/// and NAT, whose hooks `NATHooks` registers.
///
/// tc filters hold their program themselves (no link to pin): a restarted veerd loads the
/// object again and replaces the filter in place (same handle and priority), so no packet
/// meets an interface without one, and flows already open live on in conntrack.
public final class PacketPath: @unchecked Sendable {
    public static let programName = "veer_tc_ingress"
    public static let objectName = "veer_tc.bpf.o"
    /// The filter's handle and priority: ours, so replace and detach touch only it ("ve").
    static let handle: UInt32 = 0x7665
    static let priority: UInt32 = 0x7665

    private let object: OpaquePointer
    private let programFD: Int32
    private let lock = NSLock()
    private var attachedInterfaces: [String: Int32] = [:]
    private var natHooksReady = false
    let statsMap: BPFMap<UInt32, UInt64>

    /// Loads the object against the maps pinned in `pins`. Nothing is attached, and the NAT
    /// hooks are not registered, before the first `attach`: a veerd whose node has no address
    /// on any interface here leaves the namespace's tc and nftables as they were.
    public init(object path: String, pins: PinLayout) throws {
        guard access(path, R_OK) == 0 else { throw DatapathError.objectNotFound(path: path) }
        guard access(pins.maps, F_OK) == 0 else { throw DatapathError.notInstalled(pinDirectory: pins.directory) }
        veer_libbpf_log_capture(0)
        veer_libbpf_log_clear()
        guard let obj = bpf_object__open_file(path, nil) else {
            throw DatapathError.objectInvalid(path: path, detail: String(cString: strerror(errno)))
        }
        var map = bpf_object__next_map(obj, nil)
        while let m = map {
            let name = String(cString: bpf_map__name(m))
            // libbpf's own maps (.rodata, .bss) belong to this load only: never pinned.
            if name.contains(".") { map = bpf_object__next_map(obj, m); continue }
            let pin = "\(pins.maps)/\(name)"
            // The shared maps may have been sized by the agent at install: take their size.
            if let pinned = Datapath.pinnedMaxEntries(pin) { bpf_map__set_max_entries(m, UInt32(pinned)) }
            guard bpf_map__set_pin_path(m, pin) == 0 else {
                bpf_object__close(obj)
                throw DatapathError.syscall(operation: "set pin path of \(name)", errno: errno)
            }
            map = bpf_object__next_map(obj, m)
        }
        if bpf_object__load(obj) != 0 {
            let err = errno
            let log = Datapath.capturedLog()
            bpf_object__close(obj)
            if err == EPERM || err == EACCES { throw DatapathError.permissionDenied(log: log) }
            if log.contains("couldn't reuse pinned map") {
                throw DatapathError.schemaMismatch(pinDirectory: pins.directory, log: log)
            }
            throw DatapathError.verifierRejected(log: log)
        }
        guard let prog = bpf_object__find_program_by_name(obj, Self.programName) else {
            bpf_object__close(obj)
            throw DatapathError.objectInvalid(path: path, detail: "no program \(Self.programName)")
        }
        object = obj
        programFD = bpf_program__fd(prog)
        statsMap = try BPFMap(pinned: "\(pins.maps)/veer_pkt_stats", name: "veer_pkt_stats")
    }

    deinit { bpf_object__close(object) }

    /// Interfaces the program is attached to by this instance.
    public var interfaces: [String] { lock.withLock { attachedInterfaces.keys.sorted() } }

    /// Attaches (or replaces our filter) at tc ingress of `interface`, creating its clsact qdisc.
    public func attach(_ interface: String) throws {
        let index = Int32(bitPattern: if_nametoindex(interface))
        guard index > 0 else { throw DatapathError.tcAttachFailed(interface: interface, errno: ENODEV) }
        // Once per start: the table is replaced atomically, so a restart finds it as it was.
        if !lock.withLock({ natHooksReady }) {
            try NATHooks.ensure()
            lock.withLock { natHooksReady = true }
        }
        let rc = veer_tc_attach_ingress(index, programFD, Self.handle, Self.priority)
        guard rc == 0 else { throw DatapathError.tcAttachFailed(interface: interface, errno: -rc) }
        lock.withLock { attachedInterfaces[interface] = index }
    }

    /// Attaches to every interface in `wanted` not yet attached; returns the ones newly attached.
    @discardableResult
    public func attach(all wanted: [String]) throws -> [String] {
        let have = Set(interfaces)
        var added: [String] = []
        for name in wanted where !have.contains(name) {
            try attach(name)
            added.append(name)
        }
        return added
    }

    /// Removes our filter from every interface of this network namespace that has it
    /// (uninstall; the clsact qdisc stays: other programs may use it). Returns the interfaces.
    @discardableResult
    public static func detachAll() -> [String] {
        var removed: [String] = []
        guard let list = if_nameindex() else { return removed }
        defer { if_freenameindex(list) }
        var p = list
        while p.pointee.if_index != 0 {
            let name = String(cString: p.pointee.if_name)
            let index = Int32(bitPattern: p.pointee.if_index)
            var id: UInt32 = 0
            if veer_tc_query_ingress(index, handle, priority, &id) == 0, programName(id: id) == programName,
               veer_tc_detach_ingress(index, handle, priority) == 0 {
                removed.append(name)
            }
            p += 1
        }
        return removed
    }

    /// The names of the interfaces (in the caller's network namespace, read by netlink
    /// through getifaddrs) that hold any of `addresses`.
    public static func interfaces(holding addresses: [IPAddress]) -> [String] {
        let wanted = Set(addresses)
        var result: Set<String> = []
        var head: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&head) == 0 else { return [] }
        defer { freeifaddrs(head) }
        var p = head
        while let entry = p {
            defer { p = entry.pointee.ifa_next }
            guard let sa = entry.pointee.ifa_addr else { continue }
            var ip: IPAddress?
            if Int32(sa.pointee.sa_family) == AF_INET {
                ip = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { IPAddress(ipv4: UInt32(bigEndian: $0.pointee.sin_addr.s_addr)) }
            } else if Int32(sa.pointee.sa_family) == AF_INET6 {
                ip = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { s in
                    withUnsafeBytes(of: s.pointee.sin6_addr) { IPAddress(bytes: $0) }
                }
            }
            if let ip, wanted.contains(ip), !ip.isLoopback { result.insert(String(cString: entry.pointee.ifa_name)) }
        }
        return result.sorted()
    }

    /// The packet path's counters, summed over CPUs.
    public func stats() throws -> [PacketPathStat: UInt64] {
        try Self.sum(statsMap)
    }

    /// Deletes the UDP conntrack entries (of the caller's network namespace) that were
    /// translated from a frontend the maps hold to a backend no longer among its slots, in
    /// either scope: kube-proxy's cleanup, so a client's next datagram opens a flow to a live
    /// backend instead of talking to a removed one until the entry times out. Entries whose
    /// destination is not a frontend, or that were not translated, are left alone. Returns
    /// how many were deleted.
    public static func deleteStaleUDPFlows(state: MapState) throws -> Int {
        var members: [L4Address: Set<L4Address>] = [:]
        for (frontend, master) in state.masters where frontend.proto == .udp {
            let slots = state.slots[frontend] ?? [:]
            let backends = (0..<Int(master.count)).compactMap { slots[UInt16($0 + 1)].flatMap { state.backends[$0]?.address } }
            members[frontend.scoped(.cluster), default: []].formUnion(backends)
        }
        guard !members.isEmpty else { return 0 }
        var list: UnsafeMutablePointer<veer_ct_flow>?
        var count = 0
        let rc = veer_conntrack_udp_list(&list, &count)
        guard rc == 0 else { throw DatapathError.syscall(operation: "list conntrack entries", errno: -rc) }
        defer { free(list) }
        var deleted = 0
        for i in 0..<count {
            let flow = list![i]
            let frontend = L4Address(be: flow.orig_dst, port: flow.orig_dport, proto: L4Protocol.udp.rawValue)
            let backend = L4Address(be: flow.reply_src, port: flow.reply_sport, proto: L4Protocol.udp.rawValue)
            guard backend != frontend, let live = members[frontend], !live.contains(backend) else { continue }
            var f = flow
            if veer_conntrack_delete(&f) == 0 { deleted += 1 }
        }
        return deleted
    }

    /// The counters pinned in `pins` (veerctl, also while veerd is down); nil if the packet
    /// path was never loaded there.
    public static func pinnedStats(pins: PinLayout) throws -> [PacketPathStat: UInt64]? {
        let path = "\(pins.maps)/veer_pkt_stats"
        guard access(path, F_OK) == 0 else { return nil }
        return try sum(BPFMap(pinned: path, name: "veer_pkt_stats"))
    }

    private static func sum(_ map: BPFMap<UInt32, UInt64>) throws -> [PacketPathStat: UInt64] {
        var result: [PacketPathStat: UInt64] = [:]
        for stat in PacketPathStat.allCases { result[stat] = try map.counter(stat.rawValue) ?? 0 }
        return result
    }

    private static func programName(id: UInt32) -> String? {
        let fd = bpf_prog_get_fd_by_id(id)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = bpf_prog_info()
        var len = UInt32(MemoryLayout<bpf_prog_info>.size)
        guard bpf_obj_get_info_by_fd(fd, &info, &len) == 0 else { return nil }
        // The kernel keeps the first 15 bytes of a program's name.
        let name = withUnsafeBytes(of: info.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return programName.hasPrefix(name) && !name.isEmpty ? programName : name
    }
}
