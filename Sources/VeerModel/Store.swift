/// What one SourceEvent changed: which services to re-select, what was rejected.
public struct StoreChange: Hashable, Sendable {
    /// Services whose selection input changed (the service itself or one of its slices). Includes
    /// services that were deleted; `ServiceStore.services[key]` is then nil.
    public var services: Set<ObjectKey> = []
    /// Nodes that were added, changed or deleted. If it is the agent's own node, re-select everything.
    public var nodes: Set<String> = []
    /// Objects rejected whole (their previous good version, if any, stays in the store) and parts of
    /// kept objects that were skipped (an endpoint with a bad address), each naming object and field.
    public var rejected: [ObjectError] = []
    /// Objects stored but not used: slices without a service-name label.
    public var ignored: [ObjectError] = []
    /// This event was `.synced`.
    public var synced = false

    public init() {}

    public var isEmpty: Bool { services.isEmpty && nodes.isEmpty && rejected.isEmpty && ignored.isEmpty && !synced }

    mutating func merge(_ other: StoreChange) {
        services.formUnion(other.services)
        nodes.formUnion(other.nodes)
        rejected += other.rejected
        ignored += other.ignored
        synced = synced || other.synced
    }
}

/// The current objects, by namespace/name, fed by SourceEvents. Pure value type.
///
/// A malformed object is rejected with its reasons and does not replace the last good version of
/// itself; nothing else is touched. EndpointSlices are indexed by their `kubernetes.io/service-name`
/// label, so a service's slices are found in O(its slices).
public struct ServiceStore: Hashable, Sendable {
    // Sharded: the state-file writer selects from a shared copy of the store, and the agent's
    // next change copies one shard of what it changes, not every object (`ShardedDictionary`).
    public private(set) var services = ShardedDictionary<ObjectKey, Service>()
    public private(set) var slices = ShardedDictionary<ObjectKey, EndpointSlice>()
    /// By node name.
    public private(set) var nodes: [String: Node] = [:]
    /// Current problems per object (`Kind namespace/name`): why its latest version was rejected, or
    /// which parts of it were skipped, or why it is ignored. Cleared by a good version or a delete.
    public private(set) var problems: [String: [ObjectError]] = [:]
    /// A `.synced` event was seen.
    public private(set) var isSynced = false

    /// A service's slices (they share its namespace), by name.
    private var slicesByService = ShardedDictionary<ObjectKey, SliceNames>()

    public init() {}

    /// Convenience: a store fed with these events in order.
    public init(_ events: [SourceEvent]) {
        for e in events { apply(e) }
    }

    /// Applies one event. Never traps; bad objects end up in the returned `rejected`.
    @discardableResult
    public mutating func apply(_ event: SourceEvent) -> StoreChange {
        var change = StoreChange()
        switch event {
        case let .apply(raw):
            applyObject(raw, into: &change)
        case let .delete(kind, namespace, name):
            change = delete(kind, ObjectKey(namespace: kind == .node ? "" : namespace, name: name))
        case let .batch(events):
            for event in events { change.merge(apply(event)) }
        case let .replaceAll(kind, objects):
            let keep = Set(objects.map { ObjectKey(namespace: kind == .node ? "" : $0.namespace, name: $0.name) })
            for key in keys(of: kind) where !keep.contains(key) { change.merge(delete(kind, key)) }
            for key in problems.keys where key.hasPrefix("\(kind.rawValue) ") {
                // Rejected objects that are gone from the list are no longer a problem.
                let rest = ObjectKey(parsing: String(key.dropFirst(kind.rawValue.count + 1)))
                if !keep.contains(rest) { problems[key] = nil }
            }
            // A first list fills an empty table: sized once, not doubled step by step.
            switch kind {
            case .service: if services.isEmpty { services.reserveCapacity(objects.count) }
            case .endpointSlice: if slices.isEmpty { slices.reserveCapacity(objects.count) }
            case .node: break
            }
            // Into one change, sized for the list: merging a change per object was a third of
            // storing a first list.
            change.services.reserveCapacity(objects.count)
            for raw in objects where raw.kind == kind { applyObject(raw, into: &change) }
            for raw in objects where raw.kind != kind {
                change.rejected.append(ObjectError(kind: raw.kind.rawValue, object: raw.key, field: "kind",
                                                   message: "listed as \(kind.rawValue); ignored", origin: raw.origin))
            }
        case .synced:
            isSynced = true
            change.synced = true
        }
        return change
    }

    /// The slices labelled for this service, sorted by name (the order duplicates are resolved in).
    public func slices(for service: ObjectKey) -> [EndpointSlice] {
        (slicesByService[service]?.sorted ?? []).compactMap { slices[ObjectKey(namespace: service.namespace, name: $0)] }
    }

    public var serviceKeys: [ObjectKey] { services.keys.sorted() }

    /// Every current problem, sorted by object.
    public var allProblems: [ObjectError] { problems.keys.sorted().flatMap { problems[$0] ?? [] } }

    // MARK: - Internals

    private func keys(of kind: ResourceKind) -> [ObjectKey] {
        switch kind {
        case .service: Array(services.keys)
        case .endpointSlice: Array(slices.keys)
        case .node: nodes.keys.map { ObjectKey(namespace: "", name: $0) }
        }
    }

    private static func problemKey(_ kind: ResourceKind, _ key: ObjectKey) -> String { "\(kind.rawValue) \(key)" }

    private mutating func applyObject(_ raw: RawObject, into change: inout StoreChange) {
        let key = ObjectKey(namespace: raw.kind == .node ? "" : raw.namespace, name: raw.name)
        var pkey: String { Self.problemKey(raw.kind, key) }  // made only when there is a problem to file or clear
        let outcome = KubeDecoder.decode(raw)
        guard let object = outcome.object else {
            problems[pkey] = outcome.errors
            change.rejected += outcome.errors
            return
        }
        if !outcome.warnings.isEmpty { problems[pkey] = outcome.warnings } else if !problems.isEmpty { problems[pkey] = nil }
        change.rejected += outcome.warnings
        switch object {
        case let .service(s):
            if services[key].map(Self.normalized) != Self.normalized(s) { change.services.insert(key) }
            services[key] = s
        case let .endpointSlice(s):
            let old = slices[key]
            if let old, let oldService = old.serviceKey {
                slicesByService[oldService] = slicesByService[oldService]?.removing(key.name)
            }
            slices[key] = s
            if let service = s.serviceKey {
                slicesByService[service] = slicesByService[service]?.inserting(key.name) ?? .one(key.name)
            } else {
                let note = ObjectError(kind: "EndpointSlice", object: key.description,
                                       field: "metadata.labels[\(KubeLabel.serviceName)]",
                                       message: "no \(KubeLabel.serviceName) label; slice ignored", origin: raw.origin)
                problems[pkey, default: []].append(note)
                change.ignored.append(note)
            }
            if old.map(Self.normalized) != Self.normalized(s) {
                if let o = old?.serviceKey { change.services.insert(o) }
                if let n = s.serviceKey { change.services.insert(n) }
            }
        case let .node(n):
            if nodes[key.name].map(Self.normalized) != Self.normalized(n) { change.nodes.insert(key.name) }
            nodes[key.name] = n
        }
    }

    private mutating func delete(_ kind: ResourceKind, _ key: ObjectKey) -> StoreChange {
        var change = StoreChange()
        problems[Self.problemKey(kind, key)] = nil
        switch kind {
        case .service:
            if services.removeValue(forKey: key) != nil { change.services.insert(key) }
        case .endpointSlice:
            if let old = slices.removeValue(forKey: key), let service = old.serviceKey {
                slicesByService[service] = slicesByService[service]?.removing(key.name)
                change.services.insert(service)
            }
        case .node:
            if nodes.removeValue(forKey: key.name) != nil { change.nodes.insert(key.name) }
        }
        return change
    }

    // A new resourceVersion alone changes nothing a proxy uses.
    private static func normalized(_ s: Service) -> Service { var s = s; s.meta.resourceVersion = nil; return s }
    private static func normalized(_ s: EndpointSlice) -> EndpointSlice { var s = s; s.meta.resourceVersion = nil; return s }
    private static func normalized(_ n: Node) -> Node { var n = n; n.meta.resourceVersion = nil; return n }
}

/// The names of one service's slices: almost always one, held inline (a Set per service was a
/// heap block each).
private enum SliceNames: Hashable, Sendable {
    case one(String)
    /// Sorted, two or more.
    case many([String])

    var sorted: [String] {
        switch self {
        case let .one(n): [n]
        case let .many(ns): ns
        }
    }

    func inserting(_ name: String) -> SliceNames {
        var names = sorted
        guard !names.contains(name) else { return self }
        names.insert(name, at: names.firstIndex { $0 > name } ?? names.count)
        return .many(names)
    }

    /// nil when none is left.
    func removing(_ name: String) -> SliceNames? {
        let names = sorted.filter { $0 != name }
        switch names.count {
        case 0: return nil
        case 1: return .one(names[0])
        default: return .many(names)
        }
    }
}

extension ObjectKey {
    /// Parses "namespace/name" or "name".
    init(parsing text: String) {
        if let slash = text.firstIndex(of: "/") {
            self.init(namespace: String(text[..<slash]), name: String(text[text.index(after: slash)...]))
        } else {
            self.init(namespace: "", name: text)
        }
    }
}
