import Glibc

/// Every way the datapath can fail, each saying what failed and why, in words an
/// operator can act on.
public enum DatapathError: Error, CustomStringConvertible, Equatable {
    case notRoot
    case permissionDenied(log: String)
    case capacityMismatch(map: String, pinned: Int, requested: Int)
    case noCgroup2(path: String)
    case noBPFFS(path: String, detail: String)
    case objectNotFound(path: String)
    case objectInvalid(path: String, detail: String)
    case schemaMismatch(pinDirectory: String, log: String)
    case verifierRejected(log: String)
    case attachFailed(program: String, cgroup: String, errno: Int32)
    case attachedElsewhere(pinDirectory: String, cgroupID: UInt64, requested: String)
    case notInstalled(pinDirectory: String)
    case versionMismatch(pinned: String, supported: String, root: String)
    case layoutMismatch(map: String, detail: String)
    case mapFull(map: String)
    case syscall(operation: String, errno: Int32)
    /// The packet path: registering the kernel's NAT hooks failed.
    case natHooks(detail: String)
    /// The packet path: attaching at tc failed.
    case tcAttachFailed(interface: String, errno: Int32)

    public var description: String {
        switch self {
        case .notRoot:
            return "veer needs root: loading and attaching BPF programs takes CAP_BPF and CAP_NET_ADMIN, terminating sockets in other network namespaces CAP_SYS_ADMIN"
        case let .permissionDenied(log):
            return "the kernel refused to load the BPF programs (EPERM): the process lacks CAP_BPF or CAP_NET_ADMIN, or a security module forbids BPF.\n\(log)"
        case let .capacityMismatch(map, pinned, requested):
            return "map \(map) is pinned with \(pinned) entries but \(requested) were asked for; a capacity takes effect only on a fresh install: drop the flag, or `veerctl uninstall` first (service traffic stops being translated until veerd loads again)"
        case let .noCgroup2(path):
            return "\(path) is not a cgroup v2 directory; mount cgroup2 (e.g. at /sys/fs/cgroup/unified) and pass a directory on it"
        case let .noBPFFS(path, detail):
            return "no BPF filesystem for pins at \(path): \(detail)"
        case let .objectNotFound(path):
            return "BPF object \(path) not found; run `make` or pass --bpf-object"
        case let .objectInvalid(path, detail):
            return "BPF object \(path) could not be opened: \(detail)"
        case let .schemaMismatch(dir, log):
            return "the maps pinned in \(dir) have a different layout than this build (a schema change needs a new pin version); run `veerctl uninstall` or keep the old build.\n\(log)"
        case let .verifierRejected(log):
            return "the kernel rejected the BPF programs; verifier log:\n\(log)"
        case let .attachFailed(program, cgroup, err):
            return "attaching \(program) to \(cgroup) failed: \(String(cString: strerror(err)))"
        case let .attachedElsewhere(dir, id, requested):
            return "the datapath pinned in \(dir) is attached to cgroup id \(id), not \(requested); uninstall it first"
        case let .notInstalled(dir):
            return "no Veer datapath is pinned in \(dir); is veerd running with the same --bpffs?"
        case let .versionMismatch(pinned, supported, root):
            return "the datapath pinned in \(root) has map layout \(pinned); this build reads \(supported). Use the veerctl of the running veerd"
        case let .layoutMismatch(map, detail):
            return "map \(map) does not match veer_maps.h: \(detail)"
        case let .mapFull(map):
            return "map \(map) is full"
        case let .syscall(operation, err):
            return "\(operation): \(String(cString: strerror(err)))"
        case let .natHooks(detail):
            return "the packet path needs the kernel's NAT hooks (an nftables nat table in veerd's network namespace), and registering them failed: \(detail). Pass --no-packet-path to serve only connections made on this node"
        case let .tcAttachFailed(interface, err):
            return "attaching the packet path at tc ingress of \(interface) failed: \(String(cString: strerror(err)))"
        }
    }
}
