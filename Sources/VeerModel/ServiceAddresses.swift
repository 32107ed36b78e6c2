import Foundation

/// An address prefix in the 128-bit space every Veer address lives in (IPv4 as ::ffff:a.b.c.d, so
/// an IPv4 /12 is a /108 here): a service CIDR, a ClusterIP as a /128.
public struct IPPrefix: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Host bits cleared.
    public let address: IPAddress
    /// In the 128-bit space.
    public let length: Int

    public init(address: IPAddress, length: Int) {
        precondition((0...128).contains(length))
        self.length = length
        let high = length >= 64 ? address.high : (length == 0 ? 0 : address.high & ~(UInt64.max >> length))
        let low = length >= 128 ? address.low : (length <= 64 ? 0 : address.low & ~(UInt64.max >> (length - 64)))
        self.address = IPAddress(high: high, low: low)
    }

    /// "10.96.0.0/12" or "fd00:10:96::/108"; surrounding whitespace is ignored and host bits are
    /// cleared (as kube-proxy's ParseCIDRSloppy does). nil for anything else.
    public init?(_ text: some StringProtocol) {
        let t = text.trimmingCharacters(in: .whitespaces)
        let parts = t.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let ip = IPAddress(parts[0]), !parts[1].isEmpty, parts[1].count <= 3,
              parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(parts[1]) else { return nil }
        // An IPv4 prefix must be written in IPv4 form to be one: ::ffff:a.b.c.d/n is IPv6 text.
        let v4 = ip.isIPv4 && !parts[0].contains(":")
        guard n <= (v4 ? 32 : 128) else { return nil }
        self.init(address: ip, length: v4 ? 96 + n : n)
    }

    public var family: IPFamily { address.family }

    public func contains(_ ip: IPAddress) -> Bool { IPPrefix(address: ip, length: length).address == address }

    /// As written: IPv4 prefixes in IPv4 form.
    public var description: String { "\(address)/\(address.isIPv4 && length >= 96 ? length - 96 : length)" }

    public static func < (a: Self, b: Self) -> Bool { (a.address, a.length) < (b.address, b.length) }
}

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
