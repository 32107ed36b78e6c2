import Foundation
import Testing
import VeerModel
import VeerTestSupport
@testable import VeerKube

/// A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
private struct TestPKI {
    let dir: TempDir
    init?() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl") else { return nil }
        dir = try TempDir()
        try dir.write("ext", "subjectAltName=IP:127.0.0.1\n")
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
        let script = """
            set -e
            cd '\(dir.path)'
            openssl req -x509 \(ec) -keyout ca.key -out ca.crt -days 2 -subj /CN=veer-test-ca
            openssl req -x509 \(ec) -keyout other-ca.key -out other-ca.crt -days 2 -subj /CN=someone-else
            openssl req \(ec) -keyout server.key -out server.csr -subj /CN=127.0.0.1
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext
            openssl req \(ec) -keyout client.key -out client.csr -subj /CN=veer
            openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 2
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", script]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return nil }
    }
    func path(_ name: String) -> String { dir.file(name) }
}

@Suite("TLS to the API server", .serialized)
struct TLSTests {
    @Test("a kubeconfig with CA and client certificate files connects over https; a wrong CA or no client certificate does not")
    func mutualTLS() async throws {
        guard let pki = try TestPKI() else {
            print("TLSTests: openssl is not available; skipped")
            return
        }
        defer { pki.dir.cleanup() }
        let server = try FakeAPIServer(state: standardState(), extraArguments: [
            "--tls-cert", pki.path("server.crt"), "--tls-key", pki.path("server.key"), "--client-ca", pki.path("ca.crt")])
        defer { server.stop() }
        try pki.dir.write("kubeconfig", """
            current-context: tls
            clusters:
            - {name: c, cluster: {server: "\(server.url)", certificate-authority: ca.crt}}
            - {name: wrong-ca, cluster: {server: "\(server.url)", certificate-authority: other-ca.crt}}
            users:
            - {name: cert, user: {client-certificate: client.crt, client-key: client.key}}
            - {name: nocert, user: {token: t}}
            contexts:
            - {name: tls, context: {cluster: c, user: cert}}
            - {name: no-client-cert, context: {cluster: c, user: nocert}}
            - {name: wrong-ca, context: {cluster: wrong-ca, user: cert}}
            """)
        func config(_ context: String) throws -> KubeAPIConfig {
            try KubeConfigLoader.load(.init(kubeconfig: pki.path("kubeconfig"), context: context, environment: [:]))
        }

        try await withSource(server, config: try config("tls")) { source, rec in
            await rec.wait("synced over mutual TLS") { rec.syncedCount == 1 }
            #expect(rec.keys(.service) == ["other/api", "shop/db", "shop/web"])
            // The watches too, streamed over TLS, before the source is stopped under them.
            await rec.wait("every kind watching over mutual TLS") {
                source.statistics().values.filter { $0.watches >= 1 }.count == ResourceKind.allCases.count
            }
        }
        for context in ["no-client-cert", "wrong-ca"] {
            try await withSource(server, config: try config(context)) { _, rec in
                await rec.wait("\(context): failures reported") {
                    rec.diagnostics.contains { $0.message.contains("connection to the API server") }
                }
                #expect(rec.events.isEmpty, "\(context): nothing emitted")
            }
        }
    }
}
