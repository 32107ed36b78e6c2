@testable import VeerDatapath
import Foundation
import Glibc
import Testing
import VeerModel

/// names.json (while veerd runs) and decisions.json (once, as veerd stops) are written piece by
/// piece (StreamingJSONFile); veerctl reads them with JSONDecoder. The pieces must add up to the
/// same document as one whole-value encode.
// One at a time: each removes the state directory it made and then /run/veer/tmp, which both share.
@Suite("State files", .serialized)
struct StateFileTests {
    // Every field, optional ones present and absent, and text JSON must escape.
    static let decisionsJSON = #"""
    {"node":"node-a","zone":"zone-\"a\"/1","skipped":[
      {"kind":"Frontend","object":"10.96.0.9:80/tcp","service":{"namespace":"default","name":"b"},
       "rule":"frontendConflict","reason":"10.96.0.9:80/tcp is already the clusterIP frontend of default/a:http\n\tü ✓ \u0001"}],
     "decisions":[
      {"service":{"namespace":"default","name":"a"},"port":"http","proto":"tcp","frontend":"10.96.0.9:80/tcp",
       "kind":"clusterIP","set":"cluster","setRule":"internalPolicyCluster","setReason":"internalTrafficPolicy Cluster",
       "topology":{"mode":"none","rules":["endpointWithoutNodeHint","nodeHasNoZone"],"reason":"node hints ignored"},
       "whenEmpty":"reject","backends":1,"affinityTimeout":10800,
       "endpoints":[
         {"endpoint":"10.128.0.1:8080","slice":"default/a-1","pod":"a-0","node":"node-a","included":true,"rule":"ready","reason":"ready"},
         {"endpoint":"10.128.0.2:8080","slice":"default/a-1","included":false,"rule":"notReady",
          "reason":"not ready (ready=false, serving=false, terminating=false)"}]},
      {"service":{"namespace":"default","name":"c"},"port":"","proto":"udp","frontend":"10.96.0.10:53/udp",
       "kind":"nodePort","set":"local","setRule":"externalPolicyLocal","setReason":"Local",
       "whenEmpty":"drop","emptyReason":"no endpoint on this node","backends":0,"endpoints":[]}]}
    """#

    static let namesJSON = #"""
    {"frontends":{"10.96.0.9:80/tcp":{"namespace":"default","service":"a","port":"http","kind":"clusterIP"},
                  "10.96.0.10:53/udp":{"namespace":"default","service":"c","port":"","kind":"nodePort"}},
     "backends":{"10.128.0.1:8080/tcp":{"pod":"a-0","node":"node-a","zone":"z\"1"},
                 "10.128.0.2:8080/tcp":{},"10.128.0.10:8080/tcp":{"pod":"ü"}}}
    """#

    @Test("decisions.json: the same bytes as encoding the whole value, reads back equal, removed at start")
    func decisions() throws {
        let pins = PinLayout(root: "/tmp/veer-t\(getpid())-state")
        defer { removeState(pins) }
        var value = try JSONDecoder().decode(SavedDecisions.self, from: Data(Self.decisionsJSON.utf8))
        for zone in [value.zone, nil] {
            value.zone = zone
            try DecisionsFile.write(value, pins: pins)
            let written = try Data(contentsOf: URL(fileURLWithPath: DecisionsFile.path(pins)))
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            #expect(written == (try encoder.encode(value)))
            #expect(DecisionsFile.read(pins: pins) == value)
        }
        let mode = try FileManager.default.attributesOfItem(atPath: DecisionsFile.path(pins))[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(DecisionsFile.savedAt(pins: pins).map { abs($0.timeIntervalSinceNow) < 60 } == true)
        DecisionsFile.remove(pins: pins)
        #expect(DecisionsFile.read(pins: pins) == nil && DecisionsFile.savedAt(pins: pins) == nil)
    }

    @Test("names.json reads back equal")
    func names() throws {
        let pins = PinLayout(root: "/tmp/veer-t\(getpid())-names")
        defer { removeState(pins) }
        let value = try JSONDecoder().decode(ProgrammedNames.self, from: Data(Self.namesJSON.utf8))
        try NamesFile.write(value, pins: pins)
        #expect(NamesFile.read(pins: pins) == value)
        try NamesFile.write(ProgrammedNames(), pins: pins)
        #expect(NamesFile.read(pins: pins) == ProgrammedNames())
        // Written a part at a time (4,096 backend ids, one shard of frontends a part): more
        // backends than one part, a frontend in every shard, one address held by two ids.
        let frontends = (0..<300).map { i in
            DesiredFrontend(address: L4Address("10.96.\(i / 256).\(i % 256):80/tcp")!, kind: .clusterIP,
                            service: ServicePortName(namespace: "ns", name: "svc-\(i)", port: "http", proto: .tcp),
                            backends: (0..<30).map { j in
                                DesiredBackend(address: L4Address("10.244.\(i / 8).\((i % 8) * 30 + j):8080/tcp")!,
                                               podName: "svc-\(i)-\(j)", nodeName: "node-\(j % 3)", zone: j % 2 == 0 ? "a" : nil)
                            })
        }
        let many = ProgrammedNames(frontends)
        #expect(many.backendPart(2)?.isEmpty == false && many.backendPart(3) == nil)
        #expect((0..<64).reduce(0) { $0 + (many.frontendPart($1)?.count ?? 0) } == 300 && many.frontendPart(64) == nil)
        try NamesFile.write(many, pins: pins)
        #expect(NamesFile.read(pins: pins) == many)
        #expect(NamesFile.read(pins: pins)?.backends.count == 9_000)
    }
}

/// The test's state directory, then its parents up to /run/veer if they are empty.
private func removeState(_ pins: PinLayout) {
    try? FileManager.default.removeItem(atPath: "/run/veer\(pins.root)")
    _ = rmdir("/run/veer/tmp")
}
