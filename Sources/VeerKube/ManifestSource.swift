// The manifest-directory source (`veerd --manifests DIR`): every *.yaml, *.yml and *.json in DIR,
// watched with inotify. Any change re-reads the directory (after a short debounce) and emits, as one
// batch, a replaceAll for each kind whose objects changed, so deleting a file deletes its objects. A file
// that does not parse is reported and its last good objects stay.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import VeerModel

/// A swift-service-lifecycle `Service`: `start()` opens the watch and scans once; `run()` reads
/// inotify through NIO and rescans in a child task until cancelled or graceful shutdown.
public final class ManifestSource: ServiceLifecycle.Service, @unchecked Sendable {
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
    /// Changes for the store, one batch per scan: replaceAll per changed kind, then `synced` once after the first.
    public let events: AsyncStream<SourceEvent>
    /// Parse problems and recoveries (also logged). Keeps the newest 256 if nobody reads them.
    public let diagnostics: AsyncStream<SourceDiagnostic>

    private let eventsOut: AsyncStream<SourceEvent>.Continuation
    private let diagnosticsOut: AsyncStream<SourceDiagnostic>.Continuation
    private let logger: Logger
    private let debounce: Duration
    private let displayPrefix: String

    /// What the inotify reader tells the scanner; the scanner waits on `wake`.
    private struct Pending {
        var inotifyFD: Int32 = -1
        var running = false
        /// A change was seen and not yet scanned: when the burst began and when it last moved.
        var burstStart: ContinuousClock.Instant?
        var lastChange: ContinuousClock.Instant?
        var rescanNow = false
    }
    private let pending = Locked(Pending())
    private let wake: AsyncStream<Void>
    private let wakeOut: AsyncStream<Void>.Continuation

    // The scan state below is touched by `start()`, then only by `run()`'s scanner task.
    private struct FileState { var contents: Data; var failed: Bool }
    private var files: [String: FileState] = [:]
    /// Last good objects of each file (kept while the file is broken).
    private var goodObjects: [String: [RawObject]] = [:]
    private var lastEmitted: [ResourceKind: [RawObject]] = [:]
    private var didSync = false

    public init(directory: String, debounce: Duration = .milliseconds(50),
                logger: Logger = Logger(label: "veer.source.manifests")) {
        self.directory = directory
        self.debounce = max(debounce, .zero)
        self.logger = logger
        let dirName = URL(fileURLWithPath: directory).lastPathComponent
        self.displayPrefix = dirName.isEmpty ? "" : dirName + "/"
        (events, eventsOut) = AsyncStream.makeStream(of: SourceEvent.self)
        (diagnostics, diagnosticsOut) = AsyncStream.makeStream(of: SourceDiagnostic.self,
                                                              bufferingPolicy: .bufferingNewest(256))
        (wake, wakeOut) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    deinit {
        // Opened by start() but never handed to run() (which gives it to NIO to close).
        let fd = pending.withLock { $0.inotifyFD }
        if fd >= 0 { close(fd) }
    }

    /// Starts watching, then scans once; the first events are in `events` when this returns.
    /// `run()` calls it if it was not called before.
    public func start() throws {
        guard pending.withLock({ $0.inotifyFD < 0 && !$0.running }) else { return }  // already started
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
        pending.withLock { $0.inotifyFD = fd }
        scan()
    }

    /// Watches until cancelled or graceful shutdown, then finishes both streams. A source runs once.
    public func run() async throws {
        try start()
        let fd = pending.withLock { p -> Int32 in
            guard !p.running else { return -1 }
            p.running = true
            defer { p.inotifyFD = -1 }  // NIO owns it from here
            return p.inotifyFD
        }
        guard fd >= 0 else { return }
        defer {
            eventsOut.finish()
            diagnosticsOut.finish()
        }
        // The inotify descriptor is read as a NIO pipe channel: readable events arrive on the
        // event loop, with no thread of ours blocked in read(2). One read takes whole events.
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await NIOPipeBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 64 * 1024))
                .takingOwnershipOfDescriptor(input: fd) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            close(fd)  // still ours when the bootstrap fails
            throw error
        }
        try await channel.executeThenClose { inbound, _ in
            await cancelWhenGracefulShutdown {
                await withDiscardingTaskGroup { group in
                    group.addTask { await self.readInotify(inbound) }
                    group.addTask { await self.scanOnChange() }
                }
            }
        }
    }

    /// Re-reads the directory now (for SIGHUP, or when inotify is not to be trusted).
    public func rescan() {
        pending.withLock { $0.rescanNow = true }
        wakeOut.yield()
    }

    // MARK: - inotify

    private func readInotify(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>) async {
        do {
            for try await chunk in inbound {
                if Self.directoryGone(chunk) {
                    report(.init(.error, origin: directory,
                                 "the manifest directory was removed or moved; its objects stay as they were until veerd restarts"))
                    continue
                }
                let now = ContinuousClock.now
                pending.withLock { p in
                    if p.burstStart == nil { p.burstStart = now }
                    p.lastChange = now
                }
                wakeOut.yield()
            }
        } catch {
            if !Task.isCancelled { report(.init(.error, origin: directory, "reading inotify failed: \(error); changes are no longer seen")) }
        }
    }

    /// Parses the events only to notice the directory itself going away; any other event means "rescan".
    private static func directoryGone(_ buffer: ByteBuffer) -> Bool {
        let header = MemoryLayout<inotify_event>.size
        return buffer.withUnsafeReadableBytes { raw in
            var offset = 0
            while offset + header <= raw.count {
                let ev = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                if ev.mask & (UInt32(IN_DELETE_SELF) | UInt32(IN_MOVE_SELF) | UInt32(IN_IGNORED)) != 0 { return true }
                offset += header + Int(ev.len)
            }
            return false
        }
    }

    /// Scans after a change once the directory has been quiet for the debounce period, but never
    /// postpones a scan by more than ten debounce periods in a long burst.
    private func scanOnChange() async {
        for await _ in wake {
            while !Task.isCancelled {
                let now = ContinuousClock.now
                let due = pending.withLock { p -> ContinuousClock.Instant? in
                    if p.rescanNow { p.rescanNow = false; p.burstStart = nil; p.lastChange = nil; return nil }
                    guard let start = p.burstStart, let last = p.lastChange else { return nil }
                    let deadline = min(last + debounce, start + debounce * 10)
                    if deadline <= now { p.burstStart = nil; p.lastChange = nil; return nil }
                    return deadline
                }
                guard let due else { break }
                try? await Task.sleep(until: due, clock: .continuous)
            }
            if Task.isCancelled { return }
            scan()
        }
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
        var events: [SourceEvent] = []
        for kind in ResourceKind.allCases {
            let objects = (byKind[kind] ?? [:]).values.sorted { $0.key < $1.key }
            if !didSync || lastEmitted[kind] != objects {
                lastEmitted[kind] = objects
                events.append(.replaceAll(kind, objects))
            }
        }
        if !didSync {
            didSync = true
            events.append(.synced)
        }
        // One rescan is one change: a file that edits a Service and its slice together is
        // never programmed half-way.
        if !events.isEmpty { eventsOut.yield(.batch(events)) }
    }

    private func report(_ diagnostic: SourceDiagnostic) {
        logger.log(level: diagnostic.logLevel, "\(diagnostic.description)")
        diagnosticsOut.yield(diagnostic)
    }
}
