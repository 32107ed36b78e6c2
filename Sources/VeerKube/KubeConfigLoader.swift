// How veerd finds the API server and its credentials: kubeconfig files (client-go's loading
// rules, reduced to what a node agent needs), in-cluster service-account config, or --api-server.
import Foundation
import Yams

/// Resolves a KubeAPIConfig the way client-go does, in this order:
/// 1. `--kubeconfig FILE` (that file only; it must exist);
/// 2. `$KUBECONFIG` (':'-separated, missing files skipped, merged: the first file to define a
///    cluster/user/context name wins, `current-context` from the first file that sets one);
/// 3. `~/.kube/config`;
/// 4. in-cluster (KUBERNETES_SERVICE_HOST/PORT + the service-account token and CA);
/// 5. `--api-server` alone (no credentials, e.g. `kubectl proxy`).
/// `--api-server` also overrides the server of 1–4 (keeping their credentials), which is how a
/// DaemonSet reaches the API without going through a ClusterIP nobody has programmed yet.
public enum KubeConfigLoader {
    public struct Inputs: Sendable {
        public var kubeconfig: String?
        public var context: String?
        public var apiServer: String?
        public var environment: [String: String]
        public var homeDirectory: String?
        public var serviceAccountDirectory: String

        public init(kubeconfig: String? = nil, context: String? = nil, apiServer: String? = nil,
                    environment: [String: String] = ProcessInfo.processInfo.environment,
                    homeDirectory: String? = nil,
                    serviceAccountDirectory: String = "/var/run/secrets/kubernetes.io/serviceaccount") {
            self.kubeconfig = kubeconfig
            self.context = context
            self.apiServer = apiServer
            self.environment = environment
            self.homeDirectory = homeDirectory
            self.serviceAccountDirectory = serviceAccountDirectory
        }
    }

    public static func load(_ inputs: Inputs) throws -> KubeAPIConfig {
        var config = try resolve(inputs)
        if let apiServer = inputs.apiServer {
            config.server = try checkServer(apiServer, what: "--api-server")
            config.warnings.removeAll { $0.contains("ClusterIP") }
            config.origin += config.origin.isEmpty ? "--api-server \(config.server)" : ", server from --api-server"
        }
        _ = try config.makeTLSConfiguration()  // report bad PEM now, not at the first request
        return config
    }

    private static func resolve(_ inputs: Inputs) throws -> KubeAPIConfig {
        let fm = FileManager.default
        if let path = inputs.kubeconfig {
            guard fm.fileExists(atPath: path) else { throw KubeConfigError("kubeconfig \(path) (--kubeconfig) does not exist") }
            return try fromKubeconfig(files: [path], context: inputs.context, hasServerOverride: inputs.apiServer != nil)
        }
        if let list = inputs.environment["KUBECONFIG"], !list.isEmpty {
            var seen = Set<String>()
            let files = list.split(separator: ":").map(String.init).filter { !$0.isEmpty && seen.insert($0).inserted }
                .filter { fm.fileExists(atPath: $0) }
            if !files.isEmpty {
                return try fromKubeconfig(files: files, context: inputs.context, hasServerOverride: inputs.apiServer != nil)
            }
        }
        if let home = inputs.homeDirectory ?? inputs.environment["HOME"] {
            let path = (home as NSString).appendingPathComponent(".kube/config")
            if fm.fileExists(atPath: path) {
                return try fromKubeconfig(files: [path], context: inputs.context, hasServerOverride: inputs.apiServer != nil)
            }
        }
        if let host = inputs.environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
           let port = inputs.environment["KUBERNETES_SERVICE_PORT"], !port.isEmpty {
            return try inCluster(host: host, port: port, directory: inputs.serviceAccountDirectory,
                                 podNamespace: inputs.environment["POD_NAMESPACE"])
        }
        if inputs.apiServer != nil {
            return KubeAPIConfig(server: "", origin: "")
        }
        throw KubeConfigError("""
            no Kubernetes API configuration found: pass --kubeconfig FILE or --api-server URL, set KUBECONFIG, \
            create ~/.kube/config, run in a pod with a service account, or use --manifests DIR instead
            """)
    }

    // MARK: in-cluster

    static func inCluster(host: String, port: String, directory: String, podNamespace: String?) throws -> KubeAPIConfig {
        let tokenPath = (directory as NSString).appendingPathComponent("token")
        let caPath = (directory as NSString).appendingPathComponent("ca.crt")
        guard FileManager.default.isReadableFile(atPath: tokenPath) else {
            throw KubeConfigError("in-cluster config: the service-account token \(tokenPath) is missing or unreadable (automountServiceAccountToken: false?)")
        }
        guard let ca = FileManager.default.contents(atPath: caPath) else {
            throw KubeConfigError("in-cluster config: the service-account CA \(caPath) is missing or unreadable")
        }
        let hostPart = host.contains(":") ? "[\(host)]" : host
        var namespace = podNamespace
        if namespace == nil || namespace == "",
           let data = FileManager.default.contents(atPath: (directory as NSString).appendingPathComponent("namespace")) {
            namespace = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        var config = KubeAPIConfig(server: "https://\(hostPart):\(port)", certificateAuthorityPEM: ca,
                                   credentials: .tokenFile(path: tokenPath, fallback: nil), namespace: namespace,
                                   origin: "in-cluster service account (\(directory))")
        config.warnings.append("""
            the API server is reached through the kubernetes Service (\(hostPart):\(port)), a ClusterIP that \
            veerd itself programs: this works only while another proxy serves it. Pass --api-server with a real \
            address of the API server.
            """)
        return config
    }

    // MARK: kubeconfig

    private struct Entry { var fields: [String: Any]; var directory: String; var file: String }

    static func fromKubeconfig(files: [String], context contextOverride: String?, hasServerOverride: Bool) throws -> KubeAPIConfig {
        var clusters: [String: Entry] = [:], users: [String: Entry] = [:], contexts: [String: Entry] = [:]
        var currentContext: String?
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw KubeConfigError("kubeconfig \(file) cannot be read")
            }
            let top: [String: Any]
            do {
                let text = String(decoding: data, as: UTF8.self)
                guard let value = try ManifestParser.yamlValue(text) else { continue }  // empty file
                guard let dict = value as? [String: Any] else {
                    throw KubeConfigError("kubeconfig \(file) is not a YAML mapping")
                }
                top = dict
            } catch let e as KubeConfigError {
                throw e
            } catch {
                throw KubeConfigError("kubeconfig \(file) is not valid YAML: \(ManifestParser.errorText(error))")
            }
            let dir = (file as NSString).deletingLastPathComponent
            func collect(_ listKey: String, _ itemKey: String, into map: inout [String: Entry]) throws {
                guard let list = top[listKey] else { return }
                if list is NSNull { return }
                guard let items = list as? [Any] else { throw KubeConfigError("kubeconfig \(file): \(listKey) is not a list") }
                for (i, item) in items.enumerated() {
                    guard let item = item as? [String: Any], let name = item["name"] as? String else {
                        throw KubeConfigError("kubeconfig \(file): \(listKey)[\(i)] has no name")
                    }
                    if map[name] == nil {
                        map[name] = Entry(fields: item[itemKey] as? [String: Any] ?? [:], directory: dir, file: file)
                    }
                }
            }
            try collect("clusters", "cluster", into: &clusters)
            try collect("users", "user", into: &users)
            try collect("contexts", "context", into: &contexts)
            if currentContext == nil, let c = top["current-context"] as? String, !c.isEmpty { currentContext = c }
        }
        let fileList = files.joined(separator: ":")
        guard let contextName = contextOverride ?? currentContext else {
            if hasServerOverride { return KubeAPIConfig(server: "", origin: "kubeconfig \(fileList) (no context)") }
            throw KubeConfigError("kubeconfig \(fileList) has no current-context; pass --context NAME (contexts: \(contexts.keys.sorted().joined(separator: ", ")))")
        }
        guard let context = contexts[contextName] else {
            throw KubeConfigError("context \"\(contextName)\" is not in kubeconfig \(fileList) (contexts: \(contexts.keys.sorted().joined(separator: ", ")))")
        }
        guard let clusterName = context.fields["cluster"] as? String, !clusterName.isEmpty else {
            throw KubeConfigError("context \"\(contextName)\" in \(context.file) names no cluster")
        }
        guard let cluster = clusters[clusterName] else {
            throw KubeConfigError("context \"\(contextName)\" names cluster \"\(clusterName)\", which is not in kubeconfig \(fileList)")
        }
        var config = KubeAPIConfig(server: "", origin: "kubeconfig \(fileList), context \(contextName)")
        config.namespace = context.fields["namespace"] as? String
        let clusterWhat = "cluster \"\(clusterName)\" (\(cluster.file))"
        if let server = cluster.fields["server"] as? String, !server.isEmpty {
            config.server = try checkServer(server, what: clusterWhat)
        } else if !hasServerOverride {
            throw KubeConfigError("\(clusterWhat) has no server")
        }
        config.insecureSkipTLSVerify = boolField(cluster.fields["insecure-skip-tls-verify"])
        config.tlsServerName = cluster.fields["tls-server-name"] as? String
        config.certificateAuthorityPEM = try material(cluster, file: "certificate-authority",
                                                       data: "certificate-authority-data", what: clusterWhat)
        if config.insecureSkipTLSVerify && config.certificateAuthorityPEM != nil {
            throw KubeConfigError("\(clusterWhat) sets both a certificate authority and insecure-skip-tls-verify; choose one")
        }

        if let userName = context.fields["user"] as? String, !userName.isEmpty {
            guard let user = users[userName] else {
                throw KubeConfigError("context \"\(contextName)\" names user \"\(userName)\", which is not in kubeconfig \(fileList)")
            }
            let userWhat = "user \"\(userName)\" (\(user.file))"
            if let exec = user.fields["exec"] as? [String: Any] {
                let command = exec["command"] as? String ?? "?"
                throw KubeConfigError("\(userWhat) gets its credentials from the exec plugin \"\(command)\", which veerd does not run; use a kubeconfig with a token, tokenFile or client certificate, or run veerd in-cluster")
            }
            if user.fields["auth-provider"] != nil {
                throw KubeConfigError("\(userWhat) uses a legacy auth-provider, which veerd does not support; use a token, tokenFile or client certificate")
            }
            config.clientCertificatePEM = try material(user, file: "client-certificate", data: "client-certificate-data", what: userWhat)
            config.clientKeyPEM = try material(user, file: "client-key", data: "client-key-data", what: userWhat)
            if (config.clientCertificatePEM == nil) != (config.clientKeyPEM == nil) {
                throw KubeConfigError("\(userWhat) has a client certificate without a key, or a key without a certificate")
            }
            let token = (user.fields["token"] as? String).flatMap { $0.isEmpty ? nil : $0 }
            if let tokenFile = (user.fields["tokenFile"] as? String).flatMap({ $0.isEmpty ? nil : $0 }) {
                let path = resolve(tokenFile, against: user.directory)
                guard FileManager.default.isReadableFile(atPath: path) || token != nil else {
                    throw KubeConfigError("\(userWhat): tokenFile \(path) does not exist or is unreadable")
                }
                config.credentials = .tokenFile(path: path, fallback: token)
            } else if let token {
                config.credentials = .token(token)
            } else if let u = user.fields["username"] as? String, let p = user.fields["password"] as? String {
                config.credentials = .basic(username: u, password: p)
            }
        }
        return config
    }

    private static func material(_ entry: Entry, file fileKey: String, data dataKey: String, what: String) throws -> Data? {
        if let b64 = entry.fields[dataKey] as? String, !b64.isEmpty {
            let compact = b64.filter { !$0.isWhitespace }
            guard let data = Data(base64Encoded: compact) else {
                throw KubeConfigError("\(what): \(dataKey) is not valid base64")
            }
            return data
        }
        if let path = entry.fields[fileKey] as? String, !path.isEmpty {
            let full = resolve(path, against: entry.directory)
            guard let data = FileManager.default.contents(atPath: full) else {
                throw KubeConfigError("\(what): \(fileKey) \(full) does not exist or is unreadable")
            }
            return data
        }
        return nil
    }

    private static func resolve(_ path: String, against directory: String) -> String {
        if path.hasPrefix("/") { return path }
        if path.hasPrefix("~/"), let home = ProcessInfo.processInfo.environment["HOME"] {
            return (home as NSString).appendingPathComponent(String(path.dropFirst(2)))
        }
        return (directory as NSString).appendingPathComponent(path)
    }

    private static func boolField(_ value: Any?) -> Bool {
        if let b = value as? Bool { return b }
        if let s = value as? String { return s.lowercased() == "true" }
        return false
    }

    static func checkServer(_ server: String, what: String) throws -> String {
        var s = server
        while s.hasSuffix("/") { s.removeLast() }
        guard let url = URL(string: s), let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http",
              let host = url.host, !host.isEmpty else {
            throw KubeConfigError("\(what): server \"\(server)\" is not an http(s) URL such as https://10.0.0.1:6443")
        }
        return s
    }
}
