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

    /// Keyed by `L4Address.description` ("10.96.0.10:80/tcp").
    public var frontends: [String: Frontend] = [:]
    public var backends: [String: Backend] = [:]

    public init() {}

    public init(_ desired: [DesiredFrontend]) {
        for f in desired {
            frontends[f.address.description] = Frontend(namespace: f.service.namespace, service: f.service.name,
                                                        port: f.service.port, kind: f.kind.rawValue)
            for b in f.backends {
                backends[b.address.description] = Backend(pod: b.podName, node: b.nodeName, zone: b.zone)
            }
        }
    }

    public func frontend(_ address: L4Address) -> Frontend? { frontends[address.description] }
    public func backend(_ address: L4Address) -> Backend? { backends[address.description] }
}
