import Foundation
import PalletFlowCore
import Testing

/// The worked examples of docs/indicators.md, computed by hand.
@Suite("Indicator math")
struct IndicatorMathTests {
    @Test("FIFO rotation across partial returns: ages 10x4, 15x2, 20x6; average 15.83, median 15, p90 20")
    func fifoRotation() throws {
        let facts = [
            RelationshipFact(.issued, day: 0, quantity: 10),
            RelationshipFact(.issued, day: 5, quantity: 6),
            RelationshipFact(.laterReturn, day: 10, quantity: 4),
            RelationshipFact(.laterReturn, day: 20, quantity: 8),
        ]
        let (matches, open) = IndicatorMath.fifo(facts)
        #expect(matches == [FIFOMatch(issueDay: 0, returnDay: 10, quantity: 4), FIFOMatch(issueDay: 0, returnDay: 20, quantity: 6),
                            FIFOMatch(issueDay: 5, returnDay: 20, quantity: 2)])
        #expect(open.count == 1 && open[0].day == 5 && open[0].quantity == 4)
        let figures = IndicatorMath.figures(facts, startDay: 10, endDay: 30, lossHorizonDays: 120)
        #expect(figures.issued == 0)
        #expect(figures.laterReturned == 12)
        #expect(abs(try #require(figures.rotationAverageDays) - 190.0 / 12.0) < 1e-9)
        #expect(figures.rotationMedianDays == 15)
        #expect(figures.rotationP90Days == 20)
        // At day 29 the 4 pallets issued on day 5 are 24 days out.
        #expect(figures.outstanding == 4)
        #expect(figures.aging0to30 == 4)
        #expect(figures.presumedLosses == 0)
    }

    @Test("aging buckets and presumed loss past the horizon")
    func agingAndPresumedLoss() {
        let facts = [
            RelationshipFact(.issued, day: 0, quantity: 5),
            RelationshipFact(.issued, day: 150, quantity: 3),
            RelationshipFact(.issued, day: 170, quantity: 2),
            RelationshipFact(.issued, day: 195, quantity: 1),
        ]
        // At day 199: ages 199, 49, 29, 4.
        let figures = IndicatorMath.figures(facts, startDay: 0, endDay: 200, lossHorizonDays: 120)
        #expect(figures.aging90plus == 5)
        #expect(figures.aging31to60 == 3)
        #expect(figures.aging0to30 == 3)
        #expect(figures.aging61to90 == 0)
        #expect(figures.outstanding == 11)
        #expect(figures.presumedLosses == 5)
    }

    @Test("declared losses write off the oldest pallets without counting as returns")
    func declaredLossConsumesFIFO() {
        let facts = [
            RelationshipFact(.issued, day: 0, quantity: 10),
            RelationshipFact(.declaredLoss, day: 1, quantity: 3),
            RelationshipFact(.laterReturn, day: 2, quantity: 7),
        ]
        let figures = IndicatorMath.figures(facts, startDay: 0, endDay: 3, lossHorizonDays: 120)
        #expect(figures.outstanding == 0)
        #expect(figures.declaredLosses == 3)
        #expect(figures.rotationAverageDays == 2)
        #expect(figures.returned == 7)
    }

    @Test("restitution 18/20 = 90%, loss rate (1 declared + 1 scrapped)/20 = 10%; raw rate kept above 100%")
    func rates() throws {
        let facts = [
            RelationshipFact(.issued, day: 0, quantity: 20),
            RelationshipFact(.spotReturn, day: 0, quantity: 15),
            RelationshipFact(.laterReturn, day: 3, quantity: 3),
            RelationshipFact(.declaredLoss, day: 4, quantity: 1),
            RelationshipFact(.scrapped, day: 4, quantity: 1),
        ]
        let figures = IndicatorMath.figures(facts, startDay: 0, endDay: 7, lossHorizonDays: 120)
        #expect(figures.restitutionRate == 0.9)
        #expect(figures.lossRate == 0.1)
        // 20 - 15 - 3 returned, 1 lost and 1 scrapped written off: nothing left out.
        #expect(figures.outstanding == 0)
        let catchUp = IndicatorMath.figures(facts + [RelationshipFact(.laterReturn, day: 10, quantity: 1)],
                                            startDay: 7, endDay: 14, lossHorizonDays: 120)
        #expect(catchUp.issued == 0)
        #expect(catchUp.restitutionRate == nil)
        let over = IndicatorMath.figures([RelationshipFact(.issued, day: 0, quantity: 4), RelationshipFact(.laterReturn, day: 1, quantity: 6)],
                                         startDay: 0, endDay: 2, lossHorizonDays: 120)
        #expect(over.restitutionRate == 1.5)
    }

    @Test("returns beyond what is out are a credit against later issues: issue 4, return 6, issue 5 leaves 3 out")
    func excessReturnCredit() {
        let facts = [
            RelationshipFact(.issued, day: 0, quantity: 4),
            RelationshipFact(.laterReturn, day: 1, quantity: 6),
            RelationshipFact(.issued, day: 2, quantity: 5),
        ]
        let figures = IndicatorMath.figures(facts, startDay: 0, endDay: 3, lossHorizonDays: 120)
        #expect(figures.outstanding == 3)
        #expect(figures.aging0to30 == 3)
    }

    @Test("lateness percentiles: median 200 s, p90 25 h, 3 of 4 within 24 h")
    func lateness() {
        let values: [Int64] = [100, 200, 300, 90_000]
        #expect(IndicatorMath.percentile(values, 0.5) == 200)
        #expect(IndicatorMath.percentile(values, 0.9) == 90_000)
        #expect(values.filter { $0 <= 86_400 }.count == 3)
    }

    @Test("periods: ISO weeks start on Monday, months on the 1st")
    func periods() {
        // 2026-03-01 (day 20513) is a Sunday.
        #expect(PeriodKind.week.start(of: 20_513) == 20_507)
        #expect(Instant.date(ofDay: 20_507) == "2026-02-23")
        #expect(PeriodKind.month.start(of: 20_513 + 14) == 20_513)
        #expect(PeriodKind.month.end(startingAt: 20_513) == 20_513 + 31)
        #expect(Instant.date(ofDay: PeriodKind.month.end(startingAt: PeriodKind.month.start(of: 20_800))) == "2027-01-01")
    }
}
