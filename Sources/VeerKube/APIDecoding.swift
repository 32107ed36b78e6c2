// The API server's two response shapes, read from their bytes: a page of a list, and one line of
// a watch stream. Each object is decoded once, from those bytes, as they are read (RawObject's
// `decoded`): a list or a WatchList's initial events hold compact objects, not JSON.
import Foundation
import VeerModel

/// One page of a list response.
public struct ListPage: Sendable {
    public var items: [RawObject] = []
    /// Items that could not be used, by index, with why (the rest of the page still is).
    public var skipped: [(index: Int, reason: String)] = []
    public var resourceVersion: String?
    public var continueToken: String?

    /// The body is not a JSON object (the whole page is unusable).
    struct Unreadable: Error, CustomStringConvertible {
        var description: String
    }

    /// Reads a `…List` body. Throws `Unreadable` when the body is not a JSON object.
    public static func decode(_ body: Data, kind: ResourceKind, origin: String = "list") throws -> ListPage {
        var page = ListPage()
        do throws(JSONError) {
            try JSONReader.read(body) { r throws(JSONError) in
                try r.forEachField { r, key throws(JSONError) in
                    switch key {
                    case "metadata":
                        guard try r.peek() == .object else { return try r.skipValue() }
                        try r.forEachField { r, key throws(JSONError) in
                            switch key {
                            case "resourceVersion": page.resourceVersion = try r.stringIfPresent()
                            case "continue": page.continueToken = try r.stringIfPresent().flatMap { $0.isEmpty ? nil : $0 }
                            default: try r.skipValue()
                            }
                        }
                    case "items":
                        guard try r.peek() == .array else { return try r.skipValue() }
                        page.items.reserveCapacity(64)
                        try r.forEachElement { r, i throws(JSONError) in
                            guard try r.peek() == .object else {
                                try r.skipValue()
                                page.skipped.append((i, "item is not an object"))
                                return
                            }
                            // Decoded here, from the page's bytes: the list keeps compact objects
                            // while the next pages arrive, not a copy of each item's JSON. One
                            // pass for a well-formed item; any other is read again below.
                            let start = r.offset
                            if let raw = KubeDecoder.decodeListItem(&r, kind: kind, origin: origin) {
                                page.items.append(raw)
                                return
                            }
                            r = r.reader(at: start)
                            let (id, bytes) = try RawObjects.readInPlace(&r)
                            do {
                                guard var raw = try RawObjects.make(id, json: Data(), kind: kind, defaultNamespace: nil, origin: origin) else {
                                    page.skipped.append((i, "item is not a \(kind)"))
                                    return
                                }
                                raw.decoded = KubeDecoder.decode(raw, json: UnsafeRawBufferPointer(bytes))
                                page.items.append(raw)
                            } catch {
                                page.skipped.append((i, "\(error)"))
                            }
                        }
                    default: try r.skipValue()
                    }
                }
                try r.expectEnd()
            }
        } catch {
            throw Unreadable(description: error.path.isEmpty ? error.message : "\(error.path): \(error.message)")
        }
        return page
    }
}

/// One line of a watch stream, decoded.
enum WatchLine {
    case event(SourceEvent, resourceVersion: String?)
    /// Moves the resourceVersion only. `initialEventsEnd`: the WatchList marker (annotation
    /// k8s.io/initial-events-end: "true"), after the initial state's ADDED events.
    case bookmark(resourceVersion: String?, initialEventsEnd: Bool)
    /// 410 Gone (or a resourceVersion ahead of the server's): relist.
    case expired(String)
    case failure(String)
    case skip(String)

    static func decode(_ line: Data, kind: ResourceKind) -> WatchLine {
        var type: String?
        var object: (ObjectIdentity, Data)?
        var objectIsNotAnObject = false
        do {
            try JSONReader.read(line) { r throws(JSONError) in
                try r.forEachField { r, key throws(JSONError) in
                    switch key {
                    case "type": type = try r.stringIfPresent()
                    case "object":
                        if try r.peek() == .object { object = try RawObjects.read(&r) } else { objectIsNotAnObject = true; try r.skipValue() }
                    default: try r.skipValue()
                    }
                }
                try r.expectEnd()
            }
        } catch {
            return .skip("not JSON: \(String(decoding: line.prefix(120), as: UTF8.self))")
        }
        guard let type, let (id, json) = object, !objectIsNotAnObject else { return .skip("no type or object") }
        switch type {
        case "ADDED", "MODIFIED", "DELETED":
            do {
                guard var raw = try RawObjects.make(id, json: Data(), kind: kind, defaultNamespace: nil, origin: "watch") else {
                    return .skip("\(type) of kind \(id.kind ?? "?") on the \(kind.resource) watch")
                }
                if type == "DELETED" {
                    return .event(.delete(kind, namespace: raw.namespace, name: raw.name), resourceVersion: id.resourceVersion)
                }
                // Decoded here, on the source's task: the agent's actor only stores it, and a
                // WatchList's initial events wait for their end marker as compact objects.
                raw.decoded = KubeDecoder.decode(raw, json: json)
                return .event(.apply(raw), resourceVersion: id.resourceVersion)
            } catch {
                return .skip("\(type): \(error)")
            }
        case "BOOKMARK":
            // Small and rare: read whole for the annotation.
            let object = (try? JSONSerialization.jsonObject(with: json)) as? [String: Any]
            let annotations = (object?["metadata"] as? [String: Any])?["annotations"] as? [String: Any]
            return .bookmark(resourceVersion: id.resourceVersion,
                             initialEventsEnd: annotations?["k8s.io/initial-events-end"] as? String == "true")
        case "ERROR":
            // A Status: rare and small, read whole.
            let status = (try? JSONSerialization.jsonObject(with: json)) as? [String: Any] ?? [:]
            let code = status["code"] as? Int
            let reason = status["reason"] as? String ?? ""
            let message = status["message"] as? String ?? ""
            if code == 410 || reason == "Expired" || reason == "Gone" { return .expired(message) }
            // Our resourceVersion is ahead of the server's (a restored etcd, or a bogus version
            // taken from an event): client-go relists rather than wait for it forever.
            if APIStatusError.isTooLargeResourceVersion(status: status) { return .expired(message) }
            return .failure("\(code.map(String.init) ?? "?") \(reason): \(message)")
        default:
            return .skip("unknown event type \(type)")
        }
    }
}
