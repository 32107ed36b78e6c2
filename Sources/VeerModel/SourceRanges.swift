/// `loadBalancerSourceRanges` as kube-proxy applies them (pkg/proxy/serviceport.go,
/// nftables proxier "firewall-check"): only on LoadBalancer ingress IPs, ranges trimmed and a bad
/// one skipped, split by family; a family with no range, or with a /0, is not restricted. A
/// client outside every range is dropped.
///
/// At connect() a socket may have no source address yet. Veer decides for it as kube-proxy would
/// for the address the kernel is going to pick: a socket of the host's network namespace leaves
/// from a node address, so it is allowed when one of the node's addresses (of the frontend's
/// family) is in a range; a pod's socket leaves from its pod IP, somewhere in the Node's
/// `spec.podCIDRs`, so it is allowed when those lie wholly inside the ranges (every pod of this
/// node is allowed) and denied otherwise, also when the Node has no podCIDRs. A socket that has
/// bound a source address, or a datagram that names one, is judged by that address exactly.
public struct SourceRangeEntry: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var revNatID: UInt32
    /// nil: the frontend's catch-all (matches every client).
    public var prefix: IPPrefix?
    public var allow: Bool

    public init(revNatID: UInt32, prefix: IPPrefix?, allow: Bool) {
        self.revNatID = revNatID
        self.prefix = prefix
        self.allow = allow
    }

    public var description: String { "\(revNatID) \(prefix.map(\.description) ?? "*") \(allow ? "allow" : "deny")" }

    public static func < (a: Self, b: Self) -> Bool {
        (a.revNatID, a.prefix?.length ?? -1, a.prefix?.address ?? IPAddress(high: 0, low: 0), a.allow ? 1 : 0)
            < (b.revNatID, b.prefix?.length ?? -1, b.prefix?.address ?? IPAddress(high: 0, low: 0), b.allow ? 1 : 0)
    }
}

public enum SourceRanges {
    /// The sentinel clients of unbound sockets (never real source addresses): ::ffff:0.0.0.0 for
    /// the host's namespace, ::ffff:0.0.0.1 for a pod's (bpf/include/veer_maps.h).
    public static let unboundHost = IPAddress(ipv4: 0)
    public static let unboundPod = IPAddress(ipv4: 1)

    /// The ranges that restrict frontends of `family`, or nil when that family is not restricted.
    public static func restriction(_ ranges: [IPPrefix], family: IPFamily) -> [IPPrefix]? {
        let mine = ranges.filter { $0.family == family }
        guard !mine.isEmpty else { return nil }
        // A zero-length prefix of this family means "no firewall" (kube-proxy 1.34, PR #132722).
        if mine.contains(where: { $0.length == (family == .ipv4 ? 96 : 0) }) { return nil }
        return mine
    }

    /// The trie entries for one LoadBalancer frontend (empty when it is not restricted).
    public static func entries(revNatID: UInt32, family: IPFamily, ranges: [IPPrefix],
                               nodeAddresses: [IPAddress], podCIDRs: [IPPrefix]) -> [SourceRangeEntry] {
        guard let mine = restriction(ranges, family: family) else { return [] }
        var out = [SourceRangeEntry(revNatID: revNatID, prefix: nil, allow: false)]
        for r in Set(mine) { out.append(SourceRangeEntry(revNatID: revNatID, prefix: r, allow: true)) }
        let host = nodeAddresses.contains { ip in ip.family == family && mine.contains { $0.contains(ip) } }
        let pods = podCIDRs.filter { $0.family == family }
        let pod = !pods.isEmpty && pods.allSatisfy { cidr in mine.contains { $0.length <= cidr.length && $0.contains(cidr.address) } }
        out.append(SourceRangeEntry(revNatID: revNatID, prefix: IPPrefix(address: unboundHost, length: 128), allow: host))
        out.append(SourceRangeEntry(revNatID: revNatID, prefix: IPPrefix(address: unboundPod, length: 128), allow: pod))
        return out
    }
}
