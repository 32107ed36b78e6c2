import CVeer
@testable import VeerDatapath
import Foundation
import Testing
import VeerModel
import VeerTestSupport

/// Swift's view of every struct in veer_maps.h against the compiled BPF object's BTF: the
/// same size and every field at the same offset (Cilium's alignchecker, for Swift). The
/// kernel tests check the pinned maps' key and value sizes as well.
@Suite("Map layout")
struct LayoutTests {
    struct Field { let name: String; let offset: Int? }

    static let swiftLayouts: [String: (size: Int, fields: [Field])] = [
        "veer_addr": (MemoryLayout<veer_addr>.size, [
            Field(name: "ip6", offset: MemoryLayout<veer_addr>.offset(of: \.ip6)),
        ]),
        "veer_config": (MemoryLayout<veer_config>.size, [
            Field(name: "hostns_cookie", offset: MemoryLayout<veer_config>.offset(of: \.hostns_cookie)),
            Field(name: "flags", offset: MemoryLayout<veer_config>.offset(of: \.flags)),
            Field(name: "pad0", offset: MemoryLayout<veer_config>.offset(of: \.pad0)),
        ]),
        "veer_svc_key": (MemoryLayout<veer_svc_key>.size, [
            Field(name: "addr", offset: MemoryLayout<veer_svc_key>.offset(of: \.addr)),
            Field(name: "port", offset: MemoryLayout<veer_svc_key>.offset(of: \.port)),
            Field(name: "proto", offset: MemoryLayout<veer_svc_key>.offset(of: \.proto)),
            Field(name: "scope", offset: MemoryLayout<veer_svc_key>.offset(of: \.scope)),
            Field(name: "slot", offset: MemoryLayout<veer_svc_key>.offset(of: \.slot)),
        ]),
        "veer_svc_val": (MemoryLayout<veer_svc_val>.size, [
            Field(name: "count_or_backend", offset: MemoryLayout<veer_svc_val>.offset(of: \.count_or_backend)),
            Field(name: "rev_nat_id", offset: MemoryLayout<veer_svc_val>.offset(of: \.rev_nat_id)),
            Field(name: "affinity_timeout", offset: MemoryLayout<veer_svc_val>.offset(of: \.affinity_timeout)),
            Field(name: "flags", offset: MemoryLayout<veer_svc_val>.offset(of: \.flags)),
        ]),
        "veer_backend": (MemoryLayout<veer_backend>.size, [
            Field(name: "addr", offset: MemoryLayout<veer_backend>.offset(of: \.addr)),
            Field(name: "port", offset: MemoryLayout<veer_backend>.offset(of: \.port)),
            Field(name: "proto", offset: MemoryLayout<veer_backend>.offset(of: \.proto)),
            Field(name: "flags", offset: MemoryLayout<veer_backend>.offset(of: \.flags)),
        ]),
        "veer_rev_nat": (MemoryLayout<veer_rev_nat>.size, [
            Field(name: "addr", offset: MemoryLayout<veer_rev_nat>.offset(of: \.addr)),
            Field(name: "port", offset: MemoryLayout<veer_rev_nat>.offset(of: \.port)),
            Field(name: "proto", offset: MemoryLayout<veer_rev_nat>.offset(of: \.proto)),
            Field(name: "scope", offset: MemoryLayout<veer_rev_nat>.offset(of: \.scope)),
        ]),
        "veer_member_key": (MemoryLayout<veer_member_key>.size, [
            Field(name: "rev_nat_id", offset: MemoryLayout<veer_member_key>.offset(of: \.rev_nat_id)),
            Field(name: "backend_id", offset: MemoryLayout<veer_member_key>.offset(of: \.backend_id)),
        ]),
        "veer_member_val": (MemoryLayout<veer_member_val>.size, [
            Field(name: "hits", offset: MemoryLayout<veer_member_val>.offset(of: \.hits)),
        ]),
        "veer_sock_rev_key": (MemoryLayout<veer_sock_rev_key>.size, [
            Field(name: "cookie", offset: MemoryLayout<veer_sock_rev_key>.offset(of: \.cookie)),
            Field(name: "addr", offset: MemoryLayout<veer_sock_rev_key>.offset(of: \.addr)),
            Field(name: "port", offset: MemoryLayout<veer_sock_rev_key>.offset(of: \.port)),
            Field(name: "proto", offset: MemoryLayout<veer_sock_rev_key>.offset(of: \.proto)),
            Field(name: "pad1", offset: MemoryLayout<veer_sock_rev_key>.offset(of: \.pad1)),
        ]),
        "veer_sock_rev_val": (MemoryLayout<veer_sock_rev_val>.size, [
            Field(name: "addr", offset: MemoryLayout<veer_sock_rev_val>.offset(of: \.addr)),
            Field(name: "port", offset: MemoryLayout<veer_sock_rev_val>.offset(of: \.port)),
            Field(name: "proto", offset: MemoryLayout<veer_sock_rev_val>.offset(of: \.proto)),
            Field(name: "rev_nat_id", offset: MemoryLayout<veer_sock_rev_val>.offset(of: \.rev_nat_id)),
        ]),
        "veer_sock_state": (MemoryLayout<veer_sock_state>.size, [
            Field(name: "rev_nat_id", offset: MemoryLayout<veer_sock_state>.offset(of: \.rev_nat_id)),
            Field(name: "backend_id", offset: MemoryLayout<veer_sock_state>.offset(of: \.backend_id)),
            Field(name: "be_addr", offset: MemoryLayout<veer_sock_state>.offset(of: \.be_addr)),
            Field(name: "be_port", offset: MemoryLayout<veer_sock_state>.offset(of: \.be_port)),
            Field(name: "proto", offset: MemoryLayout<veer_sock_state>.offset(of: \.proto)),
        ]),
        "veer_affinity_key": (MemoryLayout<veer_affinity_key>.size, [
            Field(name: "netns_cookie", offset: MemoryLayout<veer_affinity_key>.offset(of: \.netns_cookie)),
            Field(name: "client", offset: MemoryLayout<veer_affinity_key>.offset(of: \.client)),
            Field(name: "rev_nat_id", offset: MemoryLayout<veer_affinity_key>.offset(of: \.rev_nat_id)),
        ]),
        "veer_trace_event": (MemoryLayout<veer_trace_event>.size, [
            Field(name: "ts_ns", offset: MemoryLayout<veer_trace_event>.offset(of: \.ts_ns)),
            Field(name: "cookie", offset: MemoryLayout<veer_trace_event>.offset(of: \.cookie)),
            Field(name: "netns_cookie", offset: MemoryLayout<veer_trace_event>.offset(of: \.netns_cookie)),
            Field(name: "pid", offset: MemoryLayout<veer_trace_event>.offset(of: \.pid)),
            Field(name: "rev_nat_id", offset: MemoryLayout<veer_trace_event>.offset(of: \.rev_nat_id)),
            Field(name: "backend_id", offset: MemoryLayout<veer_trace_event>.offset(of: \.backend_id)),
            Field(name: "fe_addr", offset: MemoryLayout<veer_trace_event>.offset(of: \.fe_addr)),
            Field(name: "be_addr", offset: MemoryLayout<veer_trace_event>.offset(of: \.be_addr)),
            Field(name: "fe_port", offset: MemoryLayout<veer_trace_event>.offset(of: \.fe_port)),
            Field(name: "be_port", offset: MemoryLayout<veer_trace_event>.offset(of: \.be_port)),
            Field(name: "proto", offset: MemoryLayout<veer_trace_event>.offset(of: \.proto)),
            Field(name: "verdict", offset: MemoryLayout<veer_trace_event>.offset(of: \.verdict)),
            Field(name: "comm", offset: MemoryLayout<veer_trace_event>.offset(of: \.comm)),
        ]),
        "veer_lpm_addr_key": (MemoryLayout<veer_lpm_addr_key>.size, [
            Field(name: "prefixlen", offset: MemoryLayout<veer_lpm_addr_key>.offset(of: \.prefixlen)),
            Field(name: "addr", offset: MemoryLayout<veer_lpm_addr_key>.offset(of: \.addr)),
        ]),
        "veer_src_range_key": (MemoryLayout<veer_src_range_key>.size, [
            Field(name: "prefixlen", offset: MemoryLayout<veer_src_range_key>.offset(of: \.prefixlen)),
            Field(name: "rev_nat_id", offset: MemoryLayout<veer_src_range_key>.offset(of: \.rev_nat_id)),
            Field(name: "addr", offset: MemoryLayout<veer_src_range_key>.offset(of: \.addr)),
        ]),
        "veer_src_range_val": (MemoryLayout<veer_src_range_val>.size, [
            Field(name: "allow", offset: MemoryLayout<veer_src_range_val>.offset(of: \.allow)),
            Field(name: "pad0", offset: MemoryLayout<veer_src_range_val>.offset(of: \.pad0)),
        ]),
        "veer_service_ip": (MemoryLayout<veer_service_ip>.size, [
            Field(name: "rule", offset: MemoryLayout<veer_service_ip>.offset(of: \.rule)),
            Field(name: "pad0", offset: MemoryLayout<veer_service_ip>.offset(of: \.pad0)),
        ]),
        "veer_affinity_val": (MemoryLayout<veer_affinity_val>.size, [
            Field(name: "last_used_ns", offset: MemoryLayout<veer_affinity_val>.offset(of: \.last_used_ns)),
            Field(name: "backend_id", offset: MemoryLayout<veer_affinity_val>.offset(of: \.backend_id)),
        ]),
    ]

    /// name → (size, field → byte offset), read from the object's BTF with bpftool.
    static func btfStructs() throws -> [String: (size: Int, offsets: [String: Int])] {
        let r = KernelSandbox.run(["bpftool", "-j", "btf", "dump", "file", KernelSandbox.bpfObject])
        guard r.status == 0,
              let root = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
              let types = root["types"] as? [[String: Any]] else {
            throw SandboxError("bpftool btf dump failed: \(r.stderr)")
        }
        var result: [String: (Int, [String: Int])] = [:]
        for t in types where t["kind"] as? String == "STRUCT" {
            guard let name = t["name"] as? String, name.hasPrefix("veer_"), let size = t["size"] as? Int else { continue }
            var offsets: [String: Int] = [:]
            for m in t["members"] as? [[String: Any]] ?? [] {
                if let n = m["name"] as? String, let bits = m["bits_offset"] as? Int { offsets[n] = bits / 8 }
            }
            result[name] = (size, offsets)
        }
        return result
    }

    static let btfUnavailable: String? = {
        if access(KernelSandbox.bpfObject, R_OK) != 0 { return "BPF object missing: run `make test`" }
        if KernelSandbox.run(["bpftool", "version"]).status != 0 { return "bpftool missing: run `make test`" }
        return nil
    }()

    @Test("Every shared struct has the BPF object's size and field offsets",
          .disabled(if: btfUnavailable != nil, Comment(rawValue: "skipped: \(btfUnavailable ?? "")")))
    func matchesBTF() throws {
        let btf = try Self.btfStructs()
        #expect(Set(btf.keys) == Set(Self.swiftLayouts.keys), "a struct in veer_maps.h is not checked here")
        for (name, swift) in Self.swiftLayouts {
            guard let kernel = btf[name] else { Issue.record("\(name) not in BTF"); continue }
            #expect(swift.size == kernel.size, "\(name): Swift \(swift.size) bytes, BPF \(kernel.size)")
            for field in swift.fields {
                #expect(field.offset == kernel.offsets[field.name], "\(name).\(field.name)")
            }
        }
    }

    @Test("Addresses are 16 bytes everywhere, IPv4 as ::ffff:a.b.c.d, in network order")
    func addressLayout() {
        #expect(MemoryLayout<veer_addr>.size == 16)
        #expect(MemoryLayout<veer_svc_key>.size == 24)
        #expect(MemoryLayout<veer_sock_rev_key>.size == 32, "no implicit tail padding in a hashed key")
        #expect(MemoryLayout<veer_trace_event>.size == 96)
        #expect(MemoryLayout<veer_lpm_addr_key>.size == 20, "an LPM trie key: prefixlen, then the 16-byte address")
        #expect(MemoryLayout<veer_src_range_key>.size == 24, "an LPM trie key: prefixlen, frontend id, address")
        #expect(MemoryLayout<veer_affinity_key>.size == 32, "netns cookie, client address, frontend id: no implicit padding")
        #expect(VEER_PIN_VERSION == "v4")
    }

    @Test("The model's flag constants are the header's")
    func flags() {
        #expect(MasterEntry.flagAffinity == UInt16(VEER_SVC_F_AFFINITY))
        #expect(MasterEntry.flagEmptyDrop == UInt16(VEER_SVC_F_EMPTY_DROP))
        #expect(BackendEntry.flagTerminating == UInt8(VEER_BE_F_TERMINATING))
        #expect(MasterEntry.flagExternalLocal == UInt16(VEER_SVC_F_EXT_LOCAL))
        #expect(FrontendScope.cluster.rawValue == UInt8(VEER_SCOPE_CLUSTER) && FrontendScope.external.rawValue == UInt8(VEER_SCOPE_EXTERNAL))
        #expect(PacketPathStat.allCases.count == Int(VEER_PKT_STAT_MAX.rawValue))
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
