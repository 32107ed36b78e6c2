// Common pieces of the two sources (issue 4): the diagnostic type and the step that turns one
// decoded JSON object into a RawObject. The store decodes and validates the JSON; a source only
// needs kind and metadata to address the object.
import Foundation
import Logging
import VeerModel

/// Something a source wants the operator to know that is not a state change: a file that does
/// not parse, an event that could not be decoded, a missing RBAC permission, a reconnect.
/// SourceEvent stays the contract with the store; diagnostics travel beside it.
public struct SourceDiagnostic: Hashable, Sendable, CustomStringConvertible {
    public enum Severity: String, Hashable, Sendable { case info, warning, error }

    public var severity: Severity
    /// Where: "manifests/web.yaml#2", "manifests/web.yaml:14:3", "watch services", "list endpointslices".
    public var origin: String
    public var message: String
    /// Whether the source reached the API server: a failed list or watch of a kind, or the first
    /// success after one. nil for everything else (a skipped object, a bad file).
    public var connectivity: Connectivity?

    public enum Connectivity: Hashable, Sendable {
        case failing(String)
        case restored(String)
    }

    public init(_ severity: Severity, origin: String, _ message: String) {
        self.severity = severity
        self.origin = origin
        self.message = message
    }

    public var description: String { "\(origin): \(message)" }

    var logLevel: Logger.Level {
        switch severity {
        case .info: return .info
        case .warning: return .warning
        case .error: return .error
        }
    }
}

/// Why an object could not be turned into a RawObject.
struct ObjectProblem: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension ResourceKind {
    /// The API path segments and RBAC coordinates of each kind.
    var apiGroup: String {
        switch self {
        case .service, .node: return ""
        case .endpointSlice: return "discovery.k8s.io"
        }
    }
    var apiVersion: String {
        switch self {
        case .service, .node: return "v1"
        case .endpointSlice: return "discovery.k8s.io/v1"
        }
    }
    var resource: String {
        switch self {
        case .service: return "services"
        case .endpointSlice: return "endpointslices"
        case .node: return "nodes"
        }
    }
    var collectionPath: String {
        switch self {
        case .service, .node: return "/api/v1/\(resource)"
        case .endpointSlice: return "/apis/discovery.k8s.io/v1/\(resource)"
        }
    }
    var isNamespaced: Bool { self != .node }
}

enum RawObjects {
    /// Builds a RawObject from a decoded JSON object.
    /// - kind: the kind to use when the object carries none (API list items carry none).
    /// - defaultNamespace: for manifests, where an omitted namespace means "default".
    /// The JSON handed on always has `kind`, `apiVersion` and (for namespaced kinds) `metadata.namespace`.
    static func make(_ object: [String: Any], kind fallbackKind: ResourceKind?, defaultNamespace: String?,
                     origin: String) throws -> RawObject? {
        var object = object
        let kind: ResourceKind
        if let kindName = object["kind"] as? String {
            guard let k = ResourceKind(rawValue: kindName) else { return nil }  // not ours: ignored
            if let fallbackKind, fallbackKind != k { return nil }
            kind = k
        } else if let fallbackKind {
            kind = fallbackKind
            object["kind"] = kind.rawValue
        } else {
            throw ObjectProblem("object has no \"kind\"")
        }
        if object["apiVersion"] == nil { object["apiVersion"] = kind.apiVersion }
        guard var metadata = object["metadata"] as? [String: Any] else {
            throw ObjectProblem("\(kind) has no \"metadata\"")
        }
        guard let name = metadata["name"] as? String, !name.isEmpty else {
            throw ObjectProblem("\(kind) has no metadata.name")
        }
        var namespace = ""
        if kind.isNamespaced {
            if let ns = metadata["namespace"] as? String, !ns.isEmpty {
                namespace = ns
            } else if let defaultNamespace {
                namespace = defaultNamespace
                metadata["namespace"] = namespace
                object["metadata"] = metadata
            } else {
                throw ObjectProblem("\(kind) \(name) has no metadata.namespace")
            }
        }
        let resourceVersion = metadata["resourceVersion"] as? String
        // Unsorted: only JSONDecoder reads it (KubeDecoder), and sorting every dictionary's keys
        // (an ICU string compare each) was a fifth of veerd's CPU time while listing.
        let json = try JSONSerialization.data(withJSONObject: object)
        return RawObject(kind: kind, namespace: namespace, name: name, resourceVersion: resourceVersion,
                         json: json, origin: origin)
    }
}
