import Foundation

/// The kernel's NAT engine rewrites packets only in a network namespace where NAT hooks are
/// registered (an iptables nat table or an nftables nat chain), and conntrack itself only
/// runs where something asked for it (`nf_ct_netns_get`: a rule with a `ct` expression).
/// A fresh namespace, or a node without kube-proxy, has neither: the packet path's
/// conntrack entries would carry their NAT but no packet would be translated (the client
/// gets a RST from the node). So veerd keeps one small nftables table of its own, with no
/// rule that matches anything but a counter, and replaces it atomically on every start.
///
/// libnftables (Debian's libnftables1, which iptables-nft already pulls in) is opened at
/// run time: nothing to link, and a node without it gets a clear error.
public enum NATHooks {
    public static let table = "veer_nat"

    /// Both families (inet): prerouting/output hooks carry DNAT, postrouting/input SNAT.
    static let ruleset = """
    add table inet \(table)
    delete table inet \(table)
    table inet \(table) {
        chain prerouting {
            type nat hook prerouting priority dstnat; policy accept;
            ct state new counter
        }
        chain postrouting {
            type nat hook postrouting priority srcnat; policy accept;
        }
    }
    """

    /// Registers the hooks in the caller's network namespace (idempotent).
    public static func ensure() throws {
        try run(ruleset)
    }

    /// Removes the table if it is there (uninstall).
    public static func remove() {
        try? run("delete table inet \(table)")
    }

    private typealias CtxNew = @convention(c) (UInt32) -> OpaquePointer?
    private typealias CtxFree = @convention(c) (OpaquePointer?) -> Void
    private typealias RunBuffer = @convention(c) (OpaquePointer?, UnsafePointer<CChar>) -> Int32
    private typealias BufferOutput = @convention(c) (OpaquePointer?) -> Int32
    private typealias GetBuffer = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?

    private static func run(_ commands: String) throws {
        guard let lib = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL) else {
            throw DatapathError.natHooks(detail: "libnftables.so.1 not found (Debian: apt-get install libnftables1): \(String(cString: dlerror()))")
        }
        defer { dlclose(lib) }
        func sym<T>(_ name: String, _: T.Type) throws -> T {
            guard let p = dlsym(lib, name) else { throw DatapathError.natHooks(detail: "libnftables lacks \(name)") }
            return unsafeBitCast(p, to: T.self)
        }
        let ctxNew = try sym("nft_ctx_new", CtxNew.self)
        let ctxFree = try sym("nft_ctx_free", CtxFree.self)
        let runBuffer = try sym("nft_run_cmd_from_buffer", RunBuffer.self)
        let bufferError = try sym("nft_ctx_buffer_error", BufferOutput.self)
        let getError = try sym("nft_ctx_get_error_buffer", GetBuffer.self)
        guard let ctx = ctxNew(0) else { throw DatapathError.natHooks(detail: "nft_ctx_new failed") }
        defer { ctxFree(ctx) }
        _ = bufferError(ctx)
        guard runBuffer(ctx, commands) == 0 else {
            let detail = getError(ctx).map { String(cString: $0) } ?? "unknown error"
            throw DatapathError.natHooks(detail: detail.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }
}
