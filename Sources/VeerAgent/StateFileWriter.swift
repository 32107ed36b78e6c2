import Foundation
import VeerDatapath
import VeerModel

/// Writes names.json for veerctl from the agent's latest state, off the reconcile loop. Under
/// churn it pauses between writes for a second or ten times the last write's time, whichever is
/// longer: at 10,000 services a write costs a good part of a second, which would otherwise keep
/// a core busy and delay the map writes that matter. (`veerctl explain`'s decisions are made
/// when asked: DecisionsServer.swift.)
///
/// The file is written a part at a time (`ProgrammedNames.backendPart`), each part cut from the
/// names the agent's actor hands out when it is written, never the whole of the names at once:
/// a writer holding them while the agent changed them made the agent copy what it changed
/// (55-75 MB at 100,000 services under churn). Each part is as the agent held it when taken; a
/// change during a write marks the file out of date again, so the next write has it.
struct StateFileWriter: Sendable {
    typealias BackendPart = [(L4Address, ProgrammedNames.Backend)]
    typealias FrontendPart = [(L4Address, ProgrammedNames.Frontend)]

    let pins: PinLayout

    /// Writes until nothing is pending. `pending` and `start` run on the agent's actor, which
    /// also hands out the names each part is cut from; encoding and writing run here.
    func run(pending: @Sendable () async -> Bool, start: @Sendable () async -> Bool,
             backends: @escaping @Sendable (Int) async -> BackendPart?,
             frontends: @escaping @Sendable (Int) async -> FrontendPart?,
             failed: @Sendable (any Error) async -> Void) async {
        let clock = ContinuousClock()
        var pause: Duration?
        while await pending() {
            // Only when more changed since the last write: an idle agent finishes at once.
            if let pause { try? await Task.sleep(for: pause) }
            guard await start() else { return }
            let started = clock.now
            let pins = pins
            do {
                try await BackgroundThread.run(named: "veer-state-files") {
                    try NamesFile.write(pins: pins, backends: { k in BackgroundThread.wait { await backends(k) } },
                                        frontends: { k in BackgroundThread.wait { await frontends(k) } })
                }
            } catch {
                await failed(error)
            }
            pause = max(.seconds(1), (clock.now - started) * 10)
        }
    }
}

/// Where the heap release that follows a full sync stands (`Agent.heapRelease`).
enum HeapReleaseAfterFiles {
    case none
    /// A full sync ended: release once the next names.json write is done.
    case afterNextWrite
    /// That write is under way.
    case writing
}

/// The agent's side: it marks the file out of date after a sync, and the writer takes the latest snapshot.
extension Agent {
    /// Starts the state-file writer if the file is out of date and none runs.
    func startWritingFiles() {
        guard config.writesStateFiles else {
            filesDirty = false
            if heapRelease != .none { releaseHeap() }
            return
        }
        guard filesDirty, !writingFiles else { return }
        writingFiles = true
        let writer = StateFileWriter(pins: config.pins)
        // Unstructured for the reason `startSyncing` gives; detached so the encoding runs off the
        // actor. One writer at a time (`writingFiles`), and `waitUntilIdle` awaits its end.
        Task.detached {
            await writer.run(pending: { await self.filesPending() }, start: { await self.startFilesWrite() },
                             backends: { await self.names.backendPart($0) },
                             frontends: { await self.names.frontendPart($0) },
                             failed: { await self.filesFailed($0) })
        }
    }

    /// Whether the file is out of date; if not, the writer is done.
    func filesPending() -> Bool {
        if heapRelease == .writing { releaseHeap() }
        if filesDirty { return true }
        writingFiles = false
        resumeIdleWaiters()
        return false
    }

    /// Whether a write starts now: what changes from here on marks the file out of date again.
    func startFilesWrite() -> Bool {
        guard filesDirty else {
            writingFiles = false
            resumeIdleWaiters()
            return false
        }
        filesDirty = false
        if heapRelease == .afterNextWrite { heapRelease = .writing }
        return true
    }

    /// After the write that follows a full sync, even if changes keep the writer going (churn).
    private func releaseHeap() {
        heapRelease = .none
        HeapRelease.inBackground()
    }

    func filesFailed(_ error: any Error) {
        logger.warning("could not save the names of programmed services for veerctl: \(error)")
    }
}
