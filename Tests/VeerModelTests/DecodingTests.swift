import Foundation
import Testing
import VeerKube
@testable import VeerModel

@Suite("Decoding: what kubectl and the API produce")
struct DecodingTests {
    @Test func seedArticleEndpointSliceListWithZoneHints() throws {
        let parsed = ManifestParser.parse(try Fixture.text("seed001-endpointslices.yaml"), origin: "seed001")
        #expect(parsed.errors.isEmpty)
        let raw = try #require(parsed.objects.first)
        #expect(raw.kind == .endpointSlice && raw.key == "default/svc-clusterip-wn5f8" && raw.resourceVersion == "306832")
        #expect(raw.origin == "seed001#1.items[0]")
        guard case let .endpointSlice(slice)? = KubeDecoder.decode(raw).object else { Issue.record("not a slice"); return }
        #expect(slice.serviceName == "svc-clusterip")
        #expect(slice.addressType == .ipv4)
        #expect(slice.ports == [EndpointPort(name: "svc-webport", proto: .tcp, port: 8080)])
        #expect(slice.endpoints.map { $0.addresses } == [["192.168.2.87"], ["192.168.1.124"], ["192.168.3.225"]])
        #expect(slice.endpoints.map { $0.zoneHints ?? [] } == [["ap-northeast-2b"], ["ap-northeast-2a"], ["ap-northeast-2c"]])
        #expect(slice.endpoints[1].nodeName == "ip-192-168-1-98.ap-northeast-2.compute.internal")
        #expect(slice.endpoints[1].targetRef?.name == "deploy-echo-75b7b9558c-bcq9f")
        #expect(slice.endpoints.allSatisfy { $0.conditions == EndpointConditions(ready: true, serving: true, terminating: false) })
    }

    /// The article's outcome: 100 of 100 requests from the zone-2a pod went to the zone-2a pod.
    @Test(arguments: [
        ("ip-192-168-1-98.ap-northeast-2.compute.internal", nil as String?, "192.168.1.124"),
        ("ip-192-168-2-213.ap-northeast-2.compute.internal", nil, "192.168.2.87"),
        ("ip-192-168-1-98.ap-northeast-2.compute.internal", "ap-northeast-2c", "192.168.3.225"),
    ])
    func seedArticleZoneRouting(_ nodeName: String, _ zoneOverride: String?, _ expected: String) throws {
        var store = ServiceStore()
        for file in ["seed001-service.yaml", "seed001-endpointslices.yaml", "seed001-nodes.json"] {
            let parsed = ManifestParser.parse(try Fixture.text(file), origin: file)
            #expect(parsed.errors.isEmpty)
            for e in parsed.events { #expect(store.apply(e).rejected.isEmpty) }
        }
        let node = NodeContext(nodeName: nodeName, node: store.nodes[nodeName], zoneOverride: zoneOverride)
        let r = Selector.select(store, node: node)
        let f = try #require(r.frontend(L4Address("10.100.155.216:80/tcp")!))
        #expect(f.backends.map(\.address) == [L4Address(ip: IPAddress(expected)!, port: 8080, proto: .tcp)])
        #expect(f.service.port == "svc-webport")
    }

    @Test func nodeListAsKubectlJSON() throws {
        let parsed = ManifestParser.parse(try Fixture.text("seed001-nodes.json"))
        #expect(parsed.objects.map(\.kind) == [.node, .node, .node])
        #expect(parsed.objects.allSatisfy { $0.namespace == "" })
        guard case let .node(n)? = KubeDecoder.decode(parsed.objects[0]).object else { Issue.record("not a node"); return }
        #expect(n.zone == "ap-northeast-2a")
        #expect(n.ipAddresses.map(\.description) == ["192.168.1.98", "13.125.10.11"])
        guard case let .node(n3)? = KubeDecoder.decode(parsed.objects[2]).object else { Issue.record("not a node"); return }
        #expect(n3.ipAddresses.map(\.description) == ["192.168.3.157", "fd00::3:157"])  // both families: NodePorts per family
    }

    @Test func apiServiceListItemsWithoutKind() throws {
        let parsed = ManifestParser.parse(try Fixture.text("api-services.json"), origin: "list")
        #expect(parsed.errors.isEmpty)
        #expect(parsed.objects.count == 7)
        #expect(parsed.objects.allSatisfy { $0.kind == .service })
        let decoded = parsed.objects.map { KubeDecoder.decode($0) }
        #expect(decoded.allSatisfy { $0.errors.isEmpty })
        guard case let .service(web)? = decoded[0].object else { Issue.record("not a service"); return }
        #expect(web.type == .loadBalancer && web.externalTrafficPolicy == .local && web.sessionAffinity == .clientIP)
        #expect(web.affinityTimeoutSeconds == 600)
        #expect(web.ports == [ServicePort(name: "http", proto: .tcp, port: 80, targetPort: .number(8080), nodePort: 30080),
                              ServicePort(name: "https", proto: .tcp, port: 443, targetPort: .name("https"), nodePort: 30443)])
        #expect(web.loadBalancerIngress.map(\.ipMode) == ["VIP", "Proxy", nil])
        #expect(web.healthCheckNodePort == 31555)
    }

    @Test func apiServiceListSelectsLikeKubeProxy() throws {
        var store = ServiceStore()
        for raw in ManifestParser.parse(try Fixture.text("api-services.json")).objects { store.apply(.apply(raw)) }
        for e in ManifestParser.parse(try Fixture.text("watch-slices.jsonl")).events { store.apply(e) }
        let node = NodeContext(nodeName: "node-1", zone: "a", addresses: [IPAddress("172.18.0.2")!])
        let r = Selector.select(store, node: node)
        // web: LB VIP, externalIP, NodePorts, ClusterIP for both ports; the Proxy-mode IP is skipped.
        // eTP=Local: the external frontends (not loopback) also get an entry for clients outside the node.
        #expect(Set(r.frontends.filter { $0.service.name == "web" && $0.service.port == "http" }.map(\.address.description)) ==
                ["10.96.10.20:80/tcp", "203.0.113.7:80/tcp", "198.51.100.10:80/tcp", "172.18.0.2:30080/tcp", "127.0.0.1:30080/tcp",
                 "203.0.113.7:80/tcp (external)", "198.51.100.10:80/tcp (external)", "172.18.0.2:30080/tcp (external)"])
        // web-1 went terminating in the MODIFIED event: only web-2 remains.
        #expect(ips(r.frontend(L4Address("10.96.10.20:80/tcp")!)) == ["10.244.2.6"])
        #expect(r.frontend(L4Address("10.96.10.20:80/tcp")!)?.affinityTimeout == 600)
        // dns: UDP and TCP ports on one IP; nil conditions count as ready.
        #expect(ips(r.frontend(L4Address("10.96.0.10:53/udp")!)) == ["10.244.1.2", "10.244.2.3"])
        #expect(ips(r.frontend(L4Address("10.96.0.10:53/tcp")!)) == ["10.244.1.2", "10.244.2.3"])
        // dual-stack: both cluster IPs and both externalIPs; single-stack IPv6 too.
        for f in ["10.96.10.30:80/tcp", "203.0.113.8:80/tcp", "[fd00:10:96::2]:80/tcp", "[2001:db8::7]:80/tcp", "[fd00:10:96::1]:80/tcp"] {
            #expect(r.frontend(L4Address(f)!) != nil, "\(f)")
        }
        let skipped = Dictionary(grouping: r.skipped, by: { $0.service.name }).mapValues { $0.map(\.rule) }
        #expect(skipped["db"] == [.headless])
        #expect(skipped["ext"] == [.externalName])
        #expect(skipped["v6"] == nil)
        #expect(skipped["mesh"] == [.serviceProxyName])
        #expect(skipped["web"]?.contains(.loadBalancerProxyMode) == true)
        #expect(skipped["dual"] == nil)
    }

    @Test func watchStream() throws {
        let parsed = ManifestParser.parse(try Fixture.text("watch-slices.jsonl"), origin: "watch")
        #expect(parsed.entries.count == 4)
        #expect(parsed.events.last == .delete(.endpointSlice, namespace: "shop", name: "old-slice"))
        #expect(parsed.ignored == ["watch#2: BOOKMARK"])
        #expect(parsed.errors.map(\.origin) == ["watch#6"])
        #expect(parsed.errors.first?.message.contains("too old resource version") == true)
    }

    @Test func concatenatedPrettyJSONLikeKubectlWatch() throws {
        let a = try String(decoding: JSONSerialization.data(withJSONObject: serviceJSON("a"), options: [.prettyPrinted]), as: UTF8.self)
        let b = try String(decoding: JSONSerialization.data(withJSONObject: serviceJSON("b", clusterIP: "10.96.0.2"), options: [.prettyPrinted]), as: UTF8.self)
        let parsed = ManifestParser.parse(a + "\n" + b + "\n")
        #expect(parsed.objects.map(\.name) == ["a", "b"])
    }

    @Test func multiDocumentYAMLFailsPerDocument() throws {
        let parsed = ManifestParser.parse(try Fixture.text("multi-doc.yaml"), origin: "multi-doc.yaml")
        #expect(parsed.ignored == ["multi-doc.yaml#1: Deployment"])
        #expect(parsed.errors.map(\.origin) == ["multi-doc.yaml#4"])
        #expect(parsed.objects.map(\.key) == ["default/echo", "default/echo-manual", "default/bad-port", "node-1"])
        var store = ServiceStore()
        var rejected: [ObjectError] = []
        for e in parsed.events { rejected += store.apply(e).rejected }
        #expect(rejected.map(\.description) == ["Service default/bad-port: spec.ports[0].port: port 70000 out of range 1-65535 (multi-doc.yaml#5)"])
        let echo = try #require(store.services[ObjectKey(namespace: "default", name: "echo")])
        #expect(echo.ports.map(\.proto) == [.tcp, .udp])  // protocol defaults to TCP
        #expect(echo.sessionAffinity == .none && echo.internalTrafficPolicy == .cluster && echo.externalTrafficPolicy == .cluster)
        let node = NodeContext(nodeName: "node-1", node: store.nodes["node-1"])
        let r = Selector.select(store, node: node)
        // Hand-made slice without owner or managed-by works; the unset protocol is TCP; one address used.
        #expect(ips(r.frontend(L4Address("10.96.20.1:80/tcp")!)) == ["10.244.1.10"])
        #expect(ips(r.frontend(L4Address("172.18.0.2:30007/tcp")!)) == ["10.244.1.10"])
        #expect(r.frontend(L4Address("10.96.20.1:9090/udp")!)?.whenEmpty == .reject)
    }

    @Test func singleObjectKubectlJSONAndYAMLAgree() throws {
        let json = try String(decoding: JSONSerialization.data(withJSONObject: serviceJSON(type: "NodePort", ports: [SvcPort(nodePort: 30001)]), options: [.prettyPrinted]), as: UTF8.self)
        let yaml = """
            apiVersion: v1
            kind: Service
            metadata:
              name: svc
              namespace: default
              labels: {}
              resourceVersion: "1"
            spec:
              type: NodePort
              clusterIP: 10.96.0.1
              clusterIPs: [10.96.0.1]
              ports:
              - {name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30001}
            """
        let a = try #require(ManifestParser.parse(json).objects.first)
        let b = try #require(ManifestParser.parse(yaml).objects.first)
        #expect(KubeDecoder.decode(a).object == KubeDecoder.decode(b).object)
        #expect(KubeDecoder.decode(a).object != nil)
    }

    struct BadCase: Sendable, CustomTestStringConvertible {
        var name: String
        var yaml: String
        var field: String
        var testDescription: String { name }
    }

    @Test(arguments: [
        BadCase(name: "port as string", yaml: "spec:\n  clusterIP: 10.96.0.1\n  ports:\n  - port: \"80\"", field: "spec.ports[0].port"),
        BadCase(name: "port missing", yaml: "spec:\n  clusterIP: 10.96.0.1\n  ports:\n  - name: x", field: "spec.ports[0].port"),
        BadCase(name: "nodePort out of range", yaml: "spec:\n  clusterIP: 10.96.0.1\n  ports:\n  - port: 80\n    nodePort: 99999", field: "spec.ports[0].nodePort"),
        BadCase(name: "bad protocol", yaml: "spec:\n  clusterIP: 10.96.0.1\n  ports:\n  - port: 80\n    protocol: tcp", field: "spec.ports[0].protocol"),
        BadCase(name: "invalid cluster IP", yaml: "spec:\n  clusterIP: 10.96.0.256", field: "spec.clusterIP"),
        BadCase(name: "invalid external IP", yaml: "spec:\n  clusterIP: 10.96.0.1\n  externalIPs: [example.com]", field: "spec.externalIPs[0]"),
        BadCase(name: "ports not a list", yaml: "spec:\n  ports: 80", field: "spec.ports"),
        BadCase(name: "unknown traffic policy", yaml: "spec:\n  internalTrafficPolicy: Nearby", field: "spec.internalTrafficPolicy"),
        BadCase(name: "affinity timeout out of range", yaml: "spec:\n  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 0", field: "spec.sessionAffinityConfig.clientIP.timeoutSeconds"),
        BadCase(name: "labels wrong type", yaml: "metadata:\n  labels: [a]", field: "metadata.labels"),
        BadCase(name: "unknown IP family", yaml: "spec:\n  clusterIPs: [10.96.0.1]\n  ipFamilies: [IPv5]", field: "spec.ipFamilies[0]"),
        BadCase(name: "unknown IP family policy", yaml: "spec:\n  clusterIP: 10.96.0.1\n  ipFamilyPolicy: DualStack", field: "spec.ipFamilyPolicy"),
        BadCase(name: "LB ingress IP invalid", yaml: "status:\n  loadBalancer:\n    ingress:\n    - ip: 1.2.3", field: "status.loadBalancer.ingress[0].ip"),
    ])
    func invalidServiceNamesTheField(_ c: BadCase) throws {
        let text = "apiVersion: v1\nkind: Service\n" + (c.yaml.hasPrefix("metadata") ? c.yaml + "\n  name: bad" : "metadata:\n  name: bad\n" + c.yaml)
        let raw = try #require(ManifestParser.parse(text, origin: "t.yaml").objects.first)
        let out = KubeDecoder.decode(raw)
        #expect(out.object == nil)
        #expect(out.errors.first?.field == c.field)
        #expect(out.errors.first?.object == "default/bad")
    }

    @Test(arguments: [
        ("addressType missing", "endpoints: []", "addressType"),
        ("ready as string", "addressType: IPv4\nendpoints:\n- addresses: [10.0.0.1]\n  conditions: {ready: \"yes\"}", "endpoints[0].conditions.ready"),
        ("slice port out of range", "addressType: IPv4\nports:\n- port: -1", "ports[0].port"),
    ])
    func invalidSliceNamesTheField(_ name: String, _ body: String, _ field: String) throws {
        let text = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s\n  namespace: ns\n" + body
        let raw = try #require(ManifestParser.parse(text).objects.first)
        let out = KubeDecoder.decode(raw)
        #expect(out.object == nil, "\(name)")
        #expect(out.errors.first?.field == field, "\(name)")
        #expect(out.errors.first?.object == "ns/s")
    }

    @Test func documentsWithoutNameOrKindAreErrorsNotCrashes() {
        let parsed = ManifestParser.parse("kind: Service\nmetadata: {}\n---\nfoo: bar\n---\n- 1\n- 2\n---\njust text\n")
        #expect(parsed.objects.isEmpty)
        // No kind/name, no kind, two non-object array items, a bare scalar.
        #expect(parsed.errors.count == 5)
    }

    @Test func unknownFieldsIgnored() throws {
        let text = "{\"kind\":\"Service\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"x\",\"managedFields\":[{\"a\":1}]},\"spec\":{\"clusterIP\":\"10.96.0.1\",\"futureField\":{\"deep\":[1,2]},\"ports\":[{\"port\":80,\"appProtocol\":\"http\"}]}}"
        let raw = try #require(ManifestParser.parse(text).objects.first)
        #expect(KubeDecoder.decode(raw).errors.isEmpty)
    }

    @Test(arguments: [
        ("10.0.0.1", IPFamily.ipv4), ("::1", .ipv6), ("fd00:10:96::a", .ipv6), ("2001:db8:0:0:0:0:2:1", .ipv6),
        ("::ffff:10.0.0.1", .ipv4) /* as Kubernetes' netutils: To4() != nil */, ("1:2:3:4:5:6:7:8", .ipv6),
    ])
    func ipFamilies(_ text: String, _ family: IPFamily) { #expect(IPFamily(address: text) == family) }

    @Test(arguments: ["", "10.0.0", "10.0.0.1.2", "1:2:3:4:5:6:7:8:9", "1::2::3", "fe80::1%eth0", "12345::1", "example.com", ":::"])
    func notIPs(_ text: String) { #expect(IPFamily(address: text) == nil) }
}
