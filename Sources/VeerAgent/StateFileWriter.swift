import VeerDatapath
import VeerModel

/// Writes names.json and decisions.json for veerctl from the agent's latest state, off the
/// reconcile loop. Under churn it pauses between writes for a second or ten times the last
/// write's time, whichever is longer: at 10,000 services a write costs a good part of a
/// second, which would otherwise keep a core busy and delay the map writes that matter.
struct StateFileWriter: Sendable {
    struct Snapshot: Sendable {
        var names: ProgrammedNames
        var index: FrontendIndex
        var node: NodeContext
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
            do {
                try NamesFile.write(snapshot.names, pins: pins)
                try DecisionsFile.write(SavedDecisions(node: snapshot.node, selection: snapshot.index.merged), pins: pins)
            } catch {
                await failed(error)
            }
            pause = max(.seconds(1), (clock.now - started) * 10)
        }
    }
}
