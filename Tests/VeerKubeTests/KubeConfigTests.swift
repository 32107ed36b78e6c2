import Foundation
import Testing
@testable import VeerKube

/// A self-signed test certificate and key (CN=veer-test), used only as PEM material.
let testCertPEM = """
-----BEGIN CERTIFICATE-----
MIIBfzCCASWgAwIBAgIULDE70KbZrJrKC0f9gL7OEnJkhREwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJdmVlci10ZXN0MCAXDTI2MTEyNTE1MDMzOFoYDzIxMjYxMTAx
MTUwMzM4WjAUMRIwEAYDVQQDDAl2ZWVyLXRlc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAT7PC7LbGY5OTLbOq/s8sV6Ja5s8GYHxQRaETJ4lrjxGY0UrfycT66f
x758x333ubZEeTvDClfQqlWx6hBdPVd0o1MwUTAdBgNVHQ4EFgQUWYN0Gq5tnWgL
ghft5m+ytAN59MowHwYDVR0jBBgwFoAUWYN0Gq5tnWgLghft5m+ytAN59MowDwYD
VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiAgSz3p7jvycCp9pvQdlIEW
1z6ERqcQYIsGEuwKoo1lagIhAOeEbm54oAmqGYbGuta8K0FNaPfhRc3sDWlP7/Vy
Npgf
-----END CERTIFICATE-----
"""
let testKeyPEM = """
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg7p0+3gFlMBr5tXfI
fiCcSDi81WEr9o61VPLq2oMmkTmhRANCAAT7PC7LbGY5OTLbOq/s8sV6Ja5s8GYH
xQRaETJ4lrjxGY0UrfycT66fx758x333ubZEeTvDClfQqlWx6hBdPVd0
-----END PRIVATE KEY-----
"""

private func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }

@Suite("kubeconfig and in-cluster config")
struct KubeConfigTests {
    let empty: [String: String] = [:]

    @Test("token, current-context, --context override, context namespace")
    func tokenAndContexts() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        try dir.write("config", """
            apiVersion: v1
            kind: Config
            current-context: dev
            clusters:
            - name: c-dev
              cluster: {server: "https://10.0.0.1:6443/", insecure-skip-tls-verify: true}
            - name: c-prod
              cluster:
                server: https://prod.example:443
                certificate-authority-data: \(b64(testCertPEM))
            users:
            - name: u-dev
              user: {token: dev-token}
            - name: u-prod
              user:
                client-certificate-data: \(b64(testCertPEM))
                client-key-data: \(b64(testKeyPEM))
            contexts:
            - name: dev
              context: {cluster: c-dev, user: u-dev, namespace: shop}
            - name: prod
              context: {cluster: c-prod, user: u-prod}
            """)
        let dev = try KubeConfigLoader.load(.init(kubeconfig: dir.file("config"), environment: empty))
        #expect(dev.server == "https://10.0.0.1:6443")
        #expect(dev.credentials == .token("dev-token") && dev.authorizationHeader() == "Bearer dev-token")
        #expect(dev.insecureSkipTLSVerify && dev.namespace == "shop")
        #expect(dev.origin.contains("context dev"))

        let prod = try KubeConfigLoader.load(.init(kubeconfig: dir.file("config"), context: "prod", environment: empty))
        #expect(prod.server == "https://prod.example:443")
        #expect(prod.certificateAuthorityPEM == Data(testCertPEM.utf8))
        #expect(prod.clientCertificatePEM == Data(testCertPEM.utf8) && prod.clientKeyPEM == Data(testKeyPEM.utf8))
        #expect(prod.credentials == .none)
        let tls = try #require(try prod.makeTLSConfiguration())
        #expect(tls.certificateChain.count == 1 && tls.privateKey != nil)

        // --api-server keeps the credentials and replaces the server.
        let over = try KubeConfigLoader.load(.init(kubeconfig: dir.file("config"), apiServer: "https://192.168.1.10:6443",
                                                   environment: empty))
        #expect(over.server == "https://192.168.1.10:6443" && over.credentials == .token("dev-token"))
    }

    @Test("files relative to the kubeconfig, tokenFile re-read as it rotates, KUBECONFIG merge (first wins)")
    func filesAndMerge() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        try FileManager.default.createDirectory(atPath: dir.file("pki"), withIntermediateDirectories: true)
        try dir.write("pki/ca.crt", testCertPEM)
        try dir.write("pki/client.crt", testCertPEM)
        try dir.write("pki/client.key", testKeyPEM)
        try dir.write("token", "first\n")
        try dir.write("a.yaml", """
            clusters:
            - name: c
              cluster: {server: "https://a:6443", certificate-authority: pki/ca.crt}
            users:
            - name: u
              user: {client-certificate: pki/client.crt, client-key: pki/client.key, tokenFile: token, token: fallback}
            contexts:
            - {name: ctx, context: {cluster: c, user: u}}
            """)
        try dir.write("b.yaml", """
            current-context: ctx
            clusters:
            - name: c
              cluster: {server: "https://b:6443"}
            contexts:
            - {name: ctx, context: {cluster: c, user: nobody}}
            """)
        let env = ["KUBECONFIG": "\(dir.file("missing.yaml")):\(dir.file("a.yaml")):\(dir.file("b.yaml")):\(dir.file("a.yaml"))"]
        let c = try KubeConfigLoader.load(.init(environment: env, homeDirectory: dir.path))
        #expect(c.server == "https://a:6443", "first file defining cluster c wins")
        #expect(c.certificateAuthorityPEM == Data(testCertPEM.utf8))
        #expect(c.clientKeyPEM == Data(testKeyPEM.utf8))
        #expect(c.credentials == .tokenFile(path: dir.file("token"), fallback: "fallback"))
        #expect(c.currentToken() == "first")
        try dir.write("token", "rotated")
        #expect(c.currentToken() == "rotated")
        try FileManager.default.removeItem(atPath: dir.file("token"))
        #expect(c.currentToken() == "fallback")

        // ~/.kube/config is used when neither --kubeconfig nor KUBECONFIG is given.
        try FileManager.default.createDirectory(atPath: dir.file(".kube"), withIntermediateDirectories: true)
        try dir.write(".kube/config", """
            current-context: h
            clusters: [{name: hc, cluster: {server: "http://127.0.0.1:8001"}}]
            contexts: [{name: h, context: {cluster: hc}}]
            """)
        let home = try KubeConfigLoader.load(.init(environment: ["HOME": dir.path]))
        #expect(home.server == "http://127.0.0.1:8001" && home.credentials == .none)
    }

    @Test("in-cluster: service-account token and CA, IPv6 host, token rotation")
    func inCluster() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        try dir.write("token", "sa-token-1")
        try dir.write("ca.crt", testCertPEM)
        try dir.write("namespace", "kube-system\n")
        let env = ["KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"]
        let c = try KubeConfigLoader.load(.init(environment: env, homeDirectory: dir.file("nohome"),
                                                serviceAccountDirectory: dir.path))
        #expect(c.server == "https://[fd00::1]:443")
        #expect(c.namespace == "kube-system" && c.certificateAuthorityPEM == Data(testCertPEM.utf8))
        #expect(c.authorizationHeader() == "Bearer sa-token-1")
        try dir.write("token", "sa-token-2")
        #expect(c.authorizationHeader() == "Bearer sa-token-2")
        // The DaemonSet case: service-account credentials, a real API address.
        let d = try KubeConfigLoader.load(.init(apiServer: "https://10.0.0.1:6443", environment: env,
                                                homeDirectory: dir.file("nohome"), serviceAccountDirectory: dir.path))
        #expect(d.server == "https://10.0.0.1:6443" && d.currentToken() == "sa-token-2")
        #expect(c.warnings.contains { $0.contains("--api-server") }, "in-cluster via the ClusterIP is flagged")
        #expect(d.warnings.isEmpty)
    }

    @Test("bad inputs give a clear error naming the problem")
    func errors() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        func message(_ yaml: String, context: String? = nil, sa: String? = nil) -> String {
            try? dir.write("bad", yaml)
            do {
                _ = try KubeConfigLoader.load(.init(kubeconfig: dir.file("bad"), context: context, environment: [:]))
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        let base = """
            clusters: [{name: c, cluster: {server: "https://x:6443"}}]
            users: [{name: u, user: {token: t}}]
            """
        let cases: [(String, String?, [String])] = [
            (base + "\ncontexts: [{name: a, context: {cluster: c, user: u}}]", nil, ["no current-context", "--context", "a"]),
            (base + "\ncontexts: [{name: a, context: {cluster: c, user: u}}]", "zz", ["context \"zz\"", "contexts: a"]),
            (base + "\ncurrent-context: a\ncontexts: [{name: a, context: {cluster: nope, user: u}}]", nil, ["cluster \"nope\""]),
            (base + "\ncurrent-context: a\ncontexts: [{name: a, context: {cluster: c, user: ghost}}]", nil, ["user \"ghost\""]),
            ("clusters: [{name: c, cluster: {}}]\ncurrent-context: a\ncontexts: [{name: a, context: {cluster: c}}]", nil, ["cluster \"c\"", "no server"]),
            ("clusters: [{name: c, cluster: {server: \"ftp://x\"}}]\ncurrent-context: a\ncontexts: [{name: a, context: {cluster: c}}]", nil, ["ftp://x", "http(s)"]),
            ("clusters: [{name: c, cluster: {server: \"https://x\", certificate-authority-data: \"!!notbase64\"}}]\ncurrent-context: a\ncontexts: [{name: a, context: {cluster: c}}]", nil, ["certificate-authority-data", "base64"]),
            ("clusters: [{name: c, cluster: {server: \"https://x\", certificate-authority: /nonexistent/ca.crt}}]\ncurrent-context: a\ncontexts: [{name: a, context: {cluster: c}}]", nil, ["/nonexistent/ca.crt"]),
            ("clusters: [{name: c, cluster: {server: \"https://x\", certificate-authority-data: \(b64("garbage"))}}]\ncurrent-context: a\ncontexts: [{name: a, context: {cluster: c}}]", nil, ["certificate authority", "PEM"]),
            ("clusters: [{name: c, cluster: {server: \"https://x\"}}]\nusers: [{name: u, user: {exec: {command: aws-iam-authenticator}}}]\ncurrent-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]", nil, ["exec plugin", "aws-iam-authenticator"]),
            ("clusters: [{name: c, cluster: {server: \"https://x\"}}]\nusers: [{name: u, user: {client-certificate-data: \(b64(testCertPEM))}}]\ncurrent-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]", nil, ["without a key"]),
            ("clusters: [{name: c, cluster: {server: \"https://x\"}}]\nusers: [{name: u, user: {tokenFile: /nonexistent/token}}]\ncurrent-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]", nil, ["tokenFile", "/nonexistent/token"]),
            ("clusters: [{name: c, cluster: {server: \"https://x\"\n  bad", nil, ["not valid YAML", "line"]),
        ]
        for (yaml, context, needles) in cases {
            let m = message(yaml, context: context)
            for needle in needles {
                #expect(m.contains(needle), "expected \"\(needle)\" in: \(m)")
            }
        }
        #expect(throws: KubeConfigError.self) {
            try KubeConfigLoader.load(.init(kubeconfig: "/nonexistent/kubeconfig", environment: [:]))
        }
        do {
            _ = try KubeConfigLoader.load(.init(environment: [:], homeDirectory: dir.file("nohome")))
            Issue.record("nothing configured must fail")
        } catch {
            #expect("\(error)".contains("--kubeconfig") && "\(error)".contains("--api-server"))
        }
        // In-cluster env without a mounted token.
        do {
            _ = try KubeConfigLoader.load(.init(environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"],
                                                homeDirectory: dir.file("nohome"), serviceAccountDirectory: dir.file("nosa")))
            Issue.record("missing service-account token must fail")
        } catch {
            #expect("\(error)".contains("token"))
        }
    }
}
