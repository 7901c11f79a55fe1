import Foundation
import PalletFlowCore
import Testing

@Suite("The business clock")
struct WallClockTests {
    @Test("PALLETFLOW_CLOCK_OFFSET_SECONDS shifts the clock; unset or empty is the system's; a bad value is refused, named")
    func configured() throws {
        let system = Instant(Date()).microsecondsSinceEpoch
        let shifted = try WallClock.configured(environment: ["PALLETFLOW_CLOCK_OFFSET_SECONDS": "3888000"])
        #expect(shifted.offsetSeconds == 45 * 86_400)
        // 45 days ahead of the machine, within the second this test takes.
        let ahead = shifted.clock.now().microsecondsSinceEpoch - system
        #expect(ahead >= 45 * 86_400 * 1_000_000 && ahead < (45 * 86_400 + 5) * 1_000_000)
        #expect(try WallClock.configured(environment: [:]).offsetSeconds == 0)
        #expect(try WallClock.configured(environment: ["PALLETFLOW_CLOCK_OFFSET_SECONDS": ""]).offsetSeconds == 0)
        for bad in ["45d", "1.5", "99999999999999"] {
            do {
                _ = try WallClock.configured(environment: ["PALLETFLOW_CLOCK_OFFSET_SECONDS": bad])
                Issue.record("\(bad) was accepted")
            } catch let error as WallClockSettingError {
                #expect(error.description.contains("PALLETFLOW_CLOCK_OFFSET_SECONDS=\(bad)"))
            }
        }
    }

    @Test("a manual clock stays where it is set and moves only when told")
    func manual() {
        let start = Instant.parse("2027-02-28T23:30:00Z")!
        let manual = ManualClock(start)
        let clock = manual.clock
        #expect(clock.now() == start)
        manual.advance(days: 1)
        // 2027 is not a leap year: one day after Feb 28, 23:30 is March 1, 23:30.
        #expect(clock.now().description == "2027-03-01T23:30:00Z")
        #expect(Instant.date(ofDay: clock.today) == "2027-03-01")
    }
}
