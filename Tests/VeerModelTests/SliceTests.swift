import Foundation
import Testing
@testable import VeerModel

/// The endpoint-slice cache rules (checklist 46-54).
@Suite("Slices: merging, duplicates, addresses (checklist 46-54)")
struct SliceTests {
    private let cip = "10.96.0.1:80/tcp"

    @Test func sliceWithoutServiceNameIsIgnoredWithReason() throws {  // 46
        var store = ServiceStore()
        store.apply(.apply(raw(serviceJSON())))
        let change = store.apply(.apply(raw(sliceJSON("orphan", service: nil, endpoints: [.R("10.0.0.1")]))))
        #expect(change.services.isEmpty)
        #expect(change.ignored.first?.object == "default/orphan")
        #expect(change.ignored.first?.field.contains(KubeLabel.serviceName) == true)
        let f = try #require(Selector.select(store, node: N1).frontend(L4Address(cip)!))
        #expect(f.backends.isEmpty && f.whenEmpty == .reject)
    }

    @Test func emptyServiceNameLabelIsIgnored() throws {  // 46
        var store = ServiceStore()
        let change = store.apply(.apply(raw(sliceJSON("x", service: "", endpoints: [.R("10.0.0.1")]))))
        #expect(change.ignored.count == 1)
    }

    @Test(arguments: [("FQDN", SkipRule.fqdnSlice), ("IPv6", SkipRule.familyNotServed)])
    func nonIPv4SlicesAreIgnored(_ type: String, _ rule: SkipRule) throws {  // 47
        let address = type == "FQDN" ? "db.example.com" : "fd00::5"
        let r = select(serviceJSON(), [sliceJSON("s6", addressType: type, endpoints: [.R(address)]),
                                       sliceJSON("s4", endpoints: [.R("10.0.0.1")])])
        #expect(ips(frontend(r, cip)) == ["10.0.0.1"])
        #expect(r.skipped.contains { $0.rule == rule && $0.object == "default/s6" })
    }

    @Test(arguments: [KubeLabel.headless, KubeLabel.serviceProxyName])
    func labelledSlicesAreIgnored(_ label: String) throws {  // 48, 56 (slices too)
        let r = select(serviceJSON(), [sliceJSON("h", endpoints: [.R("10.0.0.9")], labels: [label: "x"]),
                                       sliceJSON("s", endpoints: [.R("10.0.0.1")])])
        #expect(ips(frontend(r, cip)) == ["10.0.0.1"])
    }

    @Test func disjointSlicesAreMerged() throws {  // 49
        let r = select(serviceJSON(), [sliceJSON("a", endpoints: [.R("10.0.0.1")]), sliceJSON("b", endpoints: [.R("10.0.0.2")])])
        #expect(ips(frontend(r, cip)) == ["10.0.0.1", "10.0.0.2"])
    }

    @Test(arguments: [("a", "b"), ("b", "a")])
    func duplicateNonTerminatingCopyWins(_ terminatingSlice: String, _ readySlice: String) throws {  // 50
        let r = select(serviceJSON(), [sliceJSON(terminatingSlice, endpoints: [.T("10.0.0.1"), .R("10.0.0.2")]),
                                       sliceJSON(readySlice, endpoints: [.R("10.0.0.1")])])
        let f = try #require(frontend(r, cip))
        #expect(ips(f) == ["10.0.0.1", "10.0.0.2"])
        #expect(f.backends.allSatisfy { !$0.terminating })
        let d = try #require(r.decision(f.address))
        let dup = try #require(d.endpoints.first { $0.rule == .duplicate })
        #expect(dup.slice == "default/\(terminatingSlice)")
        #expect(dup.reason.contains("default/\(readySlice)"))
        #expect(d.endpoints.filter { $0.endpoint == "10.0.0.1:8080" }.count == 2)
    }

    @Test func duplicateReadyCopiesResolveByFirstSliceName() throws {  // 50, kube-proxy leaves this to map order
        let r1 = select(serviceJSON(), [sliceJSON("b", endpoints: [.R("10.0.0.1", "N2")]), sliceJSON("a", endpoints: [.R("10.0.0.1", "N1")])])
        let r2 = select(serviceJSON(), [sliceJSON("a", endpoints: [.R("10.0.0.1", "N1")]), sliceJSON("b", endpoints: [.R("10.0.0.1", "N2")])])
        #expect(frontend(r1, cip)?.backends.map(\.nodeName) == ["N1"])
        #expect(r1 == r2)
    }

    @Test func duplicateTerminatingCopyNeverReplaces() throws {  // 50
        let r = select(serviceJSON(), [sliceJSON("a", endpoints: [.R("10.0.0.1")]), sliceJSON("b", endpoints: [.T("10.0.0.1")])])
        let f = try #require(frontend(r, cip))
        #expect(f.backends.count == 1 && !f.backends[0].terminating)
    }

    @Test func onlyTheFirstAddressIsUsedAndEmptyEndpointsSkipped() throws {  // 51
        let two = E(addresses: ["10.0.0.1", "10.0.0.2"], ready: true)
        let none = E(addresses: [], ready: true)
        let r = select(serviceJSON(), [sliceJSON("s", endpoints: [two, none])])
        let f = try #require(frontend(r, cip))
        #expect(ips(f) == ["10.0.0.1"])
        #expect(r.decision(f.address)?.endpoints.contains { $0.rule == .noAddress } == true)
    }

    @Test(arguments: [nil as Int?, 0])
    func slicePortWithoutNumberContributesNothing(_ port: Int?) throws {  // 52
        let r = select(serviceJSON(), [sliceJSON("s", ports: [SP(port: port)], endpoints: [.R("10.0.0.1")]),
                                       sliceJSON("t", endpoints: [.R("10.0.0.2")])])
        let f = try #require(frontend(r, cip))
        #expect(ips(f) == ["10.0.0.2"])
        #expect(r.decision(f.address)?.endpoints.contains { $0.rule == .portUnset } == true)
    }

    @Test func sameIPWithTwoPortNumbersIsTwoEndpoints() throws {  // 53
        let r = select(serviceJSON(), [sliceJSON("a", ports: [SP(port: 8080)], endpoints: [.R("10.0.0.1")]),
                                       sliceJSON("b", ports: [SP(port: 9090)], endpoints: [.R("10.0.0.1")])])
        #expect(frontend(r, cip)?.backends.map(\.address.description) == ["10.0.0.1:8080/tcp", "10.0.0.1:9090/tcp"])
    }

    @Test func localityIsTheExactNodeName() throws {  // 54
        let r = select(serviceJSON(itp: "Local"), [sliceJSON("s", endpoints: [.R("10.0.0.1", "N1"), .R("10.0.0.2", "n1"), .R("10.0.0.3")])])
        #expect(ips(frontend(r, cip)) == ["10.0.0.1"])
    }

    @Test func backendsCarryPodNodeAndZoneNames() throws {
        var e = E.R("10.0.0.1", "N2", zone: "b")
        e.pod = "web-7d9f"
        let r = select(serviceJSON(), [sliceJSON("s", endpoints: [e])])
        let b = try #require(frontend(r, cip)?.backends.first)
        #expect(b.podName == "web-7d9f" && b.nodeName == "N2" && b.zone == "b")
    }
}
