import Foundation
import HTTPTypes
import PalletFlowCore
import PalletFlowStore

/// A member of the matrix's ecosystems, with a live token and GS1 keys.
struct MatrixParty: Sendable {
    var id: UUID
    var token: String
    var tokenID: UUID
    var site: UUID?
    /// The party's GLN, 13 digits (nil: none).
    var pgln: String?

    var lower: String { id.lower }
    /// The party (at its site, if it has one) as a movement names it.
    var side: [String: Any] { site.map { ["partyId": lower, "siteId": $0.lower] } ?? ["partyId": lower] }
    var digitalLink: String { "https://id.gs1.org/417/\(pgln ?? "")" }
}

struct MatrixSetupError: Error, CustomStringConvertible {
    var description: String
}

/// One ecosystem with a member of every role (the callers), three more partners that are
/// never callers (Carrier Two, Warehouse Two, Customer Two: "another partner" of every
/// caller), and another ecosystem holding one object of every kind. Objects that a test
/// case changes are made fresh by the `fresh...` helpers; the others are made once here.
///
/// GS1 keys (check digits by hand, mod 10 with weights 3 and 1 from the right):
/// 4012345.00000 -> 4012345000009, .00001 -> ...016, .00002 -> ...023, .00003 -> ...030,
/// .00004 -> ...047, .00005 -> ...054, .00006 -> ...061, .00007 -> ...078; sites
/// 4012345.10000 -> 4012345100006, .20000 -> ...200003, .30000 -> ...300000,
/// .40000 -> ...400007, .50000 -> ...500004, .60000 -> ...600001, .70000 -> ...700008.
final class MatrixWorld {
    let api: API
    let store: Store
    let ecosystem: UUID
    let callers: [Role: MatrixParty]
    let carrierTwo: MatrixParty
    let warehouseTwo: MatrixParty
    let customerTwo: MatrixParty
    let epal: UUID
    var foreign = ForeignObjects()
    var shared = SharedObjects()
    private var keys = 0
    private var names = 0

    var base: String { "/v1/ecosystems/\(ecosystem.lower)" }
    var shipper: MatrixParty { callers[.shipper]! }
    var carrierOne: MatrixParty { callers[.carrier]! }
    var coordinator: MatrixParty { callers[.coordinator]! }
    static let partnerRoles: [Role] = [.carrier, .warehouse, .supplier, .customer]

    /// The other ecosystem's objects, one of each kind.
    struct ForeignObjects {
        var ecosystem = UUID()
        var shipper: MatrixParty?
        var carrier: MatrixParty?
        var site = UUID(), palletType = UUID(), movement = "", contested = "", note = "", session = "", action = ""
        var charter = "", charterHash = "", kit = "", assignment = "", alert = "", webhook = "", job = ""
        var workStatement = "", capture = "", eventUUID = ""
    }

    /// Objects made once, read by many cases (or changed only in ways that do not matter).
    struct SharedObjects {
        /// A movement awaiting each caller's confirmation.
        var movementOf: [Role: String] = [:]
        var othersMovement = ""
        /// A contested movement each caller takes part in, and one between other partners.
        var contestedOf: [Role: String] = [:]
        var othersContested = ""
        var noteOf: [Role: String] = [:]
        var othersNote = ""
        var alertOf: [Role: String] = [:]
        var othersAlert = ""
        var sessionOf: [Role: String] = [:]
        var othersSession = ""
        var kit = ""
        var assignmentOf: [Role: String] = [:]
        var othersAssignment = ""
        var workStatementOf: [Role: String] = [:]
        var othersWorkStatement = ""
        var charter = ""
        var job = ""
        var webhook = ""
        var captureOf: [Role: String] = [:]
        var othersCapture = ""
        var eventOf: [Role: String] = [:]
        var othersEvent = ""
    }

    private init(api: API, store: Store, ecosystem: UUID, callers: [Role: MatrixParty], carrierTwo: MatrixParty,
                 warehouseTwo: MatrixParty, customerTwo: MatrixParty, epal: UUID) {
        self.api = api
        self.store = store
        self.ecosystem = ecosystem
        self.callers = callers
        self.carrierTwo = carrierTwo
        self.warehouseTwo = warehouseTwo
        self.customerTwo = customerTwo
        self.epal = epal
    }

    static func party(_ store: Store, ecosystem: UUID, member: MemberRecord, site: (String, String?)?, by shipper: UUID)
        async throws -> MatrixParty
    {
        let (token, secret) = try await store.issueToken(ecosystem: ecosystem, member: member.id, name: "matrix", by: nil)
        var siteID: UUID?
        if let site {
            siteID = try await store.addSite(ecosystem: ecosystem, member: member.id, name: site.0, sgln: site.1, address: nil,
                                             by: shipper).id
        }
        return MatrixParty(id: member.id, token: secret.text, tokenID: token.id, site: siteID, pgln: member.pgln)
    }

    static func make(api: API, store: Store) async throws -> MatrixWorld {
        let created = try await store.createEcosystem(name: "Matrix network", shipperName: "Laiterie Matrice",
                                                      shipperPGLN: "4012345000009")
        let ecosystem = created.ecosystem.id
        let shipperID = created.shipper.id
        func party(_ name: String, _ role: Role, pgln: String?, site: (String, String?)?) async throws -> MatrixParty {
            let member = role == .shipper ? created.shipper
                : try await store.addMember(ecosystem: ecosystem, name: name, pgln: pgln, role: role, by: shipperID)
            return try await Self.party(store, ecosystem: ecosystem, member: member, site: site, by: shipperID)
        }
        var callers: [Role: MatrixParty] = [:]
        callers[.shipper] = try await party("Laiterie Matrice", .shipper, pgln: nil, site: ("DC Nord", "4012345100006"))
        callers[.carrier] = try await party("Carrier One", .carrier, pgln: "4012345000016", site: ("Depot One", "4012345400007"))
        callers[.warehouse] = try await party("Warehouse One", .warehouse, pgln: "4012345000023",
                                              site: ("Quay One", "4012345200003"))
        callers[.supplier] = try await party("Supplier One", .supplier, pgln: "4012345000054", site: ("Mill", "4012345500004"))
        callers[.customer] = try await party("Customer One", .customer, pgln: "4012345000030", site: ("Store", "4012345300000"))
        callers[.coordinator] = try await party("Coordinator", .coordinator, pgln: nil, site: nil)
        let carrierTwo = try await party("Carrier Two", .carrier, pgln: "4012345000047", site: ("Depot Two", "4012345600001"))
        let warehouseTwo = try await party("Warehouse Two", .warehouse, pgln: "4012345000061",
                                           site: ("Quay Two", "4012345700008"))
        let customerTwo = try await party("Customer Two", .customer, pgln: "4012345000078", site: nil)
        let epal = try await store.addPalletType(ecosystem: ecosystem, .init(
            code: "EPAL1", name: "EUR/EPAL 1", exchangeable: true, unitValueMinor: 1_500, currency: "EUR"), by: shipperID).id
        let world = MatrixWorld(api: api, store: store, ecosystem: ecosystem, callers: callers, carrierTwo: carrierTwo,
                                warehouseTwo: warehouseTwo, customerTwo: customerTwo, epal: epal)
        try await world.makeForeign()
        try await world.makeShared()
        return world
    }

    // MARK: Requests

    func key() -> String {
        keys += 1
        return "matrix-\(keys)"
    }

    func name(_ prefix: String) -> String {
        names += 1
        return "\(prefix) \(names)"
    }

    /// A request of the setup; writes carry a new Idempotency-Key.
    @discardableResult
    func send(_ method: HTTPRequest.Method, _ path: String, _ token: String?, json: Any? = nil) async throws -> TestResponse {
        let write = method == .post || method == .put || method == .patch
        return try await api.request(method, path, token: token, json: json, headers: write ? ["Idempotency-Key": key()] : [:])
    }

    /// The `field` of a 2xx answer, or the setup fails naming what it made.
    func made(_ response: TestResponse, _ what: String, field: String = "id") throws -> String {
        guard (200..<300).contains(response.status.code), let value = response.json[field] as? String else {
            throw MatrixSetupError(description: "setup: \(what) answered \(response.status.code) \(response.text)")
        }
        return value
    }

    func expect2xx(_ response: TestResponse, _ what: String) throws {
        guard (200..<300).contains(response.status.code) else {
            throw MatrixSetupError(description: "setup: \(what) answered \(response.status.code) \(response.text)")
        }
    }

    // MARK: Makers

    static func movementBody(_ kind: String, from: [String: Any], to: [String: Any], quantity: Int = 4) -> [String: Any] {
        ["kind": kind, "eventTime": hoursAgo(2), "from": from, "to": to,
         "lines": [["palletType": "EPAL1", "quantity": quantity]]]
    }

    func declare(_ by: MatrixParty, _ kind: String, from: MatrixParty, to: MatrixParty, base: String? = nil) async throws -> String {
        try made(try await send(.post, "\(base ?? self.base)/movements", by.token,
                                json: Self.movementBody(kind, from: from.side, to: to.side)), "a \(kind)")
    }

    func contest(_ by: MatrixParty, _ movement: String, base: String? = nil) async throws {
        try expect2xx(try await send(.post, "\(base ?? self.base)/movements/\(movement)/contest", by.token,
                                     json: ["lines": [["lineNo": 0, "quantity": 1]]]), "contest")
    }

    /// A movement declared by another party that awaits `role`'s confirmation.
    func awaitingConfirmation(of role: Role) async throws -> String? {
        switch role {
        case .coordinator: nil
        case .shipper: try await declare(carrierOne, "return", from: carrierOne, to: shipper)
        default: try await declare(shipper, "transfer", from: shipper, to: callers[role]!)
        }
    }

    /// A movement `role` declared, which its counterparty has not confirmed.
    func declared(by role: Role) async throws -> String? {
        switch role {
        case .coordinator: return nil
        case .shipper: return try await declare(shipper, "transfer", from: shipper, to: carrierOne)
        default:
            let me = callers[role]!
            return try await declare(me, "return", from: me, to: shipper)
        }
    }

    /// A movement `role` declared, contested by its counterparty.
    func contestedDeclaration(of role: Role) async throws -> String? {
        guard let movement = try await declared(by: role) else { return nil }
        try await contest(role == .shipper ? carrierOne : shipper, movement)
        return movement
    }

    /// Carrier Two hands pallets to Warehouse Two: none of the callers takes part.
    func othersMovement() async throws -> String {
        try await declare(carrierTwo, "transfer", from: carrierTwo, to: warehouseTwo)
    }

    func othersContested() async throws -> String {
        let movement = try await othersMovement()
        try await contest(warehouseTwo, movement)
        return movement
    }

    /// A pallet note issued by the shipper for `issuer`, owed to `holder`, handed on to `pending`.
    func note(issuer: MatrixParty, holder: MatrixParty, pending: MatrixParty? = nil) async throws -> String {
        let id = try made(try await send(.post, "\(base)/pallet-notes", shipper.token, json: [
            "issuerId": issuer.lower, "holderId": holder.lower, "palletType": "EPAL1", "quantity": 3,
            "issueDate": TestClock.date(-5),
        ]), "a pallet note")
        if let pending {
            try expect2xx(try await send(.post, "\(base)/pallet-notes/\(id)/transfer", holder.token, json: ["holderId": pending.lower]),
                          "a note transfer")
        }
        return id
    }

    /// A note `role` holds (issued by the shipper to a partner, by Carrier One to the shipper).
    func noteHeld(by role: Role) async throws -> String? {
        switch role {
        case .coordinator: nil
        case .shipper: try await note(issuer: carrierOne, holder: shipper)
        default: try await note(issuer: shipper, holder: callers[role]!)
        }
    }

    /// A note handed to `role`, waiting for it to accept or decline.
    func noteHandedTo(_ role: Role) async throws -> String? {
        switch role {
        case .coordinator: nil
        case .shipper: try await note(issuer: carrierTwo, holder: warehouseTwo, pending: shipper)
        default: try await note(issuer: warehouseTwo, holder: shipper, pending: callers[role]!)
        }
    }

    func othersNote(pending: Bool = false) async throws -> String {
        try await note(issuer: carrierTwo, holder: warehouseTwo, pending: pending ? customerTwo : nil)
    }

    func session(_ participants: [MatrixParty], by: MatrixParty? = nil, base: String? = nil) async throws -> String {
        try made(try await send(.post, "\(base ?? self.base)/sessions", (by ?? coordinator).token, json: [
            "title": name("Matrix session"), "scheduledAt": hoursAgo(1),
            "periodStart": Instant.date(ofDay: TestClock.monthStart(-1)), "periodEnd": Instant.date(ofDay: TestClock.monthStart(0)),
            "participantIds": participants.map(\.lower),
        ] as [String: Any]), "a session")
    }

    func action(_ session: String, owner: MatrixParty, by: MatrixParty? = nil, base: String? = nil) async throws -> String {
        try made(try await send(.post, "\(base ?? self.base)/sessions/\(session)/actions", (by ?? coordinator).token, json: [
            "description": name("Matrix action"), "ownerId": owner.lower, "dueDate": TestClock.date(30),
        ]), "an action")
    }

    /// A charter draft (published when `published`), signed by `signers`: its id and hash.
    func charter(published: Bool, signers: [MatrixParty] = [], by: MatrixParty? = nil, base: String? = nil) async throws
        -> (id: String, hash: String)
    {
        let base = base ?? self.base
        let token = (by ?? shipper).token
        let id = try made(try await send(.post, "\(base)/charters", token, json: [
            "title": name("Matrix charter"),
            "clauses": [["number": 1, "text": "Return empties", "metric": "restitution_rate", "comparator": ">=", "target": 0.9]],
        ] as [String: Any]), "a charter draft")
        guard published else { return (id, String(repeating: "0", count: 64)) }
        let hash = try made(try await send(.post, "\(base)/charters/\(id)/publish", token, json: [:] as [String: Any]),
                            "a charter publication", field: "contentHash")
        for signer in signers {
            try expect2xx(try await send(.post, "\(base)/charters/\(id)/signatures", signer.token, json: ["contentHash": hash]),
                          "a signature")
        }
        return (id, hash)
    }

    func kit(by: MatrixParty? = nil, base: String? = nil) async throws -> String {
        try made(try await send(.post, "\(base ?? self.base)/kits", (by ?? shipper).token, json: [
            "name": name("Matrix kit"), "items": [
                ["number": 1, "kind": "checklist", "title": "Connect your TMS"],
                ["number": 2, "kind": "document", "title": "Guide"],
            ],
        ] as [String: Any]), "a kit")
    }

    func assign(_ kit: String, to member: MatrixParty, by: MatrixParty? = nil, base: String? = nil) async throws -> String {
        try made(try await send(.post, "\(base ?? self.base)/kits/\(kit)/assignments", (by ?? shipper).token,
                                json: ["memberId": member.lower]), "a kit assignment")
    }

    func webhook(by: MatrixParty? = nil, base: String? = nil) async throws -> String {
        // TEST-NET-3: a public address to the webhook rule, and nothing is sent at registration.
        try made(try await send(.post, "\(base ?? self.base)/webhooks", (by ?? shipper).token,
                                json: ["url": "https://203.0.113.10/hook"]), "a webhook")
    }

    func alert(about member: UUID, ecosystem: UUID? = nil) async throws -> String {
        let created = try await store.raiseAlerts(ecosystem: ecosystem ?? self.ecosystem, [AlertCandidate(
            kind: "balance_above", partner: member, palletType: nil, dedupeKey: "matrix:\(member.lower):\(key())",
            message: "Matrix alert", value: 10, threshold: 5)])
        guard let id = created.first else { throw MatrixSetupError(description: "setup: no alert raised") }
        return id.lower
    }

    func freshToken(for member: UUID, ecosystem: UUID? = nil) async throws -> String {
        try await store.issueToken(ecosystem: ecosystem ?? self.ecosystem, member: member, name: "matrix-extra", by: nil).0.id.lower
    }

    /// An EPCIS event that moves no pallet of the ecosystem (an unknown GRAI class): it is
    /// stored, queryable, and names its two parties.
    static func epcisEvent(_ eventID: String, source: MatrixParty, destination: MatrixParty) -> [String: Any] {
        ["type": "ObjectEvent", "eventID": eventID, "action": "OBSERVE", "bizStep": "inspecting",
         "eventTime": localTime(hoursAgo: 2), "eventTimeZoneOffset": "+01:00",
         "sourceList": [["type": "owning_party", "source": source.digitalLink]],
         "destinationList": [["type": "possessing_party", "destination": destination.digitalLink]],
         "quantityList": [["epcClass": "urn:epc:idpat:grai:4000001.99999.*", "quantity": 2]]]
    }

    /// The two parties an event of `role` names: the shipper and the caller (Carrier One for
    /// the shipper and the coordinator, who is no party of any event).
    func eventParties(_ role: Role) -> (MatrixParty, MatrixParty) {
        role == .shipper || role == .coordinator ? (shipper, carrierOne) : (shipper, callers[role]!)
    }

    /// Captures one event; its capture job id and its eventID's UUID.
    func capture(by: MatrixParty, source: MatrixParty, destination: MatrixParty, base: String? = nil) async throws
        -> (job: String, event: String)
    {
        let event = UUID().lower
        let job = try made(try await send(.post, "\(base ?? self.base)/epcis/capture", by.token,
                                          json: epcisDocument([Self.epcisEvent("urn:uuid:\(event)", source: source,
                                                                               destination: destination)])),
                           "an EPCIS capture", field: "captureID")
        return (job, event)
    }

    // MARK: Setup

    private func makeForeign() async throws {
        let created = try await store.createEcosystem(name: "Foreign network", shipperName: "Other Shipper", shipperPGLN: nil)
        let ecosystem = created.ecosystem.id
        let shipperID = created.shipper.id
        let shipper = try await Self.party(store, ecosystem: ecosystem, member: created.shipper, site: ("Far away", nil), by: shipperID)
        let carrierMember = try await store.addMember(ecosystem: ecosystem, name: "Foreign Carrier", pgln: nil, role: .carrier,
                                                      by: shipperID)
        let carrier = try await Self.party(store, ecosystem: ecosystem, member: carrierMember, site: nil, by: shipperID)
        let type = try await store.addPalletType(ecosystem: ecosystem, .init(code: "EPAL1", name: "EPAL"), by: shipperID).id
        let base = "/v1/ecosystems/\(ecosystem.lower)"
        var objects = ForeignObjects(ecosystem: ecosystem, shipper: shipper, carrier: carrier, site: shipper.site!, palletType: type)
        objects.movement = try await declare(shipper, "transfer", from: shipper, to: carrier, base: base)
        objects.contested = try await declare(carrier, "return", from: carrier, to: shipper, base: base)
        try await contest(shipper, objects.contested, base: base)
        objects.note = try made(try await send(.post, "\(base)/pallet-notes", shipper.token, json: [
            "issuerId": carrier.lower, "holderId": shipper.lower, "palletType": "EPAL1", "quantity": 3,
            "issueDate": TestClock.date(-5),
        ]), "a foreign note")
        objects.session = try await session([carrier], by: shipper, base: base)
        objects.action = try await action(objects.session, owner: carrier, by: shipper, base: base)
        let foreignCharter = try await charter(published: true, signers: [carrier], by: shipper, base: base)
        objects.charter = foreignCharter.id
        objects.charterHash = foreignCharter.hash
        objects.kit = try await kit(by: shipper, base: base)
        objects.assignment = try await assign(objects.kit, to: carrier, by: shipper, base: base)
        objects.alert = try await alert(about: carrier.id, ecosystem: ecosystem)
        objects.webhook = try await webhook(by: shipper, base: base)
        objects.job = try made(try await send(.post, "\(base)/indicators/recompute", shipper.token, json: [:] as [String: Any]),
                               "a foreign job")
        try await store.issueWorkStatements(ecosystem: ecosystem, shipper: shipperID, startDay: TestClock.monthStart(-1),
                                            endDay: TestClock.monthStart(0))
        guard let statement = try await store.workStatements(ecosystem: ecosystem, member: carrier.id).first else {
            throw MatrixSetupError(description: "setup: no foreign work statement")
        }
        objects.workStatement = statement.id.lower
        // The foreign shipper captures an event naming no member of its own.
        let stranger = MatrixParty(id: UUID(), token: "", tokenID: UUID(), pgln: "4012345000085")
        let captured = try await capture(by: shipper, source: stranger, destination: stranger, base: base)
        objects.capture = captured.job
        objects.eventUUID = captured.event
        foreign = objects
    }

    private func makeShared() async throws {
        var objects = SharedObjects()
        for role in Role.allCases {
            objects.movementOf[role] = try await awaitingConfirmation(of: role)
            objects.contestedOf[role] = try await contestedDeclaration(of: role)
            objects.noteOf[role] = try await noteHeld(by: role)
        }
        objects.othersMovement = try await othersMovement()
        objects.othersContested = try await othersContested()
        objects.othersNote = try await othersNote()

        for role in Self.partnerRoles {
            let me = callers[role]!
            objects.alertOf[role] = try await alert(about: me.id)
            // Each partner's session also has Carrier Two, whose action there it must not see.
            objects.sessionOf[role] = try await session([me, carrierTwo])
        }
        objects.othersAlert = try await alert(about: carrierTwo.id)
        objects.othersSession = try await session([carrierTwo])

        objects.kit = try await kit()
        for role in Self.partnerRoles {
            objects.assignmentOf[role] = try await assign(objects.kit, to: callers[role]!)
        }
        objects.othersAssignment = try await assign(objects.kit, to: carrierTwo)

        // A published charter with a measurable clause, signed by every partner, judged for last month.
        objects.charter = try await charter(published: true,
                                            signers: Self.partnerRoles.map { callers[$0]! } + [carrierTwo]).id
        try await store.evaluateCharter(ecosystem: ecosystem, period: .month, startDay: TestClock.monthStart(-1))

        // What the worker issues: monthly statements and statements after the work.
        let from = Instant(microsecondsSinceEpoch: Int64(TestClock.monthStart(-1)) * 86_400_000_000)
        let until = Instant(microsecondsSinceEpoch: Int64(TestClock.monthStart(0)) * 86_400_000_000)
        for partner in Self.partnerRoles.map({ callers[$0]! }) + [carrierTwo] {
            let statement = try await store.statement(ecosystem: ecosystem, party: partner.id, counterparty: shipper.id,
                                                      from: from, until: until)
            try await store.recordIssuedStatement(ecosystem: ecosystem, statement)
        }
        try await store.issueWorkStatements(ecosystem: ecosystem, shipper: shipper.id, startDay: TestClock.monthStart(-1),
                                            endDay: TestClock.monthStart(0))
        let statements = try await store.workStatements(ecosystem: ecosystem, member: nil)
        for role in Self.partnerRoles {
            objects.workStatementOf[role] = statements.first { $0.member == callers[role]!.id }?.id.lower
        }
        objects.othersWorkStatement = statements.first { $0.member == carrierTwo.id }?.id.lower ?? ""

        objects.job = try made(try await send(.post, "\(base)/indicators/recompute", shipper.token, json: [:] as [String: Any]),
                               "a job")
        objects.webhook = try await webhook()

        for role in Role.allCases where role != .coordinator {
            let (source, destination) = eventParties(role)
            let captured = try await capture(by: callers[role]!, source: source, destination: destination)
            objects.captureOf[role] = captured.job
            objects.eventOf[role] = captured.event
        }
        let others = try await capture(by: carrierTwo, source: carrierTwo, destination: warehouseTwo)
        objects.othersCapture = others.job
        objects.othersEvent = others.event
        shared = objects
    }
}
