import Foundation
import Glibc
import Testing
import VeerAgent
@testable import VeerDatapath
@testable import VeerModel

// veerctl's plain socket client against veerd's HTTP listener on a unix socket: what it sends
// arrives decoded, what comes back is read whole, and no listener means "not running".
@Suite("veerd.sock: the listener and veerctl's client")
struct DecisionsSocketTests {
    /// Runs veerctl's blocking client on a thread of its own. On a thread of the concurrency
    /// pool it would hold one of the two a 2-core machine has while the listener's handler needs
    /// one, and the other tests running at once hold them too: the answer then never came.
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<T, any Error>) in
            Thread { done.resume(with: Result { try body() }) }.start()
        }
    }

    static func withListener(_ body: (String) async throws -> Void) async throws {
        let path = "/tmp/veer-sock-\(getpid())-\(UUID().uuidString.prefix(8)).sock"
        let listener = try await HTTPListener(unixSocket: path, handler: .async { path, query in
            guard path == "/decisions", let target = query["target"] else {
                return HTTPListener.Response(.badRequest, contentType: "text/plain", "bad\n")
            }
            if target == "default/missing" { return HTTPListener.Response(.notFound, contentType: "text/plain", "nothing matches\n") }
            // Echoes the target as the node's name, and a body larger than one read.
            let skipped = (0..<2000).map { i in
                SkipReason(kind: "Service", object: "default/s\(i)", service: ObjectKey(namespace: "default", name: "s\(i)"), rule: .headless, reason: "headless")
            }
            var d = SavedDecisions(node: NodeContext(nodeName: target), selection: SelectionResult())
            d.skipped = skipped
            return HTTPListener.Response(.ok, contentType: "application/json", bytes: Array(try! JSONEncoder().encode(d)))
        })
        defer { unlink(path) }
        do {
            try await body(path)
        } catch {
            await listener.close()
            throw error
        }
        await listener.close()
    }

    @Test("Targets arrive decoded, large answers are read whole, 404 and 400 come back as such")
    func roundTrip() async throws {
        try await Self.withListener { path in
            for target in ["default/web", "default/web:http", "10.96.0.10:80/tcp", "[fd00::10]:53/udp", "a b&c=d+e%"] {
                let (status, body) = try await Self.blocking {
                    try DecisionsSocket.get(DecisionsSocket.requestTarget(target), socket: path, timeoutSeconds: 10)
                }
                #expect(status == 200)
                let d = try JSONDecoder().decode(SavedDecisions.self, from: Data(body))
                #expect(d.node == target && d.skipped.count == 2000)
            }
            let missing = try await Self.blocking {
                try DecisionsSocket.get(DecisionsSocket.requestTarget("default/missing"), socket: path, timeoutSeconds: 10)
            }
            #expect(missing.status == 404 && String(decoding: missing.body, as: UTF8.self) == "nothing matches\n")
            #expect(try await Self.blocking { try DecisionsSocket.get("/other", socket: path, timeoutSeconds: 10) }.status == 400)
        }
    }

    @Test("No socket, or a socket nobody listens on (veerd killed): not running")
    func notRunning() async throws {
        let path = "/tmp/veer-sock-\(getpid())-gone.sock"
        unlink(path)
        #expect(throws: DecisionsSocket.NotRunning.self) { try DecisionsSocket.get("/decisions", socket: path, timeoutSeconds: 1) }
        // A socket file left behind: bound, never listening.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd); unlink(path) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in raw.copyBytes(from: path.utf8); raw[path.utf8.count] = 0 }
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        #expect(bound == 0)
        #expect(throws: DecisionsSocket.NotRunning.self) { try DecisionsSocket.get("/decisions", socket: path, timeoutSeconds: 1) }
    }

    @Test("An answer cut short is an error, not a partial decision")
    func truncated() {
        let head = Array("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}".utf8)
        #expect(throws: DecisionsSocket.Failed.self) { try DecisionsSocket.parse(head, from: "x") }
        #expect(throws: DecisionsSocket.Failed.self) { try DecisionsSocket.parse(Array("garbage".utf8), from: "x") }
        let whole = try? DecisionsSocket.parse(Array("HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno".utf8), from: "x")
        #expect(whole?.status == 404 && whole?.body == Array("no".utf8))
    }
}
