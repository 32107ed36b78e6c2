// Where the API server is and how to authenticate to it (KubeConfigLoader.swift finds it).
import Foundation
import NIOSSL

/// A resolved connection to one API server.
public struct KubeAPIConfig: Sendable, Equatable {
    public enum Credentials: Sendable, Equatable {
        case none
        case token(String)
        /// Re-read on every request (service-account tokens rotate); `fallback` is kubeconfig's
        /// `token` when both are set, used only if the file cannot be read.
        case tokenFile(path: String, fallback: String?)
        case basic(username: String, password: String)
    }

    /// "https://10.0.0.1:6443" (no trailing slash).
    public var server: String
    public var certificateAuthorityPEM: Data?
    public var insecureSkipTLSVerify: Bool
    /// kubeconfig's tls-server-name. Recorded; the certificate is still checked against the
    /// server's host (NIOSSL has no per-connection SNI override here).
    public var tlsServerName: String?
    public var clientCertificatePEM: Data?
    public var clientKeyPEM: Data?
    public var credentials: Credentials
    /// The context's (or pod's) namespace; Veer watches all namespaces, this is informational.
    public var namespace: String?
    /// How this was resolved, for the startup log: "kubeconfig /root/.kube/config, context dev".
    public var origin: String
    /// Things the operator should know about this configuration (logged by the API source at start).
    public var warnings: [String] = []

    public init(server: String, certificateAuthorityPEM: Data? = nil, insecureSkipTLSVerify: Bool = false,
                tlsServerName: String? = nil, clientCertificatePEM: Data? = nil, clientKeyPEM: Data? = nil,
                credentials: Credentials = .none, namespace: String? = nil, origin: String = "") {
        self.server = server
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.insecureSkipTLSVerify = insecureSkipTLSVerify
        self.tlsServerName = tlsServerName
        self.clientCertificatePEM = clientCertificatePEM
        self.clientKeyPEM = clientKeyPEM
        self.credentials = credentials
        self.namespace = namespace
        self.origin = origin
    }

    /// The bearer token to send now (a token file is read each time).
    public func currentToken() -> String? {
        switch credentials {
        case .token(let t): return t
        case .tokenFile(let path, let fallback):
            if let data = FileManager.default.contents(atPath: path),
               let t = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines), !t.isEmpty {
                return t
            }
            return fallback
        case .none, .basic: return nil
        }
    }

    /// The Authorization header value, if any.
    public func authorizationHeader() -> String? {
        if case .basic(let u, let p) = credentials {
            return "Basic " + Data("\(u):\(p)".utf8).base64EncodedString()
        }
        return currentToken().map { "Bearer \($0)" }
    }

    /// TLS settings for an https server (nil for http).
    public func makeTLSConfiguration() throws -> TLSConfiguration? {
        guard server.lowercased().hasPrefix("https://") else { return nil }
        var tls = TLSConfiguration.makeClientConfiguration()
        // Don't let stop() wait the default 5 s for a close_notify from a server busy streaming a watch.
        tls.shutdownTimeout = .seconds(1)
        if insecureSkipTLSVerify {
            tls.certificateVerification = .none
        } else if let ca = certificateAuthorityPEM {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(ca)))
            } catch {
                throw KubeConfigError("the certificate authority is not a valid PEM certificate (\(error))")
            }
        }
        if let certPEM = clientCertificatePEM, let keyPEM = clientKeyPEM {
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certPEM)).map { .certificate($0) }
            } catch {
                throw KubeConfigError("the client certificate is not a valid PEM certificate (\(error))")
            }
            do {
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM), format: .pem))
            } catch {
                throw KubeConfigError("the client key is not a valid PEM private key (\(error))")
            }
        }
        return tls
    }
}

public struct KubeConfigError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
