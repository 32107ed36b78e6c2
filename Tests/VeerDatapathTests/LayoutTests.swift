import CVeer
import Testing
import VeerModel

/// The C structs Swift imports from veer_maps.h have the sizes the BPF side compiles to
/// (the kernel test also checks every pinned map's key and value size at open).
@Suite("Map layout")
struct LayoutTests {
    @Test("Key and value sizes match the header's explicit layout")
    func sizes() {
        #expect(MemoryLayout<veer_svc_key>.size == 12)
        #expect(MemoryLayout<veer_svc_val>.size == 16)
        #expect(MemoryLayout<veer_backend>.size == 8)
        #expect(MemoryLayout<veer_rev_nat>.size == 8)
        #expect(MemoryLayout<veer_member_key>.size == 8)
        #expect(MemoryLayout<veer_member_val>.size == 8)
        #expect(MemoryLayout<veer_sock_rev_key>.size == 16)
        #expect(MemoryLayout<veer_sock_rev_val>.size == 12)
        #expect(MemoryLayout<veer_sock_state>.size == 16)
        #expect(MemoryLayout<veer_affinity_key>.size == 16)
        #expect(MemoryLayout<veer_affinity_val>.size == 16)
    }

    @Test("The model's flag constants are the header's")
    func flags() {
        #expect(MasterEntry.flagAffinity == UInt16(VEER_SVC_F_AFFINITY))
        #expect(MasterEntry.flagEmptyDrop == UInt16(VEER_SVC_F_EMPTY_DROP))
        #expect(BackendEntry.flagTerminating == UInt8(VEER_BE_F_TERMINATING))
    }
}
