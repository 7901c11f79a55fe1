import Foundation
import HTTPTypes
import NIOCore
import PalletFlowContract
import PalletFlowCore
import PalletFlowStore
import PostgresNIO
import Testing

/// Every write is safe to retry with an Idempotency-Key, with the declarations' semantics.
@Suite("Idempotency of every write")
struct IdempotencyTests {
    /// A write sent twice with one key, then once with the key and another body.
    struct Retry {
        var name: String
        var method: HTTPRequest.Method = .post
        var path: String
        var token: String
        var body: [String: Any]
        var other: [String: Any]
        /// A count of what the write makes or changes; it must move once.
        var count: @Sendable () async throws -> Int
        var expected: Int
    }

    /// A plain observation of one pallet, valid and posting nothing.
    func observation(hours: Double) -> [String: Any] {
        ["type": "ObjectEvent", "action": "OBSERVE", "eventTime": localTime(hoursAgo: hours), "eventTimeZoneOffset": "+01:00",
         "epcList": ["urn:epc:id:grai:4000001.11111.42"]]
    }

    func send(_ api: API, _ retry: Retry, _ body: [String: Any], key: String) async throws -> TestResponse {
        try await api.request(retry.method, retry.path, token: retry.token, json: body, headers: ["Idempotency-Key": key])
    }

    func check(_ api: API, _ retry: Retry) async throws {
        let key = "retry-\(retry.name)"
        let first = try await send(api, retry, retry.body, key: key)
        #expect((200..<300).contains(first.status.code), "\(retry.name): \(first.text)")
        #expect(first.headers[.init("Idempotent-Replayed")!] == nil)
        let again = try await send(api, retry, retry.body, key: key)
        #expect(again.status == first.status, "\(retry.name): \(again.text)")
        #expect(again.body == first.body, "\(retry.name): the replay differs from the first answer")
        #expect(again.headers[.init("Idempotent-Replayed")!] == "true", "\(retry.name)")
        #expect(again.headers[.contentType] == first.headers[.contentType], "\(retry.name)")
        #expect(again.headers[.location] == first.headers[.location], "\(retry.name)")
        let reused = try await send(api, retry, retry.other, key: key)
        #expect(reused.status == .unprocessableContent, "\(retry.name): \(reused.text)")
        #expect(reused.problemType?.hasSuffix("idempotency-key-reused") == true, "\(retry.name)")
        #expect(try await retry.count() == retry.expected, "\(retry.name): written more than once")
    }

    @Test("each kind of write, sent twice with one key, is done once and answers the same bytes; another body is 422")
    func everyWrite() async throws {
        try await withAPI { api, fixture, store in
            let base = fixture.base
            let shipper = fixture.shipper.token, carrier = fixture.carrier.token, coordinator = fixture.coordinator.token
            func declared(_ token: String, _ body: [String: Any], key: String) async throws -> String {
                try #require(try await api.post("\(base)/movements", token: token, json: body, key: key).json["id"] as? String)
            }
            func pickup(_ quantity: Int) -> [String: Any] {
                ["kind": "pickup", "eventTime": hoursAgo(4), "from": ["partyId": fixture.shipper.id.lower],
                 "to": ["partyId": fixture.carrier.id.lower], "lines": [["palletType": "EPAL1", "quantity": quantity]]]
            }
            let toConfirm = try await declared(carrier, pickup(10), key: "m1")
            let toContest = try await declared(carrier, pickup(11), key: "m2")
            let toReverse = try await declared(carrier, pickup(12), key: "m3")
            let toResolve = try await declared(carrier, pickup(13), key: "m4")
            _ = try await api.post("\(base)/movements/\(toResolve)/contest", token: shipper, json: ["lines": [["lineNo": 0, "quantity": 9]]])
            let note = try #require(try await api.post("\(base)/pallet-notes", token: fixture.customer.token, json: [
                "issuerId": fixture.customer.id.lower, "holderId": fixture.carrier.id.lower, "palletType": "EPAL1",
                "quantity": 9, "issueDate": TestClock.date(-1)]).json["id"] as? String)
            func rows(_ sql: String) -> @Sendable () async throws -> Int {
                { [store] in
                    var count = 0
                    for try await value in try await store.client.query(PostgresQuery(unsafeSQL: sql)).decode(Int64.self) {
                        count = Int(value)
                    }
                    return count
                }
            }
            let retries: [Retry] = [
                Retry(name: "member", path: "\(base)/members", token: shipper, body: ["name": "Transports Neuf", "role": "carrier"],
                      other: ["name": "Transports Autre", "role": "carrier"], count: rows("SELECT count(*) FROM memberships"), expected: 6 + 2 + 1),
                Retry(name: "site", path: "\(base)/sites", token: shipper,
                      body: ["memberId": fixture.carrier.id.lower, "name": "Hub Sud"],
                      other: ["memberId": fixture.carrier.id.lower, "name": "Hub Nord"],
                      count: rows("SELECT count(*) FROM sites WHERE name LIKE 'Hub %'"), expected: 1),
                Retry(name: "pallet type", path: "\(base)/pallet-types", token: shipper, body: ["code": "H1", "name": "Plastic H1"],
                      other: ["code": "H2", "name": "Plastic H2"], count: rows("SELECT count(*) FROM pallet_types WHERE code LIKE 'H%'"),
                      expected: 1),
                Retry(name: "confirmation", path: "\(base)/movements/\(toConfirm)/confirm", token: shipper, body: [:],
                      other: ["x": 1], count: rows("SELECT count(*) FROM audit_log WHERE action = 'movement.confirm'"), expected: 1),
                Retry(name: "contest", path: "\(base)/movements/\(toContest)/contest", token: shipper,
                      body: ["lines": [["lineNo": 0, "quantity": 10]]], other: ["lines": [["lineNo": 0, "quantity": 9]]],
                      count: rows("SELECT count(*) FROM discrepancies"), expected: 2),
                Retry(name: "reversal", path: "\(base)/movements/\(toReverse)/reversal", token: carrier,
                      body: ["reason": "wrong truck"], other: ["reason": "other"],
                      count: rows("SELECT count(*) FROM movements WHERE reverses_id IS NOT NULL"), expected: 1),
                Retry(name: "resolution", path: "\(base)/movements/\(toResolve)/resolve", token: coordinator,
                      body: ["accept": "agreed", "lines": [["lineNo": 0, "quantity": 11]]],
                      other: ["accept": "agreed", "lines": [["lineNo": 0, "quantity": 12]]],
                      count: rows("SELECT count(*) FROM movements WHERE corrects_id IS NOT NULL"), expected: 1),
                Retry(name: "note", path: "\(base)/pallet-notes", token: fixture.customer.token,
                      body: ["issuerId": fixture.customer.id.lower, "holderId": fixture.carrier.id.lower, "palletType": "EPAL1",
                             "quantity": 2, "issueDate": TestClock.date(-1)],
                      other: ["issuerId": fixture.customer.id.lower, "holderId": fixture.carrier.id.lower, "palletType": "EPAL1",
                              "quantity": 3, "issueDate": TestClock.date(-1)],
                      count: rows("SELECT count(*) FROM pallet_notes"), expected: 2),
                Retry(name: "redemption", path: "\(base)/pallet-notes/\(note)/redemptions", token: carrier, body: ["quantity": 2],
                      other: ["quantity": 3], count: rows("SELECT redeemed_quantity FROM pallet_notes WHERE quantity = 9"), expected: 2),
                Retry(name: "alert rule", method: .put, path: "\(base)/alert-rules", token: shipper,
                      body: ["kind": "restitution_below", "threshold": 0.9], other: ["kind": "restitution_below", "threshold": 0.8],
                      count: rows("SELECT count(*) FROM audit_log WHERE action = 'alert_rule.set'"), expected: 1),
                Retry(name: "session", path: "\(base)/sessions", token: coordinator,
                      body: ["title": "Review", "scheduledAt": hoursAgo(0), "periodStart": TestClock.date(-30),
                             "periodEnd": TestClock.date(0), "participantIds": [fixture.carrier.id.lower]],
                      other: ["title": "Other review", "scheduledAt": hoursAgo(0), "periodStart": TestClock.date(-30),
                              "periodEnd": TestClock.date(0), "participantIds": [fixture.carrier.id.lower]],
                      count: rows("SELECT count(*) FROM mediation_sessions"), expected: 1),
                Retry(name: "charter", path: "\(base)/charters", token: shipper,
                      body: ["title": "Charte", "clauses": [["number": 1, "text": "Return empties within 30 days"]]],
                      other: ["title": "Autre charte", "clauses": [["number": 1, "text": "Return empties within 30 days"]]],
                      count: rows("SELECT count(*) FROM charter_versions"), expected: 1),
                Retry(name: "statement answer", path: "\(base)/statements/answers", token: carrier,
                      body: ["partyId": fixture.carrier.id.lower, "counterpartyId": fixture.shipper.id.lower, "from": hoursAgo(48),
                             "until": hoursAgo(0), "answer": "acknowledged"],
                      other: ["partyId": fixture.carrier.id.lower, "counterpartyId": fixture.shipper.id.lower, "from": hoursAgo(48),
                              "until": hoursAgo(0), "answer": "contested"],
                      count: rows("SELECT count(*) FROM statement_answers"), expected: 1),
                Retry(name: "EPCIS capture", path: "\(base)/epcis/capture", token: shipper,
                      body: epcisDocument([observation(hours: 2)]), other: epcisDocument([observation(hours: 3)]),
                      count: rows("SELECT count(*) FROM epcis_capture_jobs"), expected: 1),
            ]
            for retry in retries { try await check(api, retry) }
        }
    }

    @Test("a write whose answer holds a secret is done once; its replay names what it made but never shows the secret again")
    func secretsAreNotReplayed() async throws {
        try await withAPI { api, fixture, store in
            let path = "\(fixture.base)/members/\(fixture.carrier.id.lower)/tokens"
            let first = try await api.request(.post, path, token: fixture.shipper.token, json: ["name": "tms"],
                                              headers: ["Idempotency-Key": "t1"])
            #expect(first.status == .created, "\(first.text)")
            let secret = try #require(first.json["secret"] as? String)
            let id = try #require((first.json["token"] as? [String: Any])?["id"] as? String)
            let again = try await api.request(.post, path, token: fixture.shipper.token, json: ["name": "tms"],
                                              headers: ["Idempotency-Key": "t1"])
            #expect(again.status == .conflict)
            #expect(again.problemType?.hasSuffix("idempotency-secret-not-kept") == true)
            #expect(again.text.contains(id))
            #expect(!again.text.contains(secret))
            // One token made; the secret is nowhere in the database, only its hash.
            let tokens = try await api.get(path, token: fixture.shipper.token).items.filter { $0["name"] as? String == "tms" }
            #expect(tokens.count == 1)
            var stored = 0
            for try await _ in try await store.client.query(
                "SELECT 1 FROM idempotency_keys WHERE position(\(ByteBuffer(string: secret)) IN response_body) > 0").decode(Int.self) {
                stored += 1
            }
            #expect(stored == 0)
        }
    }

    @Test("two requests with one key at once: one write, both answered with it")
    func racingRetries() async throws {
        try await withAPI { api, fixture, store in
            let answers = try await withThrowingTaskGroup(of: TestResponse.self) { group in
                for _ in 0..<6 {
                    group.addTask {
                        try await api.request(.post, "\(fixture.base)/members", token: fixture.shipper.token,
                                              json: ["name": "Entrepôt Est", "role": "warehouse"], headers: ["Idempotency-Key": "race"])
                    }
                }
                return try await group.reduce(into: [TestResponse]()) { $0.append($1) }
            }
            #expect(answers.allSatisfy { $0.status == .created }, "\(answers.map(\.text))")
            #expect(Set(answers.map(\.body)).count == 1)
            #expect(answers.filter { $0.headers[.init("Idempotent-Replayed")!] == nil }.count == 1)
            let members = try await store.members(ecosystem: fixture.ecosystem).filter { $0.name == "Entrepôt Est" }
            #expect(members.count == 1)
        }
    }

    @Test("the contract declares the Idempotency-Key header on every POST, PUT and PATCH but the invitation acceptance")
    func contractDeclaresTheHeader() {
        var missing: [String] = []
        var path = ""
        var operation: (method: String, lines: [Substring])?
        func close() {
            if let op = operation, path != "/v1/invitations/accept", !op.lines.contains(where: { $0.contains("IdempotencyKey") }) {
                missing.append("\(op.method) \(path)")
            }
            operation = nil
        }
        for line in Contract.document.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("  /") && line.hasSuffix(":") {
                close()
                path = String(line.dropFirst(2).dropLast())
            } else if ["    post:", "    put:", "    patch:"].contains(line) {
                close()
                operation = (String(line.dropFirst(4).dropLast()), [])
            } else if line.hasPrefix("    ") && !line.hasPrefix("      ") && !line.isEmpty {
                close()
            } else if !line.hasPrefix(" ") && !line.isEmpty {
                close()
            } else {
                operation?.lines.append(line)
            }
        }
        close()
        #expect(missing.isEmpty, "\(missing)")
    }

    @Test("a key sent with a method the route does not serve meets the router's 405, never a replay or a 422")
    func wrongMethodIsNotAnOperation() async throws {
        try await withAPI { api, fixture, _ in
            let path = "\(fixture.base)/members"
            let made = try await api.request(.post, path, token: fixture.shipper.token, json: ["name": "Neuf", "role": "carrier"],
                                             headers: ["Idempotency-Key": "k"])
            #expect(made.status == .created)
            for method in [HTTPRequest.Method.put, .patch] {
                let wrong = try await api.request(method, path, token: fixture.shipper.token,
                                                  json: ["name": "Neuf", "role": "carrier"], headers: ["Idempotency-Key": "k"])
                #expect(wrong.status == .methodNotAllowed, "\(method): \(wrong.text)")
            }
        }
    }
}
