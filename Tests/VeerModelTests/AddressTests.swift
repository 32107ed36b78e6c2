import Testing
import VeerModel

@Suite("Addresses as the datapath sees them")
struct AddressTests {
    @Test(arguments: [("10.96.0.10", UInt32(0x0A60_000A)), ("0.0.0.0", 0), ("255.255.255.255", 0xFFFF_FFFF), ("010.0.0.1", 0x0A00_0001)])
    func parsesDottedQuad(_ text: String, _ value: UInt32) {
        #expect(IPAddress(text)?.ipv4 == value)
        #expect(IPAddress(text)?.family == .ipv4)
    }

    @Test(arguments: ["", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1.2.3.-4", "a.b.c.d", "1..2.3", " 1.2.3.4", "1.2.3.4/32",
                      ":::1", "1::2::3", "fd00::1%eth0", "12345::1", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "::1.2.3", "1.2.3.4::", "g::1"])
    func rejectsAnythingElse(_ text: String) { #expect(IPAddress(text) == nil) }

    /// RFC 5952: lower case, the longest run of two or more zero groups as ::, the first on a tie.
    @Test(arguments: [("::1", "::1"), ("::", "::"), ("FD00:0:0:0:0:0:0:10", "fd00::10"), ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
                      ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"), ("fd00:10:96::a", "fd00:10:96::a"), ("1::", "1::"),
                      ("::ffff:10.96.0.10", "10.96.0.10"), ("::FFFF:a60:a", "10.96.0.10"), ("64:ff9b::1.2.3.4", "64:ff9b::102:304")])
    func printsIPv6InCanonicalForm(_ text: String, _ canonical: String) throws {
        let ip = try #require(IPAddress(text))
        #expect(ip.description == canonical)
        #expect(IPAddress(canonical) == ip)
    }

    @Test func ipv4IsItsMappedForm() throws {
        let v4 = try #require(IPAddress("10.96.0.10"))
        #expect(v4 == IPAddress("::ffff:10.96.0.10"))
        #expect(v4.bytes == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 96, 0, 10])
        #expect(IPAddress(bytes: v4.bytes) == v4)
        let v6 = try #require(IPAddress("fd00::10"))
        #expect(v6.family == .ipv6 && v6.ipv4 == nil)
        #expect(v6.bytes == [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10])
        #expect(IPAddress("::1")!.isLoopback && IPAddress("127.0.0.53")!.isLoopback && !v6.isLoopback)
        #expect(IPAddress("::")!.isUnspecified && IPAddress("0.0.0.0")!.isUnspecified && !v4.isUnspecified)
    }

    @Test func l4AddressRoundTripsThroughText() {
        let a = L4Address(ip: IPAddress("10.96.0.10")!, port: 53, proto: .udp)
        #expect(a.description == "10.96.0.10:53/udp")
        #expect(L4Address(a.description) == a)
        #expect(L4Address("10.96.0.10:80") == L4Address(ip: IPAddress("10.96.0.10")!, port: 80, proto: .tcp))
        #expect(L4Address("10.96.0.10:70000/tcp") == nil)
    }

    @Test func ipv6L4AddressesUseBrackets() {
        let a = L4Address(ip: IPAddress("fd00::10")!, port: 80, proto: .tcp)
        #expect(a.description == "[fd00::10]:80/tcp")
        #expect(a.hostPort == "[fd00::10]:80")
        #expect(L4Address("[fd00::10]:80/tcp") == a)
        #expect(L4Address("[FD00:0::10]:80") == a)
        #expect(L4Address("fd00::10:80") == nil)     // ambiguous without brackets
        #expect(L4Address("[fd00::10:80") == nil)
    }

    @Test func kubernetesProtocolNamesAreUpperCase() {
        #expect(L4Protocol(kubernetes: "UDP") == .udp)
        #expect(L4Protocol(kubernetes: "udp") == nil)
        #expect(L4Protocol.sctp.kubernetesName == "SCTP")
    }
}
