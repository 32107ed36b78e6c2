import CVeer
import Foundation

/// Where a datapath's pins live: `<root>/<version>/maps/<map>` and `.../links/<program>`.
/// The version changes with any map layout change, so an upgrade never reuses maps of
/// another shape.
public struct PinLayout: Sendable, Hashable {
    public var root: String
    /// The schema version directory; another than `PinLayout.version` only to retire old pins.
    public var version: String

    public init(root: String = "/sys/fs/bpf/veer", version: String = PinLayout.version) {
        self.root = root
        self.version = version
    }

    public static var version: String { VEER_PIN_VERSION }
    public var directory: String { "\(root)/\(version)" }

    /// Pin directories of other schema versions under the same root (`v1` beside `v2`).
    public var otherVersions: [PinLayout] {
        ((try? listDirectory(root)) ?? []).filter { name in
            name != version && name.hasPrefix("v") && name.dropFirst().allSatisfy(\.isNumber) && name.count > 1
        }.sorted().map { PinLayout(root: root, version: $0) }
    }
    public var maps: String { "\(directory)/maps" }
    public var links: String { "\(directory)/links" }
}

/// The attached programs, by their names in bpf/veer_sock.bpf.c: four hooks per address
/// family, the release hook both share, and bind protection (post_bind4/6).
public let datapathPrograms = [
    "veer_connect4", "veer_sendmsg4", "veer_recvmsg4", "veer_getpeername4",
    "veer_connect6", "veer_sendmsg6", "veer_recvmsg6", "veer_getpeername6",
    "veer_sock_release",
    "veer_post_bind4", "veer_post_bind6",
]

/// Which sockets the programs translate.
public enum TranslationScope: Sendable, Hashable {
    /// Every socket in the cgroup, in any network namespace (the default).
    case allNamespaces
    /// Only sockets of the network namespace at this path (veerd: its own, the host's).
    /// Pods then reach the ClusterIP itself, so a mesh sidecar can intercept it.
    case hostNamespaceOnly(netns: String)
}

/// The pinned BPF datapath: typed access to every map, and the operations that load,
/// attach, adopt and remove it. Opening an instance only opens pins, so veerctl works

func listDirectory(_ path: String) throws -> [String] {
    guard let dir = opendir(path) else { throw DatapathError.syscall(operation: "list \(path)", errno: errno) }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafePointer(to: entry.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}
