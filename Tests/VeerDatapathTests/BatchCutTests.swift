@testable import VeerDatapath
import Testing

@Suite("Parallel parts of a batched map write")
struct BatchCutTests {
    @Test("Without a boundary, the range is cut into about equal parts that cover it once")
    func equalParts() {
        #expect(batchCuts(8192..<40_000, parts: 2, startsAfter: nil) == [8192, 24_096, 40_000])
        #expect(batchCuts(0..<10, parts: 1, startsAfter: nil) == [0, 10])
        #expect(batchCuts(0..<9, parts: 3, startsAfter: nil) == [0, 3, 6, 9])
    }

    @Test("A services run is cut only after a master: a frontend's slots and master stay in one part, in order")
    func cutsAfterBoundaries() {
        // Frontends of 1 master + 10 slots, written slots first: masters at indices 10, 21, 32, …
        let isMaster = { (i: Int) in i % 11 == 10 }
        let cuts = batchCuts(0..<1100, parts: 4, startsAfter: isMaster)
        #expect(cuts.first == 0 && cuts.last == 1100)
        #expect(cuts == cuts.sorted(), "parts in order, none overlapping")
        for cut in cuts.dropFirst().dropLast() { #expect(cut == 1100 || isMaster(cut - 1), "cut at \(cut)") }
        #expect(Set(cuts).count == 5, "four non-empty parts")
    }

    @Test("With no boundary after a cut's point, that part and the next run to the end")
    func noBoundaryLeft() {
        let cuts = batchCuts(0..<100, parts: 2, startsAfter: { $0 == 10 })
        #expect(cuts == [0, 100, 100])
    }
}
