import Foundation
import PalletFlowCore
import PalletFlowStore
import Testing

@testable import PalletFlowAPI

@Suite("The directory cache: one load at a time")
struct DirectoryCacheTests {
    @Test("many requests on a cold or expired cache start one load; invalidation is seen at once, other writers after the lifetime")
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
            #expect(cache.loadsStarted.load(ordering: .relaxed) == 1)

            // Another process adds a site: not seen while the snapshot is fresh.
            _ = try await store.addSite(ecosystem: fixture.ecosystem, member: fixture.customer.id, name: "Store Two",
                                        sgln: nil, address: nil, by: fixture.shipper.id)
            #expect(try await siteCounts(10) == Array(repeating: 4, count: 10))
            #expect(cache.loadsStarted.load(ordering: .relaxed) == 1)

            // Past the lifetime, 50 requests wait for one fresh load, which has the new site.
            try await Task.sleep(for: .milliseconds(2_200))
            #expect(try await siteCounts(50) == Array(repeating: 5, count: 50))
            #expect(cache.loadsStarted.load(ordering: .relaxed) == 2)

            // A write through this process invalidates: the next request waits for a fresh load.
            _ = try await store.addSite(ecosystem: fixture.ecosystem, member: fixture.customer.id, name: "Store Three",
                                        sgln: nil, address: nil, by: fixture.shipper.id)
            cache.invalidate(fixture.ecosystem)
            #expect(try await siteCounts(20) == Array(repeating: 6, count: 20))
            #expect(cache.loadsStarted.load(ordering: .relaxed) == 3)
        }
    }
}
