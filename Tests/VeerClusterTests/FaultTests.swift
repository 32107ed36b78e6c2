import Foundation
import Glibc
import Testing
import VeerDatapath
import VeerModel
import VeerTestSupport

// Faults while clients on every node connect: an agent killed, the API server gone, restarted
// with a new history, slow, or sending garbage; several agents racing for one node.

extension ClusterTests {
    @Test("kill -9 of one agent under load: no failed connection; the restarted agent converges and keeps nothing stale")
    func agentKilledUnderLoad() async throws {
        try await withCluster { cluster in
            let pods = try cluster.addPods("web", perNode: 2)
            try await cluster.deploy(ClusterObjects.service("web", clusterIP: vip), slice: ClusterObjects.slice("web", pods, in: cluster),
                               frontend: frontend) { _ in endpoints(pods) }
            try cluster.apply("services", ClusterObjects.service("gone", clusterIP: "10.96.0.20"))
            try await cluster.waitUntil("the second service everywhere") { cluster.nodes.allSatisfy { cluster.backends($0.index, "10.96.0.20:80/tcp") == [] } }
            let loads = try cluster.nodes.map { try cluster.startLoad($0.index, vip, 80, gapMicroseconds: 4000) }
            try await pause(seconds: 0.3)
            cluster.agent(2)?.kill()
            // While node-2's agent is dead: two pods leave (their processes keep serving, as
            // terminating pods do), a service is deleted.
            let kept = pods.filter { !$0.name.hasSuffix("-1-1") && !$0.name.hasSuffix("-3-2") }
            try cluster.apply("endpointslices", ClusterObjects.slice("web", kept, in: cluster))
            try cluster.delete("services", name: "gone")
            try await cluster.waitUntil("the other nodes converge") { [1, 3].allSatisfy { cluster.backends($0, frontend) == endpoints(kept) } }
            try await pause(seconds: 0.5)
            #expect(cluster.backends(2, frontend) == endpoints(pods), "nothing changes on node-2 while its agent is down")
            try cluster.startAgent(2)
            try await cluster.waitForBackends(frontend) { _ in endpoints(kept) }
            let converged = monotonicNow()
            try await cluster.waitUntil("the deleted service swept from node-2") { cluster.backends(2, "10.96.0.20:80/tcp") == nil }
            try await pause(seconds: 0.5)
            for (load, results) in zip(loads, loads.map { $0.stop() }) {
                #expect(results.count > 50 && results.allSatisfy { $0.ok }, "node-\(load.node): \(failures(results))")
                let stale = results.filter { r in r.startNS > converged && !kept.contains { $0.name == r.reply } }
                #expect(stale.isEmpty, "node-\(load.node): \(stale.count) connections to removed pods after convergence")
            }
            // Nothing stale in node-2's maps: exactly what node-1 (never restarted) holds.
            let restarted = try cluster.state(2), reference = try cluster.state(1)
            #expect(Set(restarted.masters.keys) == Set(reference.masters.keys))
            #expect(Set(restarted.backends.values.map(\.address)) == Set(reference.backends.values.map(\.address)))
            #expect(restarted.members.count == reference.members.count)
        }
    }

    @Test("API server faults: stopped 30 s (last state kept, traffic flows), restarted with a new history (410, relist, converge), slow, garbage mid-stream")
    func apiServerFaults() async throws {
        try await withCluster { cluster in
            let pods = try cluster.addPods("web", perNode: 2)
            let service = ClusterObjects.service("web", clusterIP: vip)
            try await cluster.deploy(service, slice: ClusterObjects.slice("web", pods, in: cluster), frontend: frontend) { _ in endpoints(pods) }
            let loads = try cluster.nodes.map { try cluster.startLoad($0.index, vip, 80, gapMicroseconds: 20000) }

            // Stopped for 30 s: nothing is removed, traffic flows, the agents keep retrying.
            cluster.stopAPIServer()
            let stopSeconds = Double(ProcessInfo.processInfo.environment["VEER_CLUSTER_API_DOWN_SECONDS"] ?? "") ?? 30
            try await pause(seconds: stopSeconds)
            for node in cluster.nodes {
                #expect(cluster.backends(node.index, frontend) == endpoints(pods), "\(node.name) kept the last state")
                #expect(cluster.agent(node.index)?.isRunning == true, "\(node.name)'s agent gave up")
            }

            // Back with a new resourceVersion history (as after an etcd restore) and changed
            // state: one pod gone, a new service. Old resourceVersions get 410: relist, converge.
            let kept = Array(pods.dropFirst())
            let second = ClusterObjects.service("second", clusterIP: "10.96.0.30")
            try cluster.startAPIServer(services: [service, second],
                                       slices: [ClusterObjects.slice("web", kept, in: cluster),
                                                ClusterObjects.slice("second", pods, in: cluster)],
                                       rvStart: 500_000)
            // The agents back off up to 30 s (jittered to 60) while the server was away.
            try await cluster.waitForBackends(frontend, timeout: 90) { _ in endpoints(kept) }
            try await cluster.waitForBackends("10.96.0.30:80/tcp", timeout: 30) { _ in endpoints(pods) }

            // Slow: every list answers after 3 s; the history is compacted, so resuming gets 410
            // and the agents relist slowly, and still converge.
            let api = try #require(cluster.api)
            try api.post("delay", ["ms": 3000])
            try api.post("compact", [:])
            try api.post("drop_watches", [:])
            try cluster.apply("endpointslices", ClusterObjects.slice("web", pods, in: cluster))
            try await cluster.waitForBackends(frontend, timeout: 60) { _ in endpoints(pods) }
            try api.post("delay", ["ms": 0])

            // Garbage in the middle of a watch stream: the watch restarts, later changes arrive.
            try api.post("inject_raw", ["resource": "endpointslices", "line": "{\"type\": \"MODIFIED\", \"object\": {garbage"])
            try api.post("inject_raw", ["resource": "endpointslices", "line": String(repeating: "\u{1}\u{2}not json", count: 1000)])
            try cluster.apply("endpointslices", ClusterObjects.slice("web", kept, in: cluster))
            try await cluster.waitForBackends(frontend, timeout: 60) { _ in endpoints(kept) }

            for (load, results) in zip(loads, loads.map { $0.stop() }) {
                #expect(results.count > 100 && results.allSatisfy { $0.ok }, "node-\(load.node): \(failures(results))")
            }
            for node in cluster.nodes {
                #expect(cluster.agent(node.index)?.isRunning == true)
                let metrics = cluster.metrics(node.index)
                let relists = metrics.split(separator: "\n").filter { $0.hasPrefix("veer_source_relists_total{") }
                    .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0, +)
                #expect(relists >= 1, "\(node.name) relisted after 410: \(relists)")
            }
        }
    }

    @Test("Several agents started on one node at once: one wins, the others exit with a clear message, the pins stay whole")
    func concurrentAgents() async throws {
        try await withCluster(agents: false) { cluster in
            let pods = try cluster.addPods("web", perNode: 1)
            try cluster.apply("services", ClusterObjects.service("web", clusterIP: vip))
            try cluster.apply("endpointslices", ClusterObjects.slice("web", pods, in: cluster))
            // Each on its own metrics port, so only the lock can make them exit.
            let racers = try (0..<4).map { _ in
                try cluster.startAgent(1, extra: ["--metrics-address", "127.0.0.1:0"])
            }
            try await cluster.waitUntil("three agents to exit") { racers.filter { !$0.isRunning }.count == 3 }
            try await pause(seconds: 1.0)
            let winners = racers.filter(\.isRunning)
            #expect(winners.count == 1)
            for loser in racers where !loser.isRunning {
                #expect(loser.process.terminationStatus != 0)
                #expect(loser.logText.contains("another veerd (pid \(winners.first?.pid ?? -1)) already runs for these pins"), "\(loser.logText)")
            }
            try await cluster.waitUntil("the winner programs") { cluster.backends(1, frontend) == endpoints(pods) }
            let inspection = try Inspection(datapath: Datapath(pins: cluster.nodes[0].pins))
            #expect(inspection.frontends.allSatisfy { $0.problems.isEmpty })
            #expect(try cluster.connect(1, vip, 80, count: 20).allSatisfy { $0.ok })

            // The lock dies with its holder, even on kill -9: the next agent starts.
            winners.first?.kill()
            let next = try cluster.startAgent(1, extra: ["--metrics-address", "127.0.0.1:0"])
            try await cluster.waitUntil("the next agent adopts the pins") { next.logText.contains("adopted_frontends=1") }
            #expect(next.isRunning)
        }
    }
}

extension ClusterTests {
    @Test("Small maps on one node: the service that does not fit is rejected there with a reason and a metric; the rest, and the other nodes, are intact")
    func smallMapsOnOneNode() async throws {
        try await withCluster(agents: false) { cluster in
            let small = try cluster.addPod("small", on: 1)
            let big = try (1...9).map { try cluster.addPod("big-\($0)", on: ($0 % 3) + 1) }
            try cluster.apply("services", ClusterObjects.service("small", clusterIP: "10.96.0.11"))
            try cluster.apply("endpointslices", ClusterObjects.slice("small", [small], in: cluster))
            try cluster.apply("services", ClusterObjects.service("big", clusterIP: "10.96.0.12"))
            try cluster.apply("endpointslices", ClusterObjects.slice("big", big, in: cluster))
            // 8 entries: small needs 2 (master + slot), big 10: big can never fit on node-2.
            try cluster.startAgent(1)
            try cluster.startAgent(2, extra: ["--max-service-entries", "8"])
            try cluster.startAgent(3)
            try await cluster.waitForBackends("10.96.0.11:80/tcp") { _ in endpoints([small]) }
            try await cluster.waitForBackends("10.96.0.12:80/tcp") { node in node.index == 2 ? nil : endpoints(big) }
            try await cluster.waitUntil("the rejection is logged") { cluster.agent(2)?.logText.contains("service default/big not programmed") == true }
            let metrics = cluster.metrics(2)
            #expect(metrics.contains("veer_services_rejected 1"), "\(metrics.split(separator: "\n").filter { $0.contains("reject") })")
            #expect(try cluster.connect(2, "10.96.0.11", 80, count: 10).allSatisfy { $0.ok && $0.reply == "small" })
            #expect(try cluster.connect(2, "10.96.0.12", 80, count: 3).allSatisfy { $0.reply == "ENETUNREACH" }, "not translated on node-2")
            #expect(try cluster.connect(1, "10.96.0.12", 80, count: 10).allSatisfy { $0.ok })
        }
    }
}
