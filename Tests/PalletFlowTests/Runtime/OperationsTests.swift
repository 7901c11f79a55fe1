import Foundation
import PalletFlowStore
import Testing

@Suite("Operations: token rotation and vacuum")
struct OperationsTests {
    @Test("rotating a token revokes the old secret at once and the new one works")
    func rotation() async throws {
        try await withAPI { api, fixture, store in
            let tokens = try await api.get("\(fixture.base)/members/\(fixture.carrier.id.lower)/tokens", token: fixture.shipper.token)
            let id = try #require(UUID(uuidString: tokens.items.first?["id"] as? String ?? ""))
            let (record, secret) = try await store.rotateToken(ecosystem: fixture.ecosystem, token: id, by: nil)
            #expect(record.member == fixture.carrier.id)
            #expect(try await api.get("/v1/me", token: fixture.carrier.token).status == .unauthorized)
            #expect(try await api.get("/v1/me", token: secret.text).json["memberId"] as? String == fixture.carrier.id.lower)
            await #expect(throws: StoreError.self) { _ = try await store.rotateToken(ecosystem: fixture.ecosystem, token: id, by: nil) }
        }
    }

    @Test("vacuum deletes keys older than the window but never within 7 days, and only finished jobs")
    func vacuum() async throws {
        try await withAPIAndOwner { api, fixture, store, owner in
            for index in 0..<3 {
                _ = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: [
                    "kind": "return", "eventTime": hoursAgo(1), "from": ["partyId": fixture.carrier.id.lower],
                    "to": ["partyId": fixture.shipper.id.lower], "lines": [["palletType": "EPAL1", "quantity": 1]],
                ], key: "v\(index)")
            }
            // Age two keys: 10 and 3 days old.
            try await owner.client.query("UPDATE idempotency_keys SET created_at = \(store.nowDate) - interval '10 days' WHERE key = 'v0'")
            try await owner.client.query("UPDATE idempotency_keys SET created_at = \(store.nowDate) - interval '3 days' WHERE key = 'v1'")
            let done = try await store.enqueue(kind: "test.done", ecosystem: fixture.ecosystem)
            _ = try await store.claimJob(worker: "w", lease: .seconds(30), kinds: ["test.done"])
            try await store.completeJob(done.id, worker: "w")
            try await owner.client.query("UPDATE jobs SET finished_at = \(store.nowDate) - interval '40 days' WHERE id = \(done.id)")
            let queued = try await store.enqueue(kind: "test.queued", ecosystem: fixture.ecosystem)
            // Asking for 1 day still keeps 7: only the 10-day-old key goes.
            let removed = try await owner.vacuum(idempotencyKeysOlderThanDays: 1, jobsOlderThanDays: 30)
            #expect(removed.idempotencyKeys == 1)
            #expect(removed.jobs == 1)
            #expect(try await store.job(ecosystem: fixture.ecosystem, id: queued.id) != nil)
            // The vacuumed key's write is still in the ledger.
            #expect(try await store.movements(ecosystem: fixture.ecosystem, MovementFilter()).count == 3)
        }
    }
}
