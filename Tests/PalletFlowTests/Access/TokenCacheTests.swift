import Foundation
import PalletFlowCore
import PalletFlowStore
import PostgresNIO
import Testing

@Suite("Authenticated token cache")
struct TokenCacheTests {
    @Test("a token revoked, rotated or whose member is deactivated through the store is refused at once, even cached")
    func revokedThroughThisProcess() async throws {
        try await withFreshStore { store in
            let (ecosystem, shipper, _) = try await store.createEcosystem(name: "Cache", shipperName: "Shipper SA", shipperPGLN: nil)
            let carrier = try await store.addMember(ecosystem: ecosystem.id, name: "Carrier", pgln: nil, role: .carrier, by: nil)

            let (token, secret) = try await store.issueToken(ecosystem: ecosystem.id, member: carrier.id, name: "tms", by: nil)
            #expect(try await store.authenticate(secret)?.membership == carrier.id)
            #expect(try await store.authenticate(secret)?.token == token.id)  // now served from the cache
            try await store.revokeToken(ecosystem: ecosystem.id, member: carrier.id, token: token.id, by: shipper.id)
            #expect(try await store.authenticate(secret) == nil)

            let (second, secondSecret) = try await store.issueToken(ecosystem: ecosystem.id, member: carrier.id, name: "tms", by: nil)
            #expect(try await store.authenticate(secondSecret) != nil)
            let (_, rotated) = try await store.rotateToken(ecosystem: ecosystem.id, token: second.id, by: nil)
            #expect(try await store.authenticate(secondSecret) == nil)
            #expect(try await store.authenticate(rotated)?.membership == carrier.id)

            try await store.setMemberActive(ecosystem: ecosystem.id, id: carrier.id, active: false, by: shipper.id)
            #expect(try await store.authenticate(rotated) == nil)
        }
    }

    @Test("a token revoked by another process stops working within the cache lifetime; lifetime zero looks up every time")
    func revokedElsewhere() async throws {
        try await withFreshStore { base in
            let lifetime = Duration.milliseconds(500)
            let store = Store(database: base.client, logger: base.logger, tokenCacheLifetime: lifetime, clock: TestClock.clock)
            let (ecosystem, _, _) = try await store.createEcosystem(name: "Cache", shipperName: "Shipper SA", shipperPGLN: nil)
            let carrier = try await store.addMember(ecosystem: ecosystem.id, name: "Carrier", pgln: nil, role: .carrier, by: nil)
            let (token, secret) = try await store.issueToken(ecosystem: ecosystem.id, member: carrier.id, name: "tms", by: nil)
            // The entry is cached at some instant between these two readings of the clock.
            let before = ContinuousClock.now
            #expect(try await store.authenticate(secret) != nil)
            let after = ContinuousClock.now

            // Another process (here: plain SQL) revokes it: this process may serve it from the
            // cache until the lifetime is over, never after.
            try await store.client.query("UPDATE api_tokens SET revoked_at = now() WHERE id = \(token.id)")
            let stillCached = try await store.authenticate(secret) != nil
            if ContinuousClock.now - before < lifetime { #expect(stillCached) }
            try await Task.sleep(until: after + lifetime + .milliseconds(50))
            #expect(try await store.authenticate(secret) == nil)

            let uncached = Store(database: base.client, logger: base.logger, tokenCacheLifetime: .zero, clock: TestClock.clock)
            let (other, otherSecret) = try await uncached.issueToken(ecosystem: ecosystem.id, member: carrier.id, name: "tms", by: nil)
            #expect(try await uncached.authenticate(otherSecret) != nil)
            try await uncached.client.query("UPDATE api_tokens SET revoked_at = now() WHERE id = \(other.id)")
            #expect(try await uncached.authenticate(otherSecret) == nil)
        }
    }
}
