import Testing
@testable import VeerModel

// loadBalancerSourceRanges (SourceRanges) and the CIDR parsing they and --service-cidr share.

struct SourceRangeTests {
    @Test("CIDRs: IPv4 and IPv6, whitespace trimmed, host bits cleared; anything else is nil", arguments: [
        (" 10.0.0.0/8 ", "10.0.0.0/8"), ("192.168.1.7/24", "192.168.1.0/24"), ("fd00::1/64", "fd00::/64"),
        ("0.0.0.0/0", "0.0.0.0/0"), ("::/0", "::/0"), ("203.0.113.9/32", "203.0.113.9/32"),
    ])
    func parses(_ text: String, _ expected: String) {
        #expect(IPPrefix(text)?.description == expected)
    }

    @Test(arguments: ["", "10.0.0.0", "10.0.0.0/33", "fd00::/129", "10.0.0.0/-1", "10.0.0.0/8/8", "example.com/8", "10.0.0.0/ 8", "10.0.0.0/08x"])
    func rejects(_ text: String) {
        #expect(IPPrefix(text) == nil, "\(text)")
    }

    @Test("Bad ranges are skipped with a reason, the rest kept")
    func badInput() {
        let (good, problems) = ServiceAddresses.parse(["10.0.0.0/8", "not-a-cidr", " 192.168.0.0/16"])
        #expect(good.map(\.description) == ["10.0.0.0/8", "192.168.0.0/16"])
        #expect(problems == ["\"not-a-cidr\" is not a CIDR (address/length); skipped"])
    }

    @Test("A family with no range, or with a /0, is not restricted")
    func restriction() {
        let v4 = [IPPrefix("10.0.0.0/8")!]
        #expect(SourceRanges.restriction(v4, family: .ipv4) == v4)
        #expect(SourceRanges.restriction(v4, family: .ipv6) == nil, "ranges only of the other family: unrestricted")
        #expect(SourceRanges.restriction(v4 + [IPPrefix("0.0.0.0/0")!], family: .ipv4) == nil)
        #expect(SourceRanges.restriction([IPPrefix("::/0")!, IPPrefix("10.0.0.0/8")!], family: .ipv4) == v4)
    }

    @Test("Entries: a catch-all deny, each range, and the verdicts for unbound sockets of the host and of pods")
    func entries() {
        let ranges = [IPPrefix("192.0.2.0/24")!, IPPrefix("10.244.0.0/16")!]
        let e = Set(SourceRanges.entries(revNatID: 7, family: .ipv4, ranges: ranges,
                                         nodeAddresses: [IPAddress("192.0.2.10")!], podCIDRs: [IPPrefix("10.244.1.0/24")!]))
        #expect(e == [
            SourceRangeEntry(revNatID: 7, prefix: nil, allow: false),
            SourceRangeEntry(revNatID: 7, prefix: ranges[0], allow: true),
            SourceRangeEntry(revNatID: 7, prefix: ranges[1], allow: true),
            SourceRangeEntry(revNatID: 7, prefix: IPPrefix(address: SourceRanges.unboundHost, length: 128), allow: true),
            SourceRangeEntry(revNatID: 7, prefix: IPPrefix(address: SourceRanges.unboundPod, length: 128), allow: true),
        ])
        func verdicts(node: String, pods: [String]) -> (host: Bool, pod: Bool) {
            let e = SourceRanges.entries(revNatID: 7, family: .ipv4, ranges: ranges, nodeAddresses: [IPAddress(node)!],
                                         podCIDRs: pods.map { IPPrefix($0)! })
            return (e.first { $0.prefix?.address == SourceRanges.unboundHost }!.allow, e.first { $0.prefix?.address == SourceRanges.unboundPod }!.allow)
        }
        #expect(verdicts(node: "198.51.100.1", pods: ["10.244.1.0/24"]) == (false, true))
        // A podCIDR only partly inside the ranges: some pods would be outside, so pods are denied.
        #expect(verdicts(node: "192.0.2.10", pods: ["10.0.0.0/8"]) == (true, false))
        // No podCIDRs on the Node: where pods get addresses is unknown, so they are denied.
        #expect(verdicts(node: "192.0.2.10", pods: []) == (true, false))
        #expect(SourceRanges.entries(revNatID: 7, family: .ipv6, ranges: ranges, nodeAddresses: [], podCIDRs: []).isEmpty)
    }

    @Test("Nodes: podCIDRs decoded, a bad one skipped with its field")
    func nodePodCIDRs() {
        let decoded = KubeDecoder.decode(raw(["apiVersion": "v1", "kind": "Node", "metadata": ["name": "N1"],
                                              "spec": ["podCIDRs": ["10.244.1.0/24", "bad", "fd00:244:1::/64"]]]))
        guard case let .node(n)? = decoded.object else { Issue.record("node rejected"); return }
        #expect(n.podCIDRs.map(\.description) == ["10.244.1.0/24", "fd00:244:1::/64"])
        #expect(decoded.warnings.contains { $0.field == "spec.podCIDRs[1]" })
    }
}
