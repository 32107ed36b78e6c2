// Common pieces of the two sources: the diagnostic type and the kinds' API coordinates. The one
// step that turns an object's bytes into a RawObject is RawObjectBuilder.swift.
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
