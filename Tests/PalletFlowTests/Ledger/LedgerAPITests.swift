import Foundation
import HTTPTypes
import PalletFlowCore
import PalletFlowStore
import Testing

/// Declarations through the API against the real database, balances computed by hand.
@Suite("Ledger through the API")
struct LedgerAPITests {
    static func pickup(_ fixture: Fixture, quantity: Int, exchanged: Int, hours: Double = 2) -> [String: Any] {
        [
            "kind": "pickup", "eventTime": hoursAgo(hours),
            "from": ["partyId": fixture.shipper.id.lower, "siteId": fixture.shipper.site!.lower],
            "to": ["partyId": fixture.carrier.id.lower],
            "lines": [["palletType": "EPAL1", "quality": "A", "quantity": quantity, "exchangedQuantity": exchanged]],
            "references": ["cmr": "CMR-1"],
        ]
    }

    /// What `party` owes `counterparty` in EPAL1 quality A, from the bilateral view.
    func owed(_ api: API, _ fixture: Fixture, _ party: UUID, to counterparty: UUID, asOf: String? = nil,
              token: String? = nil) async throws -> (balance: Int, confirmed: Int) {
        var path = "\(fixture.base)/balances?view=bilateral&party=\(party.lower)"
        if let asOf { path += "&asOf=\(asOf.replacingOccurrences(of: "+", with: "%2B"))" }
        let response = try await api.get(path, token: token ?? fixture.shipper.token)
        #expect(response.status == .ok, "\(response.text)")
        let row = response.items.first {
            $0["counterpartyId"] as? String == counterparty.lower && $0["palletTypeId"] as? String == fixture.epal.lower
                && $0["quality"] as? String == "A"
        }
        return ((row?["balance"] as? Int) ?? 0, (row?["confirmed"] as? Int) ?? 0)
    }

    func verify(_ store: Store, _ fixture: Fixture) async throws {
        let report = try await store.verifyLedger(ecosystem: fixture.ecosystem)
        #expect(report.holds, "\(report)")
    }

    @Test("a carrier declares a pickup; the shipper sees it owed, pending until confirmed")
    func pickupThenConfirm() async throws {
        try await withAPI { api, fixture, store in
            let declared = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token,
                                              json: Self.pickup(fixture, quantity: 33, exchanged: 20), key: "p-1")
            #expect(declared.status == .created, "\(declared.text)")
            #expect(declared.json["status"] as? String == "declared")
            #expect(declared.json["counterpartyId"] as? String == fixture.shipper.id.lower)
            var balance = try await owed(api, fixture, fixture.carrier.id, to: fixture.shipper.id)
            #expect(balance.balance == 13)
            #expect(balance.confirmed == 0)

            let id = try #require(declared.json["id"] as? String)
            // Only the counterparty confirms.
            let byDeclarer = try await api.post("\(fixture.base)/movements/\(id)/confirm", token: fixture.carrier.token, json: [:] as [String: Any])
            #expect(byDeclarer.status == .forbidden)
            let confirmed = try await api.post("\(fixture.base)/movements/\(id)/confirm", token: fixture.shipper.token, json: [:] as [String: Any])
            #expect(confirmed.status == .ok, "\(confirmed.text)")
            #expect(confirmed.json["status"] as? String == "confirmed")
            balance = try await owed(api, fixture, fixture.carrier.id, to: fixture.shipper.id)
            #expect(balance.balance == 13)
            #expect(balance.confirmed == 13)
            // The carrier reads the same figure from its side.
            let own = try await owed(api, fixture, fixture.carrier.id, to: fixture.shipper.id, token: fixture.carrier.token)
            #expect(own.balance == 13)
            try await verify(store, fixture)
        }
    }

    @Test("a declaration is read as the contract says; each refusal is a problem and writes nothing")
    func declarationRequestChecks() async throws {
        try await withAPI { api, fixture, store in
            let path = "\(fixture.base)/movements"
            let body = Self.pickup(fixture, quantity: 12, exchanged: 0)
            let text = String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)
            func refused(_ response: TestResponse, _ status: HTTPResponse.Status, _ slug: String, _ words: String) {
                #expect(response.status == status, "\(response.text)")
                #expect(response.headers[.contentType] == "application/problem+json")
                #expect(response.problemType == "https://palletflow.dev/problems/\(slug)", "\(response.text)")
                #expect(response.text.contains(words), "\(response.text)")
            }
            // An answer the client says it cannot read is refused before the write, not after it.
            refused(try await api.request(.post, path, token: fixture.carrier.token, body: text,
                                          headers: ["Idempotency-Key": "c-1", "Accept": "text/csv"]),
                    .notAcceptable, "not-acceptable", "text/csv")
            refused(try await api.request(.post, path, token: fixture.carrier.token, body: text, contentType: "text/plain",
                                          headers: ["Idempotency-Key": "c-2"]),
                    .unsupportedMediaType, "unsupported-media-type", "text/plain")
            refused(try await api.request(.post, path, token: fixture.carrier.token, body: "{\"kind\": ",
                                          headers: ["Idempotency-Key": "c-3"]),
                    .badRequest, "malformed-request", "not valid JSON")
            var noLines = body
            noLines["lines"] = nil
            let missing = try await api.post(path, token: fixture.carrier.token, json: noLines, key: "c-4")
            refused(missing, .unprocessableContent, "validation", "lines")
            #expect(missing.fieldErrors == ["lines"])
            refused(try await api.post(path, token: fixture.carrier.token, json: body),
                    .badRequest, "idempotency-key-required", "Idempotency-Key")
            #expect(try await store.movements(ecosystem: fixture.ecosystem, MovementFilter()).isEmpty)

            // The same body, acceptable: posted once, answered as JSON with what was declared.
            let posted = try await api.request(.post, path, token: fixture.carrier.token, body: text,
                                               headers: ["Idempotency-Key": "c-5", "Accept": "application/json"])
            #expect(posted.status == .created, "\(posted.text)")
            #expect(posted.headers[.contentType] == "application/json; charset=utf-8")
            #expect(posted.json["kind"] as? String == "pickup")
            #expect(posted.json["declarerId"] as? String == fixture.carrier.id.lower)
            #expect(((posted.json["lines"] as? [[String: Any]])?.first?["quantity"] as? Int) == 12)
            #expect(try await store.movements(ecosystem: fixture.ecosystem, MovementFilter()).count == 1)
            #expect(try await owed(api, fixture, fixture.carrier.id, to: fixture.shipper.id).balance == 12)

            // The batch route reads its request the same way, and answers its stored result.
            let batch = String(decoding: try JSONSerialization.data(withJSONObject: ["movements": [body, body]]), as: UTF8.self)
            refused(try await api.request(.post, path + "/batch", token: fixture.carrier.token, body: batch,
                                          contentType: "text/plain", headers: ["Idempotency-Key": "b-1"]),
                    .unsupportedMediaType, "unsupported-media-type", "text/plain")
            let first = try await api.request(.post, path + "/batch", token: fixture.carrier.token, body: batch,
                                              headers: ["Idempotency-Key": "b-2"])
            let again = try await api.request(.post, path + "/batch", token: fixture.carrier.token, body: batch,
                                              headers: ["Idempotency-Key": "b-2"])
            #expect(first.status == .created, "\(first.text)")
            #expect(first.json["count"] as? Int == 2)
            #expect((first.json["items"] as? [[String: Any]])?.count == 2)
            #expect(again.status == .created)
            #expect(again.body == first.body)
            #expect(again.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
            #expect(try await store.movements(ecosystem: fixture.ecosystem, MovementFilter()).count == 3)
            #expect(try await owed(api, fixture, fixture.carrier.id, to: fixture.shipper.id).balance == 36)
            try await verify(store, fixture)
        }
    }

    @Test("a retry with the same key replays the first response byte for byte; another body is refused")
    func idempotency() async throws {
        try await withAPI { api, fixture, store in
            let body = Self.pickup(fixture, quantity: 10, exchanged: 0)
            let first = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: body, key: "retry-1")
            let second = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: body, key: "retry-1")
            #expect(first.status == .created)
            #expect(second.status == .created)
            #expect(first.body == second.body)
            #expect(first.headers[HTTPField.Name("Idempotent-Replayed")!] == nil)
            #expect(second.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
            #expect(try await store.movements(ecosystem: fixture.ecosystem, MovementFilter()).count == 1)
            #expect(try await owed(api, fixture, fixture.carrier.id, to: fixture.shipper.id).balance == 10)

            let other = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token,
                                            json: Self.pickup(fixture, quantity: 11, exchanged: 0), key: "retry-1")
            #expect(other.status == .unprocessableContent)
            #expect(other.problemType == "https://palletflow.dev/problems/idempotency-key-reused")
            let missing = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: body)
            #expect(missing.status == .badRequest)
            #expect(missing.fieldErrors == ["Idempotency-Key"])
            #expect(try await store.movements(ecosystem: fixture.ecosystem, MovementFilter()).count == 1)
        }
    }

    @Test("a delivery shortfall makes the consignee owe the carrier and issues a pallet note")
    func deliveryShortfall() async throws {
        try await withAPI { api, fixture, store in
            // Three days ago at 07:45 in Paris (winter time), written with its offset.
            let eventTime = TestClock.time(day: TestClock.today - 3, hour: 7, minute: 45, offsetMinutes: 60)
            let response = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: [
                "kind": "delivery", "eventTime": eventTime,
                "from": ["partyId": fixture.carrier.id.lower],
                "to": ["partyId": fixture.customer.id.lower, "siteId": fixture.customer.site!.lower],
                "lines": [["palletType": "EPAL1", "quantity": 30, "exchangedQuantity": 24]],
                "palletNote": ["issue": true, "serial": "BP-2026-0042"],
            ], key: "d-1")
            #expect(response.status == .created, "\(response.text)")
            #expect(response.json["eventTime"] as? String == eventTime)
            #expect((response.json["palletNoteIds"] as? [String])?.count == 1)
            #expect(try await owed(api, fixture, fixture.customer.id, to: fixture.carrier.id).balance == 6)
            var notes: [(String, Int64, String, String)] = []
            for try await row in try await store.client.query("""
                SELECT serial, quantity, issue_date::text, due_date::text FROM pallet_notes WHERE ecosystem_id = \(fixture.ecosystem)
                """).decode((String, Int64, String, String).self) { notes.append(row) }
            // Issued on the local date of the event; due 30 days later (the ecosystem's rule).
            #expect(notes.count == 1)
            #expect(notes.first?.0 == "BP-2026-0042")
            #expect(notes.first?.1 == 6)
            #expect(notes.first?.2 == TestClock.date(-3))
            #expect(notes.first?.3 == TestClock.date(-3 + 30))
            try await verify(store, fixture)
        }
    }

    @Test("a reversal cancels a movement, a correction replaces it, both linked; as-of balances follow event time")
    func reversalAndAsOf() async throws {
        try await withAPIAndOwner { api, fixture, store, owner in
            let early = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token,
                                           json: Self.pickup(fixture, quantity: 10, exchanged: 0, hours: 48), key: "a")
            let late = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token,
                                          json: Self.pickup(fixture, quantity: 5, exchanged: 0, hours: 2), key: "b")
            #expect(early.status == .created && late.status == .created)
            #expect(try await owed(api, fixture, fixture.carrier.id, to: fixture.shipper.id, asOf: hoursAgo(24)).balance == 10)
            #expect(try await owed(api, fixture, fixture.carrier.id, to: fixture.shipper.id).balance == 15)

            let lateID = try #require(late.json["id"] as? String)
            var correction = Self.pickup(fixture, quantity: 8, exchanged: 0, hours: 2)
            correction["note"] = "8, not 5"
            let reversal = try await api.post("\(fixture.base)/movements/\(lateID)/reversal", token: fixture.carrier.token,
                                              json: ["reason": "miscounted", "correction": correction])
            #expect(reversal.status == .created, "\(reversal.text)")
            #expect(try await owed(api, fixture, fixture.carrier.id, to: fixture.shipper.id).balance == 18)
            let original = try await api.get("\(fixture.base)/movements/\(lateID)", token: fixture.carrier.token)
            #expect(original.json["status"] as? String == "reversed")
            let reversalID = try #require(reversal.json["reversalId"] as? String)
            let reversalMovement = try await api.get("\(fixture.base)/movements/\(reversalID)", token: fixture.shipper.token)
            #expect(reversalMovement.json["reversesId"] as? String == lateID)
            let correctionID = try #require(reversal.json["correctionId"] as? String)
            let corrected = try await api.get("\(fixture.base)/movements/\(correctionID)", token: fixture.shipper.token)
            #expect(corrected.json["correctsId"] as? String == lateID)
            // Twice is refused.
            let again = try await api.post("\(fixture.base)/movements/\(lateID)/reversal", token: fixture.shipper.token,
                                           json: ["reason": "again"])
            #expect(again.status == .conflict)
            // The ledger itself refuses edits, even to the database owner.
            await #expect(throws: (any Error).self) {
                try await owner.client.query("UPDATE ledger_entries SET amount = amount + 1")
            }
            await #expect(throws: (any Error).self) {
                try await owner.client.query("DELETE FROM ledger_entries")
            }
            await #expect(throws: (any Error).self) {
                try await owner.client.query("UPDATE movements SET event_time = now()")
            }
            try await verify(store, fixture)
        }
    }

    @Test("contest opens a discrepancy with both versions; accepting the contested count posts a linked correction")
    func contestAndResolve() async throws {
        try await withAPI { api, fixture, store in
            let declared = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token,
                                              json: Self.pickup(fixture, quantity: 30, exchanged: 10), key: "c-1")
            let id = try #require(declared.json["id"] as? String)
            let contest = try await api.post("\(fixture.base)/movements/\(id)/contest", token: fixture.shipper.token, json: [
                "lines": [["lineNo": 0, "quantity": 30, "exchangedQuantity": 4]],
                "evidence": ["sha256": String(repeating: "ab", count: 32), "url": "https://example.org/photo.jpg"],
                "note": "only 4 empties came back",
            ])
            #expect(contest.status == .created, "\(contest.text)")
            let open = try await api.get("\(fixture.base)/discrepancies?open=true", token: fixture.carrier.token)
            #expect(open.items.count == 1)
            let declaredVersion = open.items.first?["declared"] as? [[String: Any]]
            let contestedVersion = open.items.first?["contested"] as? [[String: Any]]
            #expect(declaredVersion?.first?["exchangedQuantity"] as? Int == 10)
            #expect(contestedVersion?.first?["exchangedQuantity"] as? Int == 4)
            // Still the declared figure, pending.
            #expect(try await owed(api, fixture, fixture.carrier.id, to: fixture.shipper.id).balance == 20)

            // Another carrier cannot resolve; the declarer accepts the contested count.
            let resolved = try await api.post("\(fixture.base)/movements/\(id)/resolve", token: fixture.carrier.token,
                                              json: ["accept": "contested", "note": "checked the photo"])
            #expect(resolved.status == .ok, "\(resolved.text)")
            #expect(resolved.json["resolution"] as? String == "contested")
            #expect(resolved.json["correctionMovementId"] != nil)
            let balance = try await owed(api, fixture, fixture.carrier.id, to: fixture.shipper.id)
            #expect(balance.balance == 26)
            #expect(balance.confirmed == 26)
            let nowOpen = try await api.get("\(fixture.base)/discrepancies?open=true", token: fixture.shipper.token)
            #expect(nowOpen.items.isEmpty)
            try await verify(store, fixture)
        }
    }

    @Test("a batch is all or nothing and names every bad line")
    func batchAtomicity() async throws {
        try await withAPI { api, fixture, store in
            var bad = Self.pickup(fixture, quantity: 0, exchanged: 0)
            bad["lines"] = [["palletType": "NOPE", "quantity": 3], ["palletType": "EPAL1", "quantity": -1]]
            let rejected = try await api.post("\(fixture.base)/movements/batch", token: fixture.carrier.token, json: [
                "movements": [Self.pickup(fixture, quantity: 5, exchanged: 0), bad, Self.pickup(fixture, quantity: 0, exchanged: 0)],
            ], key: "batch-1")
            #expect(rejected.status == .unprocessableContent)
            #expect(Set(rejected.fieldErrors).isSuperset(of: ["movements[1].lines[0].palletType", "movements[2].lines[0].quantity"]))
            #expect(try await store.movements(ecosystem: fixture.ecosystem, MovementFilter()).isEmpty)

            let accepted = try await api.post("\(fixture.base)/movements/batch", token: fixture.carrier.token, json: [
                "movements": (1...50).map { Self.pickup(fixture, quantity: $0, exchanged: 0) },
            ], key: "batch-2")
            #expect(accepted.status == .created, "\(accepted.text)")
            #expect(accepted.json["count"] as? Int == 50)
            // 1 + 2 + ... + 50 = 1275.
            #expect(try await owed(api, fixture, fixture.carrier.id, to: fixture.shipper.id).balance == 1_275)
            try await verify(store, fixture)
        }
    }

    @Test("a batch over 10,000 lines is refused whole")
    func batchLimit() async throws {
        try await withAPI(bodyLimitBytes: 16 * 1_048_576) { api, fixture, store in
            let line: [String: Any] = ["palletType": "EPAL1", "quantity": 1]
            var movement = Self.pickup(fixture, quantity: 1, exchanged: 0)
            movement["lines"] = Array(repeating: line, count: 100)
            let response = try await api.post("\(fixture.base)/movements/batch", token: fixture.carrier.token,
                                              json: ["movements": Array(repeating: movement, count: 101)], key: "huge")
            #expect(response.status == .unprocessableContent)
            #expect(response.fieldErrors == ["movements"])
            #expect(try await store.movements(ecosystem: fixture.ecosystem, MovementFilter()).isEmpty)
        }
    }

    @Test("bad input is refused with every field named, and nothing is written")
    func badInput() async throws {
        try await withAPI { api, fixture, store in
            let future = Instant(TestClock.now().date.addingTimeInterval(3 * 86_400)).rfc3339(keepingOffset: false)
            let cases: [([String: Any], Set<String>)] = [
                (["kind": "pickup", "eventTime": hoursAgo(1), "from": ["partyId": fixture.shipper.id.lower],
                  "to": ["partyId": fixture.carrier.id.lower],
                  "lines": [["palletType": "EPAL1", "quantity": 0], ["palletType": "EPAL1", "quantity": -4],
                            ["palletType": "EPAL1", "quantity": 5_000_000]]],
                 ["lines[0].quantity", "lines[1].quantity", "lines[2].quantity"]),
                (["kind": "pickup", "eventTime": future, "from": ["partyId": fixture.foreignShipper.id.lower],
                  "to": ["partyId": fixture.carrier.id.lower], "lines": [["palletType": fixture.foreignPalletType.lower, "quantity": 1]]],
                 ["eventTime", "from.party", "lines[0].palletType"]),
                (["kind": "pickup", "eventTime": hoursAgo(1),
                  "from": ["partyId": fixture.shipper.id.lower, "siteId": fixture.customer.site!.lower],
                  "to": ["partyId": fixture.customer.id.lower], "lines": [["palletType": "EPAL1", "quantity": 1]]],
                 ["from.site", "to.party"]),
                (["kind": "delivery", "eventTime": "not a time", "lines": [["palletType": "EPAL1", "quantity": 1]]],
                 ["eventTime"]),
                (["kind": "pickup", "eventTime": hoursAgo(1), "from": ["partyId": fixture.shipper.id.lower],
                  "to": ["partyId": fixture.carrier.id.lower],
                  "lines": [["palletType": "CHEP", "quantity": 2, "exchangedQuantity": 2]]],
                 ["lines[0].exchangedQuantity"]),
                // A carrier declaring a movement it does not take part in.
                (["kind": "transfer", "eventTime": hoursAgo(1), "from": ["partyId": fixture.shipper.id.lower],
                  "to": ["partyId": fixture.warehouse.id.lower, "siteId": fixture.warehouse.site!.lower],
                  "lines": [["palletType": "EPAL1", "quantity": 2]]],
                 ["from.party"]),
            ]
            for (index, (body, fields)) in cases.enumerated() {
                let response = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: body, key: "bad-\(index)")
                #expect(response.status == .unprocessableContent, "case \(index): \(response.text)")
                #expect(response.headers[.contentType] == "application/problem+json")
                #expect(Set(response.fieldErrors).isSuperset(of: fields), "case \(index): \(response.fieldErrors)")
            }
            // A retired pallet type is refused.
            let retired = try await api.request(.patch, "\(fixture.base)/pallet-types/\(fixture.chep.lower)",
                                                token: fixture.shipper.token, json: ["active": false])
            #expect(retired.status == .ok)
            #expect(retired.json["active"] as? Bool == false)
            let onRetired = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: [
                "kind": "pickup", "eventTime": hoursAgo(1), "from": ["partyId": fixture.shipper.id.lower],
                "to": ["partyId": fixture.carrier.id.lower], "lines": [["palletType": "CHEP", "quantity": 2]],
            ], key: "retired")
            #expect(onRetired.status == .unprocessableContent)
            #expect(onRetired.fieldErrors == ["lines[0].palletType"])
            let malformed = try await api.request(.post, "\(fixture.base)/movements", token: fixture.carrier.token,
                                                  body: "{\"kind\": \"pickup\", ", headers: ["Idempotency-Key": "m"])
            #expect(malformed.status == .badRequest || malformed.status == .unprocessableContent)
            let wrongType = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: [
                "kind": "pickup", "eventTime": hoursAgo(1), "lines": [["palletType": "EPAL1", "quantity": "many"]],
            ], key: "wt")
            #expect(wrongType.status == .unprocessableContent || wrongType.status == .badRequest)
            #expect(wrongType.text.contains("quantity"))
            #expect(try await store.movements(ecosystem: fixture.ecosystem, MovementFilter()).isEmpty)
            var keys: Int64 = 0
            for try await count in try await store.client.query("SELECT count(*)::int8 FROM idempotency_keys").decode(Int64.self) {
                keys = count
            }
            #expect(keys == 0)
        }
    }

    @Test("the CSV export streams every movement across pages of 1,000, each once")
    func csvExportAcrossPages() async throws {
        try await withAPI { api, fixture, _ in
            var ids: [String] = []
            var pallets = 0
            for (batch, count) in [1_000, 1_000, 503].enumerated() {
                let items = (0..<count).map { k in Self.pickup(fixture, quantity: 1 + k % 9, exchanged: 0, hours: Double(k % 50) + 1) }
                pallets += (0..<count).reduce(0) { $0 + 1 + $1 % 9 }
                let response = try await api.post("\(fixture.base)/movements/batch", token: fixture.carrier.token,
                                                  json: ["movements": items], key: "pages-\(batch)")
                #expect(response.status == .created, "\(response.text)")
                ids += ((response.json["items"] as? [[String: Any]]) ?? []).compactMap { $0["id"] as? String }
            }
            #expect(ids.count == 2_503)
            let exported = try await api.get("\(fixture.base)/movements/export", token: fixture.shipper.token)
            #expect(exported.status == .ok)
            let lines = exported.text.components(separatedBy: "\r\n").filter { !$0.isEmpty }
            #expect(lines.first == MovementCSV.columns.joined(separator: ","))
            let rows = lines.dropFirst().map { $0.components(separatedBy: ",") }
            #expect(rows.count == 2_503)
            let references = rows.map { $0[0] }
            #expect(Set(references).count == rows.count, "a movement exported twice")
            #expect(Set(references) == Set(ids))
            let quantity = try #require(MovementCSV.columns.firstIndex(of: "quantity"))
            #expect(rows.reduce(0) { $0 + (Int($1[quantity]) ?? 0) } == pallets)
        }
    }

    @Test("CSV export then import round-trips the movements")
    func csvRoundTrip() async throws {
        try await withAPI { api, fixture, store in
            _ = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token,
                                   json: Self.pickup(fixture, quantity: 12, exchanged: 2), key: "x1")
            let returnTime = TestClock.time(day: TestClock.today - 2, hour: 16, offsetMinutes: 60)
            _ = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: [
                "kind": "return", "eventTime": returnTime, "from": ["partyId": fixture.carrier.id.lower],
                "to": ["partyId": fixture.shipper.id.lower, "siteId": fixture.shipper.site!.lower],
                "lines": [["palletType": "EPAL1", "quantity": 4], ["palletType": "EPAL1", "quality": "B", "quantity": 1]],
                "note": "empties, one \"damaged\", returned",
            ], key: "x2")
            let exported = try await api.get("\(fixture.base)/movements/export", token: fixture.carrier.token)
            #expect(exported.status == .ok)
            #expect(exported.text.hasPrefix(MovementCSV.columns.joined(separator: ",")))
            #expect(exported.text.contains(returnTime))
            let imported = try await api.request(.post, "\(fixture.base)/movements/import", token: fixture.carrier.token,
                                                 body: exported.text, contentType: "text/csv", headers: ["Idempotency-Key": "csv-1"])
            #expect(imported.status == .created, "\(imported.text)")
            #expect(imported.json["count"] as? Int == 2)
            #expect(imported.json["lineCount"] as? Int == 3)
            // Every figure doubled: (12 - 2 - 4) * 2 = 12 in quality A.
            #expect(try await owed(api, fixture, fixture.carrier.id, to: fixture.shipper.id).balance == 12)
            let replay = try await api.request(.post, "\(fixture.base)/movements/import", token: fixture.carrier.token,
                                               body: exported.text, contentType: "text/csv", headers: ["Idempotency-Key": "csv-1"])
            #expect(replay.body == imported.body)
            let broken = try await api.request(.post, "\(fixture.base)/movements/import", token: fixture.carrier.token,
                                               body: "kind,event_time,pallet_type,quantity\npickup,never,EPAL1,x\n",
                                               contentType: "text/csv", headers: ["Idempotency-Key": "csv-2"])
            #expect(broken.status == .unprocessableContent)
            #expect(Set(broken.fieldErrors) == ["row[2].event_time", "row[2].quantity"])
            #expect(try await store.movements(ecosystem: fixture.ecosystem, MovementFilter()).count == 4)
            try await verify(store, fixture)
        }
    }

    @Test("an inventory posts the difference with the book as an adjustment")
    func inventoryAdjusts() async throws {
        try await withAPI { api, fixture, store in
            let site = fixture.warehouse.site!.lower
            _ = try await api.post("\(fixture.base)/movements", token: fixture.warehouse.token, json: [
                "kind": "purchase", "eventTime": hoursAgo(5), "to": ["partyId": fixture.warehouse.id.lower, "siteId": site],
                "lines": [["palletType": "EPAL1", "quantity": 47]],
            ], key: "buy")
            let count = try await api.post("\(fixture.base)/movements", token: fixture.warehouse.token, json: [
                "kind": "inventory", "eventTime": hoursAgo(1), "from": ["partyId": fixture.warehouse.id.lower, "siteId": site],
                "lines": [["palletType": "EPAL1", "quantity": 40]],
            ], key: "count")
            #expect(count.status == .created, "\(count.text)")
            let holdings = try await api.get("\(fixture.base)/balances?view=holdings", token: fixture.shipper.token)
            let atSite = holdings.items.first { $0["siteId"] as? String == site && $0["accountClass"] as? String == "holding" }
            #expect(atSite?["balance"] as? Int == 40)
            let adjusted = holdings.items.first { $0["accountClass"] as? String == "adjusted" }
            #expect(adjusted?["balance"] as? Int == 7)
            try await verify(store, fixture)
        }
    }

    @Test("many clients declaring on the same accounts lose no update, never deadlock, and the ledger holds")
    func concurrentDeclarations() async throws {
        try await withAPI { api, fixture, store in
            let clients = 16
            let perClient = 10
            try await withThrowingTaskGroup(of: Void.self) { group in
                for client in 0..<clients {
                    group.addTask {
                        for index in 0..<perClient {
                            // Alternate directions so transactions touch the same accounts in both orders.
                            let body: [String: Any] = index % 2 == 0
                                ? Self.pickup(fixture, quantity: 3, exchanged: 1)
                                : ["kind": "return", "eventTime": hoursAgo(1), "from": ["partyId": fixture.carrier.id.lower],
                                   "to": ["partyId": fixture.shipper.id.lower, "siteId": fixture.shipper.site!.lower],
                                   "lines": [["palletType": "EPAL1", "quantity": 1]]]
                            let response = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token,
                                                              json: body, key: "c\(client)-\(index)")
                            #expect(response.status == .created, "\(response.text)")
                        }
                    }
                }
                try await group.waitForAll()
            }
            // Each client: 5 pickups of (3 - 1) = 10, minus 5 returns of 1 = 5; times 16 clients = 80.
            #expect(try await owed(api, fixture, fixture.carrier.id, to: fixture.shipper.id).balance == 80)
            #expect(try await store.movements(ecosystem: fixture.ecosystem, MovementFilter(limit: 1000)).count == clients * perClient)
            try await verify(store, fixture)
        }
    }

    @Test("listing filters by party and kind, pages with a cursor, and hides others' movements from partners")
    func listing() async throws {
        try await withAPI { api, fixture, _ in
            for index in 0..<5 {
                _ = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token,
                                       json: Self.pickup(fixture, quantity: index + 1, exchanged: 0), key: "l\(index)")
            }
            _ = try await api.post("\(fixture.base)/movements", token: fixture.otherCarrier.token, json: [
                "kind": "return", "eventTime": hoursAgo(1), "from": ["partyId": fixture.otherCarrier.id.lower],
                "to": ["partyId": fixture.shipper.id.lower], "lines": [["palletType": "EPAL1", "quantity": 1]],
            ], key: "other")
            let first = try await api.get("\(fixture.base)/movements?limit=2", token: fixture.shipper.token)
            #expect(first.items.count == 2)
            let cursor = try #require(first.json["nextCursor"] as? String)
            let second = try await api.get("\(fixture.base)/movements?limit=10&cursor=\(cursor)", token: fixture.shipper.token)
            #expect(second.items.count == 4)
            let firstIDs = Set(first.items.compactMap { $0["id"] as? String })
            #expect(firstIDs.isDisjoint(with: Set(second.items.compactMap { $0["id"] as? String })))
            let returns = try await api.get("\(fixture.base)/movements?kind=return", token: fixture.shipper.token)
            #expect(returns.items.count == 1)
            let carrierView = try await api.get("\(fixture.base)/movements?limit=100", token: fixture.carrier.token)
            #expect(carrierView.items.count == 5)
            let otherID = try #require(returns.items.first?["id"] as? String)
            #expect(try await api.get("\(fixture.base)/movements/\(otherID)", token: fixture.carrier.token).status == .notFound)
            let othersBalance = try await api.get("\(fixture.base)/balances?party=\(fixture.otherCarrier.id.lower)",
                                                  token: fixture.carrier.token)
            #expect(othersBalance.status == .notFound)
        }
    }
}
