import Foundation
import VeerDatapath
import VeerModel

/// Writes names.json for veerctl from the agent's latest state, off the reconcile loop. Under
/// churn it pauses between writes for a second or ten times the last write's time, whichever is
/// longer: at 10,000 services a write costs a good part of a second, which would otherwise keep
/// a core busy and delay the map writes that matter. (`veerctl explain`'s decisions are made
/// when asked: DecisionsServer.swift.)
struct StateFileWriter: Sendable {
    struct Snapshot: Sendable {
        var names: ProgrammedNames
    }

    let pins: PinLayout

    /// Writes until nothing is pending. `pending` and `take` run on the agent's actor (a take
    /// copies values, cheap until the agent changes them); encoding and writing run here.
    func run(pending: @Sendable () async -> Bool, take: @Sendable () async -> Snapshot?,
             failed: @Sendable (any Error) async -> Void) async {
        let clock = ContinuousClock()
        var pause: Duration?
        while await pending() {
            // Only when more changed since the last write: an idle agent finishes at once.
            if let pause { try? await Task.sleep(for: pause) }
            guard let snapshot = await take() else { return }
            let started = clock.now
            let pins = pins
            do {
                try await BackgroundThread.run(named: "veer-state-files") {
                    try NamesFile.write(snapshot.names, pins: pins)
                }
            } catch {
                await failed(error)
            }
            pause = max(.seconds(1), (clock.now - started) * 10)
        }
    }
}

/// The agent's side: it marks the file out of date after a sync, and the writer takes the latest snapshot.
extension Agent {
    /// Starts the state-file writer if the file is out of date and none runs.
    func startWritingFiles() {
        guard config.writesStateFiles else { filesDirty = false; return }
        guard filesDirty, !writingFiles else { return }
        writingFiles = true
        let writer = StateFileWriter(pins: config.pins)
        // Unstructured for the reason `startSyncing` gives; detached so the encoding runs off the
        // actor. One writer at a time (`writingFiles`), and `waitUntilIdle` awaits its end.
        Task.detached {
            await writer.run(pending: { await self.filesPending() }, take: { await self.takeFilesSnapshot() },
                             failed: { await self.filesFailed($0) })
        }
    }

    /// Whether the file is out of date; if not, the writer is done.
    func filesPending() -> Bool {
        if filesDirty { return true }
        writingFiles = false
        resumeIdleWaiters()
        return false
    }

    func takeFilesSnapshot() -> StateFileWriter.Snapshot? {
        guard filesDirty else {
            writingFiles = false
            resumeIdleWaiters()
            return nil
        }
        filesDirty = false
        return StateFileWriter.Snapshot(names: names)
    }

    func filesFailed(_ error: any Error) {
        logger.warning("could not save the names of programmed services for veerctl: \(error)")
    }
}
