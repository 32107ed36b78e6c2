import Foundation

/// The kinds of object Veer reads.
public enum ResourceKind: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case service = "Service"
    case endpointSlice = "EndpointSlice"
    case node = "Node"

    public var description: String { rawValue }
}

/// One object as a source delivers it: identified, but not yet decoded or validated.
/// Decoding happens in the store, so a malformed object is rejected there with a reason
/// while everything else stays programmed.
public struct RawObject: Hashable, Sendable {
    public var kind: ResourceKind
    /// "" for cluster-scoped objects (Node).
    public var namespace: String
    public var name: String
    public var resourceVersion: String?
    /// The object as JSON (what the API sends; YAML manifests are converted). Empty when
    /// `decoded` holds the object already.
    public var json: Data
    /// The object decoded and checked by the source as it read it (a list page decodes its
    /// items in place), so its bytes are not kept; the store takes it as it is.
    public var decoded: DecodeOutcome?
    /// Where it came from, for log lines: "manifests/web.yaml#2" or "watch".
    public var origin: String

    public init(kind: ResourceKind, namespace: String, name: String, resourceVersion: String? = nil,
                json: Data, origin: String = "", decoded: DecodeOutcome? = nil) {
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.resourceVersion = resourceVersion
        self.json = json
        self.origin = origin
        self.decoded = decoded
    }

    public var key: String { namespace.isEmpty ? name : "\(namespace)/\(name)" }
}

/// What every source (API server, manifest directory) feeds the store.
public enum SourceEvent: Hashable, Sendable {
    /// Added or modified.
    case apply(RawObject)
    case delete(ResourceKind, namespace: String, name: String)
    /// A full (re)list of one kind: objects of that kind not in it are gone.
    case replaceAll(ResourceKind, [RawObject])
    /// Every kind has been listed at least once; stale kernel state may be swept now.
    case synced
    /// Events that belong together (one rescan of a manifest directory): all are stored before
    /// the next sync plans, so no sync sees a Service's new ports with its old slices.
    case batch([SourceEvent])
}
