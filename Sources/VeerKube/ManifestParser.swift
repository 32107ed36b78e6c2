// Turns one manifest file (YAML, multi-document, or JSON; single objects or List kinds such as
// `kubectl get -o yaml` output) into RawObjects. A file is all or nothing: if any document in it
// is broken, the file is reported and the caller keeps the file's last good objects.
import Foundation
import VeerModel
import Yams

enum ManifestParser {
    /// Parses `data`; `displayName` (e.g. "manifests/web.yaml") prefixes origins and problems.
    static func parse(_ data: Data, displayName: String, isJSON: Bool) -> Result<[RawObject], ManifestFileError> {
        var objects: [RawObject] = []
        var problems: [SourceDiagnostic] = []

        func take(document: Any?, index: Int, line: Int?) {
            let where_ = line.map { "\(displayName)#\(index) (line \($0))" } ?? "\(displayName)#\(index)"
            guard let document, !(document is NSNull) else { return }  // empty document
            guard let object = document as? [String: Any] else {
                problems.append(.init(.error, origin: where_, "document is not an object (a YAML mapping)"))
                return
            }
            do {
                objects += try objectsIn(object, origin: "\(displayName)#\(index)")
            } catch {
                problems.append(.init(.error, origin: where_, "\(error)"))
            }
        }

        if isJSON {
            do {
                let top = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
                if let array = top as? [Any] {
                    for (i, element) in array.enumerated() { take(document: element, index: i + 1, line: nil) }
                } else {
                    take(document: top, index: 1, line: nil)
                }
            } catch {
                problems.append(.init(.error, origin: displayName, "invalid JSON: \(jsonErrorText(error))"))
            }
        } else {
            guard let text = String(data: data, encoding: .utf8) else {
                return .failure(ManifestFileError(problems: [.init(.error, origin: displayName, "file is not UTF-8")]))
            }
            do {
                var documents = try Yams.compose_all(yaml: text)
                var index = 0
                while let node = documents.next() {
                    index += 1
                    do {
                        take(document: try jsonValue(node), index: index, line: node.mark?.line)
                    } catch {
                        problems.append(.init(.error, origin: "\(displayName)#\(index)", "\(error)"))
                    }
                }
                if let error = documents.error {
                    problems.append(.init(.error, origin: "\(displayName)#\(index + 1)", "invalid YAML: \(yamlErrorText(error))"))
                }
            } catch {
                problems.append(.init(.error, origin: "\(displayName)#1", "invalid YAML: \(yamlErrorText(error))"))
            }
        }
        return problems.isEmpty ? .success(objects) : .failure(ManifestFileError(problems: problems))
    }

    /// One object, or the items of a List / ServiceList / EndpointSliceList / NodeList.
    static func objectsIn(_ object: [String: Any], origin: String) throws -> [RawObject] {
        guard let kind = object["kind"] as? String else { throw ObjectProblem("object has no \"kind\"") }
        if kind == "List" || kind.hasSuffix("List") {
            let itemKind = ResourceKind(rawValue: String(kind.dropLast(4)))  // ServiceList -> Service
            if kind != "List" && itemKind == nil { return [] }  // a list of something we don't read
            guard let items = object["items"] as? [Any] else {
                if object["items"] == nil || object["items"] is NSNull { return [] }
                throw ObjectProblem("\(kind).items is not a list")
            }
            var result: [RawObject] = []
            for (i, item) in items.enumerated() {
                guard let item = item as? [String: Any] else {
                    throw ObjectProblem("\(kind).items[\(i)] is not an object")
                }
                do {
                    if let raw = try RawObjects.make(item, kind: itemKind, defaultNamespace: "default",
                                                     origin: "\(origin)/items/\(i)") {
                        result.append(raw)
                    }
                } catch {
                    throw ObjectProblem("items[\(i)]: \(error)")
                }
            }
            return result
        }
        guard let raw = try RawObjects.make(object, kind: nil, defaultNamespace: "default", origin: origin) else {
            return []  // a kind Veer does not read (Deployment, ConfigMap, ...): ignored
        }
        return [raw]
    }

    /// A YAML node as the value JSONSerialization writes, typed the way the YAML resolver typed it.
    static func jsonValue(_ node: Node) throws -> Any {
        switch node {
        case .scalar(let scalar):
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .null: return NSNull()
            case .bool: return node.bool ?? scalar.string
            case .int:
                if let i = node.int { return i }
                if let d = node.float, d.isFinite { return d }
                return scalar.string
            case .float:
                if let d = node.float, d.isFinite { return d }
                return scalar.string
            default: return scalar.string
            }
        case .mapping(let mapping):
            var dict: [String: Any] = [:]
            for (key, value) in mapping {
                let keyString: String
                switch key {
                case .scalar(let s): keyString = s.string
                default: throw ObjectProblem("line \(key.mark?.line ?? 0): a mapping key must be a scalar")
                }
                dict[keyString] = try jsonValue(value)
            }
            return dict
        case .sequence(let sequence):
            return try sequence.map { try jsonValue($0) }
        case .alias:
            throw ObjectProblem("line \(node.mark?.line ?? 0): YAML aliases are not supported")
        }
    }

    static func yamlErrorText(_ error: Error) -> String {
        guard let error = error as? YamlError else { return "\(error)" }
        switch error {
        case .scanner(let context, let problem, let mark, _),
             .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let ctx = context.map { " (\($0.text) at line \($0.mark.line))" } ?? ""
            return "line \(mark.line), column \(mark.column): \(problem)\(ctx)"
        default:
            return "\(error)".replacingOccurrences(of: "\n", with: " ")
        }
    }

    static func jsonErrorText(_ error: Error) -> String {
        let ns = error as NSError
        if let debug = ns.userInfo[NSDebugDescriptionErrorKey] as? String { return debug }
        return ns.localizedDescription
    }
}

struct ManifestFileError: Error, CustomStringConvertible {
    var problems: [SourceDiagnostic]
    var description: String { problems.map(\.description).joined(separator: "; ") }
}
