import Foundation
#if canImport(Glibc)
import Glibc
#endif
import VeerModel

/// veerd.sock in the state directory (root-only, beside names.json): veerd answers
/// `GET /decisions?target=<namespace/name[:port] | ip:port[/proto]>` over HTTP/1.1 there with the
/// `SavedDecisions` JSON of the asked frontends only, made when asked (as `cilium-dbg` asks its
/// agent). 404 with a message when nothing matches. This is veerctl's side: a plain blocking
/// client, one request per connection.
public enum DecisionsSocket {
    public static func path(_ pins: PinLayout) -> String { "\(NamesFile.directory(pins))/veerd.sock" }

    /// The request target for a query, its text percent-encoded.
    public static func requestTarget(_ query: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return "/decisions?target=" + (query.addingPercentEncoding(withAllowedCharacters: allowed) ?? query)
    }

    public enum Answer: Sendable {
        case decisions(SavedDecisions)
        /// Nothing matches; veerd's message.
        case notFound(String)
    }

    /// Nothing listens at the socket: veerd is not running (or has not opened it yet).
    public struct NotRunning: Error, CustomStringConvertible {
        public let path: String
        public let errno: Int32
        public var description: String { "nothing listens at \(path): \(String(cString: strerror(errno)))" }
    }

    public struct Failed: Error, CustomStringConvertible {
        public let description: String
    }

    /// Asks veerd for `query`'s decisions. Throws `NotRunning` when no veerd listens, `Failed` for
    /// anything else (a timeout, an error answer).
    public static func ask(_ query: String, pins: PinLayout, timeoutSeconds: Int = 30) throws -> Answer {
        let path = path(pins)
        let (status, body) = try get(requestTarget(query), socket: path, timeoutSeconds: timeoutSeconds)
        switch status {
        case 200:
            do {
                return .decisions(try JSONDecoder().decode(SavedDecisions.self, from: Data(body)))
            } catch {
                throw Failed(description: "veerd's answer at \(path) is not decisions: \(error)")
            }
        case 404:
            return .notFound(String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        default:
            throw Failed(description: "veerd at \(path) answered \(status): \(String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    /// One GET over the unix socket; the server closes the connection after its answer.
    static func get(_ target: String, socket path: String, timeoutSeconds: Int) throws -> (status: Int, body: [UInt8]) {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard path.utf8.count < capacity else {
            throw Failed(description: "socket path \(path) is longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: path.utf8)
            raw[path.utf8.count] = 0
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw DatapathError.syscall(operation: "socket(AF_UNIX)", errno: errno) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let e = errno
            if e == ENOENT || e == ECONNREFUSED { throw NotRunning(path: path, errno: e) }
            throw DatapathError.syscall(operation: "connect \(path)", errno: e)
        }

        let request = Array("GET \(target) HTTP/1.1\r\nHost: veerd\r\nConnection: close\r\n\r\n".utf8)
        var sent = 0
        while sent < request.count {
            let n = request.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failed(description: "sending to \(path): \(String(cString: strerror(errno)))")
            }
            sent += n
        }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                let why = errno == EAGAIN ? "no answer within \(timeoutSeconds) s" : String(cString: strerror(errno))
                throw Failed(description: "reading from \(path): \(why)")
            }
            response += chunk[..<n]
        }
        return try parse(response, from: path)
    }

    /// Status and body of an HTTP/1.1 answer with a Content-Length (what veerd's listener sends).
    static func parse(_ response: [UInt8], from path: String) throws -> (status: Int, body: [UInt8]) {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headEnd: Int?
        if response.count >= separator.count {
            for i in 0...(response.count - separator.count) where response[i..<(i + separator.count)].elementsEqual(separator) {
                headEnd = i
                break
            }
        }
        guard let end = headEnd else {
            throw Failed(description: "veerd's answer at \(path) is not HTTP (\(response.count) bytes)")
        }
        let head = String(decoding: response[..<end], as: UTF8.self)
        let statusLine = head.split(separator: "\r\n", maxSplits: 1).first ?? ""
        let fields = statusLine.split(separator: " ")
        guard fields.count >= 2, fields[0].hasPrefix("HTTP/1."), let status = Int(fields[1]) else {
            throw Failed(description: "veerd's answer at \(path) is not HTTP: \(statusLine)")
        }
        var body = Array(response[(end + separator.count)...])
        for line in head.split(separator: "\r\n").dropFirst() {
            let kv = line.split(separator: ":", maxSplits: 1)
            if kv.count == 2, kv[0].lowercased() == "content-length",
               let length = Int(kv[1].trimmingCharacters(in: .whitespaces)) {
                guard body.count >= length else {
                    throw Failed(description: "veerd's answer at \(path) ended after \(body.count) of \(length) bytes")
                }
                body = Array(body.prefix(length))
            }
        }
        return (status, body)
    }
}

/// The decisions `veerctl explain` shows: veerd's answer, or while veerd is down the
/// decisions.json it saved when it stopped.
public struct ExplainedDecisions: Sendable {
    public var decisions: SavedDecisions
    /// Nil when veerd answered; otherwise when the stopped veerd saved them.
    public var savedAt: Date?

    /// Asks veerd; if none listens, reads what the last one saved. Throws with a message saying
    /// which when neither answers, or when nothing matches `query`.
    public init(query: String, pins: PinLayout) throws {
        do {
            switch try DecisionsSocket.ask(query, pins: pins) {
            case let .decisions(d):
                decisions = d
                savedAt = nil
            case let .notFound(message):
                throw DecisionsSocket.Failed(description: message)
            }
        } catch let notRunning as DecisionsSocket.NotRunning {
            guard let saved = DecisionsFile.read(pins: pins), let when = DecisionsFile.savedAt(pins: pins) else {
                throw DecisionsSocket.Failed(description: "veerd is not running (\(notRunning)) and saved no decisions at \(DecisionsFile.path(pins)); veerd saves them when it stops gracefully")
            }
            decisions = saved
            savedAt = when
        }
    }

    /// The first line veerctl prints when veerd is down.
    public var note: String? {
        savedAt.map { "veerd is not running: decisions as it saved them when it stopped, at \(ISO8601DateFormatter().string(from: $0))" }
    }
}
