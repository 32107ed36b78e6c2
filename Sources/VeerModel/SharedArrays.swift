import Foundation

/// Small arrays that repeat across thousands of objects: a Service's `ipFamilies`, and the ports
/// of Services and slices that expose the same ports. Equal arrays decoded from many objects
/// share one buffer (an array of one port was a 64-96 byte allocation per object).
///
/// Bounded: past `limit` distinct arrays, new ones are kept as decoded, so objects with varied
/// ports cost what they did before and the table stays at a few hundred kilobytes at most.
final class ArrayInterner<Element: Hashable & Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var table = Set<[Element]>()
    private let limit: Int

    init(limit: Int) { self.limit = limit }

    /// `array`, or an equal one already shared.
    func interned(_ array: [Element]) -> [Element] {
        // Empty arrays share Swift's empty singleton already.
        guard !array.isEmpty else { return array }
        lock.lock()
        defer { lock.unlock() }
        if let i = table.firstIndex(of: array) { return table[i] }
        if table.count < limit { table.insert(array) }
        return array
    }
}

enum SharedArrays {
    static let ipFamilies = ArrayInterner<String>(limit: 16)
    static let servicePorts = ArrayInterner<ServicePort>(limit: 4096)
    static let endpointPorts = ArrayInterner<EndpointPort>(limit: 4096)
}
