/// What `veerctl explain` asks the agent for: one service (all its ports or one), or one frontend
/// address.
public enum DecisionQuery: Hashable, Sendable, CustomStringConvertible {
    /// "namespace/name" or "namespace/name:port" (the port's name or, unnamed, "").
    case service(ObjectKey, port: String?)
    /// "ip:port" or "ip:port/proto" (TCP when the protocol is left out).
    case frontend(L4Address)

    /// Nil when the text is neither a frontend address nor "namespace/name[:port]".
    public init?(_ text: String) {
        if let address = L4Address(text) {
            self = .frontend(address)
            return
        }
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let names = parts[0].split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard names.count == 2, !names[0].isEmpty, !names[1].isEmpty else { return nil }
        self = .service(ObjectKey(namespace: names[0], name: names[1]), port: parts.count > 1 ? parts[1] : nil)
    }

    public var description: String {
        switch self {
        case let .service(key, port): port.map { "\(key):\($0)" } ?? key.description
        case let .frontend(address): address.description
        }
    }

    public func matches(_ d: FrontendDecision) -> Bool {
        switch self {
        case let .service(key, port): d.service == key && (port == nil || d.port == port)
        case let .frontend(address): d.address == address
        }
    }

    public func matches(_ s: SkipReason) -> Bool {
        switch self {
        case let .service(key, _): s.service == key
        case let .frontend(address): s.object == address.description
        }
    }
}

extension SavedDecisions {
    /// Only what `query` asks for.
    public func filtered(_ query: DecisionQuery) -> SavedDecisions {
        var out = self
        out.decisions = decisions.filter(query.matches)
        out.skipped = skipped.filter(query.matches)
        return out
    }
}

extension Selector {
    /// The decisions `query` asks for, with every endpoint's verdict, made from the few services
    /// they depend on rather than from all of them: the asked service (or none, for an address)
    /// and every service claiming one of the asked addresses, whose claims decide who serves it
    /// and what the loser is told. `claimants` gives the services whose selection has a frontend
    /// at a cluster-scope address (the agent's `FrontendIndex`).
    ///
    /// For a service this equals `select(store, node:)` filtered to the query. For an address,
    /// the decisions do too; the skip reasons leave out a service that produced no frontend there
    /// at all (its own address refused as this node's), which no index of claims records.
    public static func decisions(for query: DecisionQuery, in store: ServiceStore, node: NodeContext,
                                 claimants: (L4Address) -> [ObjectKey]) -> SavedDecisions {
        var results: [SelectionResult] = []
        var others: Set<ObjectKey> = []
        switch query {
        case let .service(key, _):
            let own = select(store, service: key, node: node, explain: true)
            results.append(own)
            for f in own.frontends where f.address.scope == .cluster {
                others.formUnion(claimants(f.address))
            }
            others.remove(key)
        case let .frontend(address):
            others.formUnion(claimants(address.scoped(.cluster)))
        }
        results += others.sorted().map { select(store, service: $0, node: node, explain: true) }
        return SavedDecisions(node: node, selection: merge(results)).filtered(query)
    }
}
