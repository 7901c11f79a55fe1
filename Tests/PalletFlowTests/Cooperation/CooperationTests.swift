import Foundation
import HTTPTypes
import PalletFlowCore
import PalletFlowStore
import PalletFlowWorker
import Testing

@Suite("Cooperation: prescription, charters, mediation")
struct CooperationTests {
    @Test("an invitation is single use and expires; accepting it moves the partner along the funnel")
    func invitationAndFunnel() async throws {
        try await withAPI { api, fixture, store in
            let invited = try await api.post("\(fixture.base)/invitations", token: fixture.shipper.token,
                                             json: ["name": "Nouveau Transport", "role": "carrier", "validDays": 7])
            #expect(invited.status == .created, "\(invited.text)")
            let code = try #require(invited.json["code"] as? String)
            #expect(try await api.post("\(fixture.base)/invitations", token: fixture.carrier.token,
                                       json: ["name": "X", "role": "carrier"]).status == .forbidden)
            var funnel = try await api.get("\(fixture.base)/funnel", token: fixture.coordinator.token)
            #expect((funnel.json["counts"] as? [String: Int])?["invited"] == 1)

            let accepted = try await api.post("/v1/invitations/accept", token: nil, json: ["code": code])
            #expect(accepted.status == .created, "\(accepted.text)")
            let token = try #require(accepted.json["token"] as? String)
            let memberID = try #require(accepted.json["memberId"] as? String)
            #expect(try await api.get("/v1/me", token: token).json["role"] as? String == "carrier")
            let again = try await api.post("/v1/invitations/accept", token: nil, json: ["code": code])
            #expect(again.status == .notFound)

            funnel = try await api.get("\(fixture.base)/funnel", token: fixture.shipper.token)
            let entry = (funnel.json["entries"] as? [[String: Any]])?.first { $0["memberId"] as? String == memberID }
            #expect(entry?["stage"] as? String == "joined")
            // Its first declaration makes it active.
            let declared = try await api.post("\(fixture.base)/movements", token: token, json: [
                "kind": "pickup", "eventTime": hoursAgo(2), "from": ["partyId": fixture.shipper.id.lower],
                "to": ["partyId": memberID], "lines": [["palletType": "EPAL1", "quantity": 5]],
            ], key: "new-1")
            #expect(declared.status == .created)
            funnel = try await api.get("\(fixture.base)/funnel", token: fixture.shipper.token)
            let active = (funnel.json["entries"] as? [[String: Any]])?.first { $0["memberId"] as? String == memberID }
            #expect(active?["stage"] as? String == "active")
            #expect(try await api.get("\(fixture.base)/funnel", token: fixture.carrier.token).status == .forbidden)
            _ = store
        }
    }

    @Test("clause and kit item numbers outside 1 to 9999 are refused with the field named, and nothing is stored")
    func numbersInRange() async throws {
        try await withAPI { api, fixture, store in
            // 3,000,000,000 does not fit PostgreSQL's integer: refused by the API before the
            // database is asked (it used to come back as a database error on "body").
            let charter = try await api.post("\(fixture.base)/charters", token: fixture.shipper.token, json: [
                "title": "Charte", "clauses": [["number": 3_000_000_000, "text": "a"], ["number": 0, "text": "b"],
                                               ["number": 9_999, "text": "c"]],
            ])
            #expect(charter.status == .unprocessableContent, "\(charter.text)")
            #expect(Set(charter.fieldErrors) == ["clauses[0].number", "clauses[1].number"])
            let storedCharters = try await api.get("\(fixture.base)/charters", token: fixture.shipper.token)
            #expect(storedCharters.status == .ok && storedCharters.items.isEmpty)
            let kit = try await api.post("\(fixture.base)/kits", token: fixture.shipper.token, json: [
                "name": "Kit", "items": [["number": -1, "kind": "document", "title": "t"],
                                         ["number": 10_000, "kind": "document", "title": "u"]],
            ])
            #expect(kit.status == .unprocessableContent, "\(kit.text)")
            #expect(Set(kit.fieldErrors) == ["items[0].number", "items[1].number"])
            let storedKits = try await api.get("\(fixture.base)/kits", token: fixture.shipper.token)
            #expect(storedKits.status == .ok && storedKits.items.isEmpty)
        }
    }

    @Test("a published charter is frozen, a signature binds its content hash, clauses are judged met or not met")
    func charterLifecycle() async throws {
        try await withAPIAndOwner { api, fixture, store, owner in
            let draft = try await api.post("\(fixture.base)/charters", token: fixture.shipper.token, json: [
                "title": "Charte palettes 2026",
                "clauses": [
                    ["number": 1, "text": "Restitution of at least 95% a month", "metric": "restitution_rate",
                     "comparator": ">=", "target": 0.95, "period": "month", "roles": ["carrier"]],
                    ["number": 2, "text": "Declare within 24 h", "metric": "declared_within_24h_share", "comparator": ">=",
                     "target": 0.95, "period": "month"],
                    ["number": 3, "text": "Exchange only grade B or better"],
                    ["number": 4, "text": "Only B or better handed over", "metric": "exchanged_grade_b_or_better_share",
                     "comparator": ">=", "target": 1, "period": "month"],
                    ["number": 5, "text": "Answer within 48 h", "metric": "answered_within_48h_share",
                     "comparator": ">=", "target": 0.9, "period": "month"],
                ],
            ])
            #expect(draft.status == .created, "\(draft.text)")
            let id = try #require(draft.json["id"] as? String)
            // Partners do not see drafts, nor can they sign one.
            #expect(try await api.get("\(fixture.base)/charters", token: fixture.carrier.token).items.isEmpty)
            let published = try await api.post("\(fixture.base)/charters/\(id)/publish", token: fixture.shipper.token, json: [:] as [String: Any])
            #expect(published.status == .ok, "\(published.text)")
            let hash = try #require(published.json["contentHash"] as? String)
            #expect(hash.count == 64)
            // Frozen: even the database owner cannot change its clauses.
            await #expect(throws: (any Error).self) {
                try await owner.client.query("UPDATE charter_clauses SET target = 0.5")
            }
            let wrongHash = try await api.post("\(fixture.base)/charters/\(id)/signatures", token: fixture.carrier.token,
                                               json: ["contentHash": String(repeating: "0", count: 64)])
            #expect(wrongHash.status == .unprocessableContent)
            let signed = try await api.post("\(fixture.base)/charters/\(id)/signatures", token: fixture.carrier.token,
                                            json: ["contentHash": hash])
            #expect(signed.status == .ok, "\(signed.text)")
            #expect((signed.json["signatures"] as? [[String: Any]])?.count == 1)
            _ = try await api.post("\(fixture.base)/charters/\(id)/signatures", token: fixture.otherCarrier.token,
                                   json: ["contentHash": hash])

            // Last month: Carrier One issued 20, returned 19 (95%: met); Carrier Two issued 10, returned 5 (50%: not met).
            let lastMonth = PeriodKind.month.start(of: PeriodKind.month.start(of: TestClock.now().day) - 1)
            let day = Instant.date(ofDay: lastMonth + 3)
            func declare(_ token: String, _ body: [String: Any], _ key: String) async throws {
                let response = try await api.post("\(fixture.base)/movements", token: token, json: body, key: key)
                #expect(response.status == .created, "\(response.text)")
            }
            try await declare(fixture.carrier.token, ["kind": "pickup", "eventTime": "\(day)T08:00:00Z",
                "from": ["partyId": fixture.shipper.id.lower], "to": ["partyId": fixture.carrier.id.lower],
                "lines": [["palletType": "EPAL1", "quantity": 20, "exchangedQuantity": 15]]], "m1")
            // Carrier Two hands over 5 empties, 2 of them grade C: 3/5 = 60% B or better.
            try await declare(fixture.carrier.token, ["kind": "return", "eventTime": "\(day)T16:00:00Z",
                "from": ["partyId": fixture.carrier.id.lower], "to": ["partyId": fixture.shipper.id.lower],
                "lines": [["palletType": "EPAL1", "quantity": 4]]], "m2")
            try await declare(fixture.otherCarrier.token, ["kind": "pickup", "eventTime": "\(day)T09:00:00Z",
                "from": ["partyId": fixture.shipper.id.lower], "to": ["partyId": fixture.otherCarrier.id.lower],
                "lines": [["palletType": "EPAL1", "quantity": 9, "exchangedQuantity": 3, "exchangedQuality": "B"],
                          ["palletType": "EPAL1", "quantity": 1, "exchangedQuantity": 2, "exchangedQuality": "C"]]], "m3")
            try await IndicatorEngine(store: store).update(ecosystem: fixture.ecosystem)
            let evaluations = try await store.evaluateCharter(ecosystem: fixture.ecosystem, period: .month, startDay: lastMonth)
            let restitution = evaluations.filter { $0.clause == 1 }
            #expect(restitution.first { $0.member == fixture.carrier.id }?.result == .met)
            #expect(restitution.first { $0.member == fixture.carrier.id }?.measured == 0.95)
            #expect(restitution.first { $0.member == fixture.otherCarrier.id }?.result == .notMet)
            #expect(restitution.first { $0.member == fixture.otherCarrier.id }?.measured == 0.5)
            // Clause 3 is prose only: never evaluated.
            #expect(!evaluations.contains { $0.clause == 3 })
            // Grades handed over: Carrier One 15 of 15 (met), Carrier Two 3 of 5 (not met).
            let grades = evaluations.filter { $0.clause == 4 }
            #expect(grades.first { $0.member == fixture.carrier.id }?.result == .met)
            #expect(grades.first { $0.member == fixture.otherCarrier.id }?.measured == 0.6)
            #expect(grades.first { $0.member == fixture.otherCarrier.id }?.result == .notMet)
            let own = try await api.get("\(fixture.base)/compliance", token: fixture.carrier.token)
            #expect(!own.items.isEmpty && own.items.allSatisfy { $0["memberId"] as? String == fixture.carrier.id.lower })

            // A new version asks for re-signing: the old signature does not carry over.
            let second = try await api.post("\(fixture.base)/charters", token: fixture.shipper.token, json: [
                "title": "Charte palettes 2026 v2", "clauses": [["number": 1, "text": "Return empties within 30 days"]],
            ])
            let secondID = try #require(second.json["id"] as? String)
            let secondPublished = try await api.post("\(fixture.base)/charters/\(secondID)/publish", token: fixture.shipper.token,
                                                     json: [:] as [String: Any])
            #expect((secondPublished.json["signatures"] as? [[String: Any]])?.isEmpty == true)
            #expect(secondPublished.json["contentHash"] as? String != hash)
        }
    }

    @Test("a mediation session from opening to closed: report from the facts, resolution posts a correction, actions carried over")
    func mediationSession() async throws {
        try await withAPI { api, fixture, store in
            // Facts: a pickup and a delivery contested by the customer.
            _ = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: [
                "kind": "pickup", "eventTime": hoursAgo(48), "from": ["partyId": fixture.shipper.id.lower],
                "to": ["partyId": fixture.carrier.id.lower], "lines": [["palletType": "EPAL1", "quantity": 30, "exchangedQuantity": 22]],
            ], key: "f1")
            let delivery = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: [
                "kind": "delivery", "eventTime": hoursAgo(30), "from": ["partyId": fixture.carrier.id.lower],
                "to": ["partyId": fixture.customer.id.lower], "lines": [["palletType": "EPAL1", "quantity": 30, "exchangedQuantity": 20]],
            ], key: "f2")
            let deliveryID = try #require(delivery.json["id"] as? String)
            let contest = try await api.post("\(fixture.base)/movements/\(deliveryID)/contest", token: fixture.customer.token, json: [
                "lines": [["lineNo": 0, "quantity": 30, "exchangedQuantity": 26]], "note": "26 empties handed back",
            ])
            #expect(contest.status == .created)
            try await IndicatorEngine(store: store).update(ecosystem: fixture.ecosystem)

            let today = TestClock.now().day
            let periodStart = Instant.date(ofDay: PeriodKind.month.start(of: today))
            let periodEnd = Instant.date(ofDay: PeriodKind.month.end(startingAt: PeriodKind.month.start(of: today)))
            func open(_ title: String) async throws -> String {
                let created = try await api.post("\(fixture.base)/sessions", token: fixture.coordinator.token, json: [
                    "title": title, "scheduledAt": hoursAgo(-24), "periodStart": periodStart, "periodEnd": periodEnd,
                    "agenda": "Balances, the contested delivery, next steps",
                    "participantIds": [fixture.shipper.id.lower, fixture.carrier.id.lower, fixture.customer.id.lower],
                ])
                #expect(created.status == .created, "\(created.text)")
                return try #require(created.json["id"] as? String)
            }
            #expect(try await api.post("\(fixture.base)/sessions", token: fixture.carrier.token, json: [
                "title": "x", "scheduledAt": hoursAgo(0), "periodStart": periodStart, "periodEnd": periodEnd, "participantIds": [],
            ]).status == .forbidden)
            let first = try await open("Médiation de novembre")
            let base = "\(fixture.base)/sessions/\(first)"

            // The report's numbers are the ledger's: the carrier owes 30 - 22 = 8 (pending), one open discrepancy.
            let report = try await api.get("\(base)/report", token: fixture.coordinator.token)
            #expect(report.status == .ok, "\(report.text)")
            let carrier = try #require((report.json["participants"] as? [[String: Any]])?.first { $0["memberId"] as? String == fixture.carrier.id.lower })
            let balance = (carrier["balances"] as? [[String: Any]])?.first
            #expect(balance?["palletType"] as? String == "EPAL1")
            #expect(balance?["pending"] as? Int == 8)
            #expect(carrier["openDiscrepancies"] as? Int == 1)
            #expect(carrier["issued"] as? Int == 30)
            #expect(carrier["returned"] as? Int == 22)
            // The report reads the indicators of its participants only: the carrier's 8 pallets
            // out since the pickup two days ago age in the 0-30 days bucket; the other carrier,
            // not a participant, is not read.
            let aging = try await store.agingToDate(ecosystem: fixture.ecosystem, partners: [fixture.carrier.id])
            #expect(aging == [fixture.carrier.id: [8, 0, 0, 0]])
            let totals = try await store.monthTotals(ecosystem: fixture.ecosystem, startDay: PeriodKind.month.start(of: today - 2),
                                                     endDay: today + 1, partners: [fixture.carrier.id, fixture.otherCarrier.id])
            #expect(Set(totals.keys) == [fixture.carrier.id])
            // (The customer has figures of its own, left out above since it was not asked for.)
            #expect(try await store.monthTotals(ecosystem: fixture.ecosystem, startDay: PeriodKind.month.start(of: today - 2),
                                                endDay: today + 1).keys.contains(fixture.customer.id))
            #expect(PeriodTotals.combine(totals[fixture.carrier.id] ?? [:])?.issued == 30)
            #expect(PeriodTotals.combine(totals[fixture.carrier.id] ?? [:])?.returned == 22)
            // Overdue notes the carrier issued count; one it holds, or one not yet due, does not.
            let yesterday = Instant.date(ofDay: today - 1), lastMonth = Instant.date(ofDay: today - 30)
            for (issuer, holder, due) in [(fixture.carrier.id, fixture.shipper.id, yesterday),
                                          (fixture.shipper.id, fixture.carrier.id, yesterday),
                                          (fixture.carrier.id, fixture.shipper.id, Instant.date(ofDay: today + 10))] {
                _ = try await store.issueNote(ecosystem: fixture.ecosystem, terms: PalletNoteTerms(
                    issuer: issuer, holder: holder, palletType: fixture.epal, quality: .a, quantity: 5),
                    issueDate: lastMonth, dueDate: due, by: issuer)
            }
            let withNotes = try await api.get("\(base)/report", token: fixture.coordinator.token)
            let carrierNotes = (withNotes.json["participants"] as? [[String: Any]])?.first { $0["memberId"] as? String == fixture.carrier.id.lower }
            #expect(carrierNotes?["overdueNotes"] as? Int == 1)
            let html = try await api.request(.get, "\(base)/report", token: fixture.coordinator.token, headers: ["Accept": "text/html"])
            #expect(html.status == .ok)
            #expect(html.text.contains("<svg"))
            #expect(html.text.contains("Médiation de novembre"))
            #expect(html.text.contains("26 empties handed back"))
            let csv = try await api.request(.get, "\(base)/report", token: fixture.shipper.token, headers: ["Accept": "text/csv"])
            #expect(csv.text.contains("Carrier One,carrier"))
            // The CSV's last two columns: 1 open discrepancy, 1 overdue note.
            #expect(csv.text.split(whereSeparator: \.isNewline).first { $0.hasPrefix("Carrier One,") }?.hasSuffix(",1,1") == true)
            // Another carrier is not a participant: 404.
            #expect(try await api.get("\(base)/report", token: fixture.otherCarrier.token).status == .notFound)

            // At the session: the agreed figure (24 empties) posts a reversal and a correction.
            let resolved = try await api.post("\(base)/resolutions", token: fixture.coordinator.token, json: [
                "movementId": deliveryID, "accept": "agreed", "lines": [["lineNo": 0, "quantity": 30, "exchangedQuantity": 24]],
            ])
            #expect(resolved.status == .ok, "\(resolved.text)")
            #expect(resolved.json["correctionMovementId"] != nil)
            let customerOwes = try await api.get("\(fixture.base)/balances?party=\(fixture.customer.id.lower)", token: fixture.shipper.token)
            #expect(customerOwes.items.first { $0["counterpartyId"] as? String == fixture.carrier.id.lower }?["balance"] as? Int == 6)
            #expect(try await store.verifyLedger(ecosystem: fixture.ecosystem).holds)

            let action = try await api.post("\(base)/actions", token: fixture.coordinator.token, json: [
                "description": "Count empties at the dock with both drivers", "ownerId": fixture.customer.id.lower,
                "dueDate": Instant.date(ofDay: today + 14),
            ])
            #expect(action.status == .created)
            // Longer than the contract's maxLength (5,000 and 20,000 characters): refused, nothing kept.
            let tooLong = try await api.request(.patch, base, token: fixture.coordinator.token, json: [
                "state": "held", "reviewPartner": String(repeating: "é", count: 5_001),
                "minutes": String(repeating: "x", count: 20_001), "reviewInside": String(repeating: "y", count: 5_000),
            ])
            #expect(tooLong.status == .unprocessableContent)
            #expect(Set(tooLong.fieldErrors) == ["reviewPartner", "minutes"])
            let unchanged = try await store.session(ecosystem: fixture.ecosystem, id: try #require(UUID(uuidString: first)))
            #expect(unchanged?.state == "planned")
            #expect(unchanged?.reviewPartner == nil)
            let updated = try await api.request(.patch, base, token: fixture.coordinator.token, json: [
                "state": "held", "minutes": "Agreed on 24 empties.", "reviewInside": "We counted late.",
                "reviewRelationship": "Open and factual.", "reviewPartner": "The dock now counts with the driver.",
            ])
            #expect(updated.status == .ok, "\(updated.text)")
            #expect(updated.json["state"] as? String == "held")
            let closed = try await api.request(.patch, base, token: fixture.coordinator.token, json: ["state": "closed"])
            #expect(closed.json["state"] as? String == "closed")
            let back = try await api.request(.patch, base, token: fixture.coordinator.token, json: ["state": "planned"])
            #expect(back.status == .conflict || back.status == .unprocessableContent)

            // The next session's report follows the action up.
            let second = try await open("Médiation de décembre")
            let next = try await api.get("\(fixture.base)/sessions/\(second)/report", token: fixture.coordinator.token)
            // The delivery's discrepancy was resolved at the first session: none open now.
            let carrierNext = (next.json["participants"] as? [[String: Any]])?.first { $0["memberId"] as? String == fixture.carrier.id.lower }
            #expect(carrierNext?["openDiscrepancies"] as? Int == 0)
            let carried = try #require((next.json["previousActions"] as? [[String: Any]])?.first)
            #expect(carried["description"] as? String == "Count empties at the dock with both drivers")
            #expect(carried["status"] as? String == "open")
            // The owner marks it done; the report shows it.
            let actionID = try #require(action.json["id"] as? String)
            let done = try await api.request(.patch, "\(base)/actions/\(actionID)", token: fixture.customer.token, json: ["status": "done"])
            #expect(done.status == .ok)
            let after = try await api.get("\(fixture.base)/sessions/\(second)/report", token: fixture.coordinator.token)
            #expect((after.json["previousActions"] as? [[String: Any]])?.first?["status"] as? String == "done")
        }
    }
}

@Suite("Cooperation kits and the statement after the work")
struct KitsAndWorkStatementsTests {
    @Test("kit items tied to facts complete themselves; a completed kit moves the funnel; checklist ticked by the partner")
    func kitProgress() async throws {
        try await withAPI { api, fixture, store in
            let kit = try await api.post("\(fixture.base)/kits", token: fixture.shipper.token, json: [
                "name": "Kit transporteur", "items": [
                    ["number": 1, "kind": "charter", "title": "Sign the charter", "fact": "charter_signed"],
                    ["number": 2, "kind": "training", "title": "Dock counting training",
                     "scheduledAt": TestClock.time(day: TestClock.today + 7, hour: 9)],
                    ["number": 3, "kind": "checklist", "title": "Connect your TMS to the API"],
                    ["number": 4, "kind": "document", "title": "Guide", "url": "https://example.org/guide.pdf"],
                ],
            ])
            #expect(kit.status == .created, "\(kit.text)")
            let kitID = try #require(kit.json["id"] as? String)
            let assigned = try await api.post("\(fixture.base)/kits/\(kitID)/assignments", token: fixture.shipper.token,
                                              json: ["memberId": fixture.carrier.id.lower])
            #expect(assigned.status == .created, "\(assigned.text)")
            let assignment = try #require(assigned.json["id"] as? String)
            #expect(assigned.json["completed"] as? Bool == false)

            // The charter signature completes item 1 by itself.
            let charter = try await api.post("\(fixture.base)/charters", token: fixture.shipper.token,
                                             json: ["title": "C", "clauses": [["number": 1, "text": "Be fair"]]])
            let charterID = try #require(charter.json["id"] as? String)
            let published = try await api.post("\(fixture.base)/charters/\(charterID)/publish", token: fixture.shipper.token,
                                               json: [:] as [String: Any])
            _ = try await api.post("\(fixture.base)/charters/\(charterID)/signatures", token: fixture.carrier.token,
                                   json: ["contentHash": published.json["contentHash"] as? String ?? ""])
            var mine = try await api.get("\(fixture.base)/kit-assignments", token: fixture.carrier.token)
            var items = mine.items.first?["items"] as? [[String: Any]] ?? []
            #expect(items.first { ($0["item"] as? [String: Any])?["number"] as? Int == 1 }?["byFact"] as? Bool == true)

            // The partner ticks its checklist item but not the training; the coordinator records attendance.
            let tick = try await api.request(.put, "\(fixture.base)/kit-assignments/\(assignment)/items/3", token: fixture.carrier.token,
                                             json: ["done": true])
            #expect(tick.status == .ok, "\(tick.text)")
            #expect(try await api.request(.put, "\(fixture.base)/kit-assignments/\(assignment)/items/2", token: fixture.carrier.token,
                                          json: ["done": true]).status == .forbidden)
            _ = try await api.request(.put, "\(fixture.base)/kit-assignments/\(assignment)/items/2", token: fixture.coordinator.token,
                                      json: ["done": true, "attended": true])
            _ = try await api.request(.put, "\(fixture.base)/kit-assignments/\(assignment)/items/4", token: fixture.shipper.token,
                                      json: ["done": true])
            mine = try await api.get("\(fixture.base)/kit-assignments", token: fixture.carrier.token)
            #expect(mine.items.first?["completed"] as? Bool == true)
            items = mine.items.first?["items"] as? [[String: Any]] ?? []
            #expect(items.first { ($0["item"] as? [String: Any])?["number"] as? Int == 2 }?["attended"] as? Bool == true)
            let funnel = try await api.get("\(fixture.base)/funnel", token: fixture.shipper.token)
            let stage = (funnel.json["entries"] as? [[String: Any]])?.first { $0["memberId"] as? String == fixture.carrier.id.lower }
            #expect(stage?["stage"] as? String == "kit_completed")
            // Another carrier sees no assignment of this one.
            #expect(try await api.get("\(fixture.base)/kit-assignments", token: fixture.otherCarrier.token).items.isEmpty)
            _ = store
        }
    }

    @Test("the statement after the work counts the month's work and the losses avoided; the partner acknowledges it")
    func workStatement() async throws {
        try await withAPI { api, fixture, store in
            // Two months before this one: the first lost 4 pallets (4 x 15.00), the last one 1:
            // 45.00 of losses avoided.
            func declare(_ body: [String: Any], _ key: String) async throws {
                let response = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: body, key: key)
                #expect(response.status == .created, "\(response.text)")
            }
            let shipper = ["partyId": fixture.shipper.id.lower]
            let carrier = ["partyId": fixture.carrier.id.lower]
            let earlier = TestClock.monthStart(-2), last = TestClock.monthStart(-1), this = TestClock.monthStart(0)
            try await declare(["kind": "pickup", "eventTime": TestClock.time(day: earlier + 4, hour: 8), "from": shipper, "to": carrier,
                               "lines": [["palletType": "EPAL1", "quantity": 30, "exchangedQuantity": 20]]], "o1")
            try await declare(["kind": "loss", "eventTime": TestClock.time(day: earlier + 19, hour: 8), "from": carrier, "to": shipper,
                               "lines": [["palletType": "EPAL1", "quantity": 4]]], "o2")
            try await declare(["kind": "return", "eventTime": TestClock.time(day: last + 2, hour: 8), "from": carrier, "to": shipper,
                               "lines": [["palletType": "EPAL1", "quantity": 5]]], "n1")
            try await declare(["kind": "loss", "eventTime": TestClock.time(day: last + 9, hour: 8), "from": carrier, "to": shipper,
                               "lines": [["palletType": "EPAL1", "quantity": 1]]], "n2")
            try await IndicatorEngine(store: store).update(ecosystem: fixture.ecosystem)
            let issued = try await store.issueWorkStatements(ecosystem: fixture.ecosystem, shipper: fixture.shipper.id,
                                                             startDay: last, endDay: this)
            #expect(issued >= 1)
            #expect(try await store.issueWorkStatements(ecosystem: fixture.ecosystem, shipper: fixture.shipper.id,
                                                        startDay: last, endDay: this) == 0)
            let mine = try await api.get("\(fixture.base)/work-statements", token: fixture.carrier.token)
            let statement = try #require(mine.items.first)
            #expect(mine.items.allSatisfy { $0["memberId"] as? String == fixture.carrier.id.lower })
            #expect(statement["movementsHandled"] as? Int == 2)
            #expect(statement["palletsRecovered"] as? Int == 5)
            #expect(statement["losses"] as? Int == 1)
            #expect(statement["lossesValueMinor"] as? Int == 1_500)
            #expect(statement["previousLossesValueMinor"] as? Int == 6_000)
            #expect(statement["lossesAvoidedMinor"] as? Int == 4_500)
            let id = try #require(statement["id"] as? String)
            #expect(try await api.post("\(fixture.base)/work-statements/\(id)/answer", token: fixture.shipper.token,
                                       json: ["answer": "acknowledged"]).status == .forbidden)
            let answered = try await api.post("\(fixture.base)/work-statements/\(id)/answer", token: fixture.carrier.token,
                                              json: ["answer": "answered", "comment": "The last loss was at the consignee's dock."])
            #expect(answered.status == .ok, "\(answered.text)")
            #expect(answered.json["answer"] as? String == "answered")
            #expect(try await api.get("\(fixture.base)/work-statements", token: fixture.otherCarrier.token).items
                .allSatisfy { $0["memberId"] as? String != fixture.carrier.id.lower })
        }
    }
}
