// The manifest-directory source (`veerd --manifests DIR`): every *.yaml, *.yml and *.json in DIR,
// watched with inotify. Any change re-reads the directory (after a short debounce) and emits a
// replaceAll for each kind whose objects changed, so deleting a file deletes its objects. A file
// that does not parse is reported and its last good objects stay.
#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import Logging
import VeerModel

public final class ManifestSource: @unchecked Sendable {
    public enum StartError: Error, CustomStringConvertible {
        case notADirectory(String)
        case inotify(String, errno: Int32)
        public var description: String {
            switch self {
            case .notADirectory(let path): return "manifest directory \(path) does not exist or is not a directory"
            case .inotify(let step, let e): return "cannot watch the manifest directory: \(step): \(String(cString: strerror(e)))"
            }
        }
    }

    public let directory: String
    /// Changes for the store: replaceAll per changed kind, then `synced` once after the first scan.
    public let events: AsyncStream<SourceEvent>
    /// Parse problems and recoveries (also logged). Keeps the newest 256 if nobody reads them.
    public let diagnostics: AsyncStream<SourceDiagnostic>

    private let eventsOut: AsyncStream<SourceEvent>.Continuation
    private let diagnosticsOut: AsyncStream<SourceDiagnostic>.Continuation
    private let logger: Logger
    private let debounce: DispatchTimeInterval
    private let displayPrefix: String

    // Everything below is touched only on `queue`.
    private let queue = DispatchQueue(label: "veer.manifest-source")
    private var inotifyFD: Int32 = -1
    private var readSource: DispatchSourceRead?
    private var pendingScan: DispatchWorkItem?
    private var burstStart: DispatchTime?
    private struct FileState { var contents: Data; var failed: Bool }
    private var files: [String: FileState] = [:]
    /// Last good objects of each file (kept while the file is broken).
    private var goodObjects: [String: [RawObject]] = [:]
    private var lastEmitted: [ResourceKind: [RawObject]] = [:]
    private var didSync = false
    private var stopped = false

    public init(directory: String, debounce: Duration = .milliseconds(50),
                logger: Logger = Logger(label: "veer.source.manifests")) {
        self.directory = directory
        let ms = Int(debounce.components.seconds * 1000 + debounce.components.attoseconds / 1_000_000_000_000_000)
        self.debounce = .milliseconds(max(ms, 0))
        self.logger = logger
        let dirName = URL(fileURLWithPath: directory).lastPathComponent
        self.displayPrefix = dirName.isEmpty ? "" : dirName + "/"
        (events, eventsOut) = AsyncStream.makeStream(of: SourceEvent.self)
        (diagnostics, diagnosticsOut) = AsyncStream.makeStream(of: SourceDiagnostic.self,
                                                              bufferingPolicy: .bufferingNewest(256))
    }

    deinit {
        readSource?.cancel()  // its cancel handler closes the inotify descriptor
    }

    /// Starts watching, then scans once; the first events are in `events` when this returns.
    public func start() throws {
        guard queue.sync(execute: { readSource == nil && !stopped }) else { return }  // already started, or stopped
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw StartError.notADirectory(directory)
        }
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { throw StartError.inotify("inotify_init1", errno: errno) }
        // Watch the directory, not the files: editors that write a temp file and rename it over
        // the original, `kubectl`-style symlink swaps (ConfigMap volumes) and deletions all show
        // up as directory events.
        let mask = UInt32(IN_CREATE) | UInt32(IN_DELETE) | UInt32(IN_MODIFY) | UInt32(IN_CLOSE_WRITE)
            | UInt32(IN_MOVED_FROM) | UInt32(IN_MOVED_TO) | UInt32(IN_ATTRIB) | UInt32(IN_DELETE_SELF)
            | UInt32(IN_MOVE_SELF)
        guard inotify_add_watch(fd, directory, mask) >= 0 else {
            let e = errno
            close(fd)
            throw StartError.inotify("inotify_add_watch \(directory)", errno: e)
        }
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        source.setEventHandler { [weak self] in self?.drainInotify() }
        source.setCancelHandler { close(fd) }
        queue.sync {
            inotifyFD = fd
            readSource = source
            source.resume()
            scan()
        }
        eventsOut.onTermination = { [weak self] _ in self?.stop() }
    }

    /// Stops watching and finishes both streams.
    public func stop() {
        queue.async { [self] in
            guard !stopped else { return }
            stopped = true
            pendingScan?.cancel()
            readSource?.cancel()
            eventsOut.finish()
            diagnosticsOut.finish()
        }
    }

    /// Re-reads the directory now (for SIGHUP, or when inotify is not to be trusted).
    public func rescan() {
        queue.async { [self] in if !stopped { scan() } }
    }

    // MARK: - inotify

    private func drainInotify() {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var sawSelfGone = false
        while true {
            let n = buffer.withUnsafeMutableBytes { read(inotifyFD, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            // Parse only to notice the directory itself going away; any event means "rescan".
            var offset = 0
            while offset + MemoryLayout<inotify_event>.size <= n {
                let (mask, len) = buffer.withUnsafeBytes { raw -> (UInt32, UInt32) in
                    let ev = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    return (ev.mask, ev.len)
                }
                if mask & (UInt32(IN_DELETE_SELF) | UInt32(IN_MOVE_SELF) | UInt32(IN_IGNORED)) != 0 { sawSelfGone = true }
                offset += MemoryLayout<inotify_event>.size + Int(len)
            }
        }
        if sawSelfGone {
            report(.init(.error, origin: directory,
                         "the manifest directory was removed or moved; its objects stay as they were until veerd restarts"))
            return
        }
        scheduleScan()
    }

    private func scheduleScan() {
        let now = DispatchTime.now()
        if burstStart == nil { burstStart = now }
        pendingScan?.cancel()
        // Debounce, but never postpone a scan by more than ten debounce periods in a long burst.
        var deadline = now + debounce
        if let start = burstStart, case .milliseconds(let ms) = debounce, deadline > start + .milliseconds(10 * ms) {
            deadline = max(now, start + .milliseconds(10 * ms))
        }
        let work = DispatchWorkItem { [weak self] in
            guard let self, !self.stopped else { return }
            self.burstStart = nil
            self.scan()
        }
        pendingScan = work
        queue.asyncAfter(deadline: deadline, execute: work)
    }

    // MARK: - scanning

    private static let extensions: Set<String> = ["yaml", "yml", "json"]

    private func scan() {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
                .filter { !$0.hasPrefix(".") && Self.extensions.contains(($0 as NSString).pathExtension.lowercased()) }
                .sorted()
        } catch {
            report(.init(.error, origin: directory, "cannot list the directory: \(error); keeping the current objects"))
            return
        }
        var seen = Set<String>()
        for name in names {
            let path = (directory as NSString).appendingPathComponent(name)
            guard let data = FileManager.default.contents(atPath: path) else { continue }  // vanished or unreadable
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue { continue }
            seen.insert(name)
            if let old = files[name], old.contents == data { continue }  // unchanged: keep its result
            let display = displayPrefix + name
            let parsed = ManifestParser.parse(data, origin: display)
            if parsed.errors.isEmpty {
                if files[name]?.failed == true {
                    report(.init(.info, origin: display, "parses again; its objects are applied"))
                }
                files[name] = FileState(contents: data, failed: false)
                goodObjects[name] = parsed.objects
            } else {
                // A half-edited file must not delete what it defined: keep its last good objects.
                files[name] = FileState(contents: data, failed: true)
                let kept = goodObjects[name]?.count ?? 0
                for problem in parsed.errors {
                    report(.init(.error, origin: problem.origin,
                                 "\(problem.message) — the file is ignored; its last good objects (\(kept)) stay"))
                }
            }
        }
        for name in files.keys where !seen.contains(name) {
            files[name] = nil
            goodObjects[name] = nil
        }
        emit()
    }

    private func emit() {
        var byKind: [ResourceKind: [String: RawObject]] = [:]
        for name in goodObjects.keys.sorted() {
            for object in goodObjects[name] ?? [] {
                if let previous = byKind[object.kind]?[object.key] {
                    report(.init(.warning, origin: object.origin,
                                 "\(object.kind) \(object.key) is also defined at \(previous.origin); the later file wins"))
                }
                byKind[object.kind, default: [:]][object.key] = object
            }
        }
        for kind in ResourceKind.allCases {
            let objects = (byKind[kind] ?? [:]).values.sorted { $0.key < $1.key }
            if !didSync || lastEmitted[kind] != objects {
                lastEmitted[kind] = objects
                eventsOut.yield(.replaceAll(kind, objects))
            }
        }
        if !didSync {
            didSync = true
            eventsOut.yield(.synced)
        }
    }

    private func report(_ diagnostic: SourceDiagnostic) {
        logger.log(level: diagnostic.logLevel, "\(diagnostic.description)")
        diagnosticsOut.yield(diagnostic)
    }
}
