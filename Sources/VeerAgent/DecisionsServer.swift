import Foundation
import Glibc
import Logging
import NIOHTTP1
import VeerDatapath
import VeerModel

/// veerd's side of `veerctl explain`: the decisions for the asked service, made when asked on
/// veerd.sock (`DecisionsSocket`), and every decision saved once to decisions.json at a graceful
/// stop, for explain while veerd is down. Nothing is written while veerd runs: selecting every
/// service again with its verdicts, as a periodic file needed, cost seconds of CPU and about
/// 100 MB of peak memory at 50,000 services, on every node, for a command run rarely.
enum DecisionsServer {
    /// Listens on veerd.sock, root-only; a socket left by a veerd that did not stop gracefully is
    /// replaced (the caller holds the `AgentLock`, so no live veerd owns it), and decisions.json
    /// of an earlier run is removed: from now on veerd answers itself.
    /// `agent` is nil in the moment before it exists (503).
    static func open(pins: PinLayout, agent: @escaping @Sendable () -> Agent?) async throws -> HTTPListener {
        DecisionsFile.remove(pins: pins)
        let path = DecisionsSocket.path(pins)
        let listener = try await HTTPListener(unixSocket: path, handler: .async { path, query in
            guard let agent = agent() else { return HTTPListener.Response(.serviceUnavailable, contentType: "text/plain", "starting\n") }
            return await respond(agent: agent, path: path, query: query)
        })
        // The state directory is root-only already; the socket is too, like every file in it.
        guard chmod(path, 0o600) == 0 else {
            let e = errno
            await close(listener, pins: pins)
            throw DatapathError.syscall(operation: "chmod \(path)", errno: e)
        }
        return listener
    }

    static func close(_ listener: HTTPListener, pins: PinLayout) async {
        await listener.close()
        unlink(DecisionsSocket.path(pins))
    }

    static func respond(agent: Agent, path: String, query: [String: String]) async -> HTTPListener.Response {
        guard path == "/decisions" else { return HTTPListener.Response(.notFound, contentType: "text/plain", "not found: GET /decisions?target=…\n") }
        guard let target = query["target"], let parsed = DecisionQuery(target) else {
            return HTTPListener.Response(.badRequest, contentType: "text/plain",
                                         "target must be namespace/name, namespace/name:port or ip:port[/proto]; got \(query["target"].map { "\"\($0)\"" } ?? "none")\n")
        }
        guard let decisions = await agent.decisions(for: parsed) else {
            return HTTPListener.Response(.serviceUnavailable, contentType: "text/plain", "veerd has not completed its first list of the source yet\n")
        }
        if decisions.decisions.isEmpty && decisions.skipped.isEmpty {
            return HTTPListener.Response(.notFound, contentType: "text/plain",
                                         "nothing on node \(decisions.node) matches \(target); `veerctl services` lists what is programmed\n")
        }
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            return HTTPListener.Response(.ok, contentType: "application/json", bytes: Array(try encoder.encode(decisions)))
        } catch {
            return HTTPListener.Response(.internalServerError, contentType: "text/plain", "cannot encode the decisions: \(error)\n")
        }
    }
}

extension Agent {
    /// What `query` asks for, with every endpoint's verdict: the asked service and the services
    /// claiming its addresses selected again, microseconds on the actor. Nil before the first
    /// full list (there is nothing to decide from yet).
    func decisions(for query: DecisionQuery) -> SavedDecisions? {
        guard store.isSynced else { return nil }
        return Selector.decisions(for: query, in: store, node: nodeContext, claimants: index.claimants(of:))
    }

    /// Saves every decision to decisions.json, once, as veerd stops gracefully. The store is
    /// taken from the actor as a value; selecting and writing run off it.
    func saveDecisions() async {
        guard config.writesStateFiles, store.isSynced else { return }
        let (store, node, pins) = (store, nodeContext, config.pins)
        do {
            try await BackgroundThread.run(named: "veer-state-files") {
                try DecisionsFile.write(SavedDecisions(node: node, selection: Selector.select(store, node: node)), pins: pins)
            }
        } catch {
            logger.warning("could not save the decisions for veerctl explain: \(error)")
        }
    }
}
