import Foundation
import Yams

// The YAML side of the manifest parser: documents split one by one, each composed with Yams and
// turned into the JSON values the decoders read (with a depth and size budget).
extension ManifestParser {
    /// Timestamps stay strings (as in JSON); everything else follows YAML 1.1 like sigs.k8s.io/yaml.
    static let yamlResolver = Resolver.default.removing(.timestamp)

    /// Splits multi-document YAML on `---` / `...` lines so one broken document loses only itself.
    static func yamlDocuments(_ text: String) -> [String] {
        var docs: [String] = []
        var current: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let l = line.last == "\r" ? line.dropLast() : line
            if l == "---" || l.hasPrefix("--- ") || l.hasPrefix("---\t") || l == "..." {
                docs.append(current.joined(separator: "\n"))
                current = []
                // "--- {inline: doc}" carries content on the marker line.
                let rest = l.dropFirst(3).drop(while: { $0 == " " || $0 == "\t" })
                if l != "...", !rest.isEmpty, !rest.hasPrefix("#") { current.append(rest) }
            } else {
                current.append(line)
            }
        }
        docs.append(current.joined(separator: "\n"))
        // Keep numbering stable for the documents users count, but drop blank ones.
        return docs.filter { doc in
            doc.split(separator: "\n").contains { line in
                let t = line.drop(while: { $0 == " " || $0 == "\t" })
                return !t.isEmpty && !t.hasPrefix("#") && t != "\r"
            }
        }
    }

    /// One YAML document as JSONSerialization-compatible values (nil for an empty document),
    /// for other YAML inputs such as kubeconfig files.
    public static func yamlValue(_ text: String) throws -> Any? {
        guard let node = try Yams.compose(yaml: text) else { return nil }
        var budget = 1_000_000
        return try jsonValue(node, depth: 0, budget: &budget)
    }

    /// A YAML or JSON error in one short line.
    public static func errorText(_ error: any Error) -> String { shortError(error) }

    struct YAMLShapeError: Error, CustomStringConvertible {
        var description: String
    }

    /// Converts a YAML node into JSONSerialization-compatible values, within a depth and size budget.
    static func jsonValue(_ node: Yams.Node, depth: Int, budget: inout Int) throws -> Any {
        budget -= 1
        guard depth < 100, budget > 0 else { throw YAMLShapeError(description: "document too deep or too large") }
        switch node {
        case let .scalar(scalar):
            switch node.tag.rawValue {
            case Tag.Name.null.rawValue: return NSNull()
            case Tag.Name.bool.rawValue: return node.bool ?? scalar.string
            case Tag.Name.int.rawValue: return node.int ?? scalar.string
            case Tag.Name.float.rawValue:
                if let d = node.float, d.isFinite { return d }
                return scalar.string
            default: return scalar.string
            }
        case let .sequence(seq):
            var out: [Any] = []
            for child in seq { out.append(try jsonValue(child, depth: depth + 1, budget: &budget)) }
            return out
        case let .mapping(map):
            var out: [String: Any] = [:]
            for (k, v) in map {
                let key = k.scalar?.string ?? "\(k)"
                out[key] = try jsonValue(v, depth: depth + 1, budget: &budget)
            }
            return out
        case .alias:
            throw YAMLShapeError(description: "unresolved YAML alias")
        }
    }

    static func shortError(_ error: any Error) -> String {
        // Yams' marks count from the start of the document (documents are parsed one by one).
        if let yaml = error as? YamlError {
            switch yaml {
            case let .scanner(_, problem, mark, _), let .parser(_, problem, mark, _), let .composer(_, problem, mark, _):
                return "line \(mark.line), column \(mark.column) of the document: \(problem)"
            default: break
            }
        }
        let text = "\(error)".replacingOccurrences(of: "\n", with: " ")
        return text.count > 200 ? String(text.prefix(200)) + "…" : text
    }
}
