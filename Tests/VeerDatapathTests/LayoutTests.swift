import CVeer
@testable import VeerDatapath
import Foundation
import Testing
import VeerModel
import VeerTestSupport

/// Swift's view of every struct in veer_maps.h against the compiled BPF objects' BTF: the
/// same size, and every field (padding included) at the same offset with the same size
/// (Cilium's alignchecker, for Swift). The header's _Static_asserts pin each struct's size
/// for the C side; the kernel tests check the pinned maps' key and value sizes as well.
@Suite("Map layout")
struct LayoutTests {
    struct Field { let name: String; let offset: Int?; let size: Int }
    struct Layout { let size: Int; let fields: [Field] }

    static func layout<T>(_: T.Type, _ fields: [Field]) -> Layout { Layout(size: MemoryLayout<T>.size, fields: fields) }
    static func field<T, V>(_ name: String, _ path: KeyPath<T, V>) -> Field {
        Field(name: name, offset: MemoryLayout<T>.offset(of: path), size: MemoryLayout<V>.size)
    }

    static let swiftLayouts: [String: Layout] = [
        "veer_addr": layout(veer_addr.self, [
            field("ip6", \veer_addr.ip6),
        ]),
        "veer_config": layout(veer_config.self, [
            field("hostns_cookie", \veer_config.hostns_cookie),
            field("flags", \veer_config.flags),
            field("pad0", \veer_config.pad0),
        ]),
        "veer_svc_key": layout(veer_svc_key.self, [
            field("addr", \veer_svc_key.addr),
            field("port", \veer_svc_key.port),
            field("proto", \veer_svc_key.proto),
            field("scope", \veer_svc_key.scope),
            field("slot", \veer_svc_key.slot),
            field("pad1", \veer_svc_key.pad1),
        ]),
        "veer_svc_val": layout(veer_svc_val.self, [
            field("count_or_backend", \veer_svc_val.count_or_backend),
            field("rev_nat_id", \veer_svc_val.rev_nat_id),
            field("affinity_timeout", \veer_svc_val.affinity_timeout),
            field("flags", \veer_svc_val.flags),
            field("pad0", \veer_svc_val.pad0),
        ]),
        "veer_backend": layout(veer_backend.self, [
            field("addr", \veer_backend.addr),
            field("port", \veer_backend.port),
            field("proto", \veer_backend.proto),
            field("flags", \veer_backend.flags),
        ]),
        "veer_rev_nat": layout(veer_rev_nat.self, [
            field("addr", \veer_rev_nat.addr),
            field("port", \veer_rev_nat.port),
            field("proto", \veer_rev_nat.proto),
            field("scope", \veer_rev_nat.scope),
        ]),
        "veer_member_key": layout(veer_member_key.self, [
            field("rev_nat_id", \veer_member_key.rev_nat_id),
            field("backend_id", \veer_member_key.backend_id),
        ]),
        "veer_member_val": layout(veer_member_val.self, [
            field("hits", \veer_member_val.hits),
        ]),
        "veer_sock_rev_key": layout(veer_sock_rev_key.self, [
            field("cookie", \veer_sock_rev_key.cookie),
            field("addr", \veer_sock_rev_key.addr),
            field("port", \veer_sock_rev_key.port),
            field("proto", \veer_sock_rev_key.proto),
            field("pad0", \veer_sock_rev_key.pad0),
            field("pad1", \veer_sock_rev_key.pad1),
        ]),
        "veer_sock_rev_val": layout(veer_sock_rev_val.self, [
            field("addr", \veer_sock_rev_val.addr),
            field("port", \veer_sock_rev_val.port),
            field("proto", \veer_sock_rev_val.proto),
            field("pad0", \veer_sock_rev_val.pad0),
            field("rev_nat_id", \veer_sock_rev_val.rev_nat_id),
        ]),
        "veer_sock_state": layout(veer_sock_state.self, [
            field("rev_nat_id", \veer_sock_state.rev_nat_id),
            field("backend_id", \veer_sock_state.backend_id),
            field("be_addr", \veer_sock_state.be_addr),
            field("be_port", \veer_sock_state.be_port),
            field("proto", \veer_sock_state.proto),
            field("pad0", \veer_sock_state.pad0),
        ]),
        "veer_affinity_key": layout(veer_affinity_key.self, [
            field("netns_cookie", \veer_affinity_key.netns_cookie),
            field("client", \veer_affinity_key.client),
            field("rev_nat_id", \veer_affinity_key.rev_nat_id),
            field("pad0", \veer_affinity_key.pad0),
        ]),
        "veer_affinity_val": layout(veer_affinity_val.self, [
            field("last_used_ns", \veer_affinity_val.last_used_ns),
            field("backend_id", \veer_affinity_val.backend_id),
            field("pad0", \veer_affinity_val.pad0),
        ]),
        "veer_trace_event": layout(veer_trace_event.self, [
            field("ts_ns", \veer_trace_event.ts_ns),
            field("cookie", \veer_trace_event.cookie),
            field("netns_cookie", \veer_trace_event.netns_cookie),
            field("pid", \veer_trace_event.pid),
            field("rev_nat_id", \veer_trace_event.rev_nat_id),
            field("backend_id", \veer_trace_event.backend_id),
            field("fe_addr", \veer_trace_event.fe_addr),
            field("be_addr", \veer_trace_event.be_addr),
            field("fe_port", \veer_trace_event.fe_port),
            field("be_port", \veer_trace_event.be_port),
            field("proto", \veer_trace_event.proto),
            field("verdict", \veer_trace_event.verdict),
            field("pad0", \veer_trace_event.pad0),
            field("comm", \veer_trace_event.comm),
        ]),
        "veer_lpm_addr_key": layout(veer_lpm_addr_key.self, [
            field("prefixlen", \veer_lpm_addr_key.prefixlen),
            field("addr", \veer_lpm_addr_key.addr),
        ]),
        "veer_src_range_key": layout(veer_src_range_key.self, [
            field("prefixlen", \veer_src_range_key.prefixlen),
            field("rev_nat_id", \veer_src_range_key.rev_nat_id),
            field("addr", \veer_src_range_key.addr),
        ]),
        "veer_src_range_val": layout(veer_src_range_val.self, [
            field("allow", \veer_src_range_val.allow),
            field("pad0", \veer_src_range_val.pad0),
        ]),
        "veer_service_ip": layout(veer_service_ip.self, [
            field("rule", \veer_service_ip.rule),
            field("pad0", \veer_service_ip.pad0),
        ]),
    ]

    struct BTFStruct { let size: Int; let members: [String: (offset: Int, size: Int)] }

    /// name → size and members (byte offset, byte size), read from an object's BTF with bpftool.
    static func btfStructs(_ object: String) throws -> [String: BTFStruct] {
        let r = KernelSandbox.run(["bpftool", "-j", "btf", "dump", "file", object])
        guard r.status == 0,
              let root = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
              let types = root["types"] as? [[String: Any]] else {
            throw SandboxError("bpftool btf dump \(object) failed: \(r.stderr)")
        }
        let byID = Dictionary(types.compactMap { t in (t["id"] as? Int).map { ($0, t) } }, uniquingKeysWith: { a, _ in a })
        // A member's size: through typedefs and qualifiers, arrays as count × element.
        func size(_ id: Int) -> Int? {
            guard let t = byID[id] else { return nil }
            switch t["kind"] as? String {
            case "INT", "STRUCT", "UNION", "ENUM", "ENUM64": return t["size"] as? Int
            case "TYPEDEF", "CONST", "VOLATILE", "RESTRICT": return (t["type_id"] as? Int).flatMap(size)
            case "ARRAY":
                guard let n = t["nr_elems"] as? Int, let e = (t["type_id"] as? Int).flatMap(size) else { return nil }
                return n * e
            default: return nil
            }
        }
        var result: [String: BTFStruct] = [:]
        for t in types where t["kind"] as? String == "STRUCT" {
            guard let name = t["name"] as? String, name.hasPrefix("veer_"), let structSize = t["size"] as? Int else { continue }
            var members: [String: (Int, Int)] = [:]
            for m in t["members"] as? [[String: Any]] ?? [] {
                guard let n = m["name"] as? String, let bits = m["bits_offset"] as? Int else { continue }
                members[n] = (bits / 8, (m["type_id"] as? Int).flatMap(size) ?? -1)
            }
            result[name] = BTFStruct(size: structSize, members: members)
        }
        return result
    }

    static var tcObject: String {
        URL(fileURLWithPath: KernelSandbox.bpfObject).deletingLastPathComponent().appendingPathComponent(PacketPath.objectName).path
    }

    static let btfUnavailable: String? = {
        for object in [KernelSandbox.bpfObject, tcObject] where access(object, R_OK) != 0 {
            return "BPF object \(object) missing: run `make test`"
        }
        if KernelSandbox.run(["bpftool", "version"]).status != 0 { return "bpftool missing: run `make test`" }
        return nil
    }()

    /// The structs veer_maps.h declares: shared with Swift, so every one is checked here.
    static func headerStructs() throws -> Set<String> {
        let header = try String(contentsOfFile: "\(KernelSandbox.repoRoot)/bpf/include/veer_maps.h", encoding: .utf8)
        return Set(header.matches(of: try Regex("struct (veer_[a-z0-9_]+) \\{")).map { String($0.output[1].substring ?? "") })
    }

    /// Checks the object's copy of every shared struct (a struct private to one object, not in
    /// the header, is that object's own business).
    static func check(_ btf: [String: BTFStruct], object: String, shared: Set<String>) {
        for (name, kernel) in btf where shared.contains(name) {
            guard let swift = swiftLayouts[name] else { Issue.record("\(object): \(name) is not checked here"); continue }
            #expect(swift.size == kernel.size, "\(object): \(name): Swift \(swift.size) bytes, BPF \(kernel.size)")
            #expect(Set(swift.fields.map(\.name)) == Set(kernel.members.keys), "\(object): \(name): fields differ")
            for field in swift.fields {
                guard let member = kernel.members[field.name] else { continue }
                #expect(field.offset == member.offset,
                        "\(object): \(name).\(field.name) at \(field.offset ?? -1) in Swift, \(member.offset) in BPF")
                #expect(field.size == member.size,
                        "\(object): \(name).\(field.name) \(field.size) bytes in Swift, \(member.size) in BPF")
            }
        }
    }

    @Test("Every shared struct has the BPF objects' size and every field's offset and size",
          .disabled(if: btfUnavailable != nil, Comment(rawValue: "skipped: \(btfUnavailable ?? "")")))
    func matchesBTF() throws {
        let shared = try Self.headerStructs()
        #expect(shared.count >= 18 && shared == Set(Self.swiftLayouts.keys), "every struct of veer_maps.h is checked here")
        let sock = try Self.btfStructs(KernelSandbox.bpfObject)
        let tc = try Self.btfStructs(Self.tcObject)
        for name in shared {
            #expect(sock[name] != nil || tc[name] != nil, "\(name) is in neither object's BTF: nothing checks its layout")
        }
        #expect(tc["veer_svc_key"] != nil, "the packet path's object carries the shared structs")
        Self.check(sock, object: "veer_sock.bpf.o", shared: shared)
        Self.check(tc, object: PacketPath.objectName, shared: shared)
    }

    /// The enumerators of `enum <name>` in veer_maps.h, in order, without the prefix and _MAX.
    /// (The objects' BTF does not carry the enums: their counter maps are keyed by __u32.)
    static func headerEnum(_ name: String, prefix: String) throws -> [String] {
        let header = try String(contentsOfFile: "\(KernelSandbox.repoRoot)/bpf/include/veer_maps.h", encoding: .utf8)
        guard let body = header.firstMatch(of: try Regex("enum \(name) \\{([^}]*)\\}"))?.output[1].substring else {
            throw SandboxError("enum \(name) not found in veer_maps.h")
        }
        let code = String(body).replacing(try Regex(#"/\*(.|\n)*?\*/"#), with: " ")
        let enumerators = code.split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            .filter { !$0.isEmpty }
        #expect(enumerators.dropFirst().allSatisfy { !$0.contains("=") }, "enum \(name): only the first enumerator has a value")
        var names: [String] = []
        for enumerator in enumerators {
            let name = String(enumerator.split(separator: " ").first ?? "")
            guard name.hasPrefix(prefix), name != prefix + "MAX" else { continue }
            names.append(String(name.dropFirst(prefix.count)))
        }
        return names
    }

    /// slotMissing → SLOT_MISSING
    static func cName(_ swiftCase: some Any) -> String {
        String(describing: swiftCase).reduce(into: "") { out, c in
            if c.isUppercase { out += "_" }
            out += c.uppercased()
        }
    }

    @Test("DatapathStat and PacketPathStat name every enumerator of veer_maps.h's stat enums, in order")
    func statNames() throws {
        let sock = try Self.headerEnum("veer_stat", prefix: "VEER_STAT_")
        #expect(sock.count == Int(VEER_STAT_MAX.rawValue))
        #expect(DatapathStat.allCases.map { Self.cName($0) } == sock)
        for (i, stat) in DatapathStat.allCases.enumerated() {
            #expect(stat.index == UInt32(i), "\(stat) reads slot \(stat.index), enumerator \(i)")
        }
        #expect(Set(DatapathStat.allCases.map(\.name)).count == DatapathStat.allCases.count, "two counters share a name")
        #expect(DatapathStat.allCases.count <= Int(VEER_STATS_SLOTS))

        let pkt = try Self.headerEnum("veer_pkt_stat", prefix: "VEER_PKT_STAT_")
        #expect(pkt.count == Int(VEER_PKT_STAT_MAX.rawValue))
        #expect(PacketPathStat.allCases.map { Self.cName($0) } == pkt)
        #expect(PacketPathStat.allCases.map(\.rawValue) == Array(0..<UInt32(pkt.count)))
        #expect(Set(PacketPathStat.allCases.map(\.name)).count == PacketPathStat.allCases.count, "two counters share a name")
    }

    @Test("Addresses are 16 bytes everywhere, IPv4 as ::ffff:a.b.c.d, in network order")
    func addressLayout() {
        #expect(MemoryLayout<veer_addr>.size == 16)
        #expect(MemoryLayout<veer_svc_key>.size == 24)
        #expect(MemoryLayout<veer_sock_rev_key>.size == 32, "no implicit tail padding in a hashed key")
        #expect(MemoryLayout<veer_trace_event>.size == 96)
        #expect(MemoryLayout<veer_lpm_addr_key>.size == 20, "an LPM trie key: prefixlen, then the 16-byte address")
        #expect(MemoryLayout<veer_src_range_key>.size == 24, "an LPM trie key: prefixlen, frontend id, address")
        #expect(VEER_PIN_VERSION == "v5")
    }

    @Test("The model's flag constants are the header's")
    func flags() {
        #expect(MasterEntry.flagAffinity == UInt16(VEER_SVC_F_AFFINITY))
        #expect(MasterEntry.flagEmptyDrop == UInt16(VEER_SVC_F_EMPTY_DROP))
        #expect(BackendEntry.flagTerminating == UInt8(VEER_BE_F_TERMINATING))
        #expect(MasterEntry.flagExternalLocal == UInt16(VEER_SVC_F_EXT_LOCAL))
        #expect(FrontendScope.cluster.rawValue == UInt8(VEER_SCOPE_CLUSTER) && FrontendScope.external.rawValue == UInt8(VEER_SCOPE_EXTERNAL))
        #expect(L4Protocol.tcp.rawValue == 6 && L4Protocol.udp.rawValue == 17)
        #expect(ServiceAddressRule.refuse.rawValue == VEER_SVCIP_REFUSE.rawValue)
        #expect(ServiceAddressRule.drop.rawValue == VEER_SVCIP_DROP.rawValue)
    }
}

/// The 16-byte address as the programs read it: the bytes in network order, IPv4 mapped.
@Suite("Address conversion")
struct AddressConversionTests {
    @Test("IPv4 is ::ffff:a.b.c.d in network order; IPv6 as it is; both round-trip through veer_addr")
    func addresses() {
        let v4 = veer_addr(IPAddress("10.96.0.10")!)
        #expect(withUnsafeBytes(of: v4) { Array($0) } == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 96, 0, 10])
        #expect(v4.ip6.3 == UInt32(0x0A60_000A).bigEndian, "ip6[3] is user_ip4")
        #expect(v4.ip == IPAddress("10.96.0.10")!)
        let v6 = veer_addr(IPAddress("fd00:96::10")!)
        #expect(withUnsafeBytes(of: v6) { Array($0) } == [0xfd, 0, 0, 0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10])
        #expect(v6.ip.description == "fd00:96::10")
        let key = veer_svc_key(L4Address("[fd00:96::10]:80/udp")!, slot: 2)
        #expect(key.frontend == L4Address("[fd00:96::10]:80/udp")! && key.slot == 2 && key.port == UInt16(80).bigEndian)
    }
}
