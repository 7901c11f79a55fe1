import Foundation
import HTTPTypes
import PalletFlowCore
import PalletFlowStore
import Testing

/// An ecosystem whose parties, sites and pallet types carry GS1 keys, stored in three
/// notations on purpose: bare digits, URN and Digital Link. Check digits by hand:
/// 4012345.00000 -> 4012345000009, .00001 -> ...016, .00002 -> ...023, .00003 -> ...030,
/// .00004 -> ...047; sites 4012345.10000 -> 4012345100006, .20000 -> ...200003,
/// .30000 -> ...300000; GRAI 4000001.11111 -> 04000001111114, 4000001.22222 -> 04000001222223.
struct EPCISWorld: Sendable {
    var ecosystem: UUID
    var shipper: Fixture.Party
    var carrier: Fixture.Party
    var warehouse: Fixture.Party
    var customer: Fixture.Party
    var otherCarrier: Fixture.Party
    var epal: UUID
    var half: UUID

    var base: String { "/v1/ecosystems/\(ecosystem.lower)" }

    static let shipperPGLN = "urn:epc:id:pgln:4012345.00000"
    static let carrierPGLN = "urn:epc:id:pgln:4012345.00001"
    static let carrierDL = "https://id.gs1.org/417/4012345000016"
    static let warehousePGLN = "urn:epc:id:pgln:4012345.00002"
    static let customerPGLN = "urn:epc:id:pgln:4012345.00003"
    static let shipperSite = "urn:epc:id:sgln:4012345.10000.0"
    static let warehouseSite = "urn:epc:id:sgln:4012345.20000.0"
    static let warehouseSiteDL = "https://id.gs1.org/414/4012345200003"
    static let customerSite = "urn:epc:id:sgln:4012345.30000.0"
    static let epalClass = "urn:epc:idpat:grai:4000001.11111.*"
    static let epalClassDL = "https://id.gs1.org/8003/04000001111114"
    static let halfClass = "urn:epc:idpat:grai:4000001.22222.*"

    static func make(_ store: Store) async throws -> EPCISWorld {
        let created = try await store.createEcosystem(name: "EPCIS network", shipperName: "Laiterie EPCIS",
                                                      shipperPGLN: "4012345000009")
        let ecosystem = created.ecosystem.id
        let shipperID = created.shipper.id
        func party(_ name: String, _ role: Role, pgln: String?, site: (String, String)?) async throws -> Fixture.Party {
            let member = role == .shipper ? created.shipper
                : try await store.addMember(ecosystem: ecosystem, name: name, pgln: pgln, role: role, by: shipperID)
            let (_, secret) = try await store.issueToken(ecosystem: ecosystem, member: member.id, name: "test", by: nil)
            var siteID: UUID?
            if let site {
                siteID = try await store.addSite(ecosystem: ecosystem, member: member.id, name: site.0, sgln: site.1,
                                                 address: nil, by: shipperID).id
            }
            return Fixture.Party(id: member.id, token: secret.text, site: siteID)
        }
        let shipper = try await party("Laiterie EPCIS", .shipper, pgln: nil, site: ("DC Nord", "4012345100006"))
        let carrier = try await party("Transports GS1", .carrier, pgln: "4012345000016", site: nil)
        let warehouse = try await party("Entrepôt GS1", .warehouse, pgln: "4012345000023",
                                        site: ("Quai 2", "urn:epc:id:sgln:4012345.20000.0"))
        let customer = try await party("Client GS1", .customer, pgln: "4012345000030",
                                       site: ("Magasin", "https://id.gs1.org/414/4012345300000"))
        let otherCarrier = try await party("Autre transporteur", .carrier, pgln: "4012345000047", site: nil)
        let epal = try await store.addPalletType(ecosystem: ecosystem, .init(
            code: "EPAL1", name: "EUR/EPAL 1", graiClass: "urn:epc:idpat:grai:4000001.11111.*",
            unitValueMinor: 1_500, currency: "EUR"), by: shipperID).id
        let half = try await store.addPalletType(ecosystem: ecosystem, .init(
            code: "EPAL6", name: "Half pallet", graiClass: "https://id.gs1.org/8003/04000001222223"), by: shipperID).id
        return EPCISWorld(ecosystem: ecosystem, shipper: shipper, carrier: carrier, warehouse: warehouse, customer: customer,
                          otherCarrier: otherCarrier, epal: epal, half: half)
    }

    /// What `party` owes `counterparty` in `type` and `quality` (bilateral book).
    func owed(_ store: Store, _ party: UUID, to counterparty: UUID, _ type: UUID? = nil,
              _ quality: QualityGrade = .a) async throws -> Int64 {
        try await store.balances(ecosystem: ecosystem, classes: [.owed], party: party, asOf: nil)
            .filter { $0.key.counterparty == counterparty && $0.key.palletType == (type ?? epal) && $0.key.quality == quality }
            .map(\.balance).reduce(0, +)
    }
}

/// An event time `hours` ago in local French time (+01:00), as a TMS would send it.
func localTime(hoursAgo hours: Double) -> String {
    Instant(TestClock.now().date.addingTimeInterval(-hours * 3600), offsetMinutes: 60).rfc3339(keepingOffset: true)
}

func epcisDocument(_ events: [[String: Any]]) -> [String: Any] {
    [
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", ["b4l": "https://epcis.b4l.com/"]],
        "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": TestClock.now().rfc3339(keepingOffset: false),
        "epcisBody": ["eventList": events],
    ]
}

/// A pallet event of the exchange profile: bizStep, parties, location, pallets.
func palletEvent(_ id: String, _ step: String, hours: Double, sources: [(String, String)] = [],
                 destinations: [(String, String)] = [], readPoint: String? = nil, epcClass: String = EPCISWorld.epalClass,
                 quantity: Any = 10, extra: [String: Any] = [:]) -> [String: Any] {
    var event: [String: Any] = [
        "type": "ObjectEvent", "eventID": id, "action": "OBSERVE", "bizStep": step,
        "eventTime": localTime(hoursAgo: hours), "eventTimeZoneOffset": "+01:00",
        "quantityList": [["epcClass": epcClass, "quantity": quantity]],
    ]
    if !sources.isEmpty { event["sourceList"] = sources.map { ["type": $0.0, "source": $0.1] } }
    if !destinations.isEmpty { event["destinationList"] = destinations.map { ["type": $0.0, "destination": $0.1] } }
    if let readPoint { event["readPoint"] = ["id": readPoint] }
    for (key, value) in extra { event[key] = value }
    return event
}

func withEPCIS(_ body: @escaping @Sendable (API, EPCISWorld, Store) async throws -> Void) async throws {
    try await withAPI { api, _, store in
        try await body(api, try await EPCISWorld.make(store), store)
    }
}

extension API {
    func capture(_ world: EPCISWorld, token: String, _ document: [String: Any], behaviour: String? = nil) async throws -> TestResponse {
        try await request(.post, "\(world.base)/epcis/capture", token: token, json: document,
                          headers: behaviour.map { ["GS1-Capture-Error-Behaviour": $0] } ?? [:])
    }

    func outcomes(_ response: TestResponse) -> [String] {
        ((response.json["events"] as? [[String: Any]]) ?? []).compactMap { $0["outcome"] as? String }
    }
}

@Suite("EPCIS capture and query")
struct EPCISCaptureTests {
    func verify(_ store: Store, _ world: EPCISWorld) async throws {
        let report = try await store.verifyLedger(ecosystem: world.ecosystem)
        #expect(report.holds, "\(report)")
    }

    @Test("a pallet round: depart, arrive, empties back, return, ownership change; balances by hand")
    func palletRound() async throws {
        try await withEPCIS { api, world, store in
            let w = EPCISWorld.self
            // V2: 30 loaded EPAL leave the shipper's DC with the carrier, for the warehouse.
            let depart = palletEvent("urn:uuid:00000000-0000-4000-8000-000000000001", "departing", hours: 10,
                                     sources: [("owning_party", w.shipperPGLN)],
                                     destinations: [("possessing_party", w.carrierPGLN), ("owning_party", w.warehousePGLN)],
                                     readPoint: w.shipperSite, quantity: 30)
            var response = try await api.capture(world, token: world.carrier.token, epcisDocument([depart]))
            #expect(response.status == .accepted, "\(response.text)")
            #expect(api.outcomes(response) == ["posted"])
            let location = try #require(response.headers[.location])
            #expect(location.hasPrefix("\(world.base)/epcis/capture/"))
            #expect(response.headers[HTTPField.Name("GS1-EPCIS-Version")!] == "2.0.0")
            // A pickup: the carrier owes the shipper 30.
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id) == 30)

            // V1: they arrive at the warehouse's dock (read point in Digital Link form).
            let arrive = palletEvent("urn:uuid:00000000-0000-4000-8000-000000000002", "arriving", hours: 8,
                                     sources: [("possessing_party", w.carrierDL), ("owning_party", w.shipperPGLN)],
                                     destinations: [("owning_party", w.warehousePGLN)],
                                     readPoint: w.warehouseSiteDL, quantity: 30)
            // V2 again: 20 empties of grade B go back with the carrier.
            let empties = palletEvent("urn:uuid:00000000-0000-4000-8000-000000000003", "departing", hours: 7.5,
                                      sources: [("owning_party", w.warehousePGLN)],
                                      destinations: [("possessing_party", w.carrierPGLN), ("owning_party", w.shipperPGLN)],
                                      readPoint: w.warehouseSite, quantity: 20, extra: ["b4l:qualityLevel": "B"])
            response = try await api.capture(world, token: world.warehouse.token, epcisDocument([arrive, empties]))
            #expect(response.status == .accepted, "\(response.text)")
            #expect(api.outcomes(response) == ["posted", "posted"])
            // Delivery carrier -> warehouse 30 A: the warehouse owes the carrier 30 A.
            #expect(try await world.owed(store, world.warehouse.id, to: world.carrier.id) == 30)
            // Empties warehouse -> carrier 20 B: the carrier owes the warehouse 20 B.
            #expect(try await world.owed(store, world.carrier.id, to: world.warehouse.id, nil, .b) == 20)

            // The carrier returns the 20 B empties to the shipper's DC (disposition returned).
            let back = palletEvent("urn:uuid:00000000-0000-4000-8000-000000000004", "arriving", hours: 5,
                                   sources: [("possessing_party", w.carrierPGLN)], destinations: [("owning_party", w.shipperPGLN)],
                                   readPoint: w.shipperSite, quantity: 20,
                                   extra: ["disposition": "returned", "b4l:qualityLevel": "B"])
            response = try await api.capture(world, token: world.carrier.token, epcisDocument([back]))
            #expect(api.outcomes(response) == ["posted"], "\(response.text)")
            // The carrier owes the shipper 30 A and is owed 20 B back: -20 in B.
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id) == 30)
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id, nil, .b) == -20)

            // V3: the warehouse transfers ownership of 5 pallets to the shipper (open pool), by invoice.
            let accept = palletEvent("urn:uuid:00000000-0000-4000-8000-000000000005", "accepting", hours: 4,
                                     sources: [("owning_party", w.warehousePGLN)], destinations: [("owning_party", w.shipperPGLN)],
                                     readPoint: w.warehouseSite, quantity: 5, extra: ["bizTransactionList": [["type": "inv", "bizTransaction": "urn:epcglobal:cbv:bt:4012345000023:INV-77"]]])
            response = try await api.capture(world, token: world.shipper.token, epcisDocument([accept]))
            #expect(api.outcomes(response) == ["posted"], "\(response.text)")
            #expect(try await world.owed(store, world.shipper.id, to: world.warehouse.id) == 5)

            let movements = try await store.movements(ecosystem: world.ecosystem, MovementFilter())
            #expect(Set(movements.map(\.kind)) == [.pickup, .delivery, .return, .transfer])
            #expect(movements.allSatisfy { $0.source == "epcis" })
            // The event time keeps the sender's offset.
            #expect(movements.allSatisfy { $0.eventTime.offsetMinutes == 60 })
            try await verify(store, world)
        }
    }

    @Test("a correction pair: the error declaration reverses, the corrective event is the corrected movement")
    func correctionPair() async throws {
        try await withEPCIS { api, world, store in
            let w = EPCISWorld.self
            let original = palletEvent("ni:///sha-256;aaaa?ver=CBV2.0", "departing", hours: 6,
                                       sources: [("owning_party", w.shipperPGLN)], destinations: [("possessing_party", w.carrierPGLN)],
                                       readPoint: w.shipperSite, quantity: 12)
            var response = try await api.capture(world, token: world.carrier.token, epcisDocument([original]))
            #expect(api.outcomes(response) == ["posted"], "\(response.text)")
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id) == 12)

            // V4 repeats the wrong event with an error declaration; V5 is the right count.
            var retraction = original
            retraction["errorDeclaration"] = ["declarationTime": localTime(hoursAgo: 1), "reason": "incorrect_data",
                                              "correctiveEventIDs": ["urn:uuid:00000000-0000-4000-8000-0000000000c5"]]
            let corrected = palletEvent("urn:uuid:00000000-0000-4000-8000-0000000000c5", "departing", hours: 6,
                                        sources: [("owning_party", w.shipperPGLN)], destinations: [("possessing_party", w.carrierPGLN)],
                                        readPoint: w.shipperSite, quantity: 10)
            response = try await api.capture(world, token: world.carrier.token, epcisDocument([retraction, corrected]))
            #expect(response.status == .accepted, "\(response.text)")
            #expect(api.outcomes(response) == ["retracted", "posted"])
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id) == 10)

            let movements = try await store.movements(ecosystem: world.ecosystem, MovementFilter())
            let first = try #require(movements.first { $0.lines.first?.quantity == 12 && $0.reverses == nil })
            #expect(first.status == "reversed")
            #expect(movements.contains { $0.reverses == first.id })
            let correction = try #require(movements.first { $0.corrects == first.id })
            #expect(correction.lines.map(\.quantity) == [10])

            // Sending the pair again changes nothing.
            response = try await api.capture(world, token: world.carrier.token, epcisDocument([retraction, corrected]))
            #expect(api.outcomes(response) == ["duplicate", "duplicate"], "\(response.text)")
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id) == 10)
            try await verify(store, world)
        }
    }

    @Test("mixed qualities come as one event per quality; tradability false is unusable")
    func mixedQualities() async throws {
        try await withEPCIS { api, world, store in
            let w = EPCISWorld.self
            func departing(_ id: String, _ quantity: Int, _ extra: [String: Any]) -> [String: Any] {
                palletEvent(id, "departing", hours: 3, sources: [("owning_party", w.shipperPGLN)],
                            destinations: [("possessing_party", w.carrierPGLN)], readPoint: w.shipperSite, quantity: quantity,
                            extra: extra)
            }
            let response = try await api.capture(world, token: world.shipper.token, epcisDocument([
                departing("urn:uuid:00000000-0000-4000-8000-0000000000a1", 8, ["b4l:qualityLevel": "A"]),
                departing("urn:uuid:00000000-0000-4000-8000-0000000000a2", 4, ["b4l:qualityLevel": "C"]),
                departing("urn:uuid:00000000-0000-4000-8000-0000000000a3", 2, ["b4l:tradability": false]),
            ]))
            #expect(api.outcomes(response) == ["posted", "posted", "posted"], "\(response.text)")
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id, nil, .a) == 8)
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id, nil, .c) == 4)
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id, nil, .unusable) == 2)
            try await verify(store, world)
        }
    }

    @Test("URN and Digital Link forms of the same keys post to the same accounts and match the same queries")
    func urnVersusDigitalLink() async throws {
        try await withEPCIS { api, world, store in
            let w = EPCISWorld.self
            let urn = palletEvent("urn:uuid:00000000-0000-4000-8000-0000000000d1", "departing", hours: 3,
                                  sources: [("owning_party", w.shipperPGLN)], destinations: [("possessing_party", w.carrierPGLN)],
                                  readPoint: w.shipperSite, epcClass: w.epalClass, quantity: 7)
            let link = palletEvent("urn:uuid:00000000-0000-4000-8000-0000000000d2", "departing", hours: 2,
                                   sources: [("owning_party", "https://id.gs1.org/417/4012345000009")],
                                   destinations: [("possessing_party", w.carrierDL)],
                                   readPoint: "https://id.gs1.org/414/4012345100006", epcClass: w.epalClassDL, quantity: 5)
            let response = try await api.capture(world, token: world.carrier.token, epcisDocument([urn, link]))
            #expect(api.outcomes(response) == ["posted", "posted"], "\(response.text)")
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id) == 12)
            // One account, not two.
            let accounts = try await store.balances(ecosystem: world.ecosystem, classes: [.owed], party: world.carrier.id, asOf: nil)
            #expect(accounts.count == 1)

            for query in ["MATCH_epcClass=\(w.epalClass)", "MATCH_epcClass=\(w.epalClassDL)",
                          "EQ_destination_possessing_party=\(w.carrierDL)", "EQ_readPoint=\(w.shipperSite)"] {
                let found = try await api.get("\(world.base)/epcis/events?\(query.replacingOccurrences(of: "*", with: "%2A"))",
                                              token: world.shipper.token)
                #expect(found.status == .ok, "\(found.text)")
                #expect(eventIDs(found) == ["urn:uuid:00000000-0000-4000-8000-0000000000d1", "urn:uuid:00000000-0000-4000-8000-0000000000d2"], "\(query)")
            }
            try await verify(store, world)
        }
    }

    @Test("a voucher (GDTI) on a delivery becomes the pallet note the consignee owes")
    func voucher() async throws {
        try await withEPCIS { api, world, store in
            let w = EPCISWorld.self
            let arrive = palletEvent("urn:uuid:00000000-0000-4000-8000-0000000000e1", "arriving", hours: 2,
                                     sources: [("possessing_party", w.carrierPGLN)], destinations: [("owning_party", w.customerPGLN)],
                                     readPoint: w.customerSite, quantity: 6,
                                     extra: ["bizTransactionList": [["type": "https://epcis.b4l.com/btt/voucher",
                                                                     "bizTransaction": "urn:epc:id:gdti:4012345.55555.V42"]]])
            let response = try await api.capture(world, token: world.carrier.token, epcisDocument([arrive]))
            #expect(api.outcomes(response) == ["posted"], "\(response.text)")
            let notes = try await store.palletNotes(ecosystem: world.ecosystem, party: nil)
            let note = try #require(notes.first)
            #expect(notes.count == 1)
            #expect(note.issuer == world.customer.id)
            #expect(note.holder == world.carrier.id)
            #expect(note.quantity == 6)
            #expect(note.serial == "4012345555554V42")
            try await verify(store, world)
        }
    }

    @Test("invalid documents are refused with the event and field named, and nothing is stored", arguments: [
        ("invalid/ObjectEvent_with_invalid_action.json", "epcisBody.eventList[0].action"),
        ("invalid/ObjectEvent_with_non_standard_bizStep.json", "epcisBody.eventList[0].bizStep"),
        ("invalid/ObjectEvent_with_quantity_as_text.json", "epcisBody.eventList[0].quantityList[0].quantity"),
    ])
    func invalidFixtures(_ name: String, _ field: String) async throws {
        try await withEPCIS { api, world, store in
            let response = try await api.request(.post, "\(world.base)/epcis/capture", token: world.shipper.token,
                                                 body: String(decoding: try fixture(name), as: UTF8.self))
            #expect(response.status == .badRequest, "\(response.text)")
            #expect(response.problemType == "epcisException:ValidationException")
            #expect(response.fieldErrors == [field])
            #expect(response.headers[.contentType] == "application/problem+json")
            let query = try await api.get("\(world.base)/epcis/events", token: world.shipper.token)
            #expect(eventIDs(query).isEmpty)
        }
    }

    @Test("under rollback one bad event stores nothing; under proceed the good ones are captured")
    func errorBehaviours() async throws {
        try await withEPCIS { api, world, store in
            let w = EPCISWorld.self
            let good = palletEvent("urn:uuid:00000000-0000-4000-8000-0000000000f1", "departing", hours: 2,
                                   sources: [("owning_party", w.shipperPGLN)], destinations: [("possessing_party", w.carrierPGLN)],
                                   readPoint: w.shipperSite, quantity: 9)
            let fractional = palletEvent("urn:uuid:00000000-0000-4000-8000-0000000000f2", "departing", hours: 2,
                                         sources: [("owning_party", w.shipperPGLN)], destinations: [("possessing_party", w.carrierPGLN)],
                                         readPoint: w.shipperSite, quantity: 2.5)
            var badAction = good
            badAction["eventID"] = "urn:uuid:00000000-0000-4000-8000-0000000000f3"
            badAction["action"] = "MOVE"
            let document = epcisDocument([good, fractional, badAction])

            var response = try await api.capture(world, token: world.shipper.token, document)
            #expect(response.status == .badRequest)
            // Rollback reports the first failing event.
            #expect(response.fieldErrors == ["epcisBody.eventList[1].quantityList[0].quantity"], "\(response.text)")
            response = try await api.capture(world, token: world.shipper.token, document, behaviour: "all")
            #expect(response.status == .badRequest)
            #expect(Set(response.fieldErrors) == ["epcisBody.eventList[1].quantityList[0].quantity", "epcisBody.eventList[2].action"])
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id) == 0)
            #expect(try await store.movements(ecosystem: world.ecosystem, MovementFilter()).isEmpty)

            response = try await api.capture(world, token: world.shipper.token, document, behaviour: "proceed")
            #expect(response.status == .accepted, "\(response.text)")
            #expect(response.json["success"] as? Bool == false)
            #expect(api.outcomes(response) == ["posted", "rejected", "rejected"])
            let errors = (response.json["errors"] as? [[String: Any]]) ?? []
            #expect(Set(errors.compactMap { $0["eventIndex"] as? Int }) == [1, 2])
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id) == 9)

            // The job is there to read back, for its capturer.
            let job = try await api.get(try #require(response.headers[.location]), token: world.shipper.token)
            #expect(job.status == .ok)
            #expect(job.json["captureErrorBehaviour"] as? String == "proceed")
            #expect(job.json["running"] as? Bool == false)
            let foreign = try await api.get(try #require(response.headers[.location]), token: world.carrier.token)
            #expect(foreign.status == .notFound)
            try await verify(store, world)
        }
    }

    @Test("only an event's parties and the shipper may capture it; other tenants get 404")
    func security() async throws {
        try await withEPCIS { api, world, store in
            let w = EPCISWorld.self
            let event = palletEvent("urn:uuid:00000000-0000-4000-8000-000000000051", "departing", hours: 2,
                                    sources: [("owning_party", w.shipperPGLN)], destinations: [("possessing_party", w.carrierPGLN)],
                                    readPoint: w.shipperSite, quantity: 3)
            var response = try await api.capture(world, token: world.otherCarrier.token, epcisDocument([event]))
            #expect(response.status == .forbidden, "\(response.text)")
            #expect(response.problemType == "epcisException:SecurityException")
            response = try await api.capture(world, token: world.customer.token, epcisDocument([event]))
            #expect(response.status == .forbidden)
            response = try await api.request(.post, "\(world.base)/epcis/capture", json: epcisDocument([event]))
            #expect(response.status == .unauthorized)
            #expect(try await store.movements(ecosystem: world.ecosystem, MovementFilter()).isEmpty)

            // The carrier may: it is the possessing party.
            response = try await api.capture(world, token: world.carrier.token, epcisDocument([event]))
            #expect(response.status == .accepted)
            // A partner not named does not see it; the shipper and the carrier do.
            var query = try await api.get("\(world.base)/epcis/events", token: world.otherCarrier.token)
            #expect(eventIDs(query).isEmpty)
            query = try await api.get("\(world.base)/epcis/events", token: world.carrier.token)
            #expect(eventIDs(query) == ["urn:uuid:00000000-0000-4000-8000-000000000051"])

            // Another ecosystem's token: 404, as everywhere.
            let other = try await Fixture.make(store)
            response = try await api.capture(world, token: other.shipper.token, epcisDocument([event]))
            #expect(response.status == .notFound)
            response = try await api.get("\(world.base)/epcis/events", token: other.shipper.token)
            #expect(response.status == .notFound)
        }
    }

    @Test("the shared valid fixtures are stored and queryable but post nothing")
    func validFixtures() async throws {
        try await withEPCIS { api, world, store in
            var captured: [String] = []
            for name in ["valid/ObjectEvent.json", "valid/ObjectEvent_with_error_declaration.json", "valid/TransactionEvent.json",
                         "valid/epcisDocWithAllGS1Keys.json"] {
                let response = try await api.request(.post, "\(world.base)/epcis/capture", token: world.shipper.token,
                                                     body: String(decoding: try fixture(name), as: UTF8.self),
                                                     contentType: "application/ld+json")
                #expect(response.status == .accepted, "\(name): \(response.text)")
                #expect(response.json["success"] as? Bool == true)
                let outcomes = api.outcomes(response)
                #expect(!outcomes.contains("posted"), "\(name)")
                captured += ((response.json["events"] as? [[String: Any]]) ?? []).filter { $0["outcome"] as? String == "stored" }
                    .compactMap { $0["eventID"] as? String }
            }
            // ObjectEvent.json 2, error declaration file 2 (its receiving event repeats one of
            // ObjectEvent.json: a duplicate), TransactionEvent.json 2, all keys 1: 6 stored.
            #expect(captured.count == 6)
            #expect(try await store.movements(ecosystem: world.ecosystem, MovementFilter()).isEmpty)
            let query = try await api.get("\(world.base)/epcis/events?perPage=1000", token: world.shipper.token)
            #expect(eventIDs(query).count == 6)
            // Events without an eventID were given one; the extension field came back as sent.
            let events = queryEvents(query)
            #expect(events.allSatisfy { ($0["eventID"] as? String)?.isEmpty == false })
            #expect(events.contains { $0["example:myField"] as? String == "Example of a vendor/user extension" })
            #expect(events.contains { $0["rail:trainAxleCount"] as? String == "12" })
        }
    }

    @Test("re-capture is a no-op; the events round-trip through the query interface, page by page")
    func roundTrip() async throws {
        try await withEPCIS { api, world, store in
            let w = EPCISWorld.self
            var events: [[String: Any]] = []
            for index in 1...5 {
                events.append(palletEvent("urn:uuid:00000000-0000-4000-8000-00000000010\(index)", index % 2 == 0 ? "arriving" : "departing",
                                          hours: Double(10 - index),
                                          sources: [(index % 2 == 0 ? "possessing_party" : "owning_party", index % 2 == 0 ? w.carrierPGLN : w.shipperPGLN)],
                                          destinations: [(index % 2 == 0 ? "owning_party" : "possessing_party", index % 2 == 0 ? w.shipperPGLN : w.carrierPGLN)],
                                          readPoint: w.shipperSite, quantity: index))
            }
            // One event without eventID: it is given one, the same each time it is sent.
            var anonymous = events[0]
            anonymous.removeValue(forKey: "eventID")
            anonymous["quantityList"] = [["epcClass": w.halfClass, "quantity": 4]]
            events.append(anonymous)
            let first = try await api.capture(world, token: world.shipper.token, epcisDocument(events))
            #expect(api.outcomes(first) == Array(repeating: "posted", count: 6), "\(first.text)")
            let assigned = try #require(((first.json["events"] as? [[String: Any]])?.last?["eventID"]) as? String)
            #expect(assigned.hasPrefix("urn:uuid:"))
            // Departing 1+3+5 = 9 out to the carrier; arriving 2+4 = 6 back; 4 half pallets out.
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id) == 3)
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id, world.half) == 4)

            let again = try await api.capture(world, token: world.shipper.token, epcisDocument(events))
            #expect(api.outcomes(again) == Array(repeating: "duplicate", count: 6), "\(again.text)")
            #expect(((again.json["events"] as? [[String: Any]])?.last?["eventID"]) as? String == assigned)
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id) == 3)
            #expect(try await store.movements(ecosystem: world.ecosystem, MovementFilter()).count == 6)

            // Page through two at a time, following Link.
            var seen: [[String: Any]] = []
            var next: String? = "\(world.base)/epcis/events?perPage=2"
            var pages = 0
            while let path = next {
                let page = try await api.get(path, token: world.shipper.token)
                #expect(page.status == .ok, "\(page.text)")
                #expect(page.json["type"] as? String == "EPCISQueryDocument")
                seen += queryEvents(page)
                pages += 1
                next = page.headers[HTTPField.Name("Link")!].flatMap { link in
                    link.split(separator: ">").first.map { String($0.dropFirst()) }
                }
            }
            #expect(pages == 3)
            #expect(seen.count == 6)
            let sentIDs = Set(events.compactMap { $0["eventID"] as? String } + [assigned])
            #expect(Set(seen.compactMap { $0["eventID"] as? String }) == sentIDs)
            // Round trip: what came back is what was sent, plus the record time.
            let sent = events[2]
            let back = try #require(seen.first { $0["eventID"] as? String == sent["eventID"] as? String })
            #expect(back["eventTime"] as? String == sent["eventTime"] as? String)
            #expect(back["bizStep"] as? String == "departing")
            #expect((back["quantityList"] as? [[String: Any]])?.first?["quantity"] as? Int == 3)
            #expect(back["recordTime"] != nil)

            // Filters: bizStep and time window.
            let arriving = try await api.get("\(world.base)/epcis/events?EQ_bizStep=arriving", token: world.shipper.token)
            #expect(eventIDs(arriving) == ["urn:uuid:00000000-0000-4000-8000-000000000102", "urn:uuid:00000000-0000-4000-8000-000000000104"])
            let since = Instant(TestClock.now().date.addingTimeInterval(-6.5 * 3600)).rfc3339(keepingOffset: false)
            let recent = try await api.get("\(world.base)/epcis/events?GE_eventTime=\(since)", token: world.shipper.token)
            // Events 4 (6 h ago) and 5 (5 h ago).
            #expect(eventIDs(recent) == ["urn:uuid:00000000-0000-4000-8000-000000000104", "urn:uuid:00000000-0000-4000-8000-000000000105"])
            let bad = try await api.get("\(world.base)/epcis/events?EQ_colour=blue", token: world.shipper.token)
            #expect(bad.status == .badRequest)
            #expect(bad.problemType == "epcisException:QueryParameterException")
        }
    }

    @Test("movements declared through the plain API show as EPCIS events, reversals as error declarations")
    func ledgerMovementsAsEvents() async throws {
        try await withEPCIS { api, world, store in
            let declared = try await api.post("\(world.base)/movements", token: world.carrier.token, json: [
                "kind": "pickup", "eventTime": localTime(hoursAgo: 3),
                "from": ["partyId": world.shipper.id.lower, "siteId": world.shipper.site!.lower],
                "to": ["partyId": world.carrier.id.lower],
                "lines": [["palletType": "EPAL1", "quality": "B", "quantity": 14]],
            ] as [String: Any], key: "plain-1")
            #expect(declared.status == .created, "\(declared.text)")
            let id = try #require(declared.json["id"] as? String)
            var query = try await api.get("\(world.base)/epcis/events?EQ_bizStep=departing&EQ_source_owning_party=\(EPCISWorld.shipperPGLN)",
                                          token: world.shipper.token)
            var events = queryEvents(query)
            #expect(events.count == 1, "\(query.text)")
            let event = try #require(events.first)
            #expect(event["eventID"] as? String == "urn:uuid:\(id)")
            #expect(event["b4l:qualityLevel"] as? String == "B")
            #expect(((event["readPoint"] as? [String: Any])?["id"]) as? String == EPCISWorld.shipperSite)
            let quantity = (event["quantityList"] as? [[String: Any]])?.first
            #expect(quantity?["epcClass"] as? String == EPCISWorld.epalClass)
            #expect(quantity?["quantity"] as? Int == 14)
            let destinations = (event["destinationList"] as? [[String: Any]]) ?? []
            #expect(destinations.first?["destination"] as? String == EPCISWorld.carrierPGLN)

            // The event read back is valid EPCIS: sending it in as is posts the same handover again
            // under a new id (here as the shipper), which shows both paths agree.
            var copy = event
            copy["eventID"] = "urn:uuid:00000000-0000-4000-8000-0000000000bb"
            copy.removeValue(forKey: "recordTime")
            var document = epcisDocument([copy])
            document["@context"] = query.json["@context"]
            let recaptured = try await api.capture(world, token: world.shipper.token, document)
            #expect(api.outcomes(recaptured) == ["posted"], "\(recaptured.text)")
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id, nil, .b) == 28)

            let reversal = try await api.post("\(world.base)/movements/\(id)/reversal", token: world.carrier.token,
                                              json: ["reason": "counted twice"] as [String: Any])
            #expect(reversal.status == .created, "\(reversal.text)")
            query = try await api.get("\(world.base)/epcis/events?perPage=10", token: world.shipper.token)
            events = queryEvents(query)
            let retraction = try #require(events.first { $0["errorDeclaration"] != nil })
            #expect(retraction["eventID"] as? String == "urn:uuid:\(id)")
            #expect(((retraction["errorDeclaration"] as? [String: Any])?["reason"]) as? String == "incorrect_data")
            #expect(events.count == 3)
            try await verify(store, world)
        }
    }

    @Test("a reversal with a correction names it in its error declaration, on whichever page it falls")
    func correctedMovementAsEvents() async throws {
        try await withEPCIS { api, world, store in
            func pickup(_ quantity: Int, hoursAgo: Double) -> [String: Any] {
                ["kind": "pickup", "eventTime": localTime(hoursAgo: hoursAgo),
                 "from": ["partyId": world.shipper.id.lower, "siteId": world.shipper.site!.lower],
                 "to": ["partyId": world.carrier.id.lower],
                 "lines": [["palletType": "EPAL1", "quality": "A", "quantity": quantity]]]
            }
            let first = try await api.post("\(world.base)/movements", token: world.carrier.token, json: pickup(14, hoursAgo: 5), key: "c-1")
            let second = try await api.post("\(world.base)/movements", token: world.carrier.token, json: pickup(9, hoursAgo: 4), key: "c-2")
            let third = try await api.post("\(world.base)/movements", token: world.carrier.token, json: pickup(6, hoursAgo: 3), key: "c-3")
            let firstID = try #require(first.json["id"] as? String)
            let secondID = try #require(second.json["id"] as? String)
            let thirdID = try #require(third.json["id"] as? String)
            // The first was 12, not 14: reversed with a correction. The third is reversed without one.
            let corrected = try await api.post("\(world.base)/movements/\(firstID)/reversal", token: world.carrier.token,
                                               json: ["reason": "miscounted", "correction": pickup(12, hoursAgo: 5)] as [String: Any])
            #expect(corrected.status == .created, "\(corrected.text)")
            let correctionID = try #require(corrected.json["correctionId"] as? String)
            let reversed = try await api.post("\(world.base)/movements/\(thirdID)/reversal", token: world.carrier.token,
                                              json: ["reason": "never happened"] as [String: Any])
            #expect(reversed.status == .created, "\(reversed.text)")

            // One event a page, so the correction is looked up on a page of its own: the three
            // pickups, the correction and the two retractions, each once.
            var seen: [[String: Any]] = []
            var next: String? = "\(world.base)/epcis/events?perPage=1"
            while let path = next {
                let page = try await api.get(path, token: world.shipper.token)
                #expect(page.status == .ok, "\(page.text)")
                seen += queryEvents(page)
                next = page.headers[HTTPField.Name("Link")!].flatMap { link in
                    link.split(separator: ">").first.map { String($0.dropFirst()) }
                }
            }
            #expect(seen.count == 6, "\(seen)")
            let retractions = seen.filter { $0["errorDeclaration"] != nil }
            #expect(retractions.count == 2)
            for retraction in retractions {
                let declaration = try #require(retraction["errorDeclaration"] as? [String: Any])
                switch retraction["eventID"] as? String {
                case "urn:uuid:\(firstID)":
                    #expect(declaration["correctiveEventIDs"] as? [String] == ["urn:uuid:\(correctionID)"])
                case "urn:uuid:\(thirdID)":
                    #expect(declaration["correctiveEventIDs"] == nil)
                default:
                    Issue.record("unexpected retraction \(retraction)")
                }
            }
            let plain = Set(seen.filter { $0["errorDeclaration"] == nil }.compactMap { $0["eventID"] as? String })
            #expect(plain == Set([firstID, secondID, thirdID, correctionID].map { "urn:uuid:" + $0 }))
            try await verify(store, world)
        }
    }

    @Test("OPTIONS announces the capture limits; single events are captured at /events")
    func optionsAndSingleEvents() async throws {
        try await withEPCIS { api, world, store in
            let options = try await api.request(.options, "\(world.base)/epcis/capture", token: world.carrier.token)
            #expect(options.status == .noContent)
            #expect(options.headers[HTTPField.Name("GS1-EPCIS-Capture-Limit")!] == "10000")
            #expect(options.headers[HTTPField.Name("GS1-EPCIS-Capture-File-Size-Limit")!] == "1048576")

            var event = palletEvent("urn:uuid:00000000-0000-4000-8000-0000000000aa", "departing", hours: 1,
                                    sources: [("owning_party", EPCISWorld.shipperPGLN)],
                                    destinations: [("possessing_party", EPCISWorld.carrierPGLN)],
                                    readPoint: EPCISWorld.shipperSite, quantity: 11)
            let created = try await api.request(.post, "\(world.base)/epcis/events", token: world.carrier.token, json: event)
            #expect(created.status == .created, "\(created.text)")
            #expect(created.json["outcome"] as? String == "posted")
            let location = try #require(created.headers[.location])
            let read = try await api.get(location, token: world.carrier.token)
            #expect(read.status == .ok, "\(read.text)")
            #expect(queryEvents(read).first?["eventID"] as? String == "urn:uuid:00000000-0000-4000-8000-0000000000aa")
            #expect(try await world.owed(store, world.carrier.id, to: world.shipper.id) == 11)

            event["action"] = "CREATE"
            event["eventID"] = "urn:uuid:00000000-0000-4000-8000-0000000000ab"
            let refused = try await api.request(.post, "\(world.base)/epcis/events", token: world.carrier.token, json: event)
            #expect(refused.status == .badRequest)
            #expect(refused.fieldErrors == ["action"])
        }
    }
}

func fixture(_ name: String) throws -> Data {
    // Tests/Fixtures, whatever the folder of this file.
    let root = URL(fileURLWithPath: #filePath.components(separatedBy: "/Tests/")[0] + "/Tests")
    return try Data(contentsOf: root.appendingPathComponent("Fixtures/epcis/\(name)"))
}

func queryEvents(_ response: TestResponse) -> [[String: Any]] {
    let body = response.json["epcisBody"] as? [String: Any]
    let results = body?["queryResults"] as? [String: Any]
    return ((results?["resultsBody"] as? [String: Any])?["eventList"] as? [[String: Any]]) ?? []
}

func eventIDs(_ response: TestResponse) -> [String] {
    queryEvents(response).compactMap { $0["eventID"] as? String }
}
