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
    /// A backend's names are a row of `backendRows`, found by its address in `backendSlots`:
    /// a hash table of 100,000 addresses has 262,144 buckets, and a bucket of 4-byte row
    /// numbers beside the key costs 4 bytes where a bucket of the 48-byte names cost 48
    /// (at 10,000 services x 10 endpoints, about 12 MB instead of 19 MB).
    private var backendSlots: [L4Address: Int32] = [:]
    private var backendRows: [Backend] = []
    /// Rows of removed backends, for the next ones added.
    private var freeRows: [Int32] = []

    public init() {}

    public var backendCount: Int { backendSlots.count }

    /// Sets a backend's names.
    public mutating func setBackend(_ address: L4Address, _ names: Backend) {
        if let row = backendSlots[address] {
            backendRows[Int(row)] = names
        } else if let row = freeRows.popLast() {
            backendSlots[address] = row
            backendRows[Int(row)] = names
        } else {
            backendSlots[address] = Int32(backendRows.count)
            backendRows.append(names)
        }
    }

    /// Forgets a backend's names (its address is in no backend entry any more). Its row is
    /// reused by the next backend added.
    public mutating func removeBackend(_ address: L4Address) {
        guard let row = backendSlots.removeValue(forKey: address) else { return }
        backendRows[Int(row)] = Backend()
        freeRows.append(row)
    }

    /// Every backend's names, by address.
    public var backends: [L4Address: Backend] { backendSlots.mapValues { backendRows[Int($0)] } }

    private enum CodingKeys: String, CodingKey { case frontends, backends }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // An entry whose key is not an address (a hand-edited file) is dropped, not fatal.
        for (key, value) in try c.decodeIfPresent([String: Frontend].self, forKey: .frontends) ?? [:] {
            if let address = L4Address(key) { frontends[address] = value }
        }
        for (key, value) in try c.decodeIfPresent([String: Backend].self, forKey: .backends) ?? [:] {
            if let address = L4Address(key) { setBackend(address, value) }
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(frontendsByText, forKey: .frontends)
        try c.encode(backendsByText, forKey: .backends)
    }

    /// As names.json keys them.
    public var frontendsByText: [String: Frontend] { Dictionary(uniqueKeysWithValues: frontends.map { ($0.key.description, $0.value) }) }
    public var backendsByText: [String: Backend] {
        Dictionary(uniqueKeysWithValues: backendSlots.map { ($0.key.description, backendRows[Int($0.value)]) })
    }

    public init(_ desired: [DesiredFrontend]) {
        let backends = desired.reduce(0) { $0 + $1.backends.count }
        frontends.reserveCapacity(desired.count)
        backendSlots.reserveCapacity(backends)
        backendRows.reserveCapacity(backends)
        for f in desired {
            frontends[f.address] = Frontend(namespace: f.service.namespace, service: f.service.name,
                                            port: f.service.port, kind: f.kind.rawValue)
            for b in f.backends {
                setBackend(b.address, Backend(pod: b.podName, node: b.nodeName, zone: b.zone))
            }
        }
    }

    public func frontend(_ address: L4Address) -> Frontend? { frontends[address] }
    public func backend(_ address: L4Address) -> Backend? { backendSlots[address].map { backendRows[Int($0)] } }

    // Equal when they name the same things, whatever order the rows were added in.
    public static func == (a: Self, b: Self) -> Bool {
        a.frontends == b.frontends && a.backendCount == b.backendCount
            && a.backendSlots.allSatisfy { b.backend($0.key) == a.backendRows[Int($0.value)] }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(frontends)
        hasher.combine(backends)
    }
}
