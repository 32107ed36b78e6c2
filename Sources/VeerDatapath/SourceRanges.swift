import CVeer
import VeerModel

// The source_ranges trie (loadBalancerSourceRanges), keyed by frontend id + client prefix.

extension veer_src_range_key {
    init(_ e: SourceRangeEntry) {
        self.init()
        prefixlen = 32 + UInt32(e.prefix?.length ?? 0)
        rev_nat_id = e.revNatID.bigEndian
        if let p = e.prefix { addr = veer_addr(p.address) }
    }
}

extension Datapath {
    public func readSourceRanges() throws -> Set<SourceRangeEntry> {
        Set(try sourceRanges.entries().map { key, value in
            let bits = Int(key.prefixlen) - 32
            return SourceRangeEntry(revNatID: UInt32(bigEndian: key.rev_nat_id),
                                    prefix: bits > 0 ? IPPrefix(address: key.addr.ip, length: min(bits, 128)) : nil,
                                    allow: value.allow != 0)
        })
    }

    /// Removes, then adds (a changed verdict is an add of the same key), then turns the lookup on
    /// or off with `nonEmpty`.
    public func updateSourceRanges(add: [SourceRangeEntry], remove: [SourceRangeEntry], nonEmpty: Bool) throws {
        if !nonEmpty { try setConfigFlag(UInt32(VEER_CFG_F_SOURCE_RANGES), on: false) }
        let adding = Set(add.map { veer_src_range_key($0).bytes })
        for e in remove where !adding.contains(veer_src_range_key(e).bytes) { _ = try sourceRanges.delete(veer_src_range_key(e)) }
        for e in add {
            var value = veer_src_range_val()
            value.allow = e.allow ? 1 : 0
            try sourceRanges.update(veer_src_range_key(e), value)
        }
        if nonEmpty { try setConfigFlag(UInt32(VEER_CFG_F_SOURCE_RANGES), on: true) }
    }
}

extension veer_src_range_key {
    var bytes: [UInt8] { withUnsafeBytes(of: self) { Array($0) } }
}
