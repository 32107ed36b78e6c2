import Foundation
import Testing
@testable import VeerModel

@Suite("Store: events in, affected services out")
struct StoreTests {
    private let svcKey = ObjectKey(namespace: "default", name: "svc")

    @Test func sliceEventsAffectTheirService() throws {
        var store = ServiceStore()
        #expect(store.apply(.apply(raw(serviceJSON()))).services == [svcKey])
        let c = store.apply(.apply(raw(sliceJSON("svc-1", endpoints: [.R("10.0.0.1")]))))
        #expect(c.services == [svcKey])
        #expect(store.slices(for: svcKey).map(\.meta.name) == ["svc-1"])
        // Moving a slice to another service affects both.
        let moved = store.apply(.apply(raw(sliceJSON("svc-1", service: "other", endpoints: [.R("10.0.0.1")]))))
        #expect(moved.services == [svcKey, ObjectKey(namespace: "default", name: "other")])
        #expect(store.slices(for: svcKey).isEmpty)
        let deleted = store.apply(.delete(.endpointSlice, namespace: "default", name: "svc-1"))
        #expect(deleted.services == [ObjectKey(namespace: "default", name: "other")])
    }

    @Test func unchangedObjectAffectsNothing() throws {
        var store = ServiceStore()
        store.apply(.apply(raw(serviceJSON())))
        store.apply(.apply(raw(sliceJSON("s", endpoints: [.R("10.0.0.1")]))))
        var again = sliceJSON("s", endpoints: [.R("10.0.0.1")])
        again["metadata"] = ["name": "s", "namespace": "default", "resourceVersion": "2",
                             "labels": [KubeLabel.serviceName: "svc"]] as [String: Any]
        #expect(store.apply(.apply(raw(again))).isEmpty)
        #expect(store.apply(.apply(raw(serviceJSON()))).isEmpty)
    }

    @Test func malformedObjectIsRejectedAndTheLastGoodVersionKept() throws {
        var store = ServiceStore()
        store.apply(.apply(raw(serviceJSON(ports: [SvcPort(port: 80)]))))
        let change = store.apply(.apply(raw(serviceJSON(ports: [SvcPort(port: 70000)]))))
        let e = try #require(change.rejected.first)
        #expect(e.object == "default/svc" && e.field == "spec.ports[0].port" && e.message.contains("70000"))
        #expect(change.services.isEmpty)
        #expect(store.services[svcKey]?.ports.first?.port == 80)
        #expect(store.problems["Service default/svc"]?.first == e)
        // A good version clears the problem.
        store.apply(.apply(raw(serviceJSON(ports: [SvcPort(port: 81)]))))
        #expect(store.problems.isEmpty)
        #expect(store.services[svcKey]?.ports.first?.port == 81)
    }

    @Test func badEndpointIsDroppedAloneTheSliceKept() throws {
        var store = ServiceStore()
        store.apply(.apply(raw(serviceJSON())))
        let c = store.apply(.apply(raw(sliceJSON("s", endpoints: [.R("10.0.0.1"), .R("10.0.0.300")]))))
        #expect(c.rejected.map(\.field) == ["endpoints[1].addresses[0]"])
        #expect(c.services == [svcKey])
        #expect(ips(Selector.select(store, node: N1).frontend(L4Address("10.96.0.1:80/tcp")!)) == ["10.0.0.1"])
    }

    @Test func badObjectDoesNotBlockOthers() throws {
        var store = ServiceStore()
        var bad = serviceJSON("bad")
        bad["spec"] = ["clusterIP": "10.96.0.300", "ports": [["port": 80]]]
        let events: [SourceEvent] = [.apply(raw(bad)), .apply(raw(serviceJSON())),
                                     .apply(raw(sliceJSON("s", endpoints: [.R("10.0.0.1")])))]
        let changes = events.map { store.apply($0) }
        #expect(changes[0].rejected.first?.field == "spec.clusterIP")
        #expect(store.services.keys.map(\.name) == ["svc"])
        #expect(ips(Selector.select(store, node: N1).frontend(L4Address("10.96.0.1:80/tcp")!)) == ["10.0.0.1"])
    }

    @Test func replaceAllRemovesWhatIsNotListed() throws {
        var store = ServiceStore()
        store.apply(.apply(raw(serviceJSON("a"))))
        store.apply(.apply(raw(serviceJSON("b"))))
        let c = store.apply(.replaceAll(.service, [raw(serviceJSON("b")), raw(serviceJSON("c", clusterIP: "10.96.0.3"))]))
        #expect(store.serviceKeys.map(\.name) == ["b", "c"])
        #expect(c.services == [ObjectKey(namespace: "default", name: "a"), ObjectKey(namespace: "default", name: "c")])
    }

    @Test func replaceAllForgetsProblemsOfObjectsGone() throws {
        var store = ServiceStore()
        store.apply(.apply(raw(sliceJSON("orphan", service: nil, endpoints: []))))
        #expect(!store.problems.isEmpty)
        store.apply(.replaceAll(.endpointSlice, []))
        #expect(store.problems.isEmpty && store.slices.isEmpty)
    }

    @Test func nodesAndSync() throws {
        var store = ServiceStore()
        let node: [String: Any] = ["kind": "Node", "apiVersion": "v1",
                                   "metadata": ["name": "N1", "labels": [KubeLabel.zone: "a"]],
                                   "status": ["addresses": [["type": "InternalIP", "address": "192.168.0.1"]]]]
        #expect(store.apply(.apply(raw(node))).nodes == ["N1"])
        let ctx = NodeContext(nodeName: "N1", node: store.nodes["N1"])
        #expect(ctx.zone == "a" && ctx.addresses == [IPAddress("192.168.0.1")!])
        #expect(NodeContext(nodeName: "N1", node: store.nodes["N1"], zoneOverride: "z").zone == "z")
        #expect(!store.isSynced)
        #expect(store.apply(.synced).synced && store.isSynced)
        #expect(store.apply(.delete(.node, namespace: "", name: "N1")).nodes == ["N1"])
    }

    @Test func deleteOfUnknownObjectIsHarmless() {
        var store = ServiceStore()
        #expect(store.apply(.delete(.service, namespace: "x", name: "y")).isEmpty)
    }
}

@Suite("Incremental selection")
struct IncrementalTests {
    /// The agent's loop: re-select only the services an event affected, merge with the cached rest.
    @Test func reselectingAffectedServicesEqualsSelectingEverything() throws {
        var store = ServiceStore()
        var cache: [ObjectKey: SelectionResult] = [:]
        let events: [SourceEvent] = [
            .apply(raw(serviceJSON("a", clusterIP: "10.96.0.1"))),
            .apply(raw(serviceJSON("b", clusterIP: "10.96.0.2", itp: "Local"))),
            .apply(raw(sliceJSON("a-1", service: "a", endpoints: [.R("10.0.0.1", "N1"), .T("10.0.0.2", "N2")]))),
            .apply(raw(sliceJSON("b-1", service: "b", endpoints: [.R("10.0.1.1", "N2")]))),
            .apply(raw(sliceJSON("b-1", service: "b", endpoints: [.R("10.0.1.1", "N1")]))),
            .apply(raw(serviceJSON("c", clusterIP: "10.96.0.2"))),  // conflicts with b's ClusterIP
            .delete(.endpointSlice, namespace: "default", name: "a-1"),
            .delete(.service, namespace: "default", name: "b"),
        ]
        for e in events {
            let change = store.apply(e)
            for key in change.services { cache[key] = Selector.select(store, service: key, node: N1) }
            let incremental = Selector.merge(Array(cache.values))
            #expect(incremental == Selector.select(store, node: N1))
        }
        // After b is gone, c owns 10.96.0.2.
        #expect(Selector.merge(Array(cache.values)).frontend(L4Address("10.96.0.2:80/tcp")!)?.service.name == "c")
    }
}
