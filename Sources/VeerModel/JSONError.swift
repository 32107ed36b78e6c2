/// What went wrong, and where: the path is built as the error leaves each object and array.
public struct JSONError: Error, Sendable, Equatable {
    public enum Problem: Sendable, Equatable {
        /// The input is not JSON (at this byte offset).
        case syntax(String, Int)
        /// A value of another type than the field needs.
        case type(expected: String)
        /// null where a value is required (inside a list or map).
        case null(expected: String)
    }

    public var problem: Problem
    /// "spec.ports[0].port"
    public var path: String = ""

    static func syntax(_ what: String, _ offset: Int) -> JSONError { JSONError(problem: .syntax(what, offset)) }
    static func type(expected: String) -> JSONError { JSONError(problem: .type(expected: expected)) }
    static func null(expected: String) -> JSONError { JSONError(problem: .null(expected: expected)) }

    func inField(_ key: String) -> JSONError {
        var e = self
        if case .syntax = problem { return e }  // a syntax error is the document's, not a field's
        e.path = path.isEmpty ? key : (path.hasPrefix("[") ? key + path : key + "." + path)
        return e
    }

    func inElement(_ index: Int) -> JSONError {
        var e = self
        if case .syntax = problem { return e }
        e.path = "[\(index)]" + (path.isEmpty || path.hasPrefix("[") ? path : "." + path)
        return e
    }

    /// The message the decoders report.
    public var message: String {
        switch problem {
        case let .syntax(what, offset): "not valid JSON: \(what) at byte \(offset)"
        case let .type(expected): "wrong type: expected \(expected)"
        case let .null(expected): "null where \(expected) is required"
        }
    }
}
