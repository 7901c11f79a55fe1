import Foundation
import PalletFlowCore
import PalletFlowStore
import Testing

@testable import PalletFlowAPI

@Suite("The directory cache: one check at a time, rows read again only when they changed")
struct DirectoryCacheTests {
    @Test("many requests on a cold or invalidated cache start one check; a fresh copy is not checked; the rows are read again only after a change, by this process or another")
    func oneLoadAtATime() async throws {
        try await withFreshStore { store in
            let fixture = try await Fixture.make(store)
            // A lifetime no test run outlasts, so "fresh" does not depend on the machine's speed.
            let cache = DirectoryCache(lifetime: .seconds(3_600))
            @Sendable func siteCounts(_ cache: DirectoryCache, _ requests: Int) async throws -> [Int] {
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<requests {
                        group.addTask { try await cache.get(fixture.ecosystem, store: store).0.sites.count }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            // The fixture has 4 sites (Factory, Depot Two, Warehouse North, Store).
            #expect(try await siteCounts(cache, 50) == Array(repeating: 4, count: 50))
            #expect(cache.checksStarted.load(ordering: .relaxed) == 1)
            #expect(cache.loadsStarted.load(ordering: .relaxed) == 1)

            // Another process adds a site: not seen while the copy is fresh.
            _ = try await store.addSite(ecosystem: fixture.ecosystem, member: fixture.customer.id, name: "Store Two",
                                        sgln: nil, address: nil, by: fixture.shipper.id)
            #expect(try await siteCounts(cache, 10) == Array(repeating: 4, count: 10))
            #expect(cache.checksStarted.load(ordering: .relaxed) == 1)

            // An invalidation (what a write through this process does): 20 requests wait for
            // one check, which finds the version moved and reads the rows again.
            cache.invalidate(fixture.ecosystem)
            #expect(try await siteCounts(cache, 20) == Array(repeating: 5, count: 20))
            #expect(cache.checksStarted.load(ordering: .relaxed) == 2)
            #expect(cache.loadsStarted.load(ordering: .relaxed) == 2)

            // An invalidation with nothing changed: a check, no read of the rows.
            cache.invalidate(fixture.ecosystem)
            #expect(try await siteCounts(cache, 20) == Array(repeating: 5, count: 20))
            #expect(cache.checksStarted.load(ordering: .relaxed) == 3)
            #expect(cache.loadsStarted.load(ordering: .relaxed) == 2)

            // A copy past its lifetime (here at once) is checked by every request that finds
            // it so; changes by another process are seen, and only they make it read rows.
            let expiring = DirectoryCache(lifetime: .zero)
            #expect(try await siteCounts(expiring, 1) == [5])
            #expect(try await siteCounts(expiring, 1) == [5])
            #expect(expiring.checksStarted.load(ordering: .relaxed) == 2)
            #expect(expiring.loadsStarted.load(ordering: .relaxed) == 1)
            try await store.setMemberActive(ecosystem: fixture.ecosystem, id: fixture.customer.id, active: false,
                                            by: fixture.shipper.id)
            #expect(try await expiring.get(fixture.ecosystem, store: store).0.members[fixture.customer.id]?.active == false)
            #expect(expiring.loadsStarted.load(ordering: .relaxed) == 2)
            try await store.setPalletTypeActive(ecosystem: fixture.ecosystem, id: fixture.chep, active: false,
                                                by: fixture.shipper.id)
            #expect(try await expiring.get(fixture.ecosystem, store: store).0.palletTypes[fixture.chep]?.active == false)
            #expect(expiring.checksStarted.load(ordering: .relaxed) == 4)
            #expect(expiring.loadsStarted.load(ordering: .relaxed) == 3)
        }
    }
}
