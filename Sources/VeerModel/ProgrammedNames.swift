/// The names behind the addresses in the maps: which Service port a frontend serves and
/// which pod a backend is. The agent writes it beside the pins after every sync, so
/// veerctl and the metrics show names, also while the agent is down.
/// Read from names.json (Decodable); written only by `NamesFile.write`, entry by entry.
public struct ProgrammedNames: Decodable, Hashable, Sendable {
    public struct Frontend: Codable, Hashable, Sendable {
        public var namespace: String
        public var service: String
        public var port: String
        public var kind: String
    }

    public struct Backend: Codable, Hashable, Sendable {
        /// As in `DesiredBackend`: the pod's name sharing the stored one's head, and ids of the
        /// shared name table. A row is 24 bytes, not 48.
        public private(set) var podName: PodName?
        private var nodeName: SharedName
        private var zoneName: SharedName

        public var pod: String? { podName?.description }
        public var node: String? { nodeName.string }
        public var zone: String? { zoneName.string }

        public init(pod: String?, node: String?, zone: String?) {
            podName = pod.map(PodName.init)
            nodeName = SharedName(orNone: node)
            zoneName = SharedName(orNone: zone)
        }

        /// A selected backend's names, its ids as they are.
        init(_ backend: DesiredBackend) {
            podName = backend.pod
            nodeName = backend.sharedNode
            zoneName = backend.sharedZone
        }

        private enum CodingKeys: String, CodingKey { case pod, node, zone }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init(pod: try c.decodeIfPresent(String.self, forKey: .pod), node: try c.decodeIfPresent(String.self, forKey: .node),
                      zone: try c.decodeIfPresent(String.self, forKey: .zone))
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encodeIfPresent(pod, forKey: .pod)
            try c.encodeIfPresent(node, forKey: .node)
            try c.encodeIfPresent(zone, forKey: .zone)
        }
    }

    /// Keyed by address; names.json keys them by its text ("10.96.0.10:80/tcp"). Typed keys
    /// here: the text of every backend address was a string of its own, held for the agent's life.
    /// Sharded: a scrape or the state-file writer shares it with the agent (`ShardedDictionary`).
    public var frontends = ShardedDictionary<L4Address, Frontend>()
    /// A backend's names are a row by backend id, found by its address through `ids`. The
    /// agent's rows are by the maps' own ids and it resolves them with its index of the maps
    /// (`resolving(by:)`), so one table by backend address serves the planner and the names: a
    /// table of 100,000 addresses has 262,144 buckets, about 7 MB. Read from names.json or built
    /// from frontends, the ids are numbers of its own.
    private var rows = IDRows<Backend>()
    private var ids = BackendIDs()
    private var nextOwnID: UInt32 = 1
    /// The rows are by the maps' own ids (`resolving(by:)`): a backend entry's row is its id's.
    private var rowsByMapIDs = false

    public init() {}

    /// Sets a backend's names, by address (ids of its own).
    public mutating func setBackend(_ address: L4Address, _ names: Backend) {
        if let id = ids[address] {
            rows[id] = names
        } else {
            ids.insert(nextOwnID, for: address)
            rows[nextOwnID] = names
            nextOwnID += 1
        }
    }

    /// Sets the names of the backend entry with this id of the maps (names resolved by the
    /// maps' index: `resolving(by:)`).
    public mutating func setBackend(id: UInt32, _ backend: DesiredBackend) {
        rows[id] = Backend(backend)
    }

    /// Room for backend rows by the maps' ids up to `maxID` (a full sync's names, set at once).
    public mutating func reserveBackendRows(maxID: UInt32) { rows.reserveCapacity(maxID: maxID) }

    /// Forgets the names of the backend entry with this id of the maps (the entry is deleted).
    public mutating func removeBackend(id: UInt32) { rows[id] = nil }

    /// Sets the names of a programmed frontend and of its backends, each backend row by the id
    /// `programmed` (the maps as written) holds for its address.
    public mutating func setProgrammed(_ f: DesiredFrontend, in programmed: IndexedMapState?) {
        setFrontend(f)
        for b in f.backends { if let id = programmed?.backendID(b.address) { setBackend(id: id, b) } }
    }

    /// Sets the names of a programmed frontend.
    public mutating func setFrontend(_ f: DesiredFrontend) {
        frontends[f.address] = Frontend(namespace: f.service.namespace, service: f.service.name,
                                        port: f.service.port, kind: f.kind.rawValue)
    }

    /// These names with backend rows by the maps' ids, finding a backend's id by its address in
    /// the maps' index (shared with it, not copied).
    public func resolving(by ids: BackendIDs) -> ProgrammedNames {
        var out = self
        out.ids = ids
        out.rowsByMapIDs = true
        return out
    }

    /// Every backend's names, by address.
    public var backends: [L4Address: Backend] {
        var out: [L4Address: Backend] = [:]
        ids.forEach { address, id in if let row = rows[id] { out[address] = row } }
        return out
    }

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

    /// names.json is written a part at a time, each part taken from the agent's names as they are
    /// then: a writer that held all of them while the agent changed them made the agent copy
    /// them (its shards and chunks) as it went, 55-75 MB at 100,000 services under churn.
    /// Backend part `k` is the rows of one chunk of ids; nil past the last part.
    public func backendPart(_ k: Int) -> [(L4Address, Backend)]? {
        guard k < ids.partCount else { return nil }
        var out: [(L4Address, Backend)] = []
        ids.forEach(part: k) { address, id in if let row = rows[id] { out.append((address, row)) } }
        return out
    }

    /// Frontend part `k`: one shard of the frontends; nil past the last.
    public func frontendPart(_ k: Int) -> [(L4Address, Frontend)]? {
        guard k < ShardedDictionary<L4Address, Frontend>.shardCount else { return nil }
        var out: [(L4Address, Frontend)] = []
        frontends.forEach(shard: k) { out.append(($0, $1)) }
        return out
    }

    /// The names of these frontends and their backends (ids of its own).
    public init(_ desired: [DesiredFrontend]) {
        frontends.reserveCapacity(desired.count)
        for f in desired {
            setFrontend(f)
            for b in f.backends { setBackend(b.address, Backend(b)) }
        }
    }

    public func frontend(_ address: L4Address) -> Frontend? { frontends[address] }
    public func backend(_ address: L4Address) -> Backend? { ids[address].flatMap { rows[$0] } }

    /// The names of the maps' backend entry `id`, which holds `address`: its own row when the rows
    /// are by the maps' ids, with no lookup by address (a scrape names every backend), else by
    /// address.
    public func backend(id: UInt32, at address: L4Address) -> Backend? {
        if rowsByMapIDs, let row = rows[id] { return row }
        return backend(address)
    }

    // Equal when they name the same things, whatever ids the rows have.
    public static func == (a: Self, b: Self) -> Bool {
        a.frontends == b.frontends && a.backends == b.backends
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(frontends)
        hasher.combine(backends)
    }
}
