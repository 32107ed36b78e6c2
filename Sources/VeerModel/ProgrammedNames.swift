/// The names behind the addresses in the maps: which Service port a frontend serves and
/// which pod a backend is. The agent writes it beside the pins after every sync, so
/// veerctl and the metrics show names, also while the agent is down.
public struct ProgrammedNames: Codable, Hashable, Sendable {
    public struct Frontend: Codable, Hashable, Sendable {
        public var namespace: String
        public var service: String
        public var port: String
        public var kind: String
    }

    public struct Backend: Codable, Hashable, Sendable {
        public var pod: String?
        public var node: String?
        public var zone: String?
    }

    /// Keyed by address; names.json keys them by its text ("10.96.0.10:80/tcp"). Typed keys
    /// here: the text of every backend address was a string of its own, held for the agent's life.
    public var frontends: [L4Address: Frontend] = [:]
    public var backends: [L4Address: Backend] = [:]

    public init() {}

    private enum CodingKeys: String, CodingKey { case frontends, backends }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // An entry whose key is not an address (a hand-edited file) is dropped, not fatal.
        for (key, value) in try c.decodeIfPresent([String: Frontend].self, forKey: .frontends) ?? [:] {
            if let address = L4Address(key) { frontends[address] = value }
        }
        for (key, value) in try c.decodeIfPresent([String: Backend].self, forKey: .backends) ?? [:] {
            if let address = L4Address(key) { backends[address] = value }
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(frontendsByText, forKey: .frontends)
        try c.encode(backendsByText, forKey: .backends)
    }

    /// As names.json keys them.
    public var frontendsByText: [String: Frontend] { Dictionary(uniqueKeysWithValues: frontends.map { ($0.key.description, $0.value) }) }
    public var backendsByText: [String: Backend] { Dictionary(uniqueKeysWithValues: backends.map { ($0.key.description, $0.value) }) }

    public init(_ desired: [DesiredFrontend]) {
        frontends.reserveCapacity(desired.count)
        backends.reserveCapacity(desired.reduce(0) { $0 + $1.backends.count })
        for f in desired {
            frontends[f.address] = Frontend(namespace: f.service.namespace, service: f.service.name,
                                                        port: f.service.port, kind: f.kind.rawValue)
            for b in f.backends {
                backends[b.address] = Backend(pod: b.podName, node: b.nodeName, zone: b.zone)
            }
        }
    }

    public func frontend(_ address: L4Address) -> Frontend? { frontends[address] }
    public func backend(_ address: L4Address) -> Backend? { backends[address] }
}
