import Testing
import VeerModel

@Suite("Addresses as the datapath sees them")
struct AddressTests {
    @Test(arguments: [("10.96.0.10", UInt32(0x0A60_000A)), ("0.0.0.0", 0), ("255.255.255.255", 0xFFFF_FFFF), ("010.0.0.1", 0x0A00_0001)])
    func parsesDottedQuad(_ text: String, _ value: UInt32) {
        #expect(IPv4Address(text)?.value == value)
    }

    @Test(arguments: ["", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1.2.3.-4", "a.b.c.d", "1..2.3", " 1.2.3.4", "1.2.3.4/32", "::1"])
    func rejectsAnythingElse(_ text: String) { #expect(IPv4Address(text) == nil) }

    @Test func l4AddressRoundTripsThroughText() {
        let a = L4Address(ip: IPv4Address("10.96.0.10")!, port: 53, proto: .udp)
        #expect(a.description == "10.96.0.10:53/udp")
        #expect(L4Address(a.description) == a)
        #expect(L4Address("10.96.0.10:80") == L4Address(ip: IPv4Address("10.96.0.10")!, port: 80, proto: .tcp))
        #expect(L4Address("10.96.0.10:70000/tcp") == nil)
    }

    @Test func kubernetesProtocolNamesAreUpperCase() {
        #expect(L4Protocol(kubernetes: "UDP") == .udp)
        #expect(L4Protocol(kubernetes: "udp") == nil)
        #expect(L4Protocol.sctp.kubernetesName == "SCTP")
    }
}
