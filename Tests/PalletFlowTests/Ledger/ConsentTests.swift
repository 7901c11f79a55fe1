import Foundation
import HTTPTypes
import PalletFlowCore
import PalletFlowStore
import Testing

/// Nobody changes what they owe alone: a write that lowers one party's debt to another
/// counts only once that other party consents. Balances by hand, from each side's token.
@Suite("Consent between parties")
struct ConsentTests {
    /// What the carrier owes the shipper in EPAL1 A: (balance, confirmed).
    func carrierOwes(_ api: API, _ fixture: Fixture) async throws -> (balance: Int, confirmed: Int) {
        let response = try await api.get("\(fixture.base)/balances?party=\(fixture.carrier.id.lower)", token: fixture.shipper.token)
        let row = response.items.first {
            $0["counterpartyId"] as? String == fixture.shipper.id.lower && $0["palletTypeId"] as? String == fixture.epal.lower
                && $0["quality"] as? String == "A"
        }
        return ((row?["balance"] as? Int) ?? 0, (row?["confirmed"] as? Int) ?? 0)
    }

    func declare(_ api: API, _ fixture: Fixture, _ token: String, _ body: [String: Any], key: String) async throws -> String {
        let response = try await api.post("\(fixture.base)/movements", token: token, json: body, key: key)
        #expect(response.status == .created, "\(response.text)")
        return try #require(response.json["id"] as? String)
    }

    func pickup(_ fixture: Fixture, _ quantity: Int) -> [String: Any] {
        ["kind": "pickup", "eventTime": hoursAgo(5), "from": ["partyId": fixture.shipper.id.lower],
         "to": ["partyId": fixture.carrier.id.lower], "lines": [["palletType": "EPAL1", "quantity": quantity]]]
    }

    func post(_ api: API, _ path: String, _ token: String, _ json: [String: Any] = [:]) async throws -> TestResponse {
        try await api.post(path, token: token, json: json)
    }

    @Test("a carrier's loss written off against the shipper is pending until the shipper confirms it, and can be contested")
    func lossNeedsTheOwner() async throws {
        try await withAPI { api, fixture, store in
            let picked = try await declare(api, fixture, fixture.carrier.token, pickup(fixture, 30), key: "p")
            #expect(try await post(api, "\(fixture.base)/movements/\(picked)/confirm", fixture.shipper.token).status == .ok)
            #expect(try await carrierOwes(api, fixture) == (30, 30))

            let loss: [String: Any] = ["kind": "loss", "eventTime": hoursAgo(2), "from": ["partyId": fixture.carrier.id.lower],
                                       "to": ["partyId": fixture.shipper.id.lower],
                                       "lines": [["palletType": "EPAL1", "quantity": 4]]]
            let declared = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: loss, key: "l1")
            #expect(declared.json["status"] as? String == "declared")
            #expect(declared.json["counterpartyId"] as? String == fixture.shipper.id.lower)
            // 26 on the books, but only the shipper's word makes it confirmed: 30 stays confirmed.
            #expect(try await carrierOwes(api, fixture) == (26, 30))
            let lossID = try #require(declared.json["id"] as? String)
            // The carrier cannot confirm its own write-off.
            #expect(try await post(api, "\(fixture.base)/movements/\(lossID)/confirm", fixture.carrier.token).status == .forbidden)
            #expect(try await post(api, "\(fixture.base)/movements/\(lossID)/confirm", fixture.shipper.token).status == .ok)
            #expect(try await carrierOwes(api, fixture) == (26, 26))

            // A second loss the shipper disputes: it says 1 was lost, not 3.
            let second = try await declare(api, fixture, fixture.carrier.token, loss.merging(
                ["lines": [["palletType": "EPAL1", "quantity": 3]]]) { $1 }, key: "l2")
            let contested = try await post(api, "\(fixture.base)/movements/\(second)/contest", fixture.shipper.token,
                                           ["lines": [["lineNo": 0, "quantity": 1]]])
            #expect(contested.status == .created, "\(contested.text)")
            #expect(try await carrierOwes(api, fixture) == (23, 26))
            #expect(try await store.verifyLedger(ecosystem: fixture.ecosystem).holds)
        }
    }

    @Test("the reversal of a movement nobody confirmed is final: no confirm, no contest, its discrepancy closes, confirmed balances untouched")
    func reversalOfUnconfirmedIsFinal() async throws {
        try await withAPI { api, fixture, store in
            let picked = try await declare(api, fixture, fixture.carrier.token, pickup(fixture, 30), key: "p")
            #expect(try await post(api, "\(fixture.base)/movements/\(picked)/confirm", fixture.shipper.token).status == .ok)
            // The carrier says it brought 10 back; the shipper counts 6 and contests.
            let returned = try await declare(api, fixture, fixture.carrier.token, [
                "kind": "return", "eventTime": hoursAgo(3), "from": ["partyId": fixture.carrier.id.lower],
                "to": ["partyId": fixture.shipper.id.lower], "lines": [["palletType": "EPAL1", "quantity": 10]],
            ], key: "r")
            #expect(try await post(api, "\(fixture.base)/movements/\(returned)/contest", fixture.shipper.token,
                                   ["lines": [["lineNo": 0, "quantity": 6]]]).status == .created)
            #expect(try await carrierOwes(api, fixture) == (20, 30))
            // The carrier withdraws its declaration.
            let reversed = try await post(api, "\(fixture.base)/movements/\(returned)/reversal", fixture.carrier.token,
                                          ["reason": "counted again: wrong truck"])
            #expect(reversed.status == .created, "\(reversed.text)")
            let reversal = try #require(reversed.json["reversalId"] as? String)
            let shown = try await api.get("\(fixture.base)/movements/\(reversal)", token: fixture.shipper.token)
            #expect(shown.json["status"] as? String == "final")
            #expect(shown.json["confirmed"] as? Bool == false)
            #expect(shown.json["counterpartyId"] == nil)
            // Neither side can turn it into a confirmed figure or dispute it.
            for token in [fixture.shipper.token, fixture.carrier.token] {
                let confirm = try await post(api, "\(fixture.base)/movements/\(reversal)/confirm", token)
                #expect(confirm.status == .forbidden || confirm.status == .conflict, "\(confirm.text)")
                let contest = try await post(api, "\(fixture.base)/movements/\(reversal)/contest", token,
                                             ["lines": [["lineNo": 0, "quantity": 1]]])
                #expect(contest.status == .forbidden || contest.status == .conflict, "\(contest.text)")
            }
            // Back to the pickup alone, confirmed and pending alike.
            #expect(try await carrierOwes(api, fixture) == (30, 30))
            let discrepancies = try await api.get("\(fixture.base)/discrepancies", token: fixture.shipper.token).items
            let closed = try #require(discrepancies.first { $0["movementId"] as? String == returned })
            #expect(closed["resolution"] as? String == "reversed")
            #expect(closed["resolvedAt"] != nil)
            #expect(try await api.get("\(fixture.base)/discrepancies?open=true", token: fixture.shipper.token).items.isEmpty)
            #expect(try await store.verifyLedger(ecosystem: fixture.ecosystem).holds)
        }
    }

    @Test("the declarer's right to reverse ends with the confirmation, judged on the locked movement")
    func declarerReversalRecheckedAfterLock() async throws {
        try await withAPI { api, fixture, store in
            let picked = try await declare(api, fixture, fixture.carrier.token, pickup(fixture, 12), key: "p")
            #expect(try await post(api, "\(fixture.base)/movements/\(picked)/confirm", fixture.shipper.token).status == .ok)
            #expect(try await post(api, "\(fixture.base)/movements/\(picked)/reversal", fixture.carrier.token).status == .forbidden)
            // The store refuses it on the row it locked, whatever the caller read before.
            let id = try #require(UUID(uuidString: picked))
            await #expect(throws: StoreError.self) {
                try await store.transaction { connection in
                    try await store.reverse(ecosystem: fixture.ecosystem, movement: id, by: fixture.carrier.id,
                                            right: .whileUnconfirmed, correction: nil, correctionConfirmed: false,
                                            reason: nil, on: connection)
                }
            }
            #expect(try await carrierOwes(api, fixture) == (12, 12))
            // The shipper still may: the reversal of a confirmed movement takes confirmed entries back.
            #expect(try await post(api, "\(fixture.base)/movements/\(picked)/reversal", fixture.shipper.token).status == .created)
            #expect(try await carrierOwes(api, fixture) == (0, 0))
        }
    }

    @Test("a pallet note moves to a new holder only when it accepts; only the holder redeems or hands it on")
    func noteTransferNeedsTheNewHolder() async throws {
        try await withAPI { api, fixture, store in
            let issued = try await api.post("\(fixture.base)/pallet-notes", token: fixture.customer.token, json: [
                "issuerId": fixture.customer.id.lower, "holderId": fixture.carrier.id.lower, "palletType": "EPAL1",
                "quantity": 8, "issueDate": TestClock.date(-2),
            ])
            let id = try #require(issued.json["id"] as? String)
            let base = "\(fixture.base)/pallet-notes/\(id)"
            // The shipper is not the holder: it neither redeems nor hands the note on.
            #expect(try await post(api, "\(base)/redemptions", fixture.shipper.token, ["quantity": 1]).status == .forbidden)
            #expect(try await post(api, "\(base)/transfer", fixture.shipper.token, ["holderId": fixture.warehouse.id.lower])
                .status == .forbidden)
            // The carrier proposes it to the warehouse, which declines; then to the shipper, which accepts.
            let toWarehouse = try await post(api, "\(base)/transfer", fixture.carrier.token, ["holderId": fixture.warehouse.id.lower])
            #expect(toWarehouse.json["pendingHolderId"] as? String == fixture.warehouse.id.lower)
            // The proposed holder sees the note; another carrier does not.
            #expect(try await api.get("\(fixture.base)/pallet-notes", token: fixture.warehouse.token).items.count == 1)
            #expect(try await api.get("\(fixture.base)/pallet-notes", token: fixture.otherCarrier.token).items.isEmpty)
            // Neither the carrier nor a third party accepts in the warehouse's place.
            #expect(try await api.request(.post, "\(base)/transfer/accept", token: fixture.carrier.token).status == .forbidden)
            #expect(try await api.request(.post, "\(base)/transfer/accept", token: fixture.otherCarrier.token).status == .notFound)
            let declined = try await api.request(.post, "\(base)/transfer/decline", token: fixture.warehouse.token)
            #expect(declined.status == .ok, "\(declined.text)")
            #expect(declined.json["holderId"] as? String == fixture.carrier.id.lower)
            #expect(declined.json["pendingHolderId"] == nil)
            _ = try await post(api, "\(base)/transfer", fixture.carrier.token, ["holderId": fixture.shipper.id.lower])
            // While pending, the carrier still holds it and still redeems.
            let partly = try await post(api, "\(base)/redemptions", fixture.carrier.token, ["quantity": 3])
            #expect(partly.json["outstanding"] as? Int == 5)
            let accepted = try await api.request(.post, "\(base)/transfer/accept", token: fixture.shipper.token)
            #expect(accepted.json["holderId"] as? String == fixture.shipper.id.lower)
            // The carrier handed the note on: it no longer sees it, let alone redeems it.
            #expect(try await post(api, "\(base)/redemptions", fixture.carrier.token, ["quantity": 1]).status == .notFound)
            #expect(try await post(api, "\(base)/redemptions", fixture.shipper.token, ["quantity": 5]).json["state"] as? String
                == "redeemed")
            // The store checks the holder on the locked note too.
            await #expect(throws: StoreError.self) {
                _ = try await store.redeemNote(ecosystem: fixture.ecosystem, id: try #require(UUID(uuidString: id)), quantity: 0,
                                               movement: nil, by: fixture.carrier.id)
            }
        }
    }

    @Test("agreed counts of a resolution are checked like a contest's: 422 naming each field, nothing written")
    func agreedCountsValidated() async throws {
        try await withAPI { api, fixture, store in
            let picked = try await declare(api, fixture, fixture.carrier.token, pickup(fixture, 20), key: "p")
            _ = try await post(api, "\(fixture.base)/movements/\(picked)/contest", fixture.shipper.token,
                               ["lines": [["lineNo": 0, "quantity": 18]]])
            let before = try await carrierOwes(api, fixture)
            let bad = try await post(api, "\(fixture.base)/movements/\(picked)/resolve", fixture.coordinator.token, [
                "accept": "agreed",
                "lines": [["lineNo": 3, "quantity": 19], ["lineNo": 0, "quantity": -2], ["lineNo": 0, "quantity": 1, "exchangedQuantity": 200_000]],
            ])
            #expect(bad.status == .unprocessableContent, "\(bad.text)")
            #expect(bad.fieldErrors.sorted() == ["lines[0].lineNo", "lines[1].quantity", "lines[2].exchangedQuantity",
                                                 "lines[2].lineNo"].sorted())
            let none = try await post(api, "\(fixture.base)/movements/\(picked)/resolve", fixture.coordinator.token,
                                      ["accept": "agreed"])
            #expect(none.status == .unprocessableContent)
            #expect(none.fieldErrors == ["lines"])
            #expect(try await carrierOwes(api, fixture) == before)
            #expect(try await api.get("\(fixture.base)/discrepancies?open=true", token: fixture.shipper.token).items.count == 1)
            // A good agreement goes through: 19 agreed, confirmed at once.
            let good = try await post(api, "\(fixture.base)/movements/\(picked)/resolve", fixture.coordinator.token,
                                      ["accept": "agreed", "lines": [["lineNo": 0, "quantity": 19]]])
            #expect(good.status == .ok, "\(good.text)")
            #expect(try await carrierOwes(api, fixture) == (19, 19))
            #expect(try await store.verifyLedger(ecosystem: fixture.ecosystem).holds)
        }
    }

    @Test("an EPCIS error declaration sent before its event cancels only its own capturer's event; another party's is refused, named")
    func earlyRetractionBindsOnlyItsCapturer() async throws {
        try await withEPCIS { api, world, store in
            let w = EPCISWorld.self
            // A departure of 12 EPAL from the shipper with the carrier: both are its parties.
            func departure(_ id: String) -> [String: Any] {
                palletEvent(id, "departing", hours: 6, sources: [("owning_party", w.shipperPGLN)],
                            destinations: [("possessing_party", w.carrierPGLN)], readPoint: w.shipperSite, quantity: 12)
            }
            func retraction(of event: [String: Any]) -> [String: Any] {
                var retraction = event
                retraction["errorDeclaration"] = ["declarationTime": localTime(hoursAgo: 1), "reason": "incorrect_data"]
                return retraction
            }
            // The shipper retracts event 1 before the carrier sends it: it is kept, it posts nothing.
            let first = departure("urn:uuid:00000000-0000-4000-8000-0000000000e1")
            var response = try await api.capture(world, token: world.shipper.token, epcisDocument([retraction(of: first)]))
            #expect(api.outcomes(response) == ["stored"], "\(response.text)")
            // The carrier's event 1 is then refused, with the reason, not swallowed silently.
            response = try await api.capture(world, token: world.carrier.token, epcisDocument([first]))
            #expect(response.status == .badRequest, "\(response.text)")
            #expect(response.problemType?.hasSuffix("ValidationException") == true)
            #expect(response.text.contains("another party already sent an error declaration"))
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id) == 0)
            // A competitor of the carrier, not a party of the event, cannot retract it at all.
            let second = departure("urn:uuid:00000000-0000-4000-8000-0000000000e2")
            response = try await api.capture(world, token: world.otherCarrier.token, epcisDocument([retraction(of: second)]))
            #expect(response.status == .forbidden, "\(response.text)")
            response = try await api.capture(world, token: world.carrier.token, epcisDocument([second]))
            #expect(api.outcomes(response) == ["posted"], "\(response.text)")
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id) == 12)
            // The carrier's own early retraction of event 3 does cancel its own event 3.
            let third = departure("urn:uuid:00000000-0000-4000-8000-0000000000e3")
            response = try await api.capture(world, token: world.carrier.token, epcisDocument([retraction(of: third)]))
            #expect(api.outcomes(response) == ["stored"], "\(response.text)")
            response = try await api.capture(world, token: world.carrier.token, epcisDocument([third]))
            #expect(api.outcomes(response) == ["stored"], "\(response.text)")
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id) == 12)
            #expect(try await store.verifyLedger(ecosystem: world.ecosystem).holds)
        }
    }
}
