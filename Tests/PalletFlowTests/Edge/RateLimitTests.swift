import Foundation
import HTTPTypes
import PalletFlowAPI
import PalletFlowCore
import PalletFlowStore
import Testing

@Suite("Rate limit per token")
struct RateLimitTests {
    @Test("beyond the burst a token gets 429 problem+json with Retry-After; another token is unaffected")
    func limitedPerToken() async throws {
        // One request every 20 s, in bursts of 1: the second request in a row is refused,
        // however slowly a loaded machine runs the test.
        try await withAPI(rateLimitPerToken: 0.05) { api, fixture, store in
            #expect(try await api.get("/v1/me", token: fixture.carrier.token).status == .ok)
            let refused = try await api.get("/v1/me", token: fixture.carrier.token)
            #expect(refused.status == .tooManyRequests)
            #expect(refused.headers[.contentType] == "application/problem+json")
            #expect(refused.problemType == "https://palletflow.dev/problems/rate-limited")
            let retryAfter = try #require(refused.headers[.retryAfter].flatMap { Int($0) })
            #expect(retryAfter >= 1 && retryAfter <= 20)

            // A refused write is not applied.
            let movement: [String: Any] = [
                "kind": "return", "eventTime": hoursAgo(1),
                "from": ["partyId": fixture.carrier.id.lower], "to": ["partyId": fixture.shipper.id.lower],
                "lines": [["palletType": "EPAL1", "quantity": 3]],
            ]
            let write = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: movement, key: "rl-1")
            #expect(write.status == .tooManyRequests)
            #expect(try await store.movements(ecosystem: fixture.ecosystem, MovementFilter()).isEmpty)

            // Another token of the same ecosystem, and the public endpoints, are unaffected.
            #expect(try await api.get("/v1/me", token: fixture.warehouse.token).status == .ok)
            #expect(try await api.get("/healthz", token: nil).status == .ok)
            // Another token may write what the limited one could not.
            let other = try await api.post("\(fixture.base)/movements", token: fixture.shipper.token, json: movement, key: "rl-1")
            #expect(other.status == .created)
        }
    }

    @Test("the bucket refills at the configured rate and 0 disables the limit")
    func bucketArithmetic() {
        let limiter = RateLimiter<UUID>(perSecond: 10)
        let key = UUID()
        let start: UInt64 = 1_000_000_000
        for _ in 0..<20 { #expect(limiter.acquire(key, now: start) == nil) }
        let wait = limiter.acquire(key, now: start)
        #expect(wait != nil && abs(wait! - 0.1) < 0.000_1)
        // 0.25 s later: 2.5 requests refilled, 2 served, the third waits.
        #expect(limiter.acquire(key, now: start + 250_000_000) == nil)
        #expect(limiter.acquire(key, now: start + 250_000_000) == nil)
        #expect(limiter.acquire(key, now: start + 250_000_000) != nil)
        // Another key has its own bucket.
        #expect(limiter.acquire(UUID(), now: start) == nil)

        let off = RateLimiter<UUID>(perSecond: 0)
        for _ in 0..<10_000 { #expect(off.acquire(key, now: start) == nil) }
    }
}
