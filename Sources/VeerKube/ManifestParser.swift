import Foundation
import VeerModel
import Yams

/// One thing found in a text of manifests.
public enum ManifestEntry: Hashable, Sendable {
    /// An object to add or update (a plain object, a List item, an ADDED/MODIFIED watch event).
    case object(RawObject)
    /// A DELETED watch event.
    case deleted(RawObject)

    public var raw: RawObject {
        switch self {
        case let .object(r), let .deleted(r): r
        }
    }

    public var event: SourceEvent {
        switch self {
        case let .object(r): .apply(r)
        case let .deleted(r): .delete(r.kind, namespace: r.namespace, name: r.name)
        }
    }
}

/// A document (or list item, or watch line) that could not be used. The others still are.
public struct DocumentError: Error, Hashable, Sendable, Codable, CustomStringConvertible {
    /// "web.yaml#2", "web.yaml#2.items[3]".
    public var origin: String
    public var message: String

    public init(origin: String, message: String) {
        self.origin = origin
        self.message = message
    }

    public var description: String { "\(origin): \(message)" }
}

public struct ManifestParseResult: Sendable {
    public var entries: [ManifestEntry] = []
    public var errors: [DocumentError] = []
    /// Documents of kinds Veer does not read (Deployment, Namespace...), bookmarks: "origin: kind".
    public var ignored: [String] = []

    /// The objects to apply, in order.
    public var objects: [RawObject] { entries.compactMap { if case let .object(r) = $0 { r } else { nil } } }
    /// The entries as source events, in order.
    public var events: [SourceEvent] { entries.map(\.event) }
}

/// Reads what users and the API produce: JSON objects, Lists (`ServiceList`, `v1 List`), watch event
/// streams (one JSON object per line, or concatenated like `kubectl get -w -o json`), `kubectl get -o
/// yaml/json` output, and multi-document YAML. Each document fails alone.
public enum ManifestParser {
    public static func parse(_ data: Data, origin: String = "") -> ManifestParseResult {
        guard let text = String(data: data, encoding: .utf8) else {
            var r = ManifestParseResult()
            r.errors.append(DocumentError(origin: origin, message: "not UTF-8 text"))
            return r
        }
        return parse(text, origin: origin)
    }

    public static func parse(_ text: String, origin: String = "") -> ManifestParseResult {
        var result = ManifestParseResult()
        let first = text.unicodeScalars.first { !CharacterSet.whitespacesAndNewlines.contains($0) }
        if first == "{" || first == "[" {
            for (i, chunk) in jsonChunks(text).enumerated() {
                let o = "\(origin)#\(i + 1)"
                switch chunk {
                case let .failure(failure):
                    result.errors.append(DocumentError(origin: o, message: failure.message))
                case let .success(bytes):
                    expand(json: bytes, origin: o, into: &result)
                }
            }
        } else {
            for (i, doc) in yamlDocuments(text).enumerated() {
                let o = "\(origin)#\(i + 1)"
                do {
                    guard let node = try Yams.compose(yaml: doc, yamlResolver) else { continue }
                    var budget = 1_000_000
                    let value = try jsonValue(node, depth: 0, budget: &budget)
                    if value is NSNull { continue }  // an empty document
                    // YAML becomes the JSON the API would send, and takes the same path from there.
                    guard let json = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed]) else {
                        result.errors.append(DocumentError(origin: o, message: "cannot be converted to JSON"))
                        continue
                    }
                    expand(json: json, origin: o, into: &result)
                } catch {
                    result.errors.append(DocumentError(origin: o, message: "invalid YAML: \(shortError(error))"))
                }
            }
        }
        return result
    }

    /// Decodes every object of a text: the decoded objects plus every document and object error.
    public static func decodeAll(_ text: String, origin: String = "") -> (objects: [KubeObject], errors: [String]) {
        let parsed = parse(text, origin: origin)
        var objects: [KubeObject] = []
        var errors = parsed.errors.map(\.description)
        for raw in parsed.objects {
            let out = KubeDecoder.decode(raw)
            if let o = out.object { objects.append(o) }
            errors += out.errors.map(\.description)
        }
        return (objects, errors)
    }

    // MARK: - Structure

    /// One JSON document: an object, a List, a watch event or an array of those.
    private static func expand(json: Data, origin: String, into result: inout ManifestParseResult) {
        do throws(JSONError) {
            try JSONReader.read(json) { r throws(JSONError) in
                try expand(&r, origin: origin, into: &result)
                try r.expectEnd()
            }
        } catch {
            result.errors.append(DocumentError(origin: origin, message: "invalid JSON: \(error.message)"))
        }
    }

    private static func expand(_ r: inout JSONReader, origin: String, depth: Int = 0,
                               into result: inout ManifestParseResult) throws(JSONError) {
        switch try r.peek() {
        case .null:
            _ = try r.skipNull()  // an empty document
        case .array where depth >= 8:
            try r.skipValue()
            result.errors.append(DocumentError(origin: origin, message: "arrays nested too deep"))
        case .array:  // a bare JSON array of objects
            try r.forEachElement { r, i throws(JSONError) in
                try expand(&r, origin: "\(origin)[\(i)]", depth: depth + 1, into: &result)
            }
        case .object:
            try object(&r, origin: origin, into: &result)
        default:
            try r.skipValue()
            result.errors.append(DocumentError(origin: origin, message: "not an object"))
        }
    }

    /// An object: a watch event, a List, or one object. The fields that tell them apart can come
    /// in any order, so this notes where each is and reads the parts once it knows.
    private static func object(_ r: inout JSONReader, origin: String, into result: inout ManifestParseResult) throws(JSONError) {
        let start = r.offset
        var kind: String?
        var type: String?
        var eventObject: Int?
        var items: Int?
        var itemsIsNull = false
        var isList = false
        try r.forEachField { r, key throws(JSONError) in
            switch key {
            case "kind": kind = try r.stringIfPresent()
            case "type": type = try r.stringIfPresent()
            case "object": eventObject = r.offset; try r.skipValue()
            case "items": isList = true; items = r.offset; itemsIsNull = try r.peek() == .null; try r.skipValue()
            default: try r.skipValue()
            }
        }
        let end = r.offset
        // A watch event: {"type": ..., "object": {...}}.
        if kind == nil, let type, let eventObject {
            var inner = r.reader(at: eventObject)
            switch type {
            case "ADDED", "MODIFIED", "DELETED":
                guard try inner.peek() == .object else {
                    result.errors.append(DocumentError(origin: origin, message: "watch event object is not an object"))
                    return
                }
                let (id, json) = try RawObjects.read(&inner)
                item(id, json: json, defaultKind: nil, deleted: type == "DELETED", origin: origin, into: &result)
            case "BOOKMARK":
                result.ignored.append("\(origin): BOOKMARK")
            case "ERROR":
                var message = "unknown"
                if try inner.peek() == .object {
                    try inner.forEachField { r, key throws(JSONError) in
                        if key == "message", let m = try r.stringIfPresent() { message = m } else { try r.skipValue() }
                    }
                }
                result.errors.append(DocumentError(origin: origin, message: "watch ERROR event: \(message)"))
            default:
                result.errors.append(DocumentError(origin: origin, message: "unknown watch event type \"\(type)\""))
            }
            return
        }
        let kindText = kind ?? ""
        if kindText.hasSuffix("List") {
            guard isList, !itemsIsNull, let items else { return }  // an empty list
            var list = r.reader(at: items)
            guard try list.peek() == .array else {
                result.errors.append(DocumentError(origin: origin, message: "\(kindText).items is not a list"))
                return
            }
            // Items of a typed list carry no kind; derive it from the list's.
            let itemKind = kindText == "List" ? nil : String(kindText.dropLast(4))
            try list.forEachElement { r, i throws(JSONError) in
                let o = "\(origin).items[\(i)]"
                guard try r.peek() == .object else {
                    try r.skipValue()
                    result.errors.append(DocumentError(origin: o, message: "list item is not an object"))
                    return
                }
                let (id, json) = try RawObjects.read(&r)
                item(id, json: json, defaultKind: itemKind, deleted: false, origin: o, into: &result)
            }
            return
        }
        var whole = r.reader(at: start)
        let id = try whole.readIdentity()
        item(id, json: Data(r.bytes(start..<end)), defaultKind: nil, deleted: false, origin: origin, into: &result)
    }

    private static func item(_ id: ObjectIdentity, json: Data, defaultKind: String?, deleted: Bool, origin: String,
                             into result: inout ManifestParseResult) {
        guard let kindText = id.kind ?? defaultKind else {
            result.errors.append(DocumentError(origin: origin, message: "missing kind"))
            return
        }
        guard let kind = ResourceKind(rawValue: kindText) else {
            result.ignored.append("\(origin): \(kindText)")
            return
        }
        guard let name = id.name, !name.isEmpty else {
            result.errors.append(DocumentError(origin: origin, message: "\(kindText) without metadata.name"))
            return
        }
        // What kubectl apply would do with no namespace.
        guard let raw = try? RawObjects.make(id, json: json, kind: kind, defaultNamespace: "default", origin: origin) else {
            result.errors.append(DocumentError(origin: origin, message: "\(kindText) \(name) cannot be read"))
            return
        }
        result.entries.append(deleted ? .deleted(raw) : .object(raw))
    }

    // MARK: - JSON streams

    /// Splits a text into top-level JSON values (one per line, or concatenated), string-aware.
    static func jsonChunks(_ text: String) -> [Result<Data, ChunkError>] {
        let bytes = Array(text.utf8)
        var chunks: [Result<Data, ChunkError>] = []
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 || b == 0x2C { i += 1; continue }
            guard b == UInt8(ascii: "{") || b == UInt8(ascii: "[") else {
                // Garbage at top level: report it and resynchronise at the next line.
                chunks.append(.failure(ChunkError("unexpected text outside a JSON object")))
                while i < bytes.count, bytes[i] != 0x0A { i += 1 }
                continue
            }
            let start = i
            var depth = 0
            var inString = false
            var escaped = false
            var end: Int?
            while i < bytes.count {
                let c = bytes[i]
                if inString {
                    if escaped { escaped = false } else if c == UInt8(ascii: "\\") { escaped = true } else if c == UInt8(ascii: "\"") { inString = false }
                } else if c == UInt8(ascii: "\"") {
                    inString = true
                } else if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
                    depth += 1
                } else if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") {
                    depth -= 1
                    if depth == 0 { end = i; i += 1; break }
                }
                i += 1
            }
            if let end {
                chunks.append(.success(Data(bytes[start...end])))
            } else {
                chunks.append(.failure(ChunkError("truncated JSON (unbalanced brackets)")))
            }
        }
        return chunks
    }

    struct ChunkError: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }
}

extension ManifestParser.ChunkError: CustomStringConvertible {
    var description: String { message }
}
