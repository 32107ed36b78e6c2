import Logging
import VeerKube
import VeerModel

/// The agent's side of kube-proxy's health promises: after every successful sync the proxy is
/// healthy again (`ProxyHealth.updated`), the Node's eligibility is re-read, and the
/// healthCheckNodePort servers get the services' new local endpoint counts.
extension Agent {
    /// Starts serving the healthCheckNodePort of every eTP=Local LoadBalancer Service; `hosts` as
    /// in `ServiceHealthServers`. A port that cannot be bound is also posted as a Node event.
    public func serveHealthChecks(hosts: [String] = ["::"]) {
        guard healthChecks.servers == nil else { return }
        let servers = ServiceHealthServers(hosts: hosts, proxyHealth: proxyHealth, logger: logger) { [weak self] key, port, error in
            guard let self else { return }
            // A hop back onto the actor from the servers' reconcile task; the report is best effort.
            Task { await self.healthCheckFailed(key, port, error) }
        }
        healthChecks.servers = servers
        if store.isSynced { servers.update(healthChecks.targets) }
    }

    public func stopHealthChecks() async {
        let servers = healthChecks.servers
        healthChecks.servers = nil
        await servers?.close()
    }

    /// `touched`: the services the sync re-selected; nil after a full sync (all of them).
    func syncHealth(_ touched: Set<ObjectKey>?) {
        proxyHealth.syncNode(store.nodes[config.nodeName])
        proxyHealth.updated()
        if let touched {
            guard !touched.isEmpty else { return }
            var changed = false
            for key in touched {
                let t = ServiceHealth.target(store, service: key, nodeName: config.nodeName)
                if healthChecks.targets[key] != t { healthChecks.targets[key] = t; changed = true }
            }
            guard changed else { return }
        } else {
            let all = ServiceHealth.targets(store, nodeName: config.nodeName)
            guard all != healthChecks.targets else { return }
            healthChecks.targets = all
        }
        healthChecks.servers?.update(healthChecks.targets)
    }

    private func healthCheckFailed(_ key: ObjectKey, _ port: UInt16, _ error: String) {
        post(.warning, "FailedToStartServiceHealthcheck",
             "node \(config.nodeName) failed to start the health check of \(key) on port \(port): \(error)")
    }

    /// A list or watch of the source failed (`failing`) or works again.
    public func sourceConnectivity(_ kind: String, failing: Bool) {
        if failing {
            proxyHealth.sourceFailing(kind)
        } else {
            proxyHealth.sourceRestored(kind)
            if !dirty && !syncing && programmed { proxyHealth.updated() }
        }
    }

    func writeHealthMetrics(into out: inout PrometheusText) {
        let answers = proxyHealth.answerCounts
        out.family("veer_proxy_healthz_total", .counter, help: "Answers of the proxy's /healthz, by HTTP code (kube-proxy's proxy_healthz_total).")
        for (code, n) in (answers["healthz"] ?? [:]).sorted(by: { $0.key < $1.key }) {
            out.sample("veer_proxy_healthz_total", ["code": "\(code)"], Double(n))
        }
        out.family("veer_proxy_livez_total", .counter, help: "Answers of the proxy's /livez, by HTTP code (kube-proxy's proxy_livez_total).")
        for (code, n) in (answers["livez"] ?? [:]).sorted(by: { $0.key < $1.key }) {
            out.sample("veer_proxy_livez_total", ["code": "\(code)"], Double(n))
        }
        out.family("veer_proxy_healthy", .gauge, help: "1 while no change has waited longer than --healthz-timeout to reach the maps.")
        out.sample("veer_proxy_healthy", [], proxyHealth.isHealthy ? 1 : 0)
        let status = healthChecks.servers?.status ?? (listening: 0, failing: 0, bindFailures: 0)
        out.family("veer_health_check_servers", .gauge,
                   help: "healthCheckNodePort servers of eTP=Local LoadBalancer Services, by state (listening, failed: the port could not be bound).")
        out.sample("veer_health_check_servers", ["state": "listening"], Double(status.listening))
        out.sample("veer_health_check_servers", ["state": "failed"], Double(status.failing))
        out.family("veer_health_check_bind_failures_total", .counter, help: "Attempts to bind a healthCheckNodePort that failed.")
        out.sample("veer_health_check_bind_failures_total", [], Double(status.bindFailures))
    }
}

/// The healthCheckNodePort servers and what they should serve.
struct HealthCheckState {
    /// nil until `serveHealthChecks()` (and after `stopHealthChecks()`).
    var servers: ServiceHealthServers?
    var targets: [ObjectKey: HealthCheckTarget] = [:]
}
