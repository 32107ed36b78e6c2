import Foundation
import Testing
@testable import VeerModel

/// A pod's name is held in two parts (a shared head, an inline tail): it must read back exactly
/// as given, compare and hash by its text, and a slice's endpoints must share their heads.
@Suite("Pod names: stored in two parts, read back as given")
struct PodNameTests {
    static let names = [
        "", "a", "web-0", "12345678", "123456789", "coredns-5d78c9869d-abcde", "pod-10.135.162.32",
        // Multi-byte characters at the split point, a NUL in the tail or in the head, escapes.
        "pöd-名前-x", "web-名前名前名", "abc\u{0}defghij", "a\u{0}bcdefghijkl", "web\"1\\x\ny-\"z\\",
        "e\u{301}e\u{301}e\u{301}e\u{301}",
    ]

    @Test(arguments: names)
    func readsBackAsGiven(_ name: String) {
        let p = PodName(name)
        #expect(p.description == name)
        let bytes = p.withUTF8Parts { Array($0) + Array($1) }
        #expect(bytes == Array(name.utf8))
    }

    @Test func takesNoMoreRoomThanAString() {
        #expect(MemoryLayout<PodName?>.size == MemoryLayout<String?>.size)
        #expect(MemoryLayout<DesiredBackend>.stride <= 48 && MemoryLayout<ProgrammedNames.Backend>.stride <= 24)
    }

    @Test func comparesAndHashesByText() {
        for a in Self.names {
            var sharing = PodName.Sharing()
            _ = sharing.name("other-" + a)
            let viaSharing = sharing.name(a)
            #expect(viaSharing == PodName(a) && viaSharing.hashValue == PodName(a).hashValue)
            for b in Self.names where b != a { #expect(PodName(a) != PodName(b)) }
        }
        // Names whose parts differ only where the split falls.
        #expect(PodName("abcdefghi") != PodName("abcdefgh") && PodName("xabcdefgh") != PodName("abcdefgh"))
    }

    @Test func aSlicesEndpointsShareTheirHeads() throws {
        // Pods of two ReplicaSets, interleaved as a rollout leaves them.
        func name(_ i: Int) -> String { "web-\(i % 2 == 0 ? "7d4b9c8f6d" : "5f6c7d8e9a")-x2k9\(i)" }
        let endpoints = (0..<10).map { #"{"addresses":["10.0.0.\#($0)"],"targetRef":{"kind":"Pod","namespace":"ns","name":"\#(name($0))"}}"# }
        let json = #"{"kind":"EndpointSlice","metadata":{"name":"s","namespace":"ns","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4","endpoints":[\#(endpoints.joined(separator: ","))]}"#
        let raw = RawObject(kind: .endpointSlice, namespace: "ns", name: "s", json: Data(json.utf8))
        guard case let .endpointSlice(s)? = KubeDecoder.decode(raw).object else { Issue.record("not decoded"); return }
        let pods = try s.endpoints.map { try #require($0.pod) }
        #expect(pods.map(\.description) == (0..<10).map(name))
        for (i, p) in pods.enumerated() { #expect(p.sharesHead(with: pods[i % 2]), "one head per ReplicaSet") }
        #expect(!pods[0].sharesHead(with: pods[1]))
        #expect(s.endpoints.map { $0.targetRef } == (0..<10).map { ObjectReference(kind: "Pod", namespace: "ns", name: name($0)) })
        // What a selection keeps is the stored name, its head shared, not a copy.
        let backend = DesiredBackend(address: L4Address(ip: IPAddress("10.0.0.1")!, port: 80, proto: .tcp), terminating: false,
                                     pod: pods[1], node: .none, zone: .none)
        #expect(backend.podName == name(1) && backend.pod?.sharesHead(with: pods[1]) == true)
        #expect(ProgrammedNames.Backend(backend).podName?.sharesHead(with: pods[1]) == true)
    }
}
