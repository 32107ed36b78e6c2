/// Addresses as the datapath sees them: IPv4 in host order, a port, an L4 protocol.
/// Kept pure (no inet_pton) so the model stays free of system calls.

public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Host byte order: 10.96.0.10 is 0x0A60000A.
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    /// Parses dotted-quad text strictly: four decimal octets 0...255, nothing else.
    public init?(_ text: some StringProtocol) {
        var octets: [UInt32] = []
        for part in text.split(separator: ".", omittingEmptySubsequences: false) {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let octet = UInt32(part), octet <= 255 else { return nil }
            octets.append(octet)
        }
        guard octets.count == 4 else { return nil }
        value = octets.reduce(0) { $0 << 8 | $1 }
    }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
    }

    public var isLoopback: Bool { value >> 24 == 127 }
    public var isUnspecified: Bool { value == 0 }

    public static func < (a: Self, b: Self) -> Bool { a.value < b.value }
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

/// An IPv4 address, port and protocol: a frontend or a backend.
public struct L4Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var ip: IPv4Address
    public var port: UInt16
    public var proto: L4Protocol

    public init(ip: IPv4Address, port: UInt16, proto: L4Protocol) {
        self.ip = ip
        self.port = port
        self.proto = proto
    }

    /// Parses `10.96.0.10:80/tcp` (protocol optional, default tcp).
    public init?(_ text: some StringProtocol) {
        let pieces = text.split(separator: "/", maxSplits: 1)
        guard let hostPort = pieces.first, let colon = hostPort.lastIndex(of: ":") else { return nil }
        guard let ip = IPv4Address(hostPort[..<colon]),
              let port = UInt16(hostPort[hostPort.index(after: colon)...]) else { return nil }
        var proto = L4Protocol.tcp
        if pieces.count == 2 {
            guard let p = L4Protocol.allCases.first(where: { $0.description == pieces[1].lowercased() }) else { return nil }
            proto = p
        }
        self.init(ip: ip, port: port, proto: proto)
    }

    public var description: String { "\(ip):\(port)/\(proto)" }

    public static func < (a: Self, b: Self) -> Bool {
        (a.ip, a.port, a.proto.rawValue) < (b.ip, b.port, b.proto.rawValue)
    }
}
