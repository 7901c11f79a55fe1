import Foundation
import HTTPTypes
import PalletFlowCore
import PalletFlowStore
import PalletFlowWorker
import Testing

@Suite("Pallet notes and statements")
struct NotesAndStatementsTests {
    @Test("a note is issued, partly redeemed, transferred, redeemed in full; never beyond its quantity")
    func noteLifecycle() async throws {
        try await withAPI { api, fixture, store in
            let issued = try await api.post("\(fixture.base)/pallet-notes", token: fixture.customer.token, json: [
                "issuerId": fixture.customer.id.lower, "holderId": fixture.carrier.id.lower, "palletType": "EPAL1",
                "quantity": 10, "issueDate": TestClock.date(-4), "serial": "GDTI-1",
            ])
            #expect(issued.status == .created, "\(issued.text)")
            // Due date from the ecosystem's rule: 30 days after issue, so 26 days from today.
            #expect(issued.json["dueDate"] as? String == TestClock.date(26))
            #expect(issued.json["state"] as? String == "open")
            let id = try #require(issued.json["id"] as? String)

            // Only the holder (or the shipper) redeems.
            let byIssuer = try await api.post("\(fixture.base)/pallet-notes/\(id)/redemptions", token: fixture.customer.token,
                                              json: ["quantity": 1])
            #expect(byIssuer.status == .forbidden)
            let partial = try await api.post("\(fixture.base)/pallet-notes/\(id)/redemptions", token: fixture.carrier.token,
                                             json: ["quantity": 4])
            #expect(partial.status == .ok, "\(partial.text)")
            #expect(partial.json["outstanding"] as? Int == 6)
            #expect(partial.json["state"] as? String == "partially_redeemed")

            let tooMuch = try await api.post("\(fixture.base)/pallet-notes/\(id)/redemptions", token: fixture.carrier.token,
                                             json: ["quantity": 7])
            #expect(tooMuch.status == .unprocessableContent)
            #expect(tooMuch.fieldErrors == ["quantity"])

            // Handing it to the shipper waits for the shipper's consent: it takes the claim.
            let proposed = try await api.post("\(fixture.base)/pallet-notes/\(id)/transfer", token: fixture.carrier.token,
                                              json: ["holderId": fixture.shipper.id.lower])
            #expect(proposed.status == .ok, "\(proposed.text)")
            #expect(proposed.json["holderId"] as? String == fixture.carrier.id.lower)
            #expect(proposed.json["pendingHolderId"] as? String == fixture.shipper.id.lower)
            let moved = try await api.request(.post, "\(fixture.base)/pallet-notes/\(id)/transfer/accept", token: fixture.shipper.token)
            #expect(moved.status == .ok, "\(moved.text)")
            #expect(moved.json["holderId"] as? String == fixture.shipper.id.lower)
            #expect(moved.json["pendingHolderId"] == nil)
            // The carrier no longer holds it and cannot redeem it any more.
            let formerHolder = try await api.post("\(fixture.base)/pallet-notes/\(id)/redemptions", token: fixture.carrier.token,
                                                  json: ["quantity": 1])
            #expect(formerHolder.status == .forbidden || formerHolder.status == .notFound)
            let rest = try await api.post("\(fixture.base)/pallet-notes/\(id)/redemptions", token: fixture.shipper.token,
                                          json: ["quantity": 6])
            #expect(rest.json["state"] as? String == "redeemed")
            #expect(rest.json["outstanding"] as? Int == 0)

            // Another carrier never sees it.
            let others = try await api.get("\(fixture.base)/pallet-notes", token: fixture.otherCarrier.token)
            #expect(others.items.isEmpty)
            _ = store
        }
    }

    @Test("a note past its due date with pallets owed is overdue")
    func overdue() async throws {
        try await withAPI { api, fixture, _ in
            let issued = try await api.post("\(fixture.base)/pallet-notes", token: fixture.shipper.token, json: [
                "issuerId": fixture.customer.id.lower, "holderId": fixture.carrier.id.lower, "palletType": "EPAL1",
                "quantity": 3, "issueDate": TestClock.date(-60), "dueDate": TestClock.date(-1),
            ])
            #expect(issued.status == .created)
            #expect(issued.json["state"] as? String == "overdue")
            let listed = try await api.get("\(fixture.base)/pallet-notes?state=overdue", token: fixture.carrier.token)
            #expect(listed.items.count == 1)
        }
    }

    @Test("a statement gives opening, movements and closing per type; the partner acknowledges it as shown")
    func statement() async throws {
        try await withAPI { api, fixture, store in
            func pickup(_ time: String, _ quantity: Int, _ exchanged: Int, _ key: String) async throws {
                let response = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: [
                    "kind": "pickup", "eventTime": time, "from": ["partyId": fixture.shipper.id.lower],
                    "to": ["partyId": fixture.carrier.id.lower],
                    "lines": [["palletType": "EPAL1", "quantity": quantity, "exchangedQuantity": exchanged]],
                ], key: key)
                #expect(response.status == .created, "\(response.text)")
            }
            // The statement of last month (UTC): one pickup the month before, two movements in it.
            let month = TestClock.monthStart(-1)
            let from = TestClock.time(day: month, hour: 0), until = TestClock.time(day: TestClock.monthStart(0), hour: 0)
            try await pickup(TestClock.time(day: TestClock.monthStart(-2) + 14, hour: 10, offsetMinutes: 120), 20, 5, "before")
            // before the period: opening 15
            try await pickup(TestClock.time(day: month + 2, hour: 9, offsetMinutes: 60), 30, 10, "in1") // +20
            _ = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: [
                "kind": "return", "eventTime": TestClock.time(day: month + 19, hour: 16, offsetMinutes: 60),
                "from": ["partyId": fixture.carrier.id.lower],
                "to": ["partyId": fixture.shipper.id.lower], "lines": [["palletType": "EPAL1", "quantity": 8]],
            ], key: "in2")                                                   // -8
            let path = "\(fixture.base)/statements?party=\(fixture.carrier.id.lower)&from=\(from)&until=\(until)"
            let statement = try await api.get(path, token: fixture.carrier.token)
            #expect(statement.status == .ok, "\(statement.text)")
            let line = try #require((statement.json["lines"] as? [[String: Any]])?.first)
            #expect(line["opening"] as? Int == 15)
            #expect(line["movements"] as? Int == 12)
            #expect(line["closing"] as? Int == 27)
            #expect((statement.json["entries"] as? [[String: Any]])?.count == 2)

            let csv = try await api.request(.get, path, token: fixture.carrier.token, headers: ["Accept": "text/csv"])
            #expect(csv.status == .ok)
            #expect(csv.text.contains("EPAL1,A,15,12,27"))

            let answer = try await api.post("\(fixture.base)/statements/answers", token: fixture.carrier.token, json: [
                "partyId": fixture.carrier.id.lower, "counterpartyId": fixture.shipper.id.lower,
                "from": from, "until": until, "answer": "acknowledged",
            ])
            #expect(answer.status == .created, "\(answer.text)")
            #expect(answer.json["statementHash"] as? String == statement.json["hash"] as? String)
            let again = try await api.get(path, token: fixture.shipper.token)
            #expect((again.json["answers"] as? [[String: Any]])?.first?["answer"] as? String == "acknowledged")

            // The worker issues the month's statement once, with the same figures and hash.
            let monthName = String(Instant.date(ofDay: month).prefix(7))
            #expect(try await MonthlyStatements(store: store).issue(ecosystem: fixture.ecosystem, month: monthName) == 1)
            #expect(try await MonthlyStatements(store: store).issue(ecosystem: fixture.ecosystem, month: monthName) == 0)
            let issued = try await api.get("\(fixture.base)/statements/issued", token: fixture.carrier.token)
            #expect(issued.items.count == 1)
            #expect(issued.items.first?["hash"] as? String == statement.json["hash"] as? String)
            #expect(try await api.get("\(fixture.base)/statements/issued", token: fixture.otherCarrier.token).items.isEmpty)
            // Another carrier can neither read nor answer it.
            #expect(try await api.get(path, token: fixture.otherCarrier.token).status == .notFound)
        }
    }
}
