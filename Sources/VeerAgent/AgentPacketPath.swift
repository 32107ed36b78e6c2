import Logging
import VeerDatapath
import VeerModel

/// The agent's upkeep of the packet path (tc) at each sync: attaching it where the node's addresses
/// are, and deleting its UDP flows to removed backends.
extension Agent {
    /// Attaches the packet path to the interfaces holding the node's addresses that it is not
    /// on yet (a Node may gain an address); a failure is logged and counted, never fatal.
    func attachPacketPath(_ node: NodeContext) {
        guard let packetPath, config.packetPathFollowsNodeAddresses else { return }
        let wanted = PacketPath.interfaces(holding: node.addresses)
        if wanted.isEmpty && packetPath.interfaces.isEmpty {
            logger.warning("packet path: no interface in veerd's network namespace holds the node's addresses \(node.addresses); pass --packet-path-interface")
        }
        do {
            let added = try packetPath.attach(all: wanted)
            if !added.isEmpty { logger.info("packet path attached", metadata: ["interfaces": "\(added.joined(separator: ","))"]) }
        } catch {
            counters.packetPathErrors += 1
            logger.error("packet path: \(error)")
        }
    }

    /// The packet path's UDP flows to removed backends (kube-proxy deletes those conntrack
    /// entries too); TCP flows are left to end or time out, as kube-proxy leaves them.
    func deleteStaleUDPFlows() {
        guard packetPath != nil, let state = running?.state else { return }
        do {
            let n = try PacketPath.deleteStaleUDPFlows(state: state)
            if n > 0 {
                counters.conntrackFlowsDeleted += UInt64(n)
                logger.info("deleted \(n) UDP conntrack flow(s) translated to removed backends")
            }
        } catch {
            logger.warning("deleting UDP conntrack flows of removed backends failed: \(error)")
        }
    }
}
