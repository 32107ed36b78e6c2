import Foundation
#if canImport(Glibc)
import Glibc
#endif
import VeerModel

/// names.json: written by the agent, read by anyone. bpffs holds only pinned objects, so
/// it lives in a state directory that mirrors the pin path under /run/veer and, like the
/// pins, does not survive a reboot.
public enum NamesFile {
    public static func directory(_ pins: PinLayout) -> String { "/run/veer\(pins.directory)" }
    public static func path(_ pins: PinLayout) -> String { "\(directory(pins))/names.json" }

    public static func read(pins: PinLayout) -> ProgrammedNames? {
        readState(ProgrammedNames.self, from: path(pins))
    }

    /// Written one entry at a time (`StreamingJSONFile`), straight from the tables, in their own
    /// order (any order reads back the same): at 10,000 services × 10 endpoints a whole-value
    /// JSONEncoder run held about as much memory again as the agent itself, and a copy of the
    /// tables keyed by text, to sort, was the largest RSS veerd reached before its first scrape.
    public static func write(_ names: ProgrammedNames, pins: PinLayout) throws {
        try write(pins: pins, backends: names.backendPart, frontends: names.frontendPart)
    }

    /// Written a part at a time (`ProgrammedNames.backendPart`, `frontendPart`), each part taken
    /// when it is written: the agent's writer takes them from its names as they are then.
    public static func write(pins: PinLayout, backends: (Int) throws -> [(L4Address, ProgrammedNames.Backend)]?,
                             frontends: (Int) throws -> [(L4Address, ProgrammedNames.Frontend)]?) throws {
        try StreamingJSONFile.write(to: path(pins), pins: pins) { out in
            try out.raw("{\"backends\":{")
            var first = true
            var k = 0
            while let part = try backends(k) {
                for (address, row) in part { try out.member(address.description, row, first: &first) }
                k += 1
            }
            try out.raw("},\"frontends\":{")
            first = true
            k = 0
            while let part = try frontends(k) {
                for (address, frontend) in part { try out.member(address.description, frontend, first: &first) }
                k += 1
            }
            try out.raw("}}")
        }
    }
}

/// decisions.json in the state directory: every decision with its reasons as veerd had them when
/// it last stopped gracefully, for `veerctl explain` while veerd is down (while it runs, veerctl
/// asks it over `DecisionsSocket`). Removed when veerd starts: it then describes a past run.
public enum DecisionsFile {
    public static func path(_ pins: PinLayout) -> String { "\(NamesFile.directory(pins))/decisions.json" }

    public static func read(pins: PinLayout) -> SavedDecisions? {
        readState(SavedDecisions.self, from: path(pins))
    }

    /// When it was written (nil: there is none).
    public static func savedAt(pins: PinLayout) -> Date? {
        (try? FileManager.default.attributesOfItem(atPath: path(pins)))?[.modificationDate] as? Date
    }

    public static func remove(pins: PinLayout) {
        unlink(path(pins))
    }

    /// Written one decision at a time (`StreamingJSONFile`), the same JSON as encoding the whole
    /// value with sorted keys: at 10,000 services that whole-value encode held about 200 MB.
    public static func write(_ decisions: SavedDecisions, pins: PinLayout) throws {
        try StreamingJSONFile.write(to: path(pins), pins: pins) { out in
            try out.raw("{\"decisions\":")
            try out.array(decisions.decisions)
            try out.raw(",\"node\":")
            try out.value(decisions.node)
            try out.raw(",\"skipped\":")
            try out.array(decisions.skipped)
            if let zone = decisions.zone {
                try out.raw(",\"zone\":")
                try out.value(zone)
            }
            try out.raw("}")
        }
    }
}

/// Reads one JSON state file; nil when it is missing or unreadable (veerctl then shows addresses).
func readState<T: Decodable>(_ type: T.Type, from path: String) -> T? {
    guard let data = FileManager.default.contents(atPath: path) else { return nil }
    return try? JSONDecoder().decode(type, from: data)
}

/// Writes one JSON state file into the state directory: to a temporary file, then renamed,
/// so a reader (veerctl) never sees half a file.
func writeState<T: Encodable>(_ value: T, to path: String, pins: PinLayout) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let data = try encoder.encode(value)
    try ensureStateDirectory(pins)
    let tmp = path + ".tmp"
    // Root-only, like the pins: the names say which pods serve what.
    guard FileManager.default.createFile(atPath: tmp, contents: data, attributes: [.posixPermissions: 0o600]) else {
        throw DatapathError.syscall(operation: "write \(tmp)", errno: errno)
    }
    guard rename(tmp, path) == 0 else { throw DatapathError.syscall(operation: "rename \(tmp)", errno: errno) }
}

/// Writes one large JSON state file piece by piece: every element of its big arrays and maps
/// is encoded on its own (same encoder settings as `writeState`, so each piece's bytes are what a
/// whole-value encode writes for it) and appended to a buffer flushed to the file every 256 KiB.
/// Peak memory is one element's encoding, not the whole document's tree and text. Same
/// temporary-file-then-rename as `writeState`: a reader never sees half a file.
struct StreamingJSONFile {
    private let fd: Int32
    private let tmp: String
    private var buffer: [UInt8] = []
    private let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    private init(fd: Int32, tmp: String) {
        self.fd = fd
        self.tmp = tmp
        buffer.reserveCapacity(Self.flushAt + 64 * 1024)
    }

    private static let flushAt = 256 * 1024

    static func write(to path: String, pins: PinLayout, _ body: (inout StreamingJSONFile) throws -> Void) throws {
        try ensureStateDirectory(pins)
        let tmp = path + ".tmp"
        // Root-only, like the pins: the names say which pods serve what.
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw DatapathError.syscall(operation: "write \(tmp)", errno: errno) }
        var file = StreamingJSONFile(fd: fd, tmp: tmp)
        do {
            guard fchmod(fd, 0o600) == 0 else { throw DatapathError.syscall(operation: "chmod \(tmp)", errno: errno) }
            try body(&file)
            try file.flush()
            close(fd)
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
        guard rename(tmp, path) == 0 else { throw DatapathError.syscall(operation: "rename \(tmp)", errno: errno) }
    }

    /// Literal JSON punctuation and keys.
    mutating func raw(_ text: String) throws {
        buffer.append(contentsOf: text.utf8)
        try flushIfFull()
    }

    /// One value, encoded on its own.
    mutating func value<T: Encodable>(_ value: T) throws {
        buffer.append(contentsOf: try encoder.encode(value))
        try flushIfFull()
    }

    mutating func array<T: Encodable>(_ elements: [T]) throws {
        try raw("[")
        for (i, e) in elements.enumerated() {
            if i > 0 { try raw(",") }
            try value(e)
        }
        try raw("]")
    }

    /// One member of an object being written: `"key":value`, after a comma unless it is the first.
    mutating func member<T: Encodable>(_ key: String, _ value: T, first: inout Bool) throws {
        if !first { try raw(",") }
        first = false
        try self.value(key)
        try raw(":")
        try self.value(value)
    }

    private mutating func flushIfFull() throws {
        if buffer.count >= Self.flushAt { try flush() }
    }

    private mutating func flush() throws {
        var done = 0
        while done < buffer.count {
            let n = buffer.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw DatapathError.syscall(operation: "write \(tmp)", errno: errno)
            }
            done += n
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

extension Inspection {
    /// From the pinned maps and the names file beside them.
    public init(datapath: Datapath) throws {
        let state = try datapath.readState()
        self.init(state: state, hits: try datapath.hitsByAddress(state), names: NamesFile.read(pins: datapath.pins) ?? ProgrammedNames())
    }
}
