import Foundation
import PalletFlowCore
import Testing

@Suite("Identifiers: parsing ids and drawing random bytes")
struct IdentifierTests {
    @Test("UUID(parsing:) reads what UUID(uuidString:) reads, and refuses what it refuses")
    func parsing() {
        // Every hex digit in both cases, at every position.
        let lower = "0123abcd-ef45-6789-abcd-ef0123456789"
        #expect(UUID(parsing: lower) == UUID(uuidString: lower))
        #expect(UUID(parsing: lower)?.uuid.0 == 0x01)
        #expect(UUID(parsing: lower)?.uuid.15 == 0x89)
        #expect(UUID(parsing: lower.uppercased()) == UUID(uuidString: lower))
        for _ in 0..<1_000 {
            let id = UUID()
            #expect(UUID(parsing: id.uuidString) == id)
            #expect(UUID(parsing: id.uuidString.lowercased()) == id)
        }
        for bad in ["", "0123abcd-ef45-6789-abcd-ef012345678", "0123abcd-ef45-6789-abcd-ef01234567890",
                    "0123abcdef45-6789-abcd-ef0123456789-", "0123abcd-ef45-6789-abcd_ef0123456789",
                    "0123abcg-ef45-6789-abcd-ef0123456789", "0123abcd-ef45-6789-abcd-ef012345678é",
                    "{123abcd-ef45-6789-abcd-ef012345678}"] {
            #expect(UUID(parsing: bad) == nil, "\(bad)")
            #expect(UUID(uuidString: bad) == nil, "\(bad)")
        }
        // Stricter than Foundation on Linux, whose sscanf skips white space inside an id.
        #expect(UUID(uuidString: " 123abcd-ef45-6789-abcd-ef0123456789") != nil)
        #expect(UUID(parsing: " 123abcd-ef45-6789-abcd-ef0123456789") == nil)
    }

    @Test("the random pool hands out fresh bytes across refills")
    func randomPool() {
        // 10,000 draws of 10 bytes cross the 4 KiB buffer about 25 times; 80-bit draws
        // that repeated would mean a refill handed out the same bytes again.
        var seen = Set<[UInt8]>()
        var ones = 0
        for _ in 0..<10_000 {
            let bytes = RandomPool.bytes(10)
            #expect(bytes.count == 10)
            seen.insert(bytes)
            ones += bytes.reduce(0) { $0 + $1.nonzeroBitCount }
        }
        #expect(seen.count == 10_000)
        // 800,000 random bits: about half are ones (the bound is over 50 standard deviations).
        #expect(abs(ones - 400_000) < 20_000)
    }
}
