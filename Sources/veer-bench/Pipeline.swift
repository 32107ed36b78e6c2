// veer-bench pipeline SERVICES ENDPOINTS: the agent's own pipeline in one process, like
// Cilium's pkg/loadbalancer benchmark: N Services and their EndpointSlices as list bytes (what
// the API server sends) → split into objects (ListPage, the API source's own list reader) →
// decoded and stored → selected → planned → written into maps in memory (no root). Prints
//   "veer-pipeline services=N endpoints=E parse_s= store_s= sync_s= total_s= services_per_s=
//    heap_bytes_per_service= agent_heap_bytes_per_service= store_heap_bytes_per_service= scrape_s= scrape_max_s=
//    scrape_first_s= scrape_counters_ms= scrape_mb= scrape_rss_growth_mb= trim_ms= list_rss_mb= rss_mb="
// store_heap_bytes_per_service is what the heap holds once the lists are stored (before any
// sync), less what it held before: the stored objects, per service with its slice.
// parse_s is the list reader's time: it cuts the items from the bytes and decodes each (as the
// API source does page by page); store_s is the store taking them. list_rss_mb is the peak RSS
// once the lists are read and stored (the list bytes included), rss_mb the peak of the whole run.
// heap_bytes_per_service is what the process holds once the maps are written, less what it held
// before, per service (glibc's mallinfo2); agent_heap_bytes_per_service is the agent's part of it
// (the rest is the in-memory maps, which are the kernel's in veerd): steady memory, not the peak.
// scrape_s is the median of 5 /metrics scrapes (scrape_max_s the slowest; scrape_first_s the
// first, which builds the layout of names and ids the others reuse, as a scrape after a change
// does; scrape_counters_ms the in-memory maps' stand-in for the kernel's counters read alone,
// part of each scrape), scrape_rss_growth_mb
// the resident memory the process gained across them, each followed by the heap trim veerd's
// listener does after a large response (trim_ms, the slowest; VEER_SCRAPE_TRIM=0: none).
import CVeer
import Foundation
import Glibc
import Logging
import VeerAgent
import VeerDatapath
import VeerKube
import VeerModel
import VeerTestSupport

enum PipelineBench {
    /// A ServiceList and an EndpointSliceList as the API serves them (compact JSON).
    static func lists(services n: Int, endpoints e: Int) -> (services: Data, slices: Data) {
        var svc = #"{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":["#
        var eps = #"{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"1"},"items":["#
        for i in 0..<n {
            let ip = "10.\(96 + i / 65_536).\(i / 256 % 256).\(i % 256)"
            if i > 0 { svc += ","; eps += "," }
            svc += #"{"metadata":{"name":"svc-\#(i)","namespace":"ns-\#(i % 100)","resourceVersion":"\#(i + 2)"},"#
                + #""spec":{"type":"ClusterIP","clusterIP":"\#(ip)","clusterIPs":["\#(ip)"],"ipFamilies":["IPv4"],"#
                + #""ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":8080}]}}"#
            eps += #"{"metadata":{"name":"svc-\#(i)-abcde","namespace":"ns-\#(i % 100)","resourceVersion":"\#(i + 2)","#
                + #""labels":{"kubernetes.io/service-name":"svc-\#(i)"}},"addressType":"IPv4","#
                + #""ports":[{"name":"http","port":8080,"protocol":"TCP"}],"endpoints":["#
            for j in 0..<e {
                let k = i * e + j
                if j > 0 { eps += "," }
                eps += #"{"addresses":["172.\#(16 + k / 65_536 % 16).\#(k / 256 % 256).\#(k % 256)"],"#
                    + #""conditions":{"ready":true,"serving":true,"terminating":false},"#
                    + #""nodeName":"node-\#(j % 50)","zone":"zone-\#(j % 3)","#
                    + #""targetRef":{"kind":"Pod","name":"svc-\#(i)-pod-\#(j)","namespace":"ns-\#(i % 100)"}}"#
            }
            eps += "]}"
        }
        return (Data((svc + "]}").utf8), Data((eps + "]}").utf8))
    }

    static func run(services n: Int, endpoints e: Int) async {
        let (svcBytes, epsBytes) = lists(services: n, endpoints: e)
        let heapBefore = veer_heap_in_use()
        let t0 = now()
        // Room for every entry: the in-memory maps check capacity as the kernel's do.
        let caps = MapCapacities(services: n * (e + 1) + 1024, backends: n * e + 1024, revNat: n + 1024, members: n * e + 1024)
        var maps: MemoryMapStore? = MemoryMapStore(capacities: caps)
        var config = AgentConfiguration(nodeName: "node-0", pins: PinLayout(root: "/nonexistent"))
        config.writesStateFiles = false
        var logger = Logger(label: "veer-bench")
        // VEER_PIPELINE_LOG=info shows the agent's own stage timings (its "full sync" line).
        logger.logLevel = ProcessInfo.processInfo.environment["VEER_PIPELINE_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .error
        var agent: Agent? = Agent(config: config, maps: maps!, logger: logger)
        // The lists' objects live only until the store has them, as in the API source.
        let (t1, t2) = await ingestLists(svcBytes, epsBytes, n: n, into: agent!)
        let listRSS = rssMB()
        // The lists' objects are gone by now (ingestLists' locals): what is left is the store.
        let heapStored = veer_heap_in_use()
        await agent!.ingest(.synced)
        await agent!.waitUntilIdle()
        let t3 = now()
        let state = maps!.readState()
        guard state.masters.count == n, state.backends.count == n * e else {
            fail("maps hold \(state.masters.count) frontends and \(state.backends.count) backends, not \(n) and \(n * e)")
        }
        // What each part holds once the maps are written: the agent (store, selections, index,
        // names), then the in-memory maps (the kernel's share in veerd).
        let heapAfter = veer_heap_in_use()
        // /metrics scrapes with a hit on every (frontend, backend) pair, so every series is
        // there: rendered off the agent's actor from a snapshot, in chunks as the listener sends
        // them (the kernel's per-CPU counters, read in batches by veerd, are the in-memory maps'
        // count per member, made when the hits are set). The median of several, and what the
        // process's resident memory grew by across them (a scrape must leave none behind).
        var hits: [FrontendBackend: UInt64] = [:]
        for (frontend, slots) in state.slots {
            for id in slots.values { if let be = state.backends[id] { hits[FrontendBackend(frontend: frontend, backend: be.address)] = 1 } }
        }
        maps!.setHits(hits)
        hits = [:]
        let scrapes = 5
        let trim = ProcessInfo.processInfo.environment["VEER_SCRAPE_TRIM"] != "0"
        // From a trimmed heap, so that only what the scrapes leave counts.
        if trim { HeapRelease.now() }
        let rssBefore = currentRSSMB()
        var scrapeTimes: [Double] = [], trimTimes: [Double] = []
        var scrapeBytes = 0
        for i in 0..<scrapes {
            do {
                // VEER_SCRAPE_OUT=FILE keeps the first scrape's text (to diff, or for promtool).
                var file: FileHandle?
                if i == 0, let path = ProcessInfo.processInfo.environment["VEER_SCRAPE_OUT"] {
                    FileManager.default.createFile(atPath: path, contents: nil)
                    file = FileHandle(forWritingAtPath: path)
                }
                let s0 = now()
                // The chunks veerd's listener sends as they are rendered (here: dropped).
                let sink = file
                let (bytes, _) = await agent!.streamMetrics { chunk in
                    sink?.write(Data(chunk.readableBytesView))
                    return true
                }
                scrapeTimes.append(now() - s0)
                scrapeBytes = bytes
                try? file?.close()
            }
            // What veerd's listener does once a large response is sent (VEER_SCRAPE_TRIM=0: not).
            if trim {
                let t = now()
                HeapRelease.now()
                trimTimes.append(now() - t)
            }
        }
        let scrapeSeconds = scrapeTimes.sorted()[scrapes / 2]
        // The stand-in for the kernel's batch read alone (its share of scrape_s).
        var counterTimes: [Double] = []
        for _ in 0..<scrapes {
            let c0 = now()
            _ = maps!.memberHits()
            counterTimes.append(now() - c0)
        }
        let scrapeGrowth = currentRSSMB() - rssBefore
        maps!.setHits([:])
        agent = nil
        let heapWithoutAgent = veer_heap_in_use()
        maps = nil
        let perService = { (bytes: Int) in Double(bytes) / Double(n) }
        print(String(format: "veer-pipeline services=%d endpoints=%d parse_s=%.3f store_s=%.3f sync_s=%.3f total_s=%.3f services_per_s=%.0f heap_bytes_per_service=%.0f agent_heap_bytes_per_service=%.0f store_heap_bytes_per_service=%.0f scrape_s=%.3f scrape_max_s=%.3f scrape_first_s=%.3f scrape_counters_ms=%.1f scrape_mb=%.1f scrape_rss_growth_mb=%.1f trim_ms=%.1f list_rss_mb=%.1f rss_mb=%.1f",
                     n, e, t1 - t0, t2 - t1, t3 - t2, t3 - t0, Double(n) / (t3 - t0),
                     perService(Int(heapAfter) - Int(heapBefore)), perService(Int(heapAfter) - Int(heapWithoutAgent)),
                     perService(Int(heapStored) - Int(heapBefore)),
                     scrapeSeconds, scrapeTimes.max() ?? 0, scrapeTimes[0], counterTimes.sorted()[scrapes / 2] * 1000, Double(scrapeBytes) / 1e6, scrapeGrowth, (trimTimes.max() ?? 0) * 1000, listRSS, rssMB()))
    }

    /// Splits the lists into objects (timed as "parse") and stores them (timed as "store").
    private static func ingestLists(_ svcBytes: Data, _ epsBytes: Data, n: Int, into agent: Agent) async -> (Double, Double) {
        let services: [RawObject], slices: [RawObject]
        do {
            services = try ListPage.decode(svcBytes, kind: .service).items
            slices = try ListPage.decode(epsBytes, kind: .endpointSlice).items
        } catch {
            fail("the generated lists do not parse: \(error)")
        }
        guard services.count == n, slices.count == n else {
            fail("read \(services.count) services and \(slices.count) slices of \(n)")
        }
        let t1 = now()
        await agent.ingest(.replaceAll(.node, []))
        await agent.ingest(.replaceAll(.service, services))
        await agent.ingest(.replaceAll(.endpointSlice, slices))
        return (t1, now())
    }
}

/// The resident set now (/proc/self/statm), not its peak.
private func currentRSSMB() -> Double {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Double(fields[1]) else { return 0 }
    return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1e6
}
