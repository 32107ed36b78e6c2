/// A set that holds one element inline and only allocates a `Set` from the second on. The
/// agent's indexes hold one per backend address or frontend (its users, its claims),
/// and nearly all of them have exactly one element: a `Set` of one is a heap object of its own
/// (about 100 bytes, and a hash table to build), paid 100,000 times at 10,000 services.
struct CompactSet<Element: Hashable>: Sequence {
    fileprivate enum Storage {
        case empty
        case one(Element)
        case many(Set<Element>)
    }

    private var storage = Storage.empty

    init() {}

    var isEmpty: Bool {
        if case .empty = storage { return true }
        return false
    }

    func contains(_ element: Element) -> Bool {
        switch storage {
        case .empty: false
        case let .one(x): x == element
        case let .many(s): s.contains(element)
        }
    }

    mutating func insert(_ element: Element) {
        switch storage {
        case .empty: storage = .one(element)
        case let .one(x): if x != element { storage = .many([x, element]) }
        case var .many(s):
            // Release the enum's reference first, so the set is unique and grows in place.
            storage = .empty
            s.insert(element)
            storage = .many(s)
        }
    }

    mutating func remove(_ element: Element) {
        switch storage {
        case .empty: break
        case let .one(x): if x == element { storage = .empty }
        case var .many(s):
            storage = .empty
            s.remove(element)
            storage = s.count == 1 ? .one(s.first!) : .many(s)
        }
    }

    struct Iterator: IteratorProtocol {
        fileprivate var one: Element?
        fileprivate var many: Set<Element>.Iterator?

        mutating func next() -> Element? {
            if let x = one {
                one = nil
                return x
            }
            return many?.next()
        }
    }

    func makeIterator() -> Iterator {
        switch storage {
        case .empty: Iterator(one: nil, many: nil)
        case let .one(x): Iterator(one: x, many: nil)
        case let .many(s): Iterator(one: nil, many: s.makeIterator())
        }
    }

    var count: Int { underestimatedCount }

    var underestimatedCount: Int {
        switch storage {
        case .empty: 0
        case .one: 1
        case let .many(s): s.count
        }
    }
}

extension CompactSet: Sendable where Element: Sendable {}
extension CompactSet.Storage: Sendable where Element: Sendable {}
extension CompactSet.Iterator: Sendable where Element: Sendable {}
