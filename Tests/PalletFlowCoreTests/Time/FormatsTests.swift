import Foundation
import PalletFlowCore
import Testing

@Suite("Instants and CSV")
struct FormatsTests {
    @Test("RFC 3339 keeps the source offset and the UTC instant")
    func instants() throws {
        let paris = try #require(Instant.parse("2026-03-01T08:15:00+01:00"))
        let utc = try #require(Instant.parse("2026-03-01T07:15:00Z"))
        #expect(paris.microsecondsSinceEpoch == utc.microsecondsSinceEpoch)
        #expect(paris.offsetMinutes == 60)
        #expect(paris.description == "2026-03-01T08:15:00+01:00")
        #expect(paris.rfc3339(keepingOffset: false) == "2026-03-01T07:15:00Z")
        // 2026-03-01T07:15:00Z = 20513 days * 86400 + 7h15m since 1970.
        #expect(utc.microsecondsSinceEpoch == (20_513 * 86_400 + 7 * 3_600 + 15 * 60) * 1_000_000)
        let fraction = try #require(Instant.parse("2024-02-29T23:59:59.123456-05:30"))
        #expect(fraction.description == "2024-02-29T23:59:59.123456-05:30")
        // Fractions lose their trailing zeros only; leading zeros and small years are padded.
        #expect(Instant.parse("2026-01-05T00:00:00.000500Z")?.description == "2026-01-05T00:00:00.0005Z")
        #expect(Instant.parse("0999-12-31T23:59:59.5+14:00")?.description == "0999-12-31T23:59:59.5+14:00")
        #expect(Instant.parse("0999-12-31T23:59:59.5+14:00")?.rfc3339(keepingOffset: false) == "0999-12-31T09:59:59.5Z")
        for bad in ["2026-02-30T00:00:00Z", "2026-03-01 08:15:00Z", "2026-03-01T08:15:00", "2026-13-01T00:00:00Z",
                    "2026-03-01T25:00:00Z", "yesterday", "2026-03-01T08:15:00+1:00"] {
            #expect(Instant.parse(bad) == nil, "\(bad)")
        }
    }

    @Test("CSV parses quotes, embedded commas and newlines, and refuses broken quoting")
    func csv() throws {
        let rows = try CSV.parse("a,b,c\r\n1,\"x, y\",\"he said \"\"hi\"\"\"\n2,\"multi\nline\",\n")
        #expect(rows == [["a", "b", "c"], ["1", "x, y", "he said \"hi\""], ["2", "multi\nline", ""]])
        #expect(throws: CSV.ParseError.self) { try CSV.parse("a,b\n\"open,2\n") }
        #expect(throws: CSV.ParseError.self) { try CSV.parse("a,b\n1,x\"y\n") }
        let line = CSV.line(["plain", "with,comma", "with \"quote\""])
        #expect(line == "plain,\"with,comma\",\"with \"\"quote\"\"\"\r\n")
        #expect(try CSV.parse(line) == [["plain", "with,comma", "with \"quote\""]])
    }
}
