import Foundation
import HTTPTypes
import PalletFlowCore
import PalletFlowStore
import Testing

@Suite("Authentication, roles and tenants")
struct AuthAndTenancyTests {
    @Test("no token, a malformed header, an unknown or a revoked token: 401 problem+json")
    func unauthenticated() async throws {
        try await withAPI { api, fixture, store in
            let missing = try await api.get("/v1/me", token: nil)
            #expect(missing.status == .unauthorized)
            #expect(missing.headers[.contentType] == "application/problem+json")
            #expect(missing.problemType == "https://palletflow.dev/problems/unauthenticated")

            let unknown = try await api.get("/v1/me", token: TokenSecret.generate().text)
            #expect(unknown.status == .unauthorized)
            #expect(unknown.problemType == "https://palletflow.dev/problems/invalid-token")

            let basic = try await api.request(.get, "/v1/me", headers: ["Authorization": "Basic dXNlcjpwYXNz"])
            #expect(basic.status == .unauthorized)

            // Revoke the carrier's token through the API: it stops working at once.
            let tokens = try await api.get("\(fixture.base)/members/\(fixture.carrier.id.lower)/tokens", token: fixture.shipper.token)
            let tokenID = try #require(tokens.items.first?["id"] as? String)
            #expect(try await api.get("/v1/me", token: fixture.carrier.token).status == .ok)
            let revoke = try await api.request(.delete, "\(fixture.base)/members/\(fixture.carrier.id.lower)/tokens/\(tokenID)",
                                               token: fixture.shipper.token)
            #expect(revoke.status == .noContent)
            let revoked = try await api.get("/v1/me", token: fixture.carrier.token)
            #expect(revoked.status == .unauthorized)
            #expect(revoked.problemType == "https://palletflow.dev/problems/invalid-token")
            _ = store
        }
    }

    @Test("tokens are stored only as SHA-256 digests")
    func tokensStoredHashed() async throws {
        try await withAPI { api, fixture, store in
            let issued = try await api.post("\(fixture.base)/members/\(fixture.carrier.id.lower)/tokens",
                                            token: fixture.shipper.token, json: ["name": "tms"])
            #expect(issued.status == .created)
            let secret = try #require(issued.json["secret"] as? String)
            #expect(secret.hasPrefix("pft_"))
            var stored: [[UInt8]] = []
            for try await hash in try await store.client.query("SELECT token_hash FROM api_tokens").decode(ByteBufferBytes.self) {
                stored.append(hash.bytes)
            }
            #expect(stored.contains(TokenSecret(text: secret).hash))
            let rendered = stored.map { String(decoding: $0, as: UTF8.self) }
            #expect(!rendered.contains(where: { $0.contains(secret) }))
            #expect(try await api.get("/v1/me", token: secret).json["role"] as? String == "carrier")
        }
    }

    @Test("a wrong role gets 403 and writes nothing")
    func wrongRole() async throws {
        try await withAPI { api, fixture, store in
            let before = try await store.members(ecosystem: fixture.ecosystem).count
            for (role, party) in fixture.everyone where role != .shipper {
                let response = try await api.post("\(fixture.base)/members", token: party.token,
                                                  json: ["name": "Intruder \(role)", "role": "carrier"])
                #expect(response.status == .forbidden, "\(role)")
                #expect(response.problemType == "https://palletflow.dev/problems/forbidden")
                let type = try await api.post("\(fixture.base)/pallet-types", token: party.token,
                                              json: ["code": "X\(role.rawValue.prefix(3))", "name": "x"])
                #expect(type.status == .forbidden, "\(role)")
            }
            #expect(try await store.members(ecosystem: fixture.ecosystem).count == before)
            #expect(try await store.palletTypes(ecosystem: fixture.ecosystem).count == 2)
            // A coordinator does not declare movements.
            let declared = try await api.post("\(fixture.base)/movements", token: fixture.coordinator.token, json: [
                "kind": "return", "eventTime": hoursAgo(1),
                "from": ["partyId": fixture.carrier.id.lower], "to": ["partyId": fixture.shipper.id.lower],
                "lines": [["palletType": "EPAL1", "quantity": 5]],
            ], key: "coord-1")
            #expect(declared.status == .forbidden)
            #expect(try await store.movements(ecosystem: fixture.ecosystem, MovementFilter()).isEmpty)
        }
    }

    @Test("a carrier never sees another carrier; members and sites of others answer 404")
    func carriersDoNotSeeEachOther() async throws {
        try await withAPI { api, fixture, _ in
            let list = try await api.get("\(fixture.base)/members", token: fixture.carrier.token)
            let ids = Set(list.items.compactMap { $0["id"] as? String })
            #expect(ids.contains(fixture.carrier.id.lower))
            #expect(ids.contains(fixture.shipper.id.lower))
            #expect(!ids.contains(fixture.otherCarrier.id.lower))
            #expect(try await api.get("\(fixture.base)/members/\(fixture.otherCarrier.id.lower)", token: fixture.carrier.token)
                .status == .notFound)
            let sites = try await api.get("\(fixture.base)/sites", token: fixture.carrier.token)
            #expect(!sites.items.contains { $0["memberId"] as? String == fixture.otherCarrier.id.lower })
            // The shipper sees everyone.
            let all = try await api.get("\(fixture.base)/members", token: fixture.shipper.token)
            #expect(all.items.count == 6)
        }
    }

    /// Every endpoint so far, with placeholders for ids.
    static func endpoints(_ fixture: Fixture, ecosystem: UUID, member: UUID, movement: UUID, type: UUID)
        -> [(HTTPRequest.Method, String, Any?)]
    {
        let base = "/v1/ecosystems/\(ecosystem.lower)"
        let declaration: [String: Any] = [
            "kind": "return", "eventTime": hoursAgo(1), "from": ["partyId": fixture.carrier.id.lower],
            "to": ["partyId": fixture.shipper.id.lower], "lines": [["palletType": "EPAL1", "quantity": 1]],
        ]
        return [
            (.get, base, nil),
            (.get, "\(base)/members", nil),
            (.post, "\(base)/members", ["name": "X", "role": "carrier"]),
            (.get, "\(base)/members/\(member.lower)", nil),
            (.patch, "\(base)/members/\(member.lower)", ["active": false]),
            (.get, "\(base)/members/\(member.lower)/tokens", nil),
            (.post, "\(base)/members/\(member.lower)/tokens", ["name": "x"]),
            (.delete, "\(base)/members/\(member.lower)/tokens/\(UUID().lower)", nil),
            (.get, "\(base)/sites", nil),
            (.post, "\(base)/sites", ["memberId": member.lower, "name": "x"]),
            (.get, "\(base)/pallet-types", nil),
            (.post, "\(base)/pallet-types", ["code": "ZZ", "name": "x"]),
            (.patch, "\(base)/pallet-types/\(type.lower)", ["active": false]),
            (.post, "\(base)/pallet-types/\(type.lower)/values", ["amountMinor": 1, "currency": "EUR", "validFrom": TestClock.date(0)]),
            (.get, "\(base)/movements", nil),
            (.post, "\(base)/movements", declaration),
            (.post, "\(base)/movements/batch", ["movements": [declaration]]),
            (.get, "\(base)/movements/export", nil),
            (.get, "\(base)/movements/\(movement.lower)", nil),
            (.post, "\(base)/movements/\(movement.lower)/confirm", [:] as [String: Any]),
            (.post, "\(base)/movements/\(movement.lower)/contest", ["lines": [["lineNo": 0, "quantity": 1]]]),
            (.post, "\(base)/movements/\(movement.lower)/resolve", ["accept": "declared"]),
            (.post, "\(base)/movements/\(movement.lower)/reversal", ["reason": "x"]),
            (.get, "\(base)/discrepancies", nil),
            (.get, "\(base)/balances", nil),
            (.get, "\(base)/ledger/verify", nil),
            (.get, "\(base)/pallet-notes", nil),
            (.get, "\(base)/indicators", nil),
            (.post, "\(base)/indicators/recompute", [:] as [String: Any]),
            (.get, "\(base)/jobs", nil),
            (.get, "\(base)/alerts", nil),
            (.get, "\(base)/alert-rules", nil),
            (.put, "\(base)/alert-rules", ["kind": "balance_above", "threshold": 5]),
            (.get, "\(base)/webhooks", nil),
            (.post, "\(base)/invitations", ["name": "X", "role": "carrier"]),
            (.get, "\(base)/funnel", nil),
            (.get, "\(base)/charters", nil),
            (.post, "\(base)/charters", ["title": "x", "clauses": [["number": 1, "text": "x"]]]),
            (.get, "\(base)/compliance", nil),
            (.get, "\(base)/kits", nil),
            (.post, "\(base)/kits", ["name": "k", "items": [["number": 1, "kind": "document", "title": "t"]]]),
            (.get, "\(base)/kit-assignments", nil),
            (.get, "\(base)/work-statements", nil),
            (.get, "\(base)/sessions", nil),
            (.post, "\(base)/sessions", ["title": "x", "scheduledAt": hoursAgo(0), "periodStart": TestClock.date(-30),
                                         "periodEnd": TestClock.date(0), "participantIds": [member.lower]]),
            (.post, "\(base)/webhooks", ["url": "https://example.org/hook"]),
            (.post, "\(base)/pallet-notes", ["issuerId": member.lower, "holderId": fixture.shipper.id.lower,
                                             "palletType": "EPAL1", "quantity": 1, "issueDate": TestClock.date(-5)]),
            (.get, "\(base)/statements?party=\(member.lower)&from=2026-01-01T00:00:00Z&until=2026-12-01T00:00:00Z", nil),
            (.options, "\(base)/epcis/capture", nil),
            (.post, "\(base)/epcis/capture", epcisDocument([])),
            (.get, "\(base)/epcis/capture/\(movement.lower)", nil),
            (.post, "\(base)/epcis/events", ["type": "ObjectEvent", "action": "OBSERVE", "eventTime": hoursAgo(1),
                                             "eventTimeZoneOffset": "+00:00"]),
            (.get, "\(base)/epcis/events", nil),
            (.get, "\(base)/epcis/events/urn%3Auuid%3A\(movement.lower)", nil),
        ]
    }

    @Test("another ecosystem's ids answer 404 for every endpoint and every role, and nothing is written")
    func foreignTenantMatrix() async throws {
        try await withAPI { api, fixture, store in
            // A movement in the foreign ecosystem, so its id really exists.
            let foreignMovement = try await api.post("/v1/ecosystems/\(fixture.foreignEcosystem.lower)/movements",
                                                     token: fixture.foreignShipper.token, json: [
                "kind": "pickup", "eventTime": hoursAgo(2),
                "from": ["partyId": fixture.foreignShipper.id.lower], "to": ["partyId": fixture.foreignCarrier.id.lower],
                "lines": [["palletType": "EPAL1", "quantity": 10]],
            ], key: "foreign-1")
            #expect(foreignMovement.status == .created)
            let movementID = try #require(UUID(uuidString: foreignMovement.json["id"] as? String ?? ""))
            let foreignAuditRows = try await auditCount(store)

            var checked = 0
            for (role, party) in fixture.everyone {
                // 1. The foreign ecosystem in the path.
                for (method, path, body) in Self.endpoints(fixture, ecosystem: fixture.foreignEcosystem,
                                                           member: fixture.foreignCarrier.id, movement: movementID,
                                                           type: fixture.foreignPalletType) {
                    let response = try await api.request(method, path, token: party.token, json: body,
                                                         headers: ["Idempotency-Key": "matrix-\(checked)"])
                    #expect(response.status == .notFound, "\(role) \(method) \(path)")
                    #expect(response.headers[.contentType] == "application/problem+json")
                    checked += 1
                }
                // 2. Our ecosystem in the path, foreign ids inside it.
                for (method, path, body) in Self.endpoints(fixture, ecosystem: fixture.ecosystem,
                                                           member: fixture.foreignCarrier.id, movement: movementID,
                                                           type: fixture.foreignPalletType)
                where path.contains(fixture.foreignCarrier.id.lower) || path.contains(movementID.lower)
                    || path.contains(fixture.foreignPalletType.lower) {
                    let response = try await api.request(method, path, token: party.token, json: body,
                                                         headers: ["Idempotency-Key": "matrix-\(checked)"])
                    #expect(response.status == .notFound, "\(role) \(method) \(path) with a foreign id")
                    checked += 1
                }
            }
            #expect(checked > 100)
            #expect(try await auditCount(store) == foreignAuditRows, "a refused request wrote to the audit log")
            let foreignMovements = try await store.movements(ecosystem: fixture.foreignEcosystem, MovementFilter())
            #expect(foreignMovements.count == 1)
            #expect(foreignMovements[0].status == "declared")
        }
    }

    func auditCount(_ store: Store) async throws -> Int64 {
        var count: Int64 = 0
        for try await value in try await store.client.query("SELECT count(*)::int8 FROM audit_log").decode(Int64.self) {
            count = value
        }
        return count
    }
}

/// bytea decoded as raw bytes.
struct ByteBufferBytes: PostgresDecodable {
    var bytes: [UInt8]
    init<JSONDecoder: PostgresJSONDecoder>(from buffer: inout ByteBuffer, type: PostgresDataType, format: PostgresFormat,
                                           context: PostgresDecodingContext<JSONDecoder>) throws {
        bytes = Array(buffer: buffer)
    }
}

import NIOCore
import PostgresNIO
