import Foundation

/// What a connection to an address no Service frontend holds gets, as kube-proxy's nftables mode
/// (pkg/proxy/nftables/proxier.go, chain "cluster-ips-check", since 1.30) decides it:
/// a ClusterIP on a port its Service does not expose is rejected (ECONNREFUSED), an address inside
/// a service CIDR that no Service holds is dropped (the connect fails at once with ETIMEDOUT, as
/// Veer's other drops do). Anything else is not a service address and passes untouched.
public enum ServiceAddressRule: UInt32, Hashable, Sendable, Comparable {
    case refuse = 1
    case drop = 2

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

public struct ServiceAddressEntry: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var prefix: IPPrefix
    public var rule: ServiceAddressRule

    public init(prefix: IPPrefix, rule: ServiceAddressRule) {
        self.prefix = prefix
        self.rule = rule
    }

    public var description: String { "\(prefix) \(rule == .refuse ? "refuse" : "drop")" }
    public static func < (a: Self, b: Self) -> Bool { (a.prefix, a.rule) < (b.prefix, b.rule) }
}

public enum ServiceAddresses {
    /// The longest-prefix table for addresses the frontends miss: every ClusterIP with a
    /// frontend as a /128 (refuse), every service CIDR (drop). A ClusterIP outside every CIDR is
    /// still refused on unexposed ports: the Service's own ports are what kube-proxy checks.
    public static func entries(frontends: [DesiredFrontend], serviceCIDRs: [IPPrefix]) -> Set<ServiceAddressEntry> {
        var out = Set<ServiceAddressEntry>()
        for cidr in serviceCIDRs { out.insert(ServiceAddressEntry(prefix: cidr, rule: .drop)) }
        for f in frontends where f.kind == .clusterIP {
            out.insert(ServiceAddressEntry(prefix: IPPrefix(address: f.address.ip, length: 128), rule: .refuse))
        }
        return out
    }

    /// Parses service CIDRs from flags or ServiceCIDR objects: the good ones, and a reason for each
    /// bad one (skipped, never fatal).
    public static func parse(_ texts: [String]) -> (prefixes: [IPPrefix], problems: [String]) {
        var good: [IPPrefix] = [], bad: [String] = []
        for t in texts {
            if let p = IPPrefix(t) { good.append(p) } else { bad.append("\"\(t)\" is not a CIDR (address/length); skipped") }
        }
        return (good, bad)
    }
}
