import Logging
import VeerDatapath
import VeerModel

/// After a sync that removed backends from frontends: destroys the connected sockets still
/// talking to them (for UDP nothing else ever tells the client), judged against the agent's
/// copy of the maps.
struct StaleSocketReaper: Sendable {
    let protocols: Set<L4Protocol>

    /// Sockets destroyed per protocol, and the network namespaces where it failed.
    func reap(_ maps: any MapStore, state: IndexedMapState?, logger: Logger) -> SocketTermination {
        guard !protocols.isEmpty else { return SocketTermination() }
        do {
            let result = try maps.terminateStaleSockets(protocols: protocols, state: state)
            for (proto, n) in result.destroyed where n > 0 {
                logger.info("terminated \(n) \(proto) socket(s) connected to removed backends")
            }
            for failure in result.failures.sorted() {
                logger.warning("socket termination failed in a network namespace (needs CAP_SYS_ADMIN): \(failure)")
            }
            return result
        } catch {
            logger.warning("terminating sockets of removed backends failed: \(error)")
            return SocketTermination()
        }
    }
}

extension Agent {
    func terminateStaleSockets() {
        let result = StaleSocketReaper(protocols: config.terminateProtocols).reap(maps, state: running, logger: logger)
        for (proto, n) in result.destroyed where n > 0 {
            counters.socketsTerminated[proto, default: 0] += UInt64(n)
            post(.normal, "SocketsTerminated", "terminated \(n) \(proto) socket(s) connected to removed backends")
        }
        counters.terminationFailures += UInt64(result.failures.count)
    }
}
