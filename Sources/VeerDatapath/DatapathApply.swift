import CVeer
import Foundation
import VeerModel

// Reading the agent-written maps and applying a plan's operations to them, in order.
extension Datapath {
    /// What the agent-written maps hold now.
    public func readState() throws -> MapState {
        var state = MapState()
        for (key, value) in try services.entries() {
            if key.slot == 0 {
                state.masters[key.frontend] = value.master
            } else {
                state.slots[key.frontend, default: [:]][key.slot] = value.count_or_backend
            }
        }
        for (id, value) in try backends.entries() { state.backends[id] = value.entry }
        for (id, value) in try revNat.entries() { state.revNat[id] = value.frontend }
        state.members = MemberTable(try members.keys().map(\.member))
        return state
    }

    public var capacities: MapCapacities {
        MapCapacities(services: services.capacity, backends: backends.capacity,
                      revNat: revNat.capacity, members: members.capacity)
    }

    /// Applies operations in order. On a failure it stops and throws: the maps then hold
    /// a consistent prefix of the plan, and the next plan starts from what they hold.
    ///
    /// A run of consecutive updates of one map (backends, rev_nat, members, or slots and
    /// masters) is written with BPF_MAP_UPDATE_BATCH, a large run in parallel parts. No backend,
    /// rev_nat or member entry of a run depends on another, and a services run is split only
    /// between frontends (after a master), each part in order. So while a run is written a
    /// reader sees the plan before it, and of the run some entries whose frontends are each a
    /// prefix of their slots-then-master: every state a lookup can use, as veer_maps.h's write
    /// order requires. A run never crosses another map or a delete. A lone member is inserted
    /// with BPF_NOEXIST, which keeps an existing entry's count.
    public func apply(_ operations: [MapOperation]) throws {
        var retiredChanged = false
        defer { if retiredChanged { RetiredHitsFile.write(retiredLock.withLock { retiredHits }, pins: pins) } }
        var i = operations.startIndex
        while i < operations.endIndex {
            // Runs of two or more updates of the same map: one batch.
            var backendKeys: [UInt32] = [], backendValues: [veer_backend] = []
            var revNatKeys: [UInt32] = [], revNatValues: [veer_rev_nat] = []
            var serviceKeys: [veer_svc_key] = [], serviceValues: [veer_svc_val] = []
            var memberKeys: [veer_member_key] = []
            var j = i
            scan: while j < operations.endIndex {
                // Which map the run so far writes: a run is one map's.
                let runMap = !backendKeys.isEmpty ? 1 : !revNatKeys.isEmpty ? 2 : !serviceKeys.isEmpty ? 3 : !memberKeys.isEmpty ? 4 : 0
                switch operations[j] {
                case let .upsertBackend(id, entry) where runMap == 0 || runMap == 1:
                    backendKeys.append(id); backendValues.append(veer_backend(entry))
                case let .upsertRevNat(id, address) where runMap == 0 || runMap == 2:
                    revNatKeys.append(id); revNatValues.append(veer_rev_nat(address))
                case let .upsertSlot(address, slot, backendID, revNatID) where runMap == 0 || runMap == 3:
                    serviceKeys.append(veer_svc_key(address, slot: slot))
                    serviceValues.append(veer_svc_val(backendID: backendID, revNatID: revNatID))
                case let .upsertMaster(address, master) where runMap == 0 || runMap == 3:
                    serviceKeys.append(veer_svc_key(address, slot: 0)); serviceValues.append(veer_svc_val(master))
                case let .upsertMember(key) where runMap == 0 || runMap == 4:
                    memberKeys.append(veer_member_key(key))
                default:
                    break scan
                }
                j += 1
            }
            if j - i >= 2 {
                if !backendKeys.isEmpty { try backends.updateBatch(backendKeys, backendValues) }
                if !revNatKeys.isEmpty { try revNat.updateBatch(revNatKeys, revNatValues) }
                if !serviceKeys.isEmpty {
                    try services.updateBatch(serviceKeys, serviceValues, partsStartAfter: { $0.slot == 0 })
                }
                if !memberKeys.isEmpty { try members.insertZeroCounters(batch: memberKeys) }
                i = j
                continue
            }
            let op = operations[i]
            i += 1
            switch op {
            case let .upsertBackend(id, entry):
                try backends.update(id, veer_backend(entry))
            case let .upsertRevNat(id, address):
                try revNat.update(id, veer_rev_nat(address))
            case let .upsertMember(key):
                try members.insertZeroCounter(veer_member_key(key))
            case let .upsertSlot(address, slot, backendID, revNatID):
                try services.update(veer_svc_key(address, slot: slot), veer_svc_val(backendID: backendID, revNatID: revNatID))
            case let .upsertMaster(address, master):
                try services.update(veer_svc_key(address, slot: 0), veer_svc_val(master))
            case let .deleteSlot(address, slot):
                try services.delete(veer_svc_key(address, slot: slot))
            case let .deleteMaster(address):
                try services.delete(veer_svc_key(address, slot: 0))
            case let .deleteMember(key):
                // Its rev_nat and backend entries are deleted only later in the plan.
                if let sum = try members.counter(veer_member_key(key)), sum > 0,
                   let frontend = try revNat.lookup(key.revNatID)?.frontend,
                   let backend = try backends.lookup(key.backendID)?.entry.address {
                    retiredLock.withLock { retiredHits[RetiredHitsFile.key(frontend, backend), default: 0] += sum }
                    retiredChanged = true
                }
                try members.delete(veer_member_key(key))
            case let .deleteRevNat(id):
                try revNat.delete(id)
            case let .deleteBackend(id):
                try backends.delete(id)
            }
        }
    }

    /// Reads the maps, plans against them and applies the plan.
    @discardableResult
    public func sync(_ desired: [DesiredFrontend]) throws -> Plan {
        let plan = Planner.plan(desired: desired, actual: try readState(), capacities: capacities)
        try apply(plan.operations)
        return plan
    }
}
