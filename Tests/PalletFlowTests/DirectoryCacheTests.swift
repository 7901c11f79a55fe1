import Foundation
import PalletFlowCore
import PalletFlowStore
import Testing

@testable import PalletFlowAPI

@Suite("The directory cache: one check at a time, rows read again only when they changed")
struct DirectoryCacheTests {
    @Test("many requests on a cold or expired cache start one check; the rows are read again only after a change, by this process (at once) or another (after the lifetime)")
    func oneLoadAtATime() async throws {
        try await withFreshStore { store in
            let fixture = try await Fixture.make(store)
            let cache = DirectoryCache(lifetime: .seconds(2))
            @Sendable func siteCounts(_ requests: Int) async throws -> [Int] {
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<requests {
                        group.addTask { try await cache.get(fixture.ecosystem, store: store).0.sites.count }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            // The fixture has 4 sites (Factory, Depot Two, Warehouse North, Store).
            #expect(try await siteCounts(50) == Array(repeating: 4, count: 50))
            #expect(cache.checksStarted.load(ordering: .relaxed) == 1)
            #expect(cache.loadsStarted.load(ordering: .relaxed) == 1)

            // Another process adds a site: not seen while the snapshot is fresh.
            _ = try await store.addSite(ecosystem: fixture.ecosystem, member: fixture.customer.id, name: "Store Two",
                                        sgln: nil, address: nil, by: fixture.shipper.id)
            #expect(try await siteCounts(10) == Array(repeating: 4, count: 10))
            #expect(cache.loadsStarted.load(ordering: .relaxed) == 1)

            // Past the lifetime, 50 requests wait for one check, which finds the directory
            // changed and reads it again: the new site is there.
            try await Task.sleep(for: .milliseconds(2_200))
            #expect(try await siteCounts(50) == Array(repeating: 5, count: 50))
            #expect(cache.checksStarted.load(ordering: .relaxed) == 2)
            #expect(cache.loadsStarted.load(ordering: .relaxed) == 2)

            // Past the lifetime again with nothing changed: one check, the rows are not read.
            try await Task.sleep(for: .milliseconds(2_200))
            #expect(try await siteCounts(50) == Array(repeating: 5, count: 50))
            #expect(cache.checksStarted.load(ordering: .relaxed) == 3)
            #expect(cache.loadsStarted.load(ordering: .relaxed) == 2)

            // Another process deactivates a member (an update, not an insert), then a pallet
            // type: each change is seen after the lifetime.
            try await store.setMemberActive(ecosystem: fixture.ecosystem, id: fixture.customer.id, active: false,
                                            by: fixture.shipper.id)
            try await Task.sleep(for: .milliseconds(2_200))
            #expect(try await cache.get(fixture.ecosystem, store: store).0.members[fixture.customer.id]?.active == false)
            #expect(cache.loadsStarted.load(ordering: .relaxed) == 3)
            try await store.setMemberActive(ecosystem: fixture.ecosystem, id: fixture.customer.id, active: true,
                                            by: fixture.shipper.id)
            try await store.setPalletTypeActive(ecosystem: fixture.ecosystem, id: fixture.chep, active: false,
                                                by: fixture.shipper.id)
            try await Task.sleep(for: .milliseconds(2_200))
            let (directory, _) = try await cache.get(fixture.ecosystem, store: store)
            #expect(directory.members[fixture.customer.id]?.active == true)
            #expect(directory.palletTypes[fixture.chep]?.active == false)
            #expect(cache.loadsStarted.load(ordering: .relaxed) == 4)

            // A write through this process invalidates: the next request waits for a check,
            // which reads the rows again.
            _ = try await store.addSite(ecosystem: fixture.ecosystem, member: fixture.customer.id, name: "Store Three",
                                        sgln: nil, address: nil, by: fixture.shipper.id)
            cache.invalidate(fixture.ecosystem)
            #expect(try await siteCounts(20) == Array(repeating: 6, count: 20))
            #expect(cache.checksStarted.load(ordering: .relaxed) == 6)
            #expect(cache.loadsStarted.load(ordering: .relaxed) == 5)

            // An invalidation with nothing changed: a check, no read of the rows.
            cache.invalidate(fixture.ecosystem)
            #expect(try await siteCounts(20) == Array(repeating: 6, count: 20))
            #expect(cache.checksStarted.load(ordering: .relaxed) == 7)
            #expect(cache.loadsStarted.load(ordering: .relaxed) == 5)
        }
    }
}
