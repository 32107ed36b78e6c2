import CVeer
import VeerModel

// Conversions between the model's types and the C structs of veer_maps.h.
// struct veer_addr and __be16 fields hold network byte order; the model holds host order.
// Both hold IPv4 as ::ffff:a.b.c.d, so an address converts the same for either family.

extension veer_addr {
    init(_ ip: IPAddress) {
        self.init()
        // The 16 network-order bytes, laid over the four __be32 words as they are.
        withUnsafeMutableBytes(of: &ip6) { raw in
            for (i, b) in ip.bytes.enumerated() { raw[i] = b }
        }
    }

    var ip: IPAddress { withUnsafeBytes(of: ip6) { IPAddress(bytes: $0)! } }
}

extension L4Address {
    init(be addr: veer_addr, port: UInt16, proto: UInt8) {
        self.init(ip: addr.ip, port: UInt16(bigEndian: port), proto: L4Protocol(rawValue: proto) ?? .tcp)
    }

    var beAddr: veer_addr { veer_addr(ip) }
    var bePort: UInt16 { port.bigEndian }
}

extension veer_svc_key {
    init(_ frontend: L4Address, slot: UInt16) {
        self.init()
        addr = frontend.beAddr
        port = frontend.bePort
        proto = frontend.proto.rawValue
        scope = frontend.scope.rawValue
        self.slot = slot
    }

    var frontend: L4Address { L4Address(be: addr, port: port, proto: proto).scoped(FrontendScope(rawValue: scope) ?? .cluster) }
}

extension veer_svc_val {
    init(_ master: MasterEntry) {
        self.init()
        count_or_backend = master.count
        rev_nat_id = master.revNatID
        affinity_timeout = master.affinityTimeout
        flags = master.flags
    }

    init(backendID: UInt32, revNatID: UInt32) {
        self.init()
        count_or_backend = backendID
        rev_nat_id = revNatID
    }

    var master: MasterEntry {
        MasterEntry(count: count_or_backend, revNatID: rev_nat_id, affinityTimeout: affinity_timeout, flags: flags)
    }
}

extension veer_backend {
    init(_ entry: BackendEntry) {
        self.init()
        addr = entry.address.beAddr
        port = entry.address.bePort
        proto = entry.address.proto.rawValue
        flags = entry.flags
    }

    var entry: BackendEntry { BackendEntry(address: L4Address(be: addr, port: port, proto: proto), flags: flags) }
}

extension veer_rev_nat {
    init(_ frontend: L4Address) {
        self.init()
        addr = frontend.beAddr
        port = frontend.bePort
        proto = frontend.proto.rawValue
        scope = frontend.scope.rawValue
    }

    var frontend: L4Address { L4Address(be: addr, port: port, proto: proto).scoped(FrontendScope(rawValue: scope) ?? .cluster) }
}

extension veer_member_key {
    init(_ key: MemberKey) {
        self.init()
        rev_nat_id = key.revNatID
        backend_id = key.backendID
    }

    var member: MemberKey { MemberKey(revNatID: rev_nat_id, backendID: backend_id) }
}

/// The datapath's own event counters (enum veer_stat in veer_maps.h), by name: one case per
/// enumerator, in its order, named as it is in camelCase (LayoutTests checks both).
public enum DatapathStat: UInt32, CaseIterable, Sendable {
    case translated, refused, dropped, slotMissing, sockRevFailed, reversed, traced, traceDropped
    case familyMismatch, otherNetns, portRefused, unallocated, bindDenied, sourceDenied
    case affinityFailed, sockStateFailed, sockRevDeleteFailed

    var index: UInt32 {
        switch self {
        case .translated: VEER_STAT_TRANSLATED.rawValue
        case .refused: VEER_STAT_REFUSED.rawValue
        case .dropped: VEER_STAT_DROPPED.rawValue
        case .slotMissing: VEER_STAT_SLOT_MISSING.rawValue
        case .sockRevFailed: VEER_STAT_SOCK_REV_FAILED.rawValue
        case .reversed: VEER_STAT_REVERSED.rawValue
        case .traced: VEER_STAT_TRACED.rawValue
        case .traceDropped: VEER_STAT_TRACE_DROPPED.rawValue
        case .familyMismatch: VEER_STAT_FAMILY_MISMATCH.rawValue
        case .otherNetns: VEER_STAT_OTHER_NETNS.rawValue
        case .portRefused: VEER_STAT_PORT_REFUSED.rawValue
        case .unallocated: VEER_STAT_UNALLOCATED.rawValue
        case .bindDenied: VEER_STAT_BIND_DENIED.rawValue
        case .sourceDenied: VEER_STAT_SOURCE_DENIED.rawValue
        case .affinityFailed: VEER_STAT_AFFINITY_FAILED.rawValue
        case .sockStateFailed: VEER_STAT_SOCK_STATE_FAILED.rawValue
        case .sockRevDeleteFailed: VEER_STAT_SOCK_REV_DELETE_FAILED.rawValue
        }
    }

    public var name: String {
        switch self {
        case .translated: "translated"
        case .refused: "refused"
        case .dropped: "dropped"
        case .slotMissing: "slot_missing"
        case .sockRevFailed: "sock_rev_failed"
        case .reversed: "reversed"
        case .traced: "traced"
        case .traceDropped: "trace_dropped"
        case .familyMismatch: "family_mismatch"
        case .otherNetns: "other_netns"
        case .portRefused: "port_refused"
        case .unallocated: "unallocated_dropped"
        case .bindDenied: "bind_denied"
        case .sourceDenied: "source_denied"
        case .affinityFailed: "affinity_failed"
        case .sockStateFailed: "sock_state_failed"
        case .sockRevDeleteFailed: "sock_rev_delete_failed"
        }
    }
}
