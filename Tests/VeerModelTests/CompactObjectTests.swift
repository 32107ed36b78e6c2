import Foundation
import Testing
@testable import VeerModel

/// Endpoints are stored compactly (binary address, conditions in bits, shared names, a box for
/// what is rare); every property must still read back exactly what was given, and equal values
/// must be equal however they were built.
@Suite("Compact objects: what is stored reads back as given")
struct CompactObjectTests {
    @Test(arguments: [
        [], ["10.0.0.1"], ["0.0.0.0"], ["255.255.255.255"], ["10.0.0.10"], ["100.0.0.1"],
        // Not their canonical form: kept as text, so the text reads back unchanged.
        ["010.0.0.1"], ["10.00.0.1"], ["::ffff:10.0.0.1"], ["FD00::1"], ["fd00:0::1"],
        ["fd00::1"], ["2001:db8::8:800:200c:417a"],
        // Not addresses at all (FQDN slices, bad input) and several addresses.
        ["db.example.com"], [""], ["10.0.0.1", "10.0.0.2"], ["fd00::1", "10.0.0.1"],
    ])
    func addressesReadBackAsGiven(_ addresses: [String]) {
        let e = Endpoint(addresses: addresses)
        #expect(e.addresses == addresses)
        #expect(e.hasAddress == !addresses.isEmpty)
        #expect(e.firstIP == addresses.first.flatMap { IPAddress($0) })
    }

    @Test func everyFieldReadsBack() {
        let refs: [ObjectReference?] = [
            nil, ObjectReference(kind: "Pod", namespace: "shop", name: "web-7f9c8d6b5-x2k4p"),
            ObjectReference(kind: nil, namespace: nil, name: nil), ObjectReference(kind: "Pod", namespace: nil, name: "p"),
            ObjectReference(kind: "Node", namespace: "", name: "n1"), ObjectReference(kind: "pod", namespace: "x", name: "y"),
        ]
        let bools: [Bool?] = [nil, false, true]
        for ref in refs {
            for ready in bools {
                for serving in bools {
                    for terminating in bools {
                        let c = EndpointConditions(ready: ready, serving: serving, terminating: terminating)
                        let e = Endpoint(addresses: ["10.1.2.3"], conditions: c, nodeName: "ip-10-0-12-34.ec2.internal",
                                         zone: "eu-west-1a", zoneHints: ready == true ? ["eu-west-1a"] : nil,
                                         nodeHints: serving == false ? [] : nil, targetRef: ref)
                        #expect(e.conditions == c)
                        #expect(e.targetRef == ref)
                        #expect(e.nodeName == "ip-10-0-12-34.ec2.internal" && e.zone == "eu-west-1a")
                        #expect(e.zoneHints == (ready == true ? ["eu-west-1a"] : nil))
                        #expect(e.nodeHints == (serving == false ? [] : nil))
                    }
                }
            }
        }
        let bare = Endpoint(addresses: ["10.1.2.3"])
        #expect(bare.nodeName == nil && bare.zone == nil && bare.targetRef == nil && bare.zoneHints == nil)
        #expect(Endpoint(addresses: [], nodeName: "").nodeName == "")
    }

    @Test func settersAndInitAgree() {
        var e = Endpoint(addresses: ["10.0.0.1"])
        e.addresses = ["10.0.0.2"]
        e.nodeName = "node-a"
        e.zone = "z1"
        e.conditions.ready = false
        e.targetRef = ObjectReference(kind: "Pod", namespace: "ns", name: "p")
        e.zoneHints = ["z1"]
        let built = Endpoint(addresses: ["10.0.0.2"], conditions: EndpointConditions(ready: false), nodeName: "node-a",
                             zone: "z1", zoneHints: ["z1"], targetRef: ObjectReference(kind: "Pod", namespace: "ns", name: "p"))
        #expect(e == built)
        #expect(e.hashValue == built.hashValue)
        e.nodeName = nil
        #expect(e != built && e.nodeName == nil)
        #expect(Endpoint(addresses: ["10.0.0.1"]) != Endpoint(addresses: ["10.0.0.1"], conditions: EndpointConditions(ready: true)))
    }

    @Test func serviceRareFieldsReadBackAndCompareByValue() {
        let meta = ObjectMeta(name: "web", namespace: "shop")
        let plain = Service(meta: meta, clusterIP: "10.96.0.1", clusterIPs: ["10.96.0.1"], ports: [ServicePort(port: 80)])
        #expect(plain.externalIPs.isEmpty && plain.externalName == nil && plain.healthCheckNodePort == nil)
        #expect(plain.affinityTimeoutSeconds == Service.defaultAffinityTimeout && plain.loadBalancerIngress.isEmpty)
        var edited = plain
        edited.externalIPs = ["192.0.2.1"]
        edited.healthCheckNodePort = 30999
        edited.affinityTimeoutSeconds = 60
        edited.loadBalancerSourceRanges = ["10.0.0.0/8"]
        edited.loadBalancerIngress = [LoadBalancerIngress(ip: "192.0.2.9")]
        edited.trafficDistribution = "PreferClose"
        edited.externalName = "x.example.com"
        let built = Service(meta: meta, clusterIP: "10.96.0.1", clusterIPs: ["10.96.0.1"], ports: [ServicePort(port: 80)],
                            externalIPs: ["192.0.2.1"], externalName: "x.example.com", affinityTimeoutSeconds: 60,
                            trafficDistribution: "PreferClose", healthCheckNodePort: 30999,
                            loadBalancerSourceRanges: ["10.0.0.0/8"], loadBalancerIngress: [LoadBalancerIngress(ip: "192.0.2.9")])
        #expect(edited == built && edited.hashValue == built.hashValue)
        #expect(plain != built)
        // Back to the defaults: equal to a service that never had them.
        var reverted = built
        reverted.externalIPs = []
        reverted.externalName = nil
        reverted.affinityTimeoutSeconds = Service.defaultAffinityTimeout
        reverted.trafficDistribution = nil
        reverted.healthCheckNodePort = nil
        reverted.loadBalancerSourceRanges = []
        reverted.loadBalancerIngress = []
        #expect(reverted == plain && reverted.hashValue == plain.hashValue)
    }

    @Test func decodedSliceKeepsOnlyTheLabelsVeerReads() throws {
        let json = #"{"kind":"EndpointSlice","metadata":{"name":"s","namespace":"ns","labels":{"app":"web","kubernetes.io/service-name":"web","service.kubernetes.io/headless":""},"annotations":{"a":"b"}},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"]}]}"#
        let raw = RawObject(kind: .endpointSlice, namespace: "ns", name: "s", json: Data(json.utf8))
        guard case let .endpointSlice(s)? = KubeDecoder.decode(raw).object else { Issue.record("not decoded"); return }
        #expect(s.meta.labels == [KubeLabel.serviceName: "web", KubeLabel.headless: ""])
        #expect(s.meta.annotations.isEmpty)
        // A label Veer does not read is still checked: the API's own decoder would refuse it.
        let bad = json.replacingOccurrences(of: #""app":"web""#, with: #""app":7"#)
        let outcome = KubeDecoder.decode(RawObject(kind: .endpointSlice, namespace: "ns", name: "s", json: Data(bad.utf8)))
        #expect(outcome.object == nil && outcome.errors.first?.field == "metadata.labels.app")
    }

    @Test func equalPortListsAreStoredOnce() {
        func ports(_ name: String, _ port: Int) -> [ServicePort] {
            let object = serviceJSON(name, ports: [SvcPort(port: port)], extraSpec: ["ipFamilies": ["IPv4"]])
            guard case let .service(s)? = KubeDecoder.decode(raw(object)).object else { Issue.record("not decoded"); return [] }
            #expect(s.ipFamilies == ["IPv4"])
            return s.ports
        }
        func buffer(_ a: [ServicePort]) -> UnsafeRawPointer? { a.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) } }
        let a = ports("a", 80), b = ports("b", 80), c = ports("c", 81)
        #expect(a == b && buffer(a) == buffer(b), "equal ports share one array")
        #expect(c.map(\.port) == [81] && buffer(c) != buffer(a))
        // Bounded: past its limit an interner keeps new arrays as they are.
        func base(_ a: [Int]) -> UnsafeRawPointer? { a.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) } }
        let small = ArrayInterner<Int>(limit: 1)
        let one = small.interned([Int](repeating: 1, count: 1)), oneAgain = [Int](repeating: 1, count: 1)
        #expect(base(small.interned(oneAgain)) == base(one) && base(oneAgain) != base(one))
        _ = small.interned([Int](repeating: 2, count: 1))
        let twoAgain = [Int](repeating: 2, count: 1)
        #expect(base(small.interned(twoAgain)) == base(twoAgain), "past the limit: not shared")
    }

    @Test func sharedNamesAreStoredOnce() {
        let table = NameTable()
        let a = table.id("ip-10-0-12-34.ec2.internal")
        let b = table.id(String("ip-10-0-12-34.ec2.internal".reversed().reversed()))
        #expect(a != nil && a == b && table.count == 1)
        #expect(table[a!] == "ip-10-0-12-34.ec2.internal")
        // Thousands of names cross chunk boundaries and all read back.
        let ids = (0..<10_000).map { table.id("node-\($0)-long-enough-to-be-heap")! }
        #expect(ids.enumerated().allSatisfy { table[$1] == "node-\($0)-long-enough-to-be-heap" })
        #expect(Set(ids).count == 10_000)
    }
}
