/// Turns the frontends this node should serve and the state the maps actually hold into
/// the minimal, ordered list of map writes.
///
/// The operations come in the write order stated in bpf/include/veer_maps.h ("Write order"):
/// the programs read concurrently, so every prefix of a plan is a state they can use.
public enum Planner {
    public static func plan(desired: [DesiredFrontend], actual: MapState, capacities: MapCapacities) -> Plan {
        planTarget(desired: desired, actual: actual, capacities: capacities).plan
    }

    /// A full plan whose operations are made as they are written.
    public static func planTarget(desired: [DesiredFrontend], actual: MapState, capacities: MapCapacities) -> PlannedTarget {
        plan(scope: nil, desired: desired, actual: IndexedMapState(actual), capacities: capacities)
    }

    /// Plans only the frontends at `changed` (added, changed or removed) against `actual`; every
    /// other frontend keeps what the maps hold, untouched and unread. Same order, id reuse,
    /// capacity check and rejection as a full plan: on a state a plan produced, applying the
    /// operations has the same effect as a full plan of the whole desired list.
    ///
    /// `desired` holds the desired frontends among `changed` (others are ignored); a changed
    /// address without one is removed. `Plan.target` holds only the changed frontends' entries.
    ///
    /// Precondition for the full-plan equality: a frontend that shares a backend address with a
    /// changed one is changed too. Otherwise the shared backend's terminating flag is the old
    /// entry's flag combined with the changed frontends' (the others' mentions are not known).
    public static func plan(changed: Set<L4Address>, desired: [DesiredFrontend], actual: IndexedMapState,
                            capacities: MapCapacities) -> Plan {
        plan(scope: changed, desired: desired.filter { changed.contains($0.address) }, actual: actual,
             capacities: capacities).plan
    }

    private static func plan(scope: Set<L4Address>?, desired: [DesiredFrontend], actual: IndexedMapState,
                             capacities: MapCapacities) -> PlannedTarget {
        var builder = TargetBuilder(actual: actual, scope: scope, capacities: capacities)
        builder.reserve(for: desired)
        var rejected: [PlanRejection] = []

        // One frontend address, one owner, by the Selector's own rule (callers resolve claims
        // before planning; this keeps a plan well-formed if one did not).
        var owner: [L4Address: DesiredFrontend] = [:]
        owner.reserveCapacity(desired.count)
        for frontend in desired where owner[frontend.address].map({ frontend.precedes($0) }) ?? true {
            owner[frontend.address] = frontend
        }
        // Grouped by service, then each service's few frontends sorted: the order of one sort by
        // (service port, address), without comparing the names of every frontend with each other.
        var byService: [ObjectKey: [DesiredFrontend]] = [:]
        for frontend in desired { byService[frontend.service.serviceKey, default: []].append(frontend) }
        let services = byService.keys.sorted()
        for service in services {
            byService[service] = byService[service]!
                .sorted { ($0.service, $0.address) < ($1.service, $1.address) }
                .filter { frontend in
                    guard let first = owner[frontend.address], first != frontend else { return true }
                    rejected.append(PlanRejection(
                        service: frontend.service.serviceKey,
                        reason: "frontend \(frontend.address) is already served by \(first.service)"))
                    return false
                }
        }

        for service in services {
            let frontends = byService[service]!
            guard !frontends.isEmpty else { continue }
            if let shortage = builder.add(frontends) {
                // Rejected whole: whatever it had stays programmed; nothing half-written.
                builder.keepActual(frontends.map(\.address))
                rejected.append(PlanRejection(service: service, reason: shortage))
            }
        }
        return PlannedTarget(builder: builder, rejected: rejected)
    }
}

/// A plan whose operations are made as they are written (`forEachOperation`): a start's full
/// plan at 50,000 services is 1.6 million operations, 64 MB held while the maps were written, and
/// the highest RSS veerd reached. `plan` collects them (incremental syncs, tests).
public struct PlannedTarget: Sendable {
    fileprivate let builder: TargetBuilder
    public let rejected: [PlanRejection]

    /// The state the maps hold once every operation is applied.
    public var target: MapState { builder.target }

    /// The operations in write order.
    public func forEachOperation(_ emit: (MapOperation) throws -> Void) rethrows { try builder.forEachOperation(emit) }

    public var plan: Plan { Plan(operations: builder.operations(), rejected: rejected, target: builder.target) }
}

public struct Plan: Hashable, Sendable {
    public var operations: [MapOperation]
    public var rejected: [PlanRejection]
    /// The state the maps hold once every operation is applied (for a plan of some
    /// frontends: the entries of those frontends).
    public var target: MapState

    public var isEmpty: Bool { operations.isEmpty }
}

public struct PlanRejection: Hashable, Sendable, CustomStringConvertible {
    public var service: ObjectKey
    public var reason: String

    public var description: String { "\(service): \(reason)" }
}

/// Accumulates the target state service by service, within the capacities, reusing the
/// ids the maps already hold. With a scope, only the scope's frontends are planned and only
/// their entries (and the backends, members and rev_nat entries they use) are compared.
private struct TargetBuilder {
    let index: IndexedMapState
    let actual: MapState
    let scope: Set<L4Address>?
    let capacities: MapCapacities
    var target = MapState()

    // Ids handed out in this plan; the others come from the index. A new backend id's entry is
    // in the target from the moment it is handed out (`backendID(for:)`), so the new ids are an
    // index through the target's table: a `[L4Address: UInt32]` of them was 29 MB at 50,000
    // services × 10, alive through the plan.
    private var newBackendIDs = AddressIndex()
    private var revNatIDs: [L4Address: UInt32] = [:]
    private var backendAllocator: IDPool.Allocator
    private var revNatAllocator: IDPool.Allocator
    // Peak usage: old entries are deleted only at the end, so the peak is actual ∪ target.
    private var servicesUsed: Int
    private var backendsUsed: Int
    private var revNatUsed: Int
    private var membersUsed: Int
    // Scoped plans: what the scope's frontends hold now, and per backend how many of its
    // members are theirs (the rest belong to frontends outside the scope, which keep it).
    private var scopeRevNats: [UInt32] = []
    private var scopeMembers: [MemberKey] = []
    private var scopeMembersByBackend: [UInt32: Int] = [:]

    init(actual index: IndexedMapState, scope: Set<L4Address>?, capacities: MapCapacities) {
        self.index = index
        actual = index.state
        self.scope = scope
        self.capacities = capacities
        backendAllocator = IDPool.Allocator(index.backendIDs)
        revNatAllocator = IDPool.Allocator(index.revNatIDs)
        servicesUsed = index.serviceEntryCount
        backendsUsed = actual.backends.count
        revNatUsed = actual.revNat.count
        membersUsed = actual.members.count
        for address in scope ?? [] {
            guard let rn = actual.masters[address]?.revNatID else { continue }
            scopeRevNats.append(rn)
            for b in actual.members.backendIDs(ofRevNat: rn) {
                scopeMembers.append(MemberKey(revNatID: rn, backendID: b))
                scopeMembersByBackend[b, default: 0] += 1
            }
        }
    }

    /// Sizes the target's tables for these frontends: growing them one step at a time was about
    /// a third of a full plan at 10,000 services.
    mutating func reserve(for desired: [DesiredFrontend]) {
        let backends = desired.reduce(0) { $0 + $1.backends.count }
        target.masters.reserveCapacity(desired.count)
        target.slots.reserveCapacity(desired.count)
        // Ids are dense from 1: a full plan's reach up to about its counts.
        target.revNat.reserveCapacity(maxID: UInt32(clamping: desired.count))
        target.backends.reserveCapacity(maxID: UInt32(clamping: backends))
        target.members.reserveCapacity(maxRevNatID: UInt32(clamping: desired.count))
        newBackendIDs.reserveCapacity(backends)
        revNatIDs.reserveCapacity(desired.count)
    }

    /// Members of this backend outside the scope (none for a full plan: everything is in it).
    private func othersUsing(_ id: UInt32) -> Int {
        guard scope != nil else { return 0 }
        return index.memberCount(id) - (scopeMembersByBackend[id] ?? 0)
    }

    private func existingRevNatID(_ address: L4Address) -> UInt32? {
        if let id = revNatIDs[address] { return id }
        if let master = actual.masters[address], actual.revNat[master.revNatID] == address { return master.revNatID }
        // An entry a failed plan wrote before it reached the master: reusing it keeps a retry
        // from writing (and leaking) another id for the same frontend on every attempt.
        // No other master can name it: a master is written only after its own rev_nat entry.
        return index.revNatID(address)
    }

    private func existingBackendID(_ address: L4Address) -> UInt32? {
        newBackendIDs.lowest(address) { target.backends[$0]?.address } ?? index.backendID(address)
    }

    /// Adds one service's frontends, or returns why they do not fit. The fit is checked
    /// before anything is written, so a rejected service costs no copy of the target.
    mutating func add(_ frontends: [DesiredFrontend]) -> String? {
        let need = demand(frontends)
        let checks: [(String, Int, Int, Int)] = [
            ("services", servicesUsed, need.services, capacities.services),
            ("backends", backendsUsed, need.backends, capacities.backends),
            ("rev_nat", revNatUsed, need.revNat, capacities.revNat),
            ("members", membersUsed, need.members, capacities.members),
        ]
        for (map, used, more, capacity) in checks where used + more > capacity {
            return "map veer_\(map) is full: the service needs \(more) more entries, " +
                "\(max(0, capacity - used)) of \(capacity) are free"
        }
        for frontend in frontends { addFrontend(frontend) }
        return nil
    }

    /// New entries these frontends would add to each map (the same counting as addFrontend).
    private func demand(_ frontends: [DesiredFrontend]) -> (services: Int, backends: Int, revNat: Int, members: Int) {
        var services = 0, backends = 0, revNat = 0, members = 0
        var newBackends = Set<L4Address>()
        for frontend in frontends {
            let revNatID = existingRevNatID(frontend.address)
            if revNatID == nil { revNat += 1 }
            if actual.masters[frontend.address] == nil { services += 1 }
            let addresses = Set(frontend.backends.map(\.address))
            let oldSlots = actual.slots[frontend.address] ?? [:]
            if !addresses.isEmpty {
                services += (1...addresses.count).filter { oldSlots[UInt16($0)] == nil }.count
            }
            for address in addresses {
                let id = existingBackendID(address)
                if id == nil, newBackends.insert(address).inserted { backends += 1 }
                if let revNatID, let id, actual.members.contains(MemberKey(revNatID: revNatID, backendID: id)) { continue }
                members += 1
            }
        }
        return (services, backends, revNat, members)
    }

    /// Keeps the actual entries of these frontends (a rejected service stays as it was).
    mutating func keepActual(_ addresses: [L4Address]) {
        for address in addresses {
            guard let master = actual.masters[address] else { continue }
            target.masters[address] = master
            if let rn = actual.revNat[master.revNatID] { target.revNat[master.revNatID] = rn }
            for (slot, backendID) in actual.slots[address] ?? [:] {
                target.slots[address, default: [:]][slot] = backendID
                if let be = actual.backends[backendID] { target.backends[backendID] = be }
                let member = MemberKey(revNatID: master.revNatID, backendID: backendID)
                if actual.members.contains(member) { target.members.insert(member) }
            }
        }
    }

    private mutating func addFrontend(_ frontend: DesiredFrontend) {
        let address = frontend.address
        let revNatID = revNatID(for: address)
        if target.revNat[revNatID] == nil {
            target.revNat[revNatID] = address
            if actual.revNat[revNatID] == nil { revNatUsed += 1 }
        }

        // Backends, deduplicated by address (so by id), sorted by id; terminating only if every
        // mention says so. An array, not a dictionary: a frontend has a few, and a start plans
        // tens of thousands of frontends.
        var wanted: [(id: UInt32, entry: BackendEntry)] = frontend.backends.map { backend in
            (backendID(for: backend.address),
             BackendEntry(address: backend.address, flags: backend.terminating ? BackendEntry.flagTerminating : 0))
        }
        wanted.sort { $0.id < $1.id }
        var unique = 0
        for i in wanted.indices {
            if unique > 0 && wanted[unique - 1].id == wanted[i].id {
                wanted[unique - 1].entry.flags &= wanted[i].entry.flags
            } else {
                wanted[unique] = wanted[i]
                unique += 1
            }
        }
        wanted.removeLast(wanted.count - unique)
        func wants(_ id: UInt32) -> Int? {
            var lo = 0, hi = wanted.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if wanted[mid].id < id { lo = mid + 1 } else { hi = mid }
            }
            return lo < wanted.count && wanted[lo].id == id ? lo : nil
        }
        for (id, entry) in wanted {
            if let existing = target.backends[id] {
                target.backends[id] = BackendEntry(address: entry.address, flags: existing.flags & entry.flags)
            } else {
                var entry = entry
                // Shared with a frontend outside the scope: its mention is only in the old entry.
                if othersUsing(id) > 0, let old = actual.backends[id] { entry.flags &= old.flags }
                target.backends[id] = entry
                if actual.backends[id] == nil { backendsUsed += 1 }
            }
            let member = MemberKey(revNatID: revNatID, backendID: id)
            if target.members.insert(member).inserted, !actual.members.contains(member) { membersUsed += 1 }
        }

        // Slots: keep every backend that already sits in a slot within the new count,
        // fill the holes with the rest. Minimal writes; existing sockets see no change.
        let count = wanted.count
        let oldSlots = actual.slots[address] ?? [:]
        var slotIDs = [UInt32?](repeating: nil, count: count) // slot i + 1
        var placed = [Bool](repeating: false, count: count)
        for (slot, id) in oldSlots where Int(slot) <= count {
            guard let i = wants(id), !placed[i] else { continue }
            slotIDs[Int(slot) - 1] = id
            placed[i] = true
        }
        var hole = 0
        for (i, backend) in wanted.enumerated() where !placed[i] {
            while hole < count, slotIDs[hole] != nil { hole += 1 }
            guard hole < count else { break }
            slotIDs[hole] = backend.id
        }
        var slots = SlotTable()
        slots.reserveCapacity(count)
        for (i, id) in slotIDs.enumerated() { if let id { slots[UInt16(i + 1)] = id } }
        if !slots.isEmpty { target.slots[address] = slots }
        servicesUsed += oldSlots.isEmpty ? slots.count : slots.keys.filter { oldSlots[$0] == nil }.count
        if actual.masters[address] == nil { servicesUsed += 1 }

        var flags: UInt16 = 0
        if frontend.affinityTimeout != nil { flags |= MasterEntry.flagAffinity }
        if count == 0, frontend.whenEmpty == .drop { flags |= MasterEntry.flagEmptyDrop }
        if frontend.preservesClientAddress { flags |= MasterEntry.flagExternalLocal }
        target.masters[address] = MasterEntry(count: UInt32(count), revNatID: revNatID,
                                              affinityTimeout: frontend.affinityTimeout ?? 0, flags: flags)
    }

    /// The lowest id the maps do not hold and this plan has not handed out (freed ids are
    /// reused by later plans, never within the one that frees them).
    private mutating func backendID(for address: L4Address) -> UInt32 {
        if let id = existingBackendID(address) { return id }
        let id = backendAllocator.take()
        // Placeholder flags, all set: `addFrontend` ANDs every mention's flags into them. A new
        // id is one the maps do not hold, so it is counted here.
        target.backends[id] = BackendEntry(address: address, flags: .max)
        newBackendIDs.insert(id, for: address) { target.backends[$0]?.address }
        backendsUsed += 1
        return id
    }

    private mutating func revNatID(for address: L4Address) -> UInt32 {
        if let id = existingRevNatID(address) { return id }
        let id = revNatAllocator.take()
        revNatIDs[address] = id
        return id
    }

    func operations() -> [MapOperation] {
        var ops: [MapOperation] = []
        ops.reserveCapacity(target.backends.count + target.revNat.count + target.members.count
            + target.masters.count + target.slots.values.reduce(0) { $0 + $1.count })
        forEachOperation { ops.append($0) }
        return ops
    }

    /// The operations in write order, one at a time (`operations()` collects them).
    func forEachOperation(_ emit: (MapOperation) throws -> Void) rethrows {
        // Every table walks in ascending id (and members in (rev_nat, backend)) order.
        for (id, entry) in target.backends where actual.backends[id] != entry {
            try emit(.upsertBackend(id: id, entry))
        }
        for (id, address) in target.revNat where actual.revNat[id] != address {
            try emit(.upsertRevNat(id: id, address))
        }
        for member in target.members {
            if !actual.members.contains(member) { try emit(.upsertMember(member)) }
        }
        // Slots, then the master, frontend by frontend: a master never counts past written
        // slots, and a plan that fails midway leaves whole frontends behind it. (All slots
        // first would make every retry rewrite the slots of every frontend still without a
        // master, since a slot's rev_nat id is not read back.) One map: the runs still batch.
        let frontends = target.masters.keys.sorted()
        for address in frontends {
            let master = target.masters[address]!
            let old = actual.slots[address] ?? [:]
            for (slot, id) in target.slots[address] ?? [:]
            where old[slot] != id || actual.masters[address]?.revNatID != master.revNatID {
                try emit(.upsertSlot(address, slot: slot, backendID: id, revNatID: master.revNatID))
            }
            if actual.masters[address] != master { try emit(.upsertMaster(address, master)) }
        }
        for address in frontends {
            let keep = target.slots[address] ?? [:]
            for slot in (actual.slots[address] ?? [:]).keys where keep[slot] == nil {
                try emit(.deleteSlot(address, slot: slot))
            }
        }
        // What may be left without a user: everything (full plan), or what the scope held.
        let candidates: (frontends: Set<L4Address>, members: [MemberKey], revNat: [UInt32], backends: [UInt32])
        if let scope {
            let backends = Set(scopeMembers.map(\.backendID))
                .union(scope.flatMap { (actual.slots[$0] ?? [:]).values })
                .filter { othersUsing($0) == 0 }
            candidates = (scope, scopeMembers.sorted(), scopeRevNats.sorted(), backends.sorted())
        } else {
            candidates = (Set(actual.masters.keys).union(actual.slots.keys), Array(actual.members),
                          actual.revNat.keys, actual.backends.keys)
        }
        // Removed frontends (and slots left without a master): master first, then slots.
        for address in candidates.frontends.subtracting(frontends).sorted() {
            if actual.masters[address] != nil { try emit(.deleteMaster(address)) }
            for slot in (actual.slots[address] ?? [:]).keys {
                try emit(.deleteSlot(address, slot: slot))
            }
        }
        for member in candidates.members where !target.members.contains(member) {
            try emit(.deleteMember(member))
        }
        for id in candidates.revNat where target.revNat[id] == nil && actual.revNat[id] != nil {
            try emit(.deleteRevNat(id: id))
        }
        for id in candidates.backends where target.backends[id] == nil && actual.backends[id] != nil {
            try emit(.deleteBackend(id: id))
        }
    }
}
