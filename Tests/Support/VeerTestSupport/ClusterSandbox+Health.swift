import Foundation
import Glibc

/// Health checks as a cloud load balancer sees them: HTTP from the bridge namespace (outside
/// every node) to a node's address, with curl.
extension ClusterSandbox {
    public struct HTTPAnswer: Sendable {
        /// 0 when nothing answered (refused, timed out).
        public let status: Int
        /// Lower-cased names.
        public let headers: [String: String]
        public let body: String
    }

    /// GET http://<node address>:<port><path> from the bridge namespace.
    public func probe(_ node: Int, port: Int, path: String = "/") -> HTTPAnswer {
        let url = "http://\(nodes[node - 1].address):\(port)\(path)"
        let r = KernelSandbox.run(["nsenter", "--net=/run/netns/\(bridgeNetns)", "curl", "-s", "-i", "--max-time", "5", url])
        guard r.status == 0 else { return HTTPAnswer(status: 0, headers: [:], body: "") }
        // Header block, a blank line, then the body.
        let parts = r.stdout.components(separatedBy: "\r\n\r\n")
        let head = parts.first?.components(separatedBy: "\r\n") ?? []
        let status = head.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return HTTPAnswer(status: status, headers: headers, body: parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    /// The Events the agents posted to the fake API server.
    public func postedEvents() -> [[String: Any]] { api?.postedEvents() ?? [] }

    /// A plain TCP listener on `ip:port` in node `node`'s namespace (it holds the port); stop it with
    /// `kill` on the returned process (by pid) when done.
    public func holdPort(_ node: Int, ip: String, port: Int) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: KernelSandbox.probe)
        p.arguments = ["--netns", nodes[node - 1].netnsPath, "serve-tcp", ip, "\(port)", "squatter"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        guard out.fileHandleForReading.readLine() == "ready" else {
            Glibc.kill(p.processIdentifier, SIGKILL)
            throw SandboxError("could not hold \(ip):\(port) on node-\(node)")
        }
        return p
    }
}
