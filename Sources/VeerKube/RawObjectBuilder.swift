// The one step every source takes from an object's JSON bytes to a RawObject: read its kind and
// identity (metadata name, namespace, resourceVersion), keep the bytes as they are. The store
// decodes and validates them once (KubeDecoder); nothing is parsed into an object graph or
// re-encoded on the way.
import Foundation
import VeerModel

/// What a source needs to address an object, read leniently: a field of the wrong type is
/// absent here, and the store's decoder names it.
struct ObjectIdentity {
    var kind: String?
    var name: String?
    var namespace: String?
    var resourceVersion: String?
}

extension JSONReader {
    /// Reads a whole object value, keeping its identity and skipping everything else.
    mutating func readIdentity() throws(JSONError) -> ObjectIdentity {
        var id = ObjectIdentity()
        try forEachField { r, key throws(JSONError) in
            switch key {
            case "kind": id.kind = try r.stringIfPresent()
            case "metadata":
                guard try r.peek() == .object else { return try r.skipValue() }
                try r.forEachField { r, key throws(JSONError) in
                    switch key {
                    case "name": id.name = try r.stringIfPresent()
                    case "namespace": id.namespace = try r.stringIfPresent()
                    case "resourceVersion": id.resourceVersion = try r.stringIfPresent()
                    default: try r.skipValue()
                    }
                }
            default: try r.skipValue()
            }
        }
        return id
    }

    /// The string if the value is one; any other value is skipped.
    mutating func stringIfPresent() throws(JSONError) -> String? {
        guard try peek() == .string else { try skipValue(); return nil }
        return try readString()
    }
}

enum RawObjects {
    /// Builds a RawObject from an object's bytes and the identity read from them.
    /// - kind: the kind to use when the object carries none (API list items carry none).
    /// - defaultNamespace: for manifests, where an omitted namespace means "default".
    /// Returns nil for an object of a kind Veer does not read (or not the list's kind).
    static func make(_ id: ObjectIdentity, json: Data, kind fallbackKind: ResourceKind?, defaultNamespace: String?,
                     origin: String) throws -> RawObject? {
        let kind: ResourceKind
        if let kindName = id.kind {
            guard let k = ResourceKind(rawValue: kindName) else { return nil }  // not ours: ignored
            if let fallbackKind, fallbackKind != k { return nil }
            kind = k
        } else if let fallbackKind {
            kind = fallbackKind
        } else {
            throw ObjectProblem("object has no \"kind\"")
        }
        guard let name = id.name, !name.isEmpty else {
            throw ObjectProblem("\(kind) has no metadata.name")
        }
        var namespace = ""
        if kind.isNamespaced {
            // The RawObject's namespace is the object's identity from here on (the decoder takes
            // it from there), so a defaulted namespace needs no rewrite of the bytes.
            if let ns = id.namespace, !ns.isEmpty {
                namespace = ns
            } else if let defaultNamespace {
                namespace = defaultNamespace
            } else {
                throw ObjectProblem("\(kind) \(name) has no metadata.namespace")
            }
        }
        return RawObject(kind: kind, namespace: namespace, name: name, resourceVersion: id.resourceVersion,
                         json: json, origin: origin)
    }

    /// Reads the object at the reader's offset: its identity and its bytes.
    static func read(_ r: inout JSONReader) throws(JSONError) -> (ObjectIdentity, Data) {
        let (id, bytes) = try readInPlace(&r)
        return (id, Data(bytes))
    }

    /// Reads the object at the reader's offset: its identity, and where its bytes are (valid
    /// while the reader's are).
    static func readInPlace(_ r: inout JSONReader) throws(JSONError) -> (ObjectIdentity, UnsafeBufferPointer<UInt8>) {
        _ = try r.peek()
        let start = r.offset
        let id = try r.readIdentity()
        return (id, r.slice(from: start))
    }
}
