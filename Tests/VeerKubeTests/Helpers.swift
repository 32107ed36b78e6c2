import Foundation
import Testing
import VeerModel
import VeerTestSupport
@testable import VeerKube

/// Applies SourceEvents the way the store will: the state a source leads to.
final class EventRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var _events: [SourceEvent] = []
    private var _batches: [[SourceEvent]] = []
    private var _state: [ResourceKind: [String: RawObject]] = [:]
    private var _diagnostics: [SourceDiagnostic] = []
    private var tasks: [Task<Void, Never>] = []

    init(events: AsyncStream<SourceEvent>, diagnostics: AsyncStream<SourceDiagnostic>? = nil) {
        tasks.append(Task { [self] in
            for await event in events { record(event) }
        })
        if let diagnostics {
            tasks.append(Task { [self] in
                for await d in diagnostics { lock.withLock { _diagnostics.append(d) } }
            })
        }
    }

    deinit { tasks.forEach { $0.cancel() } }

    private func record(_ event: SourceEvent) {
        // A batch is recorded as the events it carries, in order.
        if case let .batch(events) = event {
            lock.withLock { _batches.append(events) }
            return events.forEach(record)
        }
        lock.withLock {
            _events.append(event)
            switch event {
            case .apply(let o): _state[o.kind, default: [:]][o.key] = o
            case .delete(let kind, let ns, let name): _state[kind]?[ns.isEmpty ? name : "\(ns)/\(name)"] = nil
            case .replaceAll(let kind, let objects):
                _state[kind] = Dictionary(objects.map { ($0.key, $0) }, uniquingKeysWith: { $1 })
            case .synced, .batch: break
            }
        }
    }

    var events: [SourceEvent] { lock.withLock { _events } }
    /// The batches received, each as the events it carried.
    var batches: [[SourceEvent]] { lock.withLock { _batches } }
    var diagnostics: [SourceDiagnostic] { lock.withLock { _diagnostics } }
    func keys(_ kind: ResourceKind) -> [String] { lock.withLock { (_state[kind] ?? [:]).keys.sorted() } }
    func object(_ kind: ResourceKind, _ key: String) -> RawObject? { lock.withLock { _state[kind]?[key] } }
    func json(_ kind: ResourceKind, _ key: String) -> [String: Any]? {
        guard let o = object(kind, key) else { return nil }
        return (try? JSONSerialization.jsonObject(with: o.json)) as? [String: Any]
    }
    /// The object as the store decodes it: list items arrive decoded already (no JSON kept),
    /// watch events and manifests as their bytes.
    func decoded(_ kind: ResourceKind, _ key: String) -> KubeObject? {
        object(kind, key).flatMap { KubeDecoder.decode($0).object }
    }
    func service(_ key: String) -> Service? {
        if case let .service(s)? = decoded(.service, key) { return s }
        return nil
    }
    func node(_ name: String) -> Node? {
        if case let .node(n)? = decoded(.node, name) { return n }
        return nil
    }
    var syncedCount: Int { events.filter { $0 == .synced }.count }
    func clearEvents() { lock.withLock { _events.removeAll() } }

    /// Polls `condition` until it holds or `timeout` passes; records a failure naming `what` on timeout.
    @discardableResult
    func wait(_ what: String, timeout: Duration = .seconds(20), sourceLocation: SourceLocation = #_sourceLocation,
              _ condition: () -> Bool) async -> Bool {
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        if (try? await waitFor(what, timeout: seconds, every: .milliseconds(10), { condition() })) != nil { return true }
        FileHandle.standardError.write(Data("TIMEOUT \(what): \(events.map(describe)) \(diagnostics)\n".utf8))
        Issue.record("timed out waiting for: \(what); events: \(events.map(describe))", sourceLocation: sourceLocation)
        return false
    }
}

func describe(_ e: SourceEvent) -> String {
    switch e {
    case .apply(let o): return "apply(\(o.kind) \(o.key) rv=\(o.resourceVersion ?? "-"))"
    case .delete(let k, let ns, let n): return "delete(\(k) \(ns)/\(n))"
    case .replaceAll(let k, let os): return "replaceAll(\(k): \(os.map(\.key)))"
    case .synced: return "synced"
    case .batch(let es): return "batch(\(es.map(describe)))"
    }
}

func dig(_ json: [String: Any]?, _ path: String...) -> Any? {
    var current: Any? = json
    for p in path {
        if let i = Int(p), let a = current as? [Any] { current = i < a.count ? a[i] : nil }
        else { current = (current as? [String: Any])?[p] }
    }
    return current
}

/// A fresh temporary directory, removed by `cleanup()`.
struct TempDir {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "veer-kube-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: file(name), atomically: false, encoding: .utf8)
    }
    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}
