@testable import VeerAgent
import Testing
import VeerModel

@Suite("Sync log lines")
struct SyncLogTests {
    static func frontends(_ n: Int) -> [DesiredFrontend] {
        (0..<n).map { i in
            DesiredFrontend(address: L4Address(ip: IPAddress("10.96.\(i / 250).\(i % 250 + 1)")!, port: 80, proto: .tcp),
                            kind: .clusterIP,
                            service: ServicePortName(namespace: "default", name: "svc-\(i)", port: "http", proto: .tcp),
                            backends: [DesiredBackend(address: L4Address("10.244.\(i / 250).\(i % 250 + 1):8080/tcp")!, podName: "pod-\(i)")])
        }
    }

    @Test("A sync says what it programmed, one line per frontend, naming the pods")
    func linePerFrontend() {
        let desired = Self.frontends(3)
        let plan = Planner.plan(desired: desired, actual: MapState(),
                                capacities: MapCapacities(services: 100, backends: 100, revNat: 100, members: 100))
        let log = SyncLog.lines(plan, skipped: [], desired: { a in desired.first { $0.address == a } })
        #expect(log.omitted == 0)
        #expect(log.lines == [
            "programmed default/svc-0:http clusterIP 10.96.0.1:80/tcp → pod-0",
            "programmed default/svc-1:http clusterIP 10.96.0.2:80/tcp → pod-1",
            "programmed default/svc-2:http clusterIP 10.96.0.3:80/tcp → pod-2",
        ])
    }

    @Test("A full sync of thousands of services logs its first lines and how many more there were")
    func fullSyncCapped() {
        let desired = Self.frontends(1_000)
        let plan = Planner.plan(desired: desired, actual: MapState(),
                                capacities: MapCapacities(services: 10_000, backends: 10_000, revNat: 10_000, members: 10_000))
        let log = SyncLog.lines(plan, skipped: [], desired: { a in desired.first { $0.address == a } },
                                limit: SyncLog.fullSyncLines)
        #expect(log.lines.count == SyncLog.fullSyncLines)
        #expect(log.omitted == 1_000 - SyncLog.fullSyncLines)
    }
}
