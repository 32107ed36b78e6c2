import Foundation

/// Addresses as the datapath sees them: one 128-bit IP type for both families, a port, an
/// L4 protocol. IPv4 is held as its IPv4-mapped IPv6 form (::ffff:a.b.c.d), the form the
/// BPF maps use too, so an AF_INET6 socket connecting to ::ffff:VIP finds the IPv4 service.
/// Kept pure (no inet_pton) so the model stays free of system calls.

public enum IPFamily: String, Hashable, Sendable, Codable, CaseIterable, Comparable {
    case ipv4 = "IPv4"
    case ipv6 = "IPv6"

    /// The family of a well-formed IP text, nil if it is neither.
    public init?(address text: String) {
        guard let ip = IPAddress(text) else { return nil }
        self = ip.family
    }

    public static func < (a: Self, b: Self) -> Bool { a == .ipv4 && b == .ipv6 }
}

public struct IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The 16 bytes in network order, as two big-endian halves: ::1 is (0, 1).
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// An IPv4 address from its host-order value: 10.96.0.10 is 0x0A60000A.
    public init(ipv4 value: UInt32) {
        self.init(high: 0, low: 0xFFFF_0000_0000 | UInt64(value))
    }

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text strictly (no zone, no prefix).
    /// `::ffff:a.b.c.d` is the IPv4 address a.b.c.d: it is one address, as in the kernel.
    public init?(_ text: some StringProtocol) {
        if let v4 = Self.parseIPv4(text) {
            self.init(ipv4: v4)
        } else if let (high, low) = Self.parseIPv6(text) {
            self.init(high: high, low: low)
        } else {
            return nil
        }
    }

    public var family: IPFamily { isIPv4 ? .ipv4 : .ipv6 }
    public var isIPv4: Bool { high == 0 && low >> 32 == 0xFFFF }
    /// The host-order IPv4 value, nil for an IPv6 address.
    public var ipv4: UInt32? { isIPv4 ? UInt32(truncatingIfNeeded: low) : nil }

    /// The 16 bytes in network order.
    public var bytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
    }

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 16 else { return nil }
        let b = Array(bytes)
        self.init(high: b[0..<8].reduce(0) { $0 << 8 | UInt64($1) }, low: b[8..<16].reduce(0) { $0 << 8 | UInt64($1) })
    }

    /// IPv4 in dotted quad; IPv6 in RFC 5952 form (lower case, longest zero run as ::).
    public var description: String {
        if let v4 = ipv4 { return Self.dotted(v4) }
        let groups = (0..<4).map { UInt16(truncatingIfNeeded: high >> (48 - 16 * $0)) }
            + (0..<4).map { UInt16(truncatingIfNeeded: low >> (48 - 16 * $0)) }
        // The longest run of two or more zero groups, the first one on a tie.
        var best = (start: -1, length: 0), run = (start: -1, length: 0)
        for (i, g) in groups.enumerated() {
            if g == 0 {
                run = run.start < 0 ? (i, 1) : (run.start, run.length + 1)
                if run.length > best.length { best = run }
            } else {
                run = (-1, 0)
            }
        }
        let hex = groups.map { String($0, radix: 16) }
        guard best.length >= 2 else { return hex.joined(separator: ":") }
        return hex[..<best.start].joined(separator: ":") + "::" + hex[(best.start + best.length)...].joined(separator: ":")
    }

    public var isLoopback: Bool { ipv4.map { $0 >> 24 == 127 } ?? (high == 0 && low == 1) }
    public var isUnspecified: Bool { ipv4.map { $0 == 0 } ?? (high == 0 && low == 0) }

    public static func < (a: Self, b: Self) -> Bool { (a.high, a.low) < (b.high, b.low) }

    private static func dotted(_ v: UInt32) -> String {
        "\(v >> 24).\(v >> 16 & 0xff).\(v >> 8 & 0xff).\(v & 0xff)"
    }

    /// Four decimal octets 0...255, nothing else. Byte by byte: it runs for every endpoint.
    private static func parseIPv4(_ text: some StringProtocol) -> UInt32? {
        var value: UInt32 = 0
        var octet: UInt32 = 0
        var digits = 0
        var dots = 0
        for b in text.utf8 {
            if b == UInt8(ascii: ".") {
                guard digits > 0, dots < 3 else { return nil }
                value = value << 8 | octet
                octet = 0
                digits = 0
                dots += 1
            } else if b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") {
                guard digits < 3 else { return nil }
                octet = octet * 10 + UInt32(b - UInt8(ascii: "0"))
                guard octet <= 255 else { return nil }
                digits += 1
            } else {
                return nil
            }
        }
        guard dots == 3, digits > 0 else { return nil }
        return value << 8 | octet
    }

    /// RFC 4291 text forms, with an optional trailing dotted IPv4; no zone.
    private static func parseIPv6(_ text: some StringProtocol) -> (UInt64, UInt64)? {
        guard text.contains(":"), text.count <= 45, text.allSatisfy({ $0.isASCII }) else { return nil }
        let halves = String(text).components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        var sides: [[UInt16]] = []
        for (h, half) in halves.enumerated() {
            var groups: [UInt16] = []
            if !half.isEmpty {
                let parts = half.split(separator: ":", omittingEmptySubsequences: false)
                for (i, part) in parts.enumerated() {
                    if part.contains(".") {
                        // Embedded IPv4 only as the very last group.
                        guard h == halves.count - 1, i == parts.count - 1, let v4 = parseIPv4(part) else { return nil }
                        groups += [UInt16(v4 >> 16), UInt16(v4 & 0xFFFF)]
                    } else {
                        guard (1...4).contains(part.count), part.allSatisfy({ $0.isHexDigit }),
                              let g = UInt16(part, radix: 16) else { return nil }
                        groups.append(g)
                    }
                }
            }
            sides.append(groups)
        }
        let all: [UInt16]
        if sides.count == 2 {
            let known = sides[0].count + sides[1].count
            guard known <= 7 else { return nil }
            all = sides[0] + Array(repeating: 0, count: 8 - known) + sides[1]
        } else {
            guard sides[0].count == 8 else { return nil }
            all = sides[0]
        }
        let high = all[0..<4].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        let low = all[4..<8].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        return (high, low)
    }
}

public enum L4Protocol: UInt8, Hashable, Comparable, Sendable, CustomStringConvertible, CaseIterable {
    case tcp = 6
    case udp = 17
    case sctp = 132

    /// Kubernetes spells protocols in upper case; nil defaults to TCP there, not here.
    public init?(kubernetes name: String) {
        switch name {
        case "TCP": self = .tcp
        case "UDP": self = .udp
        case "SCTP": self = .sctp
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .tcp: "tcp"
        case .udp: "udp"
        case .sctp: "sctp"
        }
    }

    public var kubernetesName: String { description.uppercased() }

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// Which clients a frontend entry serves (veer_svc_key.scope). An external-scope entry exists
/// only where external clients use another endpoint set than the node's own (eTP=Local).
public enum FrontendScope: UInt8, Hashable, Comparable, Sendable {
    /// Every client: the socket programs and the packet path.
    case cluster = 0
    /// Clients outside the node only, through the packet path, which looks it up first.
    case external = 1

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// An IP address, port and protocol: a frontend or a backend.
public struct L4Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var ip: IPAddress
    public var port: UInt16
    public var proto: L4Protocol
    /// Only frontends have an external scope; backends are always `.cluster`.
    public var scope: FrontendScope

    public init(ip: IPAddress, port: UInt16, proto: L4Protocol, scope: FrontendScope = .cluster) {
        self.ip = ip
        self.port = port
        self.proto = proto
        self.scope = scope
    }

    /// The same address with another scope.
    public func scoped(_ scope: FrontendScope) -> L4Address {
        L4Address(ip: ip, port: port, proto: proto, scope: scope)
    }

    /// Parses `10.96.0.10:80/tcp` or `[fd00::10]:80/tcp` (protocol optional, default tcp).
    public init?(_ text: some StringProtocol) {
        let pieces = text.split(separator: "/", maxSplits: 1)
        guard let hostPort = pieces.first, let colon = hostPort.lastIndex(of: ":") else { return nil }
        var host = hostPort[..<colon]
        if host.first == "[" {
            guard host.last == "]" else { return nil }
            host = host.dropFirst().dropLast()
            guard host.contains(":") else { return nil }
        } else if host.contains(":") {
            return nil  // IPv6 needs brackets, as in a URL
        }
        guard let ip = IPAddress(host),
              let port = UInt16(hostPort[hostPort.index(after: colon)...]) else { return nil }
        var proto = L4Protocol.tcp
        if pieces.count == 2 {
            guard let p = L4Protocol.allCases.first(where: { $0.description == pieces[1].lowercased() }) else { return nil }
            proto = p
        }
        self.init(ip: ip, port: port, proto: proto)
    }

    /// `10.96.0.10:80/tcp`, `[fd00::10]:80/tcp`.
    public var description: String { scope == .external ? "\(hostPort)/\(proto) (external)" : "\(hostPort)/\(proto)" }

    /// `10.96.0.10:80`, `[fd00::10]:80`: the address as a URL or a socket API prints it.
    public var hostPort: String { ip.isIPv4 ? "\(ip):\(port)" : "[\(ip)]:\(port)" }

    public static func < (a: Self, b: Self) -> Bool {
        (a.ip, a.port, a.proto.rawValue, a.scope.rawValue) < (b.ip, b.port, b.proto.rawValue, b.scope.rawValue)
    }

    /// Three words into the hasher, not five fields one by one: the agent's tables hash these
    /// hundreds of thousands of times per sync. The same fields as `==`.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(ip.high)
        hasher.combine(ip.low)
        hasher.combine(UInt32(port) | UInt32(proto.rawValue) << 16 | UInt32(scope.rawValue) << 24)
    }

    /// What the tables hash by: the same three words, seeded with the table's per-process seed,
    /// folded by two 64x64->128-bit multiplies (wyhash's mix) instead of a SipHash round trip.
    /// A full sync of 10,000 services looks addresses up about two million times; the Hasher's
    /// setup and finalization were a fifth of it.
    public func _rawHashValue(seed: Int) -> Int {
        let s = UInt64(UInt(bitPattern: seed))
        let tail = UInt64(port) | UInt64(proto.rawValue) << 16 | UInt64(scope.rawValue) << 24
        var h = Self.mix(ip.high ^ s ^ 0xa076_1d64_78bd_642f, ip.low ^ 0xe703_7ed1_a0b4_28db)
        h = Self.mix(h ^ tail ^ 0x8ebc_6af0_9c88_c6e3, s ^ 0x5899_65cc_7537_4cc3)
        return Int(Int64(bitPattern: h))
    }

    @inline(__always) private static func mix(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let r = a.multipliedFullWidth(by: b)
        return r.high ^ r.low
    }
}

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
