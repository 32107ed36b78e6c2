import CVeer
import Foundation
import VeerModel

/// Connected sockets keep sending to the backend they were translated to, even after that
/// backend leaves the service: for UDP nothing ever tells the application (Cilium's most
/// reported socket-LB problem). The datapath finds such sockets through the reverse-
/// translation map and destroys them (netlink SOCK_DESTROY), so the application sees an
/// error, reconnects, and is translated to a live backend.
extension Datapath {
    /// Sockets translated to a backend that is no longer a member of their frontend.
    public func staleSockets(_ state: MapState) throws -> [TranslatedSocket] {
        var idByBackend: [L4Address: UInt32] = [:]
        for (id, entry) in state.backends { idByBackend[entry.address] = id }
        return try sockets().filter { socket in
            guard state.revNat[socket.revNatID] == socket.frontend,
                  let id = idByBackend[socket.backend] else { return true }
            return !state.members.contains(MemberKey(revNatID: socket.revNatID, backendID: id))
        }
    }

    /// The same, against a copy of the maps the caller keeps (the agent's): no read of the
    /// maps, and no pass over every backend, per call.
    public func staleSockets(_ state: IndexedMapState) throws -> [TranslatedSocket] {
        try sockets().filter { socket in
            guard state.state.revNat[socket.revNatID] == socket.frontend,
                  let id = state.backendID(socket.backend) else { return true }
            return !state.state.members.contains(MemberKey(revNatID: socket.revNatID, backendID: id))
        }
    }

    /// Destroys the stale sockets of these protocols in every network namespace on the node,
    /// judged against `state` when given (what the maps hold), else against the maps read back.
    @discardableResult
    public func terminateStaleSockets(protocols: Set<L4Protocol>, state: IndexedMapState? = nil) throws -> SocketTermination {
        let all = try state.map { try staleSockets($0) } ?? staleSockets(readState())
        let stale = all.filter { protocols.contains($0.backend.proto) }
        var result = SocketTermination()
        guard !stale.isEmpty else { return result }
        for proto in protocols {
            var targets = stale.filter { $0.backend.proto == proto }.map {
                veer_destroy_target(cookie: $0.cookie, addr: $0.backend.beAddr, port: $0.backend.bePort, pad0: 0, pad1: 0)
            }
            guard !targets.isEmpty else { continue }
            for netns in NetworkNamespaces.all() {
                defer { close(netns) }
                let rc = targets.withUnsafeMutableBufferPointer {
                    veer_destroy_sockets(netns, Int32(proto.rawValue), $0.baseAddress, $0.count)
                }
                if rc > 0 { result.destroyed[proto, default: 0] += Int(rc) }
                // Joining a namespace needs CAP_SYS_ADMIN; say so instead of doing nothing.
                if rc < 0 { result.failures.insert("\(String(cString: strerror(-rc)))") }
            }
        }
        return result
    }
}

public struct SocketTermination: Sendable {
    public var destroyed: [L4Protocol: Int] = [:]
    /// Distinct errors met (e.g. "Operation not permitted" without CAP_SYS_ADMIN).
    public var failures: Set<String> = []

    public init() {}
}

/// Every network namespace in use on the node, each opened once.
enum NetworkNamespaces {
    static func all() -> [Int32] {
        var seen = Set<UInt64>()
        var fds: [Int32] = []
        var candidates = ["/proc/self/ns/net"]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where entry.first?.isNumber == true {
            candidates.append("/proc/\(entry)/ns/net")
        }
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? [] {
            candidates.append("/run/netns/\(entry)")
        }
        for path in candidates {
            var st = stat()
            guard stat(path, &st) == 0, seen.insert(UInt64(st.st_ino)).inserted else { continue }
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd >= 0 { fds.append(fd) }
        }
        return fds
    }
}
