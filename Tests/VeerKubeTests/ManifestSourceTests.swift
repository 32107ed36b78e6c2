import Foundation
import Testing
import VeerModel
@testable import VeerKube

private func service(_ name: String, ns: String? = "shop", port: Int = 80) -> String {
    """
    apiVersion: v1
    kind: Service
    metadata:
      name: \(name)
    \(ns.map { "  namespace: \($0)" } ?? "")
    spec:
      clusterIP: 10.96.0.10
      ports:
      - name: http
        port: \(port)
        targetPort: "http"
        protocol: TCP
      publishNotReadyAddresses: false
      sessionAffinityConfig: null
    """
}

private let sliceYAML = """
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  namespace: shop
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
endpoints:
- addresses: ["10.0.1.5"]
  conditions: {ready: true}
  nodeName: node-a
ports:
- name: http
  port: 8080
  protocol: TCP
"""


@Suite("Manifest directory source")
struct ManifestSourceTests {
    @Test("initial scan, edit, write-and-rename, delete")
    func lifecycle() async throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        try dir.write("web.yaml", service("web") + "\n---\n" + sliceYAML)
        try dir.write("node.json", #"{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-a","labels":{"topology.kubernetes.io/zone":"z1"}}}"#)
        try dir.write("notes.txt", "not a manifest")

        let source = ManifestSource(directory: dir.path, debounce: .milliseconds(30))
        let rec = EventRecorder(events: source.events, diagnostics: source.diagnostics)
        try source.start()
        try await whileRunning(source.run) {
            await rec.wait("initial sync") { rec.syncedCount == 1 }
            #expect(rec.keys(.service) == ["shop/web"])
            #expect(rec.keys(.endpointSlice) == ["shop/web-abc12"])
            #expect(rec.keys(.node) == ["node-a"])
            // replaceAll for all three kinds precedes synced.
            let firstEvents = rec.events
            #expect(firstEvents.count == 4 && firstEvents.last == .synced)
            #expect(rec.batches.map(\.count) == [4], "the first scan is one batch")
            #expect(rec.object(.service, "shop/web")?.origin == "\(URL(fileURLWithPath: dir.path).lastPathComponent)/web.yaml#1")

            // Edit in place: the port changes.
            try dir.write("web.yaml", service("web", port: 81) + "\n---\n" + sliceYAML)
            await rec.wait("port 81") { dig(rec.json(.service, "shop/web"), "spec", "ports", "0", "port") as? Int == 81 }

            // An editor's write-then-rename: a new service appears, via a dotfile temp name.
            try dir.write(".api.yaml.swp", service("api", port: 9000))
            try FileManager.default.moveItem(atPath: dir.file(".api.yaml.swp"), toPath: dir.file("api.yaml"))
            await rec.wait("api appears") { rec.keys(.service) == ["shop/api", "shop/web"] }

            // Rename over an existing file.
            try dir.write(".web.tmp", service("web", port: 82) + "\n---\n" + sliceYAML)
            try FileManager.default.removeItem(atPath: dir.file("web.yaml"))
            try FileManager.default.moveItem(atPath: dir.file(".web.tmp"), toPath: dir.file("web.yaml"))
            await rec.wait("port 82") { dig(rec.json(.service, "shop/web"), "spec", "ports", "0", "port") as? Int == 82 }

            // Delete a file: its objects go, the others stay.
            try FileManager.default.removeItem(atPath: dir.file("web.yaml"))
            await rec.wait("web gone") { rec.keys(.service) == ["shop/api"] && rec.keys(.endpointSlice).isEmpty }
            // The Service and its slice leave together: one batch, so no sync sees one without the other.
            #expect(rec.batches.last.map { $0.map(describe) } == ["replaceAll(Service: [\"shop/api\"])", "replaceAll(EndpointSlice: [])"])
            #expect(rec.keys(.node) == ["node-a"])
            #expect(rec.syncedCount == 1)
            #expect(rec.diagnostics.isEmpty, "\(rec.diagnostics)")
        }
    }

    @Test("a broken file keeps its last good objects, is reported, and other files still apply")
    func brokenFileKeepsObjects() async throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        try dir.write("a.yaml", service("a"))
        try dir.write("b.yml", service("b"))
        let source = ManifestSource(directory: dir.path, debounce: .milliseconds(30))
        let rec = EventRecorder(events: source.events, diagnostics: source.diagnostics)
        try source.start()
        try await whileRunning(source.run) {
            await rec.wait("sync") { rec.syncedCount == 1 && rec.keys(.service) == ["shop/a", "shop/b"] }

            // a.yaml breaks while b.yml changes in the same burst.
            try dir.write("a.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n   namespace: shop\n")
            try dir.write("b.yml", service("b", port: 444))
            await rec.wait("b changes") { dig(rec.json(.service, "shop/b"), "spec", "ports", "0", "port") as? Int == 444 }
            await rec.wait("a.yaml reported") { rec.diagnostics.contains { $0.origin.contains("a.yaml") } }
            #expect(rec.keys(.service) == ["shop/a", "shop/b"], "a's last good object stays")
            let d = try #require(rec.diagnostics.first { $0.origin.contains("a.yaml") })
            #expect(d.severity == .error && d.description.contains("line"), "\(d)")

            // Fixed: a changes and a recovery is reported.
            try dir.write("a.yaml", service("a", port: 8443))
            await rec.wait("a fixed") { dig(rec.json(.service, "shop/a"), "spec", "ports", "0", "port") as? Int == 8443 }
            await rec.wait("recovery reported") { rec.diagnostics.contains { $0.severity == .info && $0.origin.contains("a.yaml") } }

            // Broken again, then deleted: deletion removes the objects even though the file was broken.
            try dir.write("a.yaml", ": : :\n\t- nope")
            await rec.wait("second report") { rec.diagnostics.filter { $0.severity == .error }.count >= 2 }
            #expect(rec.keys(.service) == ["shop/a", "shop/b"])
            try FileManager.default.removeItem(atPath: dir.file("a.yaml"))
            await rec.wait("a gone") { rec.keys(.service) == ["shop/b"] }
        }
    }

    @Test("a missing directory is a clear error")
    func missingDirectory() {
        let source = ManifestSource(directory: "/nonexistent/veer-manifests")
        #expect(throws: ManifestSource.StartError.self) { try source.start() }
    }
}
