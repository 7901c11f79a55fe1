import PalletFlowCore
import Testing

@Suite("What a partner learns of the others")
struct PeerAggregateTests {
    @Test("totals and quartiles of restitution over partners with pallets issued, by hand")
    func quartiles() {
        // Rates 15/20 = 0.75, 10/10 = 1.0, 20/40 = 0.5, 3/4 = 0.75; a partner with nothing issued
        // counts for neither. Sorted 0.5, 0.75, 0.75, 1.0: positions 0.75, 1.5, 2.25 give
        // Q1 = 0.5 + 0.75 x 0.25 = 0.6875, median = 0.75, Q3 = 0.75 + 0.25 x 0.25 = 0.8125.
        let aggregate = PeerAggregate([(20, 15), (10, 10), (40, 20), (4, 3), (0, 2)])
        #expect(aggregate.partners == 4)
        #expect(aggregate.issued == 74)
        #expect(aggregate.returned == 50)
        #expect(aggregate.restitutionRate == 50.0 / 74.0)
        #expect(aggregate.restitutionFirstQuartile == 0.6875)
        #expect(aggregate.restitutionMedian == 0.75)
        #expect(aggregate.restitutionThirdQuartile == 0.8125)
        #expect(aggregate.shownToPartners)
    }

    @Test("fewer than three active partners: not for partners' eyes; nothing issued: no rates")
    func thresholds() {
        let two = PeerAggregate([(20, 15), (10, 10), (0, 0)])
        #expect(two.partners == 2)
        #expect(!two.shownToPartners)
        #expect(two.restitutionMedian == 0.875)
        let none = PeerAggregate([(0, 0)])
        #expect(none.partners == 0)
        #expect(none.restitutionRate == nil)
        #expect(none.restitutionMedian == nil)
    }
}
