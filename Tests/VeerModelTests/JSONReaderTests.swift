import Foundation
import Testing
@testable import VeerModel

@Suite("JSONReader: the bytes the API sends, read field by field")
struct JSONReaderTests {
    /// Reads `{"v": <value>}` with `body` and returns the result or the error's path and message.
    private func read<T>(_ json: String, _ body: (inout JSONReader) throws(JSONError) -> T) -> Result<T, JSONError> {
        do throws(JSONError) {
            return .success(try JSONReader.read(Data(json.utf8)) { r throws(JSONError) -> T in
                var out: T?
                try r.forEachField { r, key throws(JSONError) in
                    if key == "v" { out = try body(&r) } else { try r.skipValue() }
                }
                try r.expectEnd()
                guard let out else { throw JSONError(problem: .type(expected: "a field v")) }
                return out
            })
        } catch {
            return .failure(error)
        }
    }

    @Test(arguments: [
        (#""plain""#, "plain"),
        (#""tab\tquote\"slash\/back\\""#, "tab\tquote\"slash/back\\"),
        (#""caf\u00e9 \u2603""#, "café ☃"),
        (#""pair \ud83d\ude00""#, "pair 😀"),
        (#""utf8 é 😀""#, "utf8 é 😀"),
        (#""lone \ud800 surrogate""#, "lone \u{FFFD} surrogate"),
    ])
    func strings(_ json: String, _ expected: String) throws {
        #expect(try read(#"{"v": \#(json)}"#) { r throws(JSONError) in try r.readString() }.get() == expected)
    }

    @Test(arguments: [("0", 0), ("80", 80), ("-7", -7), ("8080.0", 8080), ("1e3", 1000)])
    func integers(_ json: String, _ expected: Int) throws {
        #expect(try read(#"{"v": \#(json)}"#) { r throws(JSONError) in try r.readInt() }.get() == expected)
    }

    @Test(arguments: ["80.5", "99999999999999999999", #""80""#, "true", "[80]"])
    func notIntegers(_ json: String) {
        guard case let .failure(e) = read(#"{"v": \#(json)}"#, { r throws(JSONError) in try r.readInt() }) else {
            Issue.record("\(json) read as an integer")
            return
        }
        #expect(e.message == "wrong type: expected integer" && e.path == "v")
    }

    @Test func errorsNameTheirPath() {
        let json = #"{"spec": {"ports": [{"port": 80}, {"port": "http"}]}}"#
        #expect(throws: JSONError(problem: .type(expected: "integer"), path: "spec.ports[1].port")) {
          try JSONReader.read(Data(json.utf8)) { r throws(JSONError) in
            try r.forEachField { r, _ throws(JSONError) in
                try r.forEachField { r, _ throws(JSONError) in
                    try r.forEachElement { r, _ throws(JSONError) in
                        try r.forEachField { r, _ throws(JSONError) in _ = try r.readInt() }
                    }
                }
            }
          }
        }
    }

    @Test func nullIsAbsentForOptionalsAndAnErrorInLists() throws {
        #expect(try read(#"{"v": null}"#) { r throws(JSONError) in try r.optionalString() }.get() == nil)
        guard case let .failure(e) = read(#"{"v": ["a", null]}"#, { r throws(JSONError) in try r.optionalStringList() }) else {
            Issue.record("a null in a list of strings was accepted")
            return
        }
        #expect(e.path == "v[1]" && e.message == "null where string is required")
    }

    @Test func skipsAnythingWellFormedAndRefusesTheRest() throws {
        let skipped = #"{"a": {"b": [1, 2.5e-3, true, false, null, "x\"]}", {"c": {}}, []]}, "v": 1}"#
        #expect(try read(skipped) { r throws(JSONError) in try r.readInt() }.get() == 1)
        for bad in [#"{"a": {"b": [1}, "v": 1}"#, #"{"a": "open, "v": 1}"#, #"{"a": [1, 2"#, #"{"v": 1} trailing"#, #"{"a": tru, "v": 1}"#] {
            guard case let .failure(e) = read(bad, { r throws(JSONError) in try r.readInt() }), case .syntax = e.problem else {
                Issue.record("\(bad) was not refused as JSON")
                continue
            }
        }
    }

    @Test func deepNestingIsSkippedWithoutRecursion() throws {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(try read(#"{"a": \#(deep), "v": 2}"#) { r throws(JSONError) in try r.readInt() }.get() == 2)
    }

    @Test func keysWithEscapesMatch() throws {
        #expect(try read(#"{"\u0076": 3}"#) { r throws(JSONError) in try r.readInt() }.get() == 3)
    }
}
