import Foundation
import Glibc
import VeerDatapath
import VeerModel

/// What a scrape's hit series take from the names and the programmed ids alone, not from the
/// counts: each Service port and its escaped labels in label order, each backend row's endpoint
/// text (its `ip:port` key and its info labels), and the ids' rows. Building it was two fifths
/// of a scrape at 10,000 services, most of a scrape at 50,000; `HitLayoutCache` keeps it from
/// one scrape to the next, and a scrape after a sync patches what the sync changed
/// (`patch(_:names:change:)`) instead of building it again.
struct HitLayout: Sendable {
    /// A Service port: the hit series' identity labels but the endpoint.
    fileprivate struct ServicePort: Hashable, Sendable {
        var namespace: String
        var service: String
        var port: String
        var proto: L4Protocol
    }

    let mode: HitMetrics
    fileprivate var ports: [ServicePort] = []
    /// Each Service port's labels, escaped: `namespace="…",service="…"` then `,port="…",protocol="…"`.
    fileprivate var portLabels = ByteArena()
    /// Where the `namespace` and `service` part of a port's labels ends (the info series' prefix).
    fileprivate var serviceLabelsEnd: [Int32] = []
    /// The Service ports in label order, and each port's place in it.
    fileprivate var order: [Int] = []
    fileprivate var rank: [Int32] = []
    /// By rev_nat id: its Service port (-1: no names) and its frontend's row.
    fileprivate var portOfRevNat = IDIndex(ids: [])
    fileprivate var rowOfRevNat = IDIndex(ids: [])
    fileprivate var frontendAddress: [L4Address] = []
    /// Per backend row (one per backend id; endpoint series only): its endpoint label,
    /// `10.0.0.1:8080` or `[fd00::1]:8080` (the record's key), then the rest of its info line:
    /// `",pod="…",node="…",zone="…"} 1\n`. Two rows of one `ip:port` (two ids, or TCP and UDP)
    /// are one endpoint: their keys are equal.
    fileprivate var endpointText = ByteArena()
    fileprivate var rowOfBackend = IDIndex(ids: [])
    fileprivate var backendAddress: [L4Address] = []
    /// Rows of backend ids deleted since the build (their text removed), reused by new ids.
    private var freeRows: [Int32] = []
    // Not the names themselves: kept, they would hold the agent's tables as they were at this
    // generation while the agent's changes copy them shard by shard.

    /// Resolves each frontend to its Service port and each backend to its endpoint text;
    /// frontends without names have no port (their members are left out, as before).
    init(_ state: ProgrammedIDs, names: ProgrammedNames, mode: HitMetrics) {
        self.mode = mode
        buildPorts(state, names: names)
        buildBackends(state, names: names)
    }

    /// Brings a layout built from earlier ids and names up to these: the Service ports again
    /// where frontends or their names changed, and the rows of the backend ids `change` names
    /// (each rewritten from its entry and names now, removed where the entry is gone). The
    /// result renders as a layout built from `state` and `names` does (HitLayoutTests).
    mutating func patch(_ state: ProgrammedIDs, names: ProgrammedNames, change: HitLayoutChange) {
        if change.ports { buildPorts(state, names: names) }
        guard !change.backendIDs.isEmpty else { return }
        var ids = change.backendIDs
        ids.sort()
        if mode == .endpoint { endpointText.makeRoom(ids.count * 160) }
        var previous: UInt32?
        for id in ids where id != previous {
            previous = id
            let row = rowOfBackend[id]
            guard let address = state.backends[id] else {
                // The entry is gone: its row goes back for a later id.
                if row >= 0 {
                    rowOfBackend[id] = -1
                    freeRows.append(row)
                    if mode == .endpoint { endpointText.remove(Int(row)) }
                }
                continue
            }
            if row >= 0 {
                backendAddress[Int(row)] = address
                if mode == .endpoint { endpointText.reopen(Int(row)) }
            } else if let free = freeRows.popLast() {
                rowOfBackend[id] = free
                backendAddress[Int(free)] = address
                if mode == .endpoint { endpointText.reopen(Int(free)) }
            } else {
                rowOfBackend[id] = Int32(backendAddress.count)
                backendAddress.append(address)
                if mode == .endpoint { endpointText.begin() }
            }
            if mode == .endpoint { writeEndpoint(address, names.backend(id: id, at: address)) }
        }
    }

    /// The Service-port half: each frontend's port, the ports' labels and their order.
    private mutating func buildPorts(_ state: ProgrammedIDs, names: ProgrammedNames) {
        // What an earlier build held goes first: the two are never held at once.
        ports = []
        portLabels = ByteArena()
        serviceLabelsEnd = []
        order = []
        rank = []
        frontendAddress = []
        var portIndex: [ServicePort: Int32] = [:]
        portIndex.reserveCapacity(state.frontends)
        // The frontends by row, walking the table once; their rows by id.
        let (frontendIDs, frontendAddress) = state.revNat.columns
        portOfRevNat = IDIndex(ids: frontendIDs)
        rowOfRevNat = IDIndex(ids: frontendIDs)
        for (row, id) in frontendIDs.enumerated() {
            rowOfRevNat[id] = Int32(row)
            let address = frontendAddress[row]
            guard let f = names.frontend(address) else { continue }
            let key = ServicePort(namespace: f.namespace, service: f.service, port: f.port, proto: address.proto)
            if let index = portIndex[key] {
                portOfRevNat[id] = index
            } else {
                let index = Int32(ports.count)
                portIndex[key] = index
                portOfRevNat[id] = index
                ports.append(key)
            }
        }
        self.frontendAddress = frontendAddress
        for p in ports {
            portLabels.begin()
            portLabels.append("\(HitSeries.hit[0])=\"")
            portLabels.appendEscaped(p.namespace)
            portLabels.append("\",\(HitSeries.hit[1])=\"")
            portLabels.appendEscaped(p.service)
            serviceLabelsEnd.append(Int32(portLabels.bytes.count))
            portLabels.append("\",\(HitSeries.hit[2])=\"")
            portLabels.appendEscaped(p.port)
            portLabels.append("\",\(HitSeries.hit[3])=\"")
            portLabels.append(p.proto.kubernetesName)
            portLabels.append("\"")
            portLabels.end()
        }
        // The Service ports in label order.
        let ports = ports
        order = ports.indices.sorted { a, b in
            let x = ports[a], y = ports[b]
            if x.namespace != y.namespace { return x.namespace < y.namespace }
            if x.service != y.service { return x.service < y.service }
            if x.port != y.port { return x.port < y.port }
            return x.proto.kubernetesName < y.proto.kubernetesName
        }
        rank = [Int32](repeating: 0, count: ports.count)
        for (r, p) in order.enumerated() { rank[p] = Int32(r) }
    }

    /// The backend half: every backend once, walking the table (not a lookup per member).
    private mutating func buildBackends(_ state: ProgrammedIDs, names: ProgrammedNames) {
        let (backendIDs, addresses) = state.backends.columns
        rowOfBackend = IDIndex(ids: backendIDs)
        if mode == .endpoint { endpointText.reserve(strings: addresses.count, bytes: addresses.count * 96) }
        for (row, id) in backendIDs.enumerated() {
            rowOfBackend[id] = Int32(row)
            if mode == .endpoint {
                endpointText.begin()
                writeEndpoint(addresses[row], names.backend(id: id, at: addresses[row]))
            }
        }
        backendAddress = addresses
        if mode == .endpoint { endpointText.sealKeys() }
    }

    /// A backend row's text, after `begin()` or `reopen(_:)`: its key, then its info labels.
    private mutating func writeEndpoint(_ address: L4Address, _ n: ProgrammedNames.Backend?) {
        endpointText.appendHostPort(address)
        endpointText.endKey()
        endpointText.append(HitSeries.infoLabels[1])
        if let pod = n?.podName { endpointText.appendEscaped(pod) }
        endpointText.append(HitSeries.infoLabels[2])
        endpointText.appendEscaped(n?.node ?? "")
        endpointText.append(HitSeries.infoLabels[3])
        endpointText.appendEscaped(n?.zone ?? "")
        endpointText.append(HitSeries.infoEnd)
        endpointText.end()
    }
}

/// The hit series of one scrape (`veer_endpoint_hits_total` and `veer_endpoint_info`, or
/// `veer_service_hits_total`), built from the kernel's per-member counts and the agent's copy of
/// what it wrote to the maps (`HitLayout`).
///
/// At 100,000 endpoints this is 200,000 samples, so nothing here works per sample with strings:
/// members are grouped by integer ids (rev_nat id → Service port, backend id → endpoint), each
/// Service port's labels are escaped once into a fragment, each endpoint's text (with its info
/// labels) is written once, and the order is a sort of the Service ports plus a sort of each
/// port's few endpoints, by the same label order a sort of the whole label lists would give.
///
/// At 500,000 endpoints its time is memory latency: every access by backend row is a cache
/// miss. So the members are copied once into output order with their endpoint's sort key
/// inline (`Item`), and each row's text is one record: its `ip:port`, then its info labels.
struct HitSeries {
    /// Each family's labels, in the order written: the label text below is built from these
    /// (and DeployTests checks them against docs/operations.md). The hit families share their
    /// first four, the info series its first two.
    static let labels: [String: [String]] = [
        "veer_endpoint_hits_total": ["namespace", "service", "port", "protocol", "endpoint"],
        "veer_endpoint_info": ["namespace", "service", "endpoint", "pod", "node", "zone"],
        "veer_service_hits_total": ["namespace", "service", "port", "protocol"],
    ]
    fileprivate static let hit = labels["veer_endpoint_hits_total"]!, info = labels["veer_endpoint_info"]!
    /// `,endpoint="`, `",endpoint="`, `",pod="`…: what goes between label values.
    private static let endpointHitLabel = Array(",\(hit[4])=\"".utf8)
    fileprivate static let infoLabels = (2..<6).map { Array("\",\(info[$0])=\"".utf8) }

    /// One counted member: its Service port's rank (label order), its backend's row and its count.
    private struct Entry {
        var rank: Int32
        var backend: Int32
        var count: UInt64
    }

    private let layout: HitLayout
    private var entries: [Entry] = []

    /// Resolves each member to its Service port and endpoint; members whose frontend has no
    /// names or whose ids the agent did not write are left out, as before.
    init(_ layout: HitLayout, hits: MemberHits) {
        self.layout = layout
        // A retired count goes to the first member of its address pair, as before; looked up,
        // not removed from a copy of the whole dictionary.
        let retired = hits.retired
        var retiredUsed: Set<FrontendBackend> = []
        entries.reserveCapacity(hits.members.count)
        for (member, count) in zip(hits.members, hits.counts) {
            let port = layout.portOfRevNat[member.revNatID], row = layout.rowOfBackend[member.backendID]
            guard port >= 0, row >= 0 else { continue }
            var total = count
            if !retired.isEmpty, case let f = layout.rowOfRevNat[member.revNatID], f >= 0,
               case let pair = FrontendBackend(frontend: layout.frontendAddress[Int(f)], backend: layout.backendAddress[Int(row)]),
               let earlier = retired[pair], retiredUsed.insert(pair).inserted {
                total &+= earlier
            }
            entries.append(Entry(rank: layout.rank[Int(port)], backend: row, count: total))
        }
    }

    /// Roughly what the series will take, to size the buffer once.
    var estimatedBytes: Int {
        (layout.mode == .endpoint ? entries.count * 300 : layout.ports.count * 160) + 4096
    }

    /// Writes the series. A streamed `out` hands its text on in chunks (`flushIfFull`) between
    /// ports, and stops early once its receiver is gone.
    func write(into out: inout PrometheusText) {
        let portCount = layout.ports.count
        switch layout.mode {
        case .endpoint:
            // The members of each port, a counting sort by the port's rank in label order.
            var start = [Int32](repeating: 0, count: portCount + 1)
            for e in entries { start[Int(e.rank) + 1] += 1 }
            for r in 0..<portCount { start[r + 1] += start[r] }
            // The members in port order, each with its endpoint's sort key: every later pass
            // reads them in order (the one random read of an entry and of a key is here).
            var next = start
            var items = [Item](unsafeUninitializedCapacity: entries.count) { buf, count in
                layout.endpointText.withKeys { keys in
                    for e in entries {
                        let r = Int(e.rank)
                        buf.baseAddress!.advanced(by: Int(next[r])).initialize(to: Item(key: keys[Int(e.backend)], row: e.backend, count: e.count))
                        next[r] += 1
                    }
                }
                count = entries.count
            }
            // Each port's few members in endpoint order (as the info series want too).
            for r in 0..<portCount where start[r + 1] - start[r] > 1 {
                sortItems(&items, Int(start[r])..<Int(start[r + 1]))
            }
            writeHits(into: &out, start: start, items: items)
            writeInfo(into: &out, start: start, items: items)
        case .service:
            // One series per Service port: for clusters where one per endpoint is too many.
            var totals = [UInt64](repeating: 0, count: portCount)
            var counted = [Bool](repeating: false, count: portCount)
            for e in entries {
                totals[Int(e.rank)] &+= e.count
                counted[Int(e.rank)] = true
            }
            out.family("veer_service_hits_total", .counter,
                       help: "Connections (TCP, connected UDP) and datagrams (unconnected UDP) the kernel sent to each Service port's endpoints.")
            for r in 0..<portCount where counted[r] {
                out.append("veer_service_hits_total{")
                out.append(layout.portLabels[layout.order[r]])
                out.append("} ")
                out.append(totals[r])
                out.append(byte: UInt8(ascii: "\n"))
                out.flushIfFull()
                if out.isAbandoned { return }
            }
        }
    }

    /// `veer_endpoint_hits_total`: one series per Service port and endpoint, summed over the
    /// frontends (ClusterIP, NodePort…) and the backend rows that share it.
    private func writeHits(into out: inout PrometheusText, start: [Int32], items: [Item]) {
        out.family("veer_endpoint_hits_total", .counter,
                   help: "Connections (TCP, connected UDP) and datagrams (unconnected UDP) the kernel sent to each endpoint.")
        // Each port's lines written through a raw pointer into room reserved for them: one
        // Array.append per fragment (a uniqueness and a capacity check, a memmove call) was
        // most of this loop's time at 500,000 endpoints.
        // Each port's line prefix (`veer_endpoint_hits_total{…,endpoint="`) is put together once.
        var linePrefix: [UInt8] = []
        let fixed = "\"} ".utf8.count + 20 + 1
        let order = layout.order
        layout.endpointText.withView { texts in
            layout.portLabels.withView { labels in
                items.withUnsafeBufferPointer { items in
                    for r in 0..<layout.ports.count where start[r] < start[r + 1] {
                        if out.isAbandoned { return }
                        var i = Int(start[r])
                        let end = Int(start[r + 1])
                        linePrefix.removeAll(keepingCapacity: true)
                        linePrefix.append(contentsOf: "veer_endpoint_hits_total{".utf8)
                        linePrefix.append(contentsOf: labels[Int32(order[r])])
                        linePrefix.append(contentsOf: Self.endpointHitLabel)
                        linePrefix.withUnsafeBufferPointer { prefix in
                            out.appendRaw(capacity: (end - i) * (fixed + prefix.count + texts.maxKeyLength)) { w in
                                while i < end {
                                    let first = items[i]
                                    var total = first.count
                                    i += 1
                                    while i < end, compare(items[i], first) == 0 {
                                        total &+= items[i].count
                                        i += 1
                                    }
                                    w.put(prefix)
                                    w.put(texts.key(first.row))
                                    w.put("\"} ")
                                    w.put(total)
                                    w.put(byte: UInt8(ascii: "\n"))
                                }
                            }
                        }
                        out.flushIfFull()
                    }
                }
            }
        }
    }

    /// `veer_endpoint_info`: one series per Service and endpoint (with its pod, node and zone),
    /// in the order of its labels. `items` holds each port's members in endpoint order.
    private func writeInfo(into out: inout PrometheusText, start: [Int32], items: [Item]) {
        out.family("veer_endpoint_info", .gauge,
                   help: "1 for each endpoint a service uses on this node, with its pod, node and zone: join it to veer_endpoint_hits_total.")
        var merged: [Item] = []
        // Each Service's line prefix (`veer_endpoint_info{namespace="…",service="…",endpoint="`)
        // is put together once.
        var linePrefix: [UInt8] = []
        let ports = layout.ports, order = layout.order
        layout.endpointText.withView { texts in
            layout.portLabels.withView { labels in
                var r = 0
                while r < ports.count, !out.isAbandoned {
                    // The ports of one Service are consecutive in label order.
                    let first = ports[order[r]]
                    var end = r + 1
                    while end < ports.count, ports[order[end]].namespace == first.namespace,
                          ports[order[end]].service == first.service { end += 1 }
                    let from = Int(start[r]), to = Int(start[end])
                    linePrefix.removeAll(keepingCapacity: true)
                    linePrefix.append(contentsOf: "veer_endpoint_info{".utf8)
                    linePrefix.append(contentsOf: labels.prefix(Int32(order[r]), upTo: Int(layout.serviceLabelsEnd[order[r]])))
                    linePrefix.append(contentsOf: Self.infoLabels[0])
                    let onePort = end == r + 1
                    r = end
                    guard from < to else { continue }
                    // One port's members are in endpoint order already; several ports' are
                    // merged by a sort.
                    if !onePort {
                        merged.removeAll(keepingCapacity: true)
                        merged.append(contentsOf: items[from..<to])
                        sortItems(&merged, 0..<merged.count)
                    }
                    linePrefix.withUnsafeBufferPointer { prefix in
                        if onePort {
                            items.withUnsafeBufferPointer {
                                writeInfoLines(into: &out, UnsafeBufferPointer(rebasing: $0[from..<to]), prefix: prefix, texts: texts)
                            }
                        } else {
                            merged.withUnsafeBufferPointer { writeInfoLines(into: &out, $0, prefix: prefix, texts: texts) }
                        }
                    }
                    out.flushIfFull()
                }
            }
        }
    }

    /// One Service's info lines: `rows` are its members in endpoint order.
    private func writeInfoLines(into out: inout PrometheusText, _ rows: UnsafeBufferPointer<Item>,
                                prefix: UnsafeBufferPointer<UInt8>, texts: ByteArena.View) {
        let lineRoom = prefix.count + texts.maxLength
        out.appendRaw(capacity: rows.count * lineRoom) { w in
            // A run of rows with one endpoint (rare: two ids, or TCP and UDP, of one ip:port) is
            // ordered by pod, node and zone, and written once per distinct set of them.
            var i = 0
            while i < rows.count {
                var j = i + 1
                while j < rows.count, compare(rows[i], rows[j]) == 0 { j += 1 }
                if j - i == 1 {
                    w.put(prefix); w.put(texts[rows[i].row])
                } else {
                    // By their records' info labels as written: `",pod="…",node="…",zone="…"`
                    // orders as (pod, node, zone) for every name Kubernetes allows (DNS names and
                    // label values: no byte below the closing quote's).
                    let run = rows[i..<j].map(\.row).sorted { texts.compareTails($0, $1) < 0 }
                    for k in run.indices where k == 0 || texts.compareTails(run[k - 1], run[k]) != 0 {
                        w.put(prefix); w.put(texts[run[k]])
                    }
                }
                i = j
            }
        }
    }

    /// Orders two members by their endpoint text: three integer comparisons for a short one
    /// (every IPv4 `ip:port`), the arena's bytes past that.
    @inline(__always)
    private func compare(_ a: Item, _ b: Item) -> Int32 {
        let x = a.key, y = b.key
        if (x.2 | y.2) & 0xFF == 0 {
            if x.0 != y.0 { return x.0 < y.0 ? -1 : 1 }
            if x.1 != y.1 { return x.1 < y.1 ? -1 : 1 }
            return x.2 == y.2 ? 0 : x.2 < y.2 ? -1 : 1
        }
        return layout.endpointText.compareKeys(a.row, b.row)
    }

    /// Sorts a range of members by endpoint: insertion sort for a port's few (the common case),
    /// the standard sort past that.
    private func sortItems(_ a: inout [Item], _ range: Range<Int>) {
        if range.count > 16 {
            a[range].sort { compare($0, $1) < 0 }
            return
        }
        a.withUnsafeMutableBufferPointer { buf in
            for i in (range.lowerBound + 1)..<range.upperBound {
                let x = buf[i]
                var j = i
                while j > range.lowerBound, compare(x, buf[j - 1]) < 0 {
                    buf[j] = buf[j - 1]
                    j -= 1
                }
                buf[j] = x
            }
        }
    }

    /// `",pod="` and what follows the zone: the info labels each backend row's record holds.
    fileprivate static let infoEnd = Array("\"} 1\n".utf8)
}

/// A member in output order: its endpoint's sort key (`ByteArena.sealKeys`), row and count.
private struct Item {
    var key: (UInt64, UInt64, UInt64)
    var row: Int32
    var count: UInt64
}

/// Byte strings in one buffer: fragments of label text without an allocation each.
/// A string may have a key (`endKey()`): its start, by which strings are ordered.
/// A string can be rewritten (`reopen(_:)`: its new bytes go at the end) or removed; the bytes
/// no string uses any more are reclaimed in place once they are a sixteenth of the buffer.
private struct ByteArena: Sendable {
    private(set) var bytes: [UInt8] = []
    private var starts: [Int32] = []
    private var ends: [Int32] = []
    /// Where each string's key ends, where `endKey()` was called (else its end).
    private var keyEnds: [Int32] = []
    /// The string `endKey()` and `end()` close: the last one, or the one `reopen(_:)` rewrites.
    private var open: Int?
    /// Bytes of rewritten and removed strings: no string's any more.
    private var unused = 0

    mutating func reserve(strings: Int, bytes count: Int) {
        starts.reserveCapacity(strings)
        ends.reserveCapacity(strings)
        keyEnds.reserveCapacity(strings)
        bytes.reserveCapacity(count)
    }

    /// Starts the next string.
    mutating func begin() {
        open = starts.count
        starts.append(Int32(bytes.count))
        ends.append(Int32(bytes.count))
        if sealed { keys.append((0, 0, 0)) }
    }

    /// Starts string `i` again: what follows until `end()` is its new text.
    mutating func reopen(_ i: Int) {
        unused += Int(ends[i] - starts[i])
        open = i
        starts[i] = Int32(bytes.count)
    }

    /// Removes string `i`'s text (it is empty until reopened).
    mutating func remove(_ i: Int) {
        unused += Int(ends[i] - starts[i])
        starts[i] = 0
        ends[i] = 0
        if !keyEnds.isEmpty { keyEnds[i] = 0 }
        if sealed { keys[i] = (0, 0, 0) }
    }

    /// Ends the current string's key.
    mutating func endKey() {
        let i = open!
        if i < keyEnds.count { keyEnds[i] = Int32(bytes.count) } else { keyEnds.append(Int32(bytes.count)) }
    }

    /// Ends the current string.
    mutating func end() {
        let i = open!
        ends[i] = Int32(bytes.count)
        if sealed { sealKey(i) }
        open = nil
    }

    /// Room for `count` more bytes without growing the buffer, reclaiming the unused first where
    /// they are many: a patch then writes into the buffer it has, not a copy of twice its size.
    mutating func makeRoom(_ count: Int) {
        if unused > 0, unused >= bytes.count / 16 || bytes.capacity - bytes.count < count { compact() }
        if bytes.capacity - bytes.count < count { bytes.reserveCapacity(bytes.count + count + bytes.count / 16) }
    }

    /// Moves every string down over the unused bytes, in place, in the order of their starts.
    private mutating func compact() {
        let live = starts.indices.filter { ends[$0] > starts[$0] }.sorted { starts[$0] < starts[$1] }
        var to = 0
        // Taken out while it is moved (the offsets change beside it), not copied.
        var buffer = bytes
        bytes = []
        buffer.withUnsafeMutableBufferPointer { buf in
            for i in live {
                let from = Int(starts[i]), length = Int(ends[i] - starts[i])
                if from != to { memmove(buf.baseAddress! + to, buf.baseAddress! + from, length) }
                let shift = Int32(to - from)
                starts[i] += shift
                ends[i] += shift
                if !keyEnds.isEmpty { keyEnds[i] += shift }
                to += length
            }
        }
        buffer.removeLast(buffer.count - to)
        bytes = buffer
        unused = 0
    }

    mutating func append(_ s: String) {
        var s = s
        s.withUTF8 { bytes.append(contentsOf: $0) }
    }

    mutating func append(_ b: [UInt8]) { bytes.append(contentsOf: b) }

    mutating func appendEscaped(_ s: String) { PrometheusText.appendEscaped(s, to: &bytes) }
    /// A pod's name, escaped, from its two parts (no String made).
    mutating func appendEscaped(_ name: PodName) {
        name.withUTF8Parts { head, tail in
            PrometheusText.escape(head, whole: { bytes.append(contentsOf: $0) }, byte: { bytes.append($0) })
            PrometheusText.escape(tail, whole: { bytes.append(contentsOf: $0) }, byte: { bytes.append($0) })
        }
    }

    /// `10.0.0.1:8080`, `[fd00::1]:8080`: `L4Address.hostPort`, digits written directly for IPv4.
    mutating func appendHostPort(_ a: L4Address) {
        if let v4 = a.ip.ipv4 {
            appendDecimal(UInt(v4 >> 24)); bytes.append(UInt8(ascii: "."))
            appendDecimal(UInt(v4 >> 16 & 0xFF)); bytes.append(UInt8(ascii: "."))
            appendDecimal(UInt(v4 >> 8 & 0xFF)); bytes.append(UInt8(ascii: "."))
            appendDecimal(UInt(v4 & 0xFF))
            bytes.append(UInt8(ascii: ":"))
            appendDecimal(UInt(a.port))
        } else {
            append(a.hostPort)
        }
    }

    private mutating func appendDecimal(_ n: UInt) {
        if n >= 10 { appendDecimal(n / 10) }
        bytes.append(UInt8(ascii: "0") + UInt8(n % 10))
    }

    private func keyEnd(_ i: Int) -> Int { keyEnds.isEmpty ? Int(ends[i]) : Int(keyEnds[i]) }

    subscript(i: Int) -> ArraySlice<UInt8> { bytes[Int(starts[i])..<Int(ends[i])] }

    /// The strings as buffers, valid inside `body` only.
    struct View {
        let bytes: UnsafeBufferPointer<UInt8>
        let starts: UnsafeBufferPointer<Int32>
        let ends: UnsafeBufferPointer<Int32>
        let keyEnds: UnsafeBufferPointer<Int32>
        /// The longest string's and the longest key's length (`sealKeys()`; 0 before), or more
        /// (a string rewritten shorter leaves them as they were).
        let maxLength: Int
        let maxKeyLength: Int

        /// String `i`, whole.
        @inline(__always)
        subscript(i: Int32) -> UnsafeBufferPointer<UInt8> {
            UnsafeBufferPointer(rebasing: bytes[Int(starts[Int(i)])..<Int(ends[Int(i)])])
        }

        /// String `i`'s key.
        @inline(__always)
        func key(_ i: Int32) -> UnsafeBufferPointer<UInt8> {
            UnsafeBufferPointer(rebasing: bytes[Int(starts[Int(i)])..<Int(keyEnds[Int(i)])])
        }

        /// Orders what follows the keys of strings `i` and `j` as bytes: <0, 0, >0.
        func compareTails(_ i: Int32, _ j: Int32) -> Int32 {
            let a = UnsafeBufferPointer(rebasing: bytes[Int(keyEnds[Int(i)])..<Int(ends[Int(i)])])
            let b = UnsafeBufferPointer(rebasing: bytes[Int(keyEnds[Int(j)])..<Int(ends[Int(j)])])
            let c = memcmp(a.baseAddress!, b.baseAddress!, min(a.count, b.count))
            return c != 0 ? c : Int32(a.count) - Int32(b.count)
        }

        /// The start of string `i`, up to `end` (an offset into the arena).
        func prefix(_ i: Int32, upTo end: Int) -> UnsafeBufferPointer<UInt8> {
            UnsafeBufferPointer(rebasing: bytes[Int(starts[Int(i)])..<end])
        }
    }

    func withView<R>(_ body: (View) throws -> R) rethrows -> R {
        try bytes.withUnsafeBufferPointer { b in
            try starts.withUnsafeBufferPointer { s in
                try ends.withUnsafeBufferPointer { e in
                    try keyEnds.withUnsafeBufferPointer { k in
                        try body(View(bytes: b, starts: s, ends: e, keyEnds: k, maxLength: maxLength, maxKeyLength: maxKeyLength))
                    }
                }
            }
        }
    }

    /// Each key's first 23 bytes, big-endian in three words, zero-padded, the last word's low
    /// byte 1 where the key is longer (`sealKeys()`): two short keys (every IPv4 `ip:port`)
    /// are ordered by three integer comparisons instead of a memcmp call, which was a tenth of
    /// a scrape at 50,000 services. Zero padding orders a prefix first, as memcmp and then the
    /// length do.
    private var keys: [(UInt64, UInt64, UInt64)] = []
    private var maxLength = 0, maxKeyLength = 0
    /// `sealKeys()` was called: strings written since get their key as they end.
    private var sealed = false

    /// Computes `keys` once every string is in.
    mutating func sealKeys() {
        keys = [(UInt64, UInt64, UInt64)](repeating: (0, 0, 0), count: starts.count)
        sealed = true
        for i in starts.indices { sealKey(i) }
    }

    private mutating func sealKey(_ i: Int) {
        let s = Int(starts[i]), e = keyEnd(i)
        var w: (UInt64, UInt64, UInt64) = (0, 0, 0)
        bytes.withUnsafeBufferPointer { buf in
            for k in 0..<min(e - s, 23) {
                let v = UInt64(buf[s + k]) << UInt64(56 - 8 * (k & 7))
                switch k >> 3 {
                case 0: w.0 |= v
                case 1: w.1 |= v
                default: w.2 |= v
                }
            }
        }
        if e - s > 23 { w.2 |= 1 }
        maxKeyLength = max(maxKeyLength, e - s)
        maxLength = max(maxLength, Int(ends[i]) - s)
        keys[i] = w
    }

    func withKeys<R>(_ body: (UnsafeBufferPointer<(UInt64, UInt64, UInt64)>) -> R) -> R {
        keys.withUnsafeBufferPointer(body)
    }

    /// Orders the keys of strings `i` and `j` as bytes (the order of String's `<` for ASCII):
    /// <0, 0, >0.
    func compareKeys(_ i: Int32, _ j: Int32) -> Int32 {
        let a = Int(starts[Int(i)]), b = Int(starts[Int(j)])
        let aEnd = keyEnd(Int(i)), bEnd = keyEnd(Int(j))
        let c = bytes.withUnsafeBufferPointer { memcmp($0.baseAddress! + a, $0.baseAddress! + b, min(aEnd - a, bEnd - b)) }
        return c != 0 ? c : Int32(aEnd - a) - Int32(bEnd - b)
    }
}

/// Int32 values (-1: none) by a map's ids: a flat array where the ids are dense, as the
/// planner hands them out (the lowest free), a dictionary where they are not. A patch's new
/// ids past the array grow it while they stay dense.
private struct IDIndex: Sendable {
    private var flat: [Int32] = []
    private var sparse: [UInt32: Int32]?

    init(ids: some Collection<UInt32>) {
        let maxID = ids.max() ?? 0
        if Int(maxID) <= 4 * ids.count + 65_536 {
            flat = [Int32](repeating: -1, count: Int(maxID) + 1)
        } else {
            sparse = [:]
        }
    }

    subscript(id: UInt32) -> Int32 {
        get {
            if sparse != nil { return sparse![id] ?? -1 }
            return Int(id) < flat.count ? flat[Int(id)] : -1
        }
        set {
            if sparse != nil {
                sparse![id] = newValue < 0 ? nil : newValue
            } else if Int(id) < flat.count {
                flat[Int(id)] = newValue
            } else if newValue >= 0 {
                if Int(id) <= 2 * flat.count + 65_536 {
                    flat.append(contentsOf: repeatElement(-1, count: Int(id) + 1 - flat.count))
                    flat[Int(id)] = newValue
                } else {
                    var all: [UInt32: Int32] = [:]
                    for (i, v) in flat.enumerated() where v >= 0 { all[UInt32(i)] = v }
                    all[id] = newValue
                    sparse = all
                    flat = []
                }
            }
        }
    }
}
