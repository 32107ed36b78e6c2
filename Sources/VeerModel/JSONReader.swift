import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A JSON pull reader over UTF-8 bytes: the decoders read the fields they want straight from the
/// API's bytes and skip the rest, with no object graph and no second encoding in between (the
/// `JSONSerialization` → re-encode → `JSONDecoder` round trip was 90% of a large list's cost).
///
/// It reads one value at a time and never allocates except for the strings it returns. Errors
/// carry the path of the field they were found in, as the decoders report it ("spec.ports[0].port").
public struct JSONReader: ~Copyable {
    private let bytes: UnsafeBufferPointer<UInt8>
    /// The offset of the next byte to read.
    public private(set) var offset: Int

    /// What a value is, seen from its first byte.
    public enum ValueKind: Sendable, Equatable {
        case object, array, string, number, bool, null
    }

    /// Reads `bytes`, which must outlive the reader (`withUnsafeBytes` scopes both).
    public init(_ bytes: UnsafeBufferPointer<UInt8>, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    /// Runs `body` with a reader over `bytes`.
    public static func read<B: ContiguousBytes, T>(_ bytes: B, _ body: (inout JSONReader) throws(JSONError) -> T) throws(JSONError) -> T {
        let result: Result<T, JSONError> = bytes.withUnsafeBytes { raw in
            var reader = JSONReader(raw.bindMemory(to: UInt8.self))
            do throws(JSONError) {
                return .success(try body(&reader))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Another reader over the same bytes at `offset`: to come back to a value noted earlier.
    public func reader(at offset: Int) -> JSONReader { JSONReader(bytes, offset: offset) }

    /// Some of the bytes read.
    public func bytes(_ range: Range<Int>) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: bytes[range]) }

    /// The bytes from `start` to the current offset (the raw text of a value just read or skipped).
    public func slice(from start: Int) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(rebasing: bytes[start..<offset])
    }

    // MARK: - Shape

    /// The kind of the next value (after whitespace); a syntax error at the end of the input.
    public mutating func peek() throws(JSONError) -> ValueKind {
        skipWhitespace()
        guard offset < bytes.count else { throw .syntax("unexpected end of input", offset) }
        switch bytes[offset] {
        case UInt8(ascii: "{"): return .object
        case UInt8(ascii: "["): return .array
        case UInt8(ascii: "\""): return .string
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return .bool
        case UInt8(ascii: "n"): return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number
        default: throw .syntax("unexpected character", offset)
        }
    }

    /// Only whitespace is left.
    public mutating func expectEnd() throws(JSONError) {
        skipWhitespace()
        if offset < bytes.count { throw .syntax("text after the JSON value", offset) }
    }

    /// Consumes a `null` if one is next: for optional fields, where null means absent.
    public mutating func skipNull() throws(JSONError) -> Bool {
        guard try peek() == .null else { return false }
        try literal("null")
        return true
    }

    /// Reads an object, calling `body` once per field with the reader placed on the field's value.
    /// `body` must consume the value (read or `skipValue`). An error inside gets the key on its path.
    public mutating func forEachField(_ body: (inout JSONReader, JSONKey) throws(JSONError) -> Void) throws(JSONError) {
        try open(UInt8(ascii: "{"), expected: "object")
        skipWhitespace()
        if consume(UInt8(ascii: "}")) { return }
        while true {
            skipWhitespace()
            guard offset < bytes.count, bytes[offset] == UInt8(ascii: "\"") else { throw .syntax("expected a field name", offset) }
            let key = try keyToken()
            skipWhitespace()
            guard consume(UInt8(ascii: ":")) else { throw .syntax("expected ':'", offset) }
            do {
                try body(&self, key)
            } catch {
                throw error.inField(key.string)
            }
            skipWhitespace()
            if consume(UInt8(ascii: ",")) { continue }
            if consume(UInt8(ascii: "}")) { return }
            throw .syntax("expected ',' or '}'", offset)
        }
    }

    /// Reads an array, calling `body` once per element with its index. An error gets `[i]` on its path.
    public mutating func forEachElement(_ body: (inout JSONReader, Int) throws(JSONError) -> Void) throws(JSONError) {
        try open(UInt8(ascii: "["), expected: "list")
        skipWhitespace()
        if consume(UInt8(ascii: "]")) { return }
        var index = 0
        while true {
            do {
                try body(&self, index)
            } catch {
                throw error.inElement(index)
            }
            index += 1
            skipWhitespace()
            if consume(UInt8(ascii: ",")) { continue }
            if consume(UInt8(ascii: "]")) { return }
            throw .syntax("expected ',' or ']'", offset)
        }
    }

    // MARK: - Scalars

    public mutating func readString() throws(JSONError) -> String {
        try expect(.string, "string")
        return try stringToken().string
    }

    public mutating func readBool() throws(JSONError) -> Bool {
        try expect(.bool, "boolean")
        if bytes[offset] == UInt8(ascii: "t") { try literal("true"); return true }
        try literal("false")
        return false
    }

    /// An integer. A number with a fraction or exponent is accepted when its value is whole, as
    /// Foundation's decoder accepts it; anything else is a type error naming "integer".
    public mutating func readInt() throws(JSONError) -> Int {
        try expect(.number, "integer")
        let start = offset
        var negative = false
        if bytes[offset] == UInt8(ascii: "-") { negative = true; offset += 1 }
        var value = 0
        var digits = 0
        var overflow = false
        while offset < bytes.count, case let d = bytes[offset], d >= UInt8(ascii: "0"), d <= UInt8(ascii: "9") {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(Int(d - UInt8(ascii: "0")))
            overflow = overflow || o1 || o2
            value = s
            digits += 1
            offset += 1
        }
        guard digits > 0 else { throw .syntax("invalid number", start) }
        if offset < bytes.count, bytes[offset] == UInt8(ascii: ".") || bytes[offset] | 0x20 == UInt8(ascii: "e") {
            offset = start
            try skipNumber()
            let text = String(decoding: slice(from: start), as: UTF8.self)
            guard let d = Double(text), d.isFinite, d == d.rounded(), abs(d) < 9.0e18 else {
                throw .type(expected: "integer")
            }
            return Int(d)
        }
        guard !overflow else { throw .type(expected: "integer") }
        return negative ? -value : value
    }

    /// Skips the next value, whatever it is. Brackets must match and strings end; the tokens
    /// between them are not checked one by one (what is skipped is never used).
    public mutating func skipValue() throws(JSONError) {
        skipWhitespace()
        guard offset < bytes.count else { throw .syntax("unexpected end of input", offset) }
        switch bytes[offset] {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            // Which bracket each open level needs: one bit per level, a list past 64 levels.
            var stack: UInt64 = 0
            var deeper: [Bool] = []
            var depth = 0
            while offset < bytes.count {
                let c = bytes[offset]
                switch c {
                case UInt8(ascii: "\""):
                    _ = try stringToken()
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    let isObject = c == UInt8(ascii: "{")
                    if depth < 64 { stack = stack << 1 | (isObject ? 1 : 0) } else { deeper.append(isObject) }
                    depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    guard depth > 0 else { throw .syntax("unbalanced brackets", offset) }
                    depth -= 1
                    let wasObject: Bool
                    if depth >= 64 { wasObject = deeper.removeLast() } else { wasObject = stack & 1 == 1; stack >>= 1 }
                    guard wasObject == (c == UInt8(ascii: "}")) else { throw .syntax("unbalanced brackets", offset) }
                    if depth == 0 { offset += 1; return }
                default:
                    break
                }
                offset += 1
            }
            throw .syntax("unexpected end of input", offset)
        case UInt8(ascii: "\""):
            _ = try stringToken()
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try skipNumber()
        default: throw .syntax("unexpected character", offset)
        }
    }

    // MARK: - Internals

    private mutating func expect(_ kind: ValueKind, _ name: String) throws(JSONError) {
        let found = try peek()
        if found == kind { return }
        if found == .null { throw .null(expected: name) }
        throw .type(expected: name)
    }

    private mutating func open(_ byte: UInt8, expected name: String) throws(JSONError) {
        try expect(byte == UInt8(ascii: "{") ? .object : .array, name)
        offset += 1
    }

    private mutating func consume(_ byte: UInt8) -> Bool {
        if offset < bytes.count, bytes[offset] == byte { offset += 1; return true }
        return false
    }

    private mutating func skipWhitespace() {
        while offset < bytes.count {
            let c = bytes[offset]
            guard c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 else { return }
            offset += 1
        }
    }

    private mutating func literal(_ word: StaticString) throws(JSONError) {
        let n = word.utf8CodeUnitCount
        guard offset + n <= bytes.count,
              memcmp(bytes.baseAddress! + offset, word.utf8Start, n) == 0 else { throw .syntax("invalid literal", offset) }
        offset += n
    }

    private mutating func skipNumber() throws(JSONError) {
        let start = offset
        if consume(UInt8(ascii: "-")) {}
        var sawDigit = false
        while offset < bytes.count {
            let c = bytes[offset]
            if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") { sawDigit = true; offset += 1; continue }
            if c == UInt8(ascii: ".") || c | 0x20 == UInt8(ascii: "e") || c == UInt8(ascii: "+") || c == UInt8(ascii: "-") {
                offset += 1
                continue
            }
            break
        }
        if !sawDigit { throw .syntax("invalid number", start) }
    }

    /// A key: a string token whose text the caller compares.
    private mutating func keyToken() throws(JSONError) -> JSONKey { try stringToken() }

    /// Reads a string token, returning where its contents are.
    private mutating func stringToken() throws(JSONError) -> JSONKey {
        let start = offset + 1
        var i = start
        var escaped = false
        while i < bytes.count {
            let c = bytes[i]
            if c == UInt8(ascii: "\"") {
                offset = i + 1
                return JSONKey(text: UnsafeBufferPointer(rebasing: bytes[start..<i]), hasEscapes: escaped)
            }
            if c == UInt8(ascii: "\\") {
                escaped = true
                i += 2
                continue
            }
            if c < 0x20 { throw .syntax("control character in a string", i) }
            i += 1
        }
        throw .syntax("unterminated string", offset)
    }
}
