import CVeer
import Glibc

/// Preconditions of loading a datapath, each failing with an error that says what to do.
public enum SystemCheck {
    static let cgroup2Magic: Int = 0x6367_7270
    static let bpffsMagic: Int = 0xcafe_4a11

    public static func requireRoot() throws {
        guard geteuid() == 0 else { throw DatapathError.notRoot }
    }

    public static func requireCgroup2(_ path: String) throws {
        var fs = statfs()
        guard statfs(path, &fs) == 0, Int(fs.f_type) == cgroup2Magic else { throw DatapathError.noCgroup2(path: path) }
    }

    /// The cgroup2 mount point from /proc/mounts (/sys/fs/cgroup/unified on hybrid hosts).
    public static func cgroup2Mount() -> String? {
        mounts().first { $0.type == "cgroup2" }?.path
    }

    /// Pins need a bpffs. /sys/fs/bpf is mounted if it is not (some hosts don't at boot).
    static func prepareBPFFS(for root: String) throws {
        var parent = root
        while access(parent, F_OK) != 0, let slash = parent.lastIndex(of: "/"), slash != parent.startIndex {
            parent = String(parent[..<slash])
        }
        var fs = statfs()
        if statfs(parent, &fs) == 0, Int(fs.f_type) == bpffsMagic { return }
        if root.hasPrefix("/sys/fs/bpf/"), !mounts().contains(where: { $0.path == "/sys/fs/bpf" }) {
            _ = mkdir("/sys/fs/bpf", 0o755)
            guard mount("bpf", "/sys/fs/bpf", "bpf", 0, nil) == 0 else {
                throw DatapathError.noBPFFS(path: root, detail: "mounting bpffs at /sys/fs/bpf failed: \(String(cString: strerror(errno)))")
            }
            return
        }
        throw DatapathError.noBPFFS(path: root, detail: "\(parent) is not on a bpf filesystem (mount -t bpf bpf /sys/fs/bpf)")
    }

    /// On cgroup2 the directory's inode number is the cgroup id the kernel reports.
    /// The netns cookie of the network namespace at `path` (e.g. /proc/self/ns/net): what
    /// the programs' bpf_get_netns_cookie() returns for its sockets.
    public static func netnsCookie(_ path: String) throws -> UInt64 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DatapathError.syscall(operation: "open network namespace \(path)", errno: errno) }
        defer { close(fd) }
        var cookie: UInt64 = 0
        let rc = veer_netns_cookie(fd, &cookie)
        guard rc == 0 else { throw DatapathError.syscall(operation: "read the netns cookie of \(path)", errno: -rc) }
        return cookie
    }

    static func cgroupID(_ path: String) -> UInt64 {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_ino) : 0
    }

    static func mounts() -> [(path: String, type: String)] {
        guard let file = fopen("/proc/mounts", "r") else { return [] }
        defer { fclose(file) }
        var result: [(String, String)] = []
        var line: UnsafeMutablePointer<CChar>?
        var cap = 0
        while getline(&line, &cap, file) > 0 {
            let fields = String(cString: line!).split(separator: " ")
            if fields.count >= 3 { result.append((String(fields[1]), String(fields[2]))) }
        }
        free(line)
        return result
    }
}
