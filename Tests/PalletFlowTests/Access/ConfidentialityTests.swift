import Foundation
import HTTPTypes
import PalletFlowCore
import PalletFlowStore
import PalletFlowWorker
import Testing

/// Two answers a caller cannot tell apart: same status and same problem, but for the
/// request id each carries.
func indistinguishable(_ first: TestResponse, _ second: TestResponse) -> Bool {
    var a = first.json, b = second.json
    a["instance"] = nil
    b["instance"] = nil
    return first.status == second.status && NSDictionary(dictionary: a).isEqual(to: b)
}

/// What one partner must not learn of another, read from each side's token.
@Suite("Confidentiality between partners")
struct ConfidentialityTests {
    /// Last month's pallet traffic of three partners, and a plenary session of two of them.
    /// Hand-computed restitution over the month (docs/indicators.md):
    /// - Carrier One: 20 issued, 5 back on the spot and 10 returned later: 15 / 20 = 0.75;
    /// - Carrier Two: 10 issued, 10 back on the spot: 1.0;
    /// - Warehouse: 40 transferred to it, 20 returned: 0.5.
    /// The ecosystem: 70 issued, 45 returned; rates sorted 0.5, 0.75, 1.0 give the first
    /// quartile 0.5 + 0.5 x 0.25 = 0.625, the median 0.75, the third quartile 0.875.
    func seedMonth(_ api: API, _ fixture: Fixture, _ store: Store, warehouseToo: Bool = true) async throws -> String {
        let month = TestClock.monthStart(-1)
        func declare(_ token: String, _ body: [String: Any], _ key: String) async throws {
            let response = try await api.post("\(fixture.base)/movements", token: token, json: body, key: key)
            #expect(response.status == .created, "\(response.text)")
        }
        let shipper = ["partyId": fixture.shipper.id.lower]
        func time(_ day: Int) -> String { TestClock.time(day: month + day, hour: 9) }
        try await declare(fixture.carrier.token, ["kind": "pickup", "eventTime": time(3), "from": shipper,
            "to": ["partyId": fixture.carrier.id.lower],
            "lines": [["palletType": "EPAL1", "quantity": 20, "exchangedQuantity": 5]]], "c1")
        try await declare(fixture.carrier.token, ["kind": "return", "eventTime": time(10), "to": shipper,
            "from": ["partyId": fixture.carrier.id.lower], "lines": [["palletType": "EPAL1", "quantity": 10]]], "c2")
        try await declare(fixture.otherCarrier.token, ["kind": "pickup", "eventTime": time(4), "from": shipper,
            "to": ["partyId": fixture.otherCarrier.id.lower],
            "lines": [["palletType": "EPAL1", "quantity": 10, "exchangedQuantity": 10]]], "o1")
        if warehouseToo {
            let warehouse = ["partyId": fixture.warehouse.id.lower, "siteId": fixture.warehouse.site!.lower]
            try await declare(fixture.warehouse.token, ["kind": "transfer", "eventTime": time(5), "from": shipper, "to": warehouse,
                "lines": [["palletType": "EPAL1", "quantity": 40]]], "w1")
            try await declare(fixture.warehouse.token, ["kind": "return", "eventTime": time(12), "from": warehouse, "to": shipper,
                "lines": [["palletType": "EPAL1", "quantity": 20]]], "w2")
        }
        try await IndicatorEngine(store: store).update(ecosystem: fixture.ecosystem)
        let created = try await api.post("\(fixture.base)/sessions", token: fixture.coordinator.token, json: [
            "title": "Plenary review", "scheduledAt": hoursAgo(1),
            "periodStart": Instant.date(ofDay: month), "periodEnd": Instant.date(ofDay: TestClock.monthStart(0)),
            "participantIds": [fixture.carrier.id.lower, fixture.otherCarrier.id.lower],
        ] as [String: Any])
        #expect(created.status == .created, "\(created.text)")
        let session = try #require(created.json["id"] as? String)
        for (owner, what) in [(fixture.otherCarrier, "Count empties at Depot Two"), (fixture.carrier, "Declare returns within 24 h"),
                              (fixture.shipper, "Send the monthly statement earlier")] {
            let action = try await api.post("\(fixture.base)/sessions/\(session)/actions", token: fixture.coordinator.token, json: [
                "description": what, "ownerId": owner.id.lower, "dueDate": TestClock.date(30),
            ])
            #expect(action.status == .created, "\(action.text)")
        }
        return session
    }

    @Test("a partner reads its own section of a plenary report and anonymous aggregates, in JSON, CSV, HTML and the dashboard")
    func plenaryReportFromEachSide() async throws {
        try await withAPI { api, fixture, store in
            let session = try await seedMonth(api, fixture, store)
            let path = "\(fixture.base)/sessions/\(session)/report"
            let secrets = [fixture.otherCarrier.id.lower, "Carrier Two", "Count empties at Depot Two"]

            let json = try await api.get(path, token: fixture.carrier.token)
            #expect(json.status == .ok, "\(json.text)")
            let participants = (json.json["participants"] as? [[String: Any]]) ?? []
            #expect(participants.map { $0["memberId"] as? String } == [fixture.carrier.id.lower])
            #expect(participants.first?["restitutionRate"] as? Double == 0.75)
            let aggregates = try #require(json.json["aggregates"] as? [String: Any])
            #expect(aggregates["partners"] as? Int == 3)
            #expect(aggregates["issued"] as? Int == 70)
            #expect(aggregates["returned"] as? Int == 45)
            #expect(abs((aggregates["restitutionRate"] as? Double ?? 0) - 45.0 / 70.0) < 1e-12)
            #expect(aggregates["restitutionFirstQuartile"] as? Double == 0.625)
            #expect(aggregates["restitutionMedian"] as? Double == 0.75)
            #expect(aggregates["restitutionThirdQuartile"] as? Double == 0.875)
            let sessionShown = try #require(json.json["session"] as? [String: Any])
            #expect(Set((sessionShown["participantIds"] as? [String]) ?? []) == [fixture.carrier.id.lower, fixture.coordinator.id.lower])
            #expect(((json.json["actions"] as? [[String: Any]]) ?? []).compactMap { $0["description"] as? String }.sorted()
                == ["Declare returns within 24 h", "Send the monthly statement earlier"])

            let csv = try await api.request(.get, path, token: fixture.carrier.token, headers: ["Accept": "text/csv"])
            let html = try await api.request(.get, path, token: fixture.carrier.token, headers: ["Accept": "text/html"])
            let list = try await api.get("\(fixture.base)/sessions", token: fixture.carrier.token)
            #expect(csv.text.contains("ecosystem (3 partners) restitution median,,,,,,,,75.0%"))
            #expect(html.text.contains("Restitution, median partner"))
            var browser = Browser(api: api)
            _ = try await browser.signIn(token: fixture.carrier.token)
            let page = try await browser.get("/app/sessions/\(session)")
            #expect(page.status == .ok)
            #expect(page.text.contains("Carrier One"))
            for (name, answer) in [("JSON", json), ("CSV", csv), ("HTML", html), ("session list", list), ("dashboard", page)] {
                for secret in secrets {
                    #expect(!answer.text.contains(secret), "the \(name) answer shows \(secret) to Carrier One")
                }
            }

            // The shipper and the coordinator see both participants and every action.
            for token in [fixture.coordinator.token, fixture.shipper.token] {
                let full = try await api.get(path, token: token)
                #expect(((full.json["participants"] as? [[String: Any]]) ?? []).count == 2)
                #expect(((full.json["actions"] as? [[String: Any]]) ?? []).count == 3)
                #expect(full.text.contains("Carrier Two"))
            }
        }
    }

    @Test("with fewer than 3 partners issued pallets, a partner is not shown the aggregates, which would be the other's figures")
    func aggregatesWithheld() async throws {
        try await withAPI { api, fixture, store in
            let session = try await seedMonth(api, fixture, store, warehouseToo: false)
            let path = "\(fixture.base)/sessions/\(session)/report"
            let mine = try await api.get(path, token: fixture.carrier.token)
            #expect(mine.status == .ok)
            #expect(mine.json["aggregates"] == nil)
            let html = try await api.request(.get, path, token: fixture.carrier.token, headers: ["Accept": "text/html"])
            #expect(html.text.contains("Fewer than 3 partners had pallets issued"))
            // 30 issued in all, minus its own 20: the other carrier's 10 would show.
            #expect(!html.text.contains(">30<"))
            let coordinator = try await api.get(path, token: fixture.coordinator.token)
            #expect((coordinator.json["aggregates"] as? [String: Any])?["issued"] as? Int == 30)
        }
    }

    @Test("movement cursors carry only the caller's own movement: other ecosystems' traffic does not change them, nor do they work there")
    func opaqueCursors() async throws {
        try await withAPI { api, fixture, store in
            // The carrier's five returns, with another ecosystem's traffic recorded in between.
            let foreignBase = "/v1/ecosystems/\(fixture.foreignEcosystem.lower)"
            let site = fixture.foreignSite.lower
            for index in 0..<5 {
                _ = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: [
                    "kind": "return", "eventTime": hoursAgo(Double(10 - index)), "from": ["partyId": fixture.carrier.id.lower],
                    "to": ["partyId": fixture.shipper.id.lower], "lines": [["palletType": "EPAL1", "quantity": index + 1]],
                ], key: "r\(index)")
                for other in 0..<(3 * index) {
                    let foreign = try await api.post("\(foreignBase)/movements", token: fixture.foreignShipper.token, json: [
                        "kind": "pickup", "eventTime": hoursAgo(1), "from": ["partyId": fixture.foreignShipper.id.lower, "siteId": site],
                        "to": ["partyId": fixture.foreignCarrier.id.lower], "lines": [["palletType": "EPAL1", "quantity": 1]],
                    ], key: "f\(index)-\(other)")
                    #expect(foreign.status == .created, "\(foreign.text)")
                }
            }
            let first = try await api.get("\(fixture.base)/movements?limit=2", token: fixture.carrier.token)
            let cursor = try #require(first.json["nextCursor"] as? String)
            // The cursor is the last movement of the page, in 16 bytes, and nothing else: not the
            // ledger's sequence number, whose gaps would count the other ecosystem's movements.
            let last = try #require(UUID(uuidString: first.items.last?["id"] as? String ?? ""))
            let bytes = withUnsafeBytes(of: last.uuid) { Data($0) }
            #expect(cursor == bytes.base64EncodedString().replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: ""))
            // The pages follow each other without repeats or gaps: 5, 4 | 3, 2 | 1.
            var seen = first.items.compactMap { ($0["lines"] as? [[String: Any]])?.first?["quantity"] as? Int }
            var next: String? = cursor
            while let page = next {
                let response = try await api.get("\(fixture.base)/movements?limit=2&cursor=\(page)", token: fixture.carrier.token)
                #expect(response.status == .ok, "\(response.text)")
                seen += response.items.compactMap { ($0["lines"] as? [[String: Any]])?.first?["quantity"] as? Int }
                next = response.json["nextCursor"] as? String
            }
            #expect(seen == [5, 4, 3, 2, 1])
            // In another ecosystem the cursor is no cursor at all, like one never given.
            let elsewhere = try await api.get("\(foreignBase)/movements?cursor=\(cursor)", token: fixture.foreignShipper.token)
            #expect(elsewhere.status == .unprocessableContent)
            #expect(elsewhere.fieldErrors == ["cursor"])
            _ = store
        }
    }

    @Test("job ids are random: a job of another ecosystem answers like none at all")
    func jobIds() async throws {
        try await withAPI { api, fixture, _ in
            let accepted = try await api.post("\(fixture.base)/indicators/recompute", token: fixture.shipper.token, json: [:])
            #expect(accepted.status == .accepted)
            let id = try #require(accepted.json["id"] as? String)
            #expect(UUID(uuidString: id) != nil)
            #expect(accepted.headers[.location] == "\(fixture.base)/jobs/\(id)")
            #expect(try await api.get("\(fixture.base)/jobs/\(id)", token: fixture.shipper.token).status == .ok)
            let foreignBase = "/v1/ecosystems/\(fixture.foreignEcosystem.lower)"
            let theirs = try await api.get("\(foreignBase)/jobs/\(id)", token: fixture.foreignShipper.token)
            let none = try await api.get("\(foreignBase)/jobs/\(UUID().uuidString.lowercased())", token: fixture.foreignShipper.token)
            #expect(theirs.status == .notFound)
            #expect(indistinguishable(theirs, none))
        }
    }

    @Test("a member added by a PGLN another ecosystem uses gets the name given here, never the other ecosystem's")
    func memberNamesStayInTheirEcosystem() async throws {
        try await withAPI { api, fixture, _ in
            let pgln = "3000000000120"
            let here = try await api.post("\(fixture.base)/members", token: fixture.shipper.token,
                                          json: ["name": "Transports Dupont", "role": "carrier", "pgln": pgln])
            #expect(here.status == .created, "\(here.text)")
            let foreignBase = "/v1/ecosystems/\(fixture.foreignEcosystem.lower)"
            let there = try await api.post("\(foreignBase)/members", token: fixture.foreignShipper.token,
                                           json: ["name": "Dupont Logistique", "role": "carrier", "pgln": pgln])
            #expect(there.status == .created, "\(there.text)")
            #expect(there.json["name"] as? String == "Dupont Logistique")
            #expect(!there.text.contains("Transports Dupont"))
            let foreignList = try await api.get("\(foreignBase)/members", token: fixture.foreignShipper.token)
            #expect(!foreignList.text.contains("Transports Dupont"))
            let list = try await api.get("\(fixture.base)/members", token: fixture.shipper.token)
            #expect(list.items.contains { $0["name"] as? String == "Transports Dupont" })
            #expect(!list.text.contains("Dupont Logistique"))
        }
    }

    @Test("naming a movement or a statement that is not yours answers exactly like naming one that does not exist")
    func notYoursIsNotFound() async throws {
        try await withAPI { api, fixture, _ in
            // Carrier Two's own pickup, which Carrier One must not be able to probe.
            let theirs = try await api.post("\(fixture.base)/movements", token: fixture.otherCarrier.token, json: [
                "kind": "pickup", "eventTime": hoursAgo(3), "from": ["partyId": fixture.shipper.id.lower],
                "to": ["partyId": fixture.otherCarrier.id.lower], "lines": [["palletType": "EPAL1", "quantity": 5]],
            ], key: "o")
            let theirID = try #require(theirs.json["id"] as? String)
            let note = try await api.post("\(fixture.base)/pallet-notes", token: fixture.customer.token, json: [
                "issuerId": fixture.customer.id.lower, "holderId": fixture.carrier.id.lower, "palletType": "EPAL1",
                "quantity": 4, "issueDate": TestClock.date(-1),
            ])
            let noteID = try #require(note.json["id"] as? String)
            func redeem(_ movement: String) async throws -> TestResponse {
                try await api.post("\(fixture.base)/pallet-notes/\(noteID)/redemptions", token: fixture.carrier.token,
                                   json: ["quantity": 1, "movementId": movement])
            }
            let probe = try await redeem(theirID)
            let unknown = try await redeem(UUID().uuidString.lowercased())
            #expect(probe.status == .unprocessableContent)
            #expect(indistinguishable(probe, unknown), "\(probe.text) vs \(unknown.text)")

            func statement(_ party: UUID) async throws -> TestResponse {
                try await api.get("\(fixture.base)/statements?party=\(party.lower)&from=\(hoursAgo(48))&until=\(hoursAgo(0))",
                                  token: fixture.carrier.token)
            }
            let other = try await statement(fixture.otherCarrier.id)
            let nobody = try await statement(UUID())
            let foreign = try await statement(fixture.foreignCarrier.id)
            #expect(other.status == .notFound)
            #expect(indistinguishable(other, nobody), "\(other.text) vs \(nobody.text)")
            #expect(indistinguishable(other, foreign))
        }
    }
}
