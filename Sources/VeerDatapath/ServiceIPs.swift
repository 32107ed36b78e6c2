import CVeer
import VeerModel

// The service_ips trie (veer_maps.h): ClusterIPs and service CIDRs, read by the connect and
// sendmsg hooks only after the frontend lookup missed, and only while the config map's
// VEER_CFG_F_SERVICE_IPS is set.

extension veer_lpm_addr_key {
    init(_ prefix: IPPrefix) {
        self.init()
        prefixlen = UInt32(prefix.length)
        addr = veer_addr(prefix.address)
    }

    var prefix: IPPrefix { IPPrefix(address: addr.ip, length: Int(min(prefixlen, 128))) }
}

extension Datapath {
    /// What the trie holds (entries of an unknown rule are left out).
    public func readServiceAddresses() throws -> Set<ServiceAddressEntry> {
        Set(try serviceIPs.entries().compactMap { key, value in
            ServiceAddressRule(rawValue: value.rule).map { ServiceAddressEntry(prefix: key.prefix, rule: $0) }
        })
    }

    /// Whether the hooks consult the trie now.
    public var serviceAddressesEnabled: Bool {
        ((try? config.lookup(0))?.flags ?? 0) & UInt32(VEER_CFG_F_SERVICE_IPS) != 0
    }

    /// Makes the trie hold exactly `wanted`, then turns the lookup on (or, for an empty set, off
    /// first). A full trie throws before the flag changes: what was there keeps working.
    public func writeServiceAddresses(_ wanted: Set<ServiceAddressEntry>) throws {
        let current = try serviceIPs.entries()
        let wantedByPrefix = Dictionary(wanted.map { ($0.prefix, $0.rule) }, uniquingKeysWith: { a, b in min(a, b) })
        if wantedByPrefix.isEmpty { try setConfigFlag(UInt32(VEER_CFG_F_SERVICE_IPS), on: false) }
        let have = Dictionary(current.map { ($0.0.prefix, $0.1.rule) }, uniquingKeysWith: { a, _ in a })
        for (prefix, rule) in wantedByPrefix.sorted(by: { $0.key < $1.key }) where have[prefix] != rule.rawValue {
            var value = veer_service_ip()
            value.rule = rule.rawValue
            try serviceIPs.update(veer_lpm_addr_key(prefix), value)
        }
        for (key, _) in current where wantedByPrefix[key.prefix] == nil {
            _ = try serviceIPs.delete(key)
        }
        if !wantedByPrefix.isEmpty { try setConfigFlag(UInt32(VEER_CFG_F_SERVICE_IPS), on: true) }
    }

    func setConfigFlag(_ flag: UInt32, on: Bool) throws {
        var entry = try config.lookup(0) ?? veer_config()
        let flags = on ? entry.flags | flag : entry.flags & ~flag
        guard flags != entry.flags else { return }
        entry.flags = flags
        try config.update(0, entry)
    }
}

extension Datapath {
    /// Adds and removes entries (an agent's incremental change), then turns the lookup on if
    /// anything is there. `nonEmpty`: whether the trie holds entries afterwards.
    public func updateServiceAddresses(add: [ServiceAddressEntry], remove: [IPPrefix], nonEmpty: Bool) throws {
        if !nonEmpty { try setConfigFlag(UInt32(VEER_CFG_F_SERVICE_IPS), on: false) }
        for e in add {
            var value = veer_service_ip()
            value.rule = e.rule.rawValue
            try serviceIPs.update(veer_lpm_addr_key(e.prefix), value)
        }
        for p in remove { _ = try serviceIPs.delete(veer_lpm_addr_key(p)) }
        if nonEmpty { try setConfigFlag(UInt32(VEER_CFG_F_SERVICE_IPS), on: true) }
    }
}
