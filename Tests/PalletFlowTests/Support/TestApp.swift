import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import PalletFlowAPI
import PalletFlowCore
import PalletFlowStore
import Testing

/// A small ecosystem built through the store, plus a foreign one, with a token per role.
struct Fixture: Sendable {
    struct Party: Sendable {
        var id: UUID
        var token: String
        var site: UUID?
    }

    var ecosystem: UUID
    var shipper: Party
    var carrier: Party
    var otherCarrier: Party
    var warehouse: Party
    var customer: Party
    var coordinator: Party
    var epal: UUID
    var chep: UUID
    /// A second ecosystem: its ids must never be reachable from the first one's tokens.
    var foreignEcosystem: UUID
    var foreignShipper: Party
    var foreignCarrier: Party
    var foreignSite: UUID
    var foreignPalletType: UUID

    var everyone: [(Role, Party)] {
        [(.shipper, shipper), (.carrier, carrier), (.warehouse, warehouse), (.customer, customer), (.coordinator, coordinator)]
    }

    static func make(_ store: Store) async throws -> Fixture {
        let created = try await store.createEcosystem(name: "Test ecosystem", shipperName: "Shipper SA", shipperPGLN: "3000000000017")
        let ecosystem = created.ecosystem.id
        let shipperID = created.shipper.id
        func party(_ name: String, _ role: Role, site: String?) async throws -> Party {
            let member = role == .shipper ? created.shipper
                : try await store.addMember(ecosystem: ecosystem, name: name, pgln: nil, role: role, by: shipperID)
            let (_, secret) = try await store.issueToken(ecosystem: ecosystem, member: member.id, name: "test", by: nil)
            var siteID: UUID?
            if let site {
                siteID = try await store.addSite(ecosystem: ecosystem, member: member.id, name: site, sgln: nil, address: nil,
                                                 by: shipperID).id
            }
            return Party(id: member.id, token: secret.text, site: siteID)
        }
        let shipper = try await party("Shipper SA", .shipper, site: "Factory")
        let carrier = try await party("Carrier One", .carrier, site: nil)
        let otherCarrier = try await party("Carrier Two", .carrier, site: "Depot Two")
        let warehouse = try await party("Warehouse", .warehouse, site: "Warehouse North")
        let customer = try await party("Customer", .customer, site: "Store")
        let coordinator = try await party("Coordinator", .coordinator, site: nil)
        let epal = try await store.addPalletType(ecosystem: ecosystem, .init(
            code: "EPAL1", name: "EUR/EPAL 1", exchangeable: true, unitValueMinor: 1_500, currency: "EUR"), by: shipperID).id
        let chep = try await store.addPalletType(ecosystem: ecosystem, .init(
            code: "CHEP", name: "CHEP blue", exchangeable: false), by: shipperID).id

        let foreign = try await store.createEcosystem(name: "Foreign", shipperName: "Other Shipper", shipperPGLN: nil)
        let (_, foreignShipperSecret) = try await store.issueToken(ecosystem: foreign.ecosystem.id, member: foreign.shipper.id,
                                                                    name: "test", by: nil)
        let foreignCarrierMember = try await store.addMember(ecosystem: foreign.ecosystem.id, name: "Foreign Carrier", pgln: nil,
                                                             role: .carrier, by: foreign.shipper.id)
        let (_, foreignCarrierSecret) = try await store.issueToken(ecosystem: foreign.ecosystem.id, member: foreignCarrierMember.id,
                                                                    name: "test", by: nil)
        let foreignSite = try await store.addSite(ecosystem: foreign.ecosystem.id, member: foreign.shipper.id, name: "Far away",
                                                  sgln: nil, address: nil, by: foreign.shipper.id).id
        let foreignType = try await store.addPalletType(ecosystem: foreign.ecosystem.id, .init(code: "EPAL1", name: "EPAL"),
                                                        by: foreign.shipper.id).id
        return Fixture(
            ecosystem: ecosystem, shipper: shipper, carrier: carrier, otherCarrier: otherCarrier, warehouse: warehouse,
            customer: customer, coordinator: coordinator, epal: epal, chep: chep, foreignEcosystem: foreign.ecosystem.id,
            foreignShipper: Party(id: foreign.shipper.id, token: foreignShipperSecret.text),
            foreignCarrier: Party(id: foreignCarrierMember.id, token: foreignCarrierSecret.text),
            foreignSite: foreignSite, foreignPalletType: foreignType)
    }

    var base: String { "/v1/ecosystems/\(ecosystem.uuidString.lowercased())" }
}

/// A response read whole: status, headers, body bytes and the body as JSON.
struct TestResponse: Sendable {
    var status: HTTPResponse.Status
    var headers: HTTPFields
    var body: [UInt8]

    var text: String { String(decoding: body, as: UTF8.self) }
    var json: [String: Any] {
        ((try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]) ?? [:]
    }
    var items: [[String: Any]] { (json["items"] as? [[String: Any]]) ?? [] }
    var problemType: String? { json["type"] as? String }
    var fieldErrors: [String] { ((json["errors"] as? [[String: Any]]) ?? []).compactMap { $0["field"] as? String } }
}

/// Drives the real router in process, with a real database behind it.
struct API: Sendable {
    let client: any TestClientProtocol

    func request(_ method: HTTPRequest.Method, _ path: String, token: String? = nil, json: Any? = nil,
                 body: String? = nil, contentType: String = "application/json", headers extra: [String: String] = [:])
        async throws -> TestResponse
    {
        var headers = HTTPFields()
        if let token { headers[.authorization] = "Bearer \(token)" }
        var buffer: ByteBuffer?
        if let json {
            buffer = ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]))
            headers[.contentType] = contentType
        } else if let body {
            buffer = ByteBuffer(string: body)
            headers[.contentType] = contentType
        }
        for (name, value) in extra { headers[HTTPField.Name(name)!] = value }
        return try await client.execute(uri: path, method: method, headers: headers, body: buffer) { response in
            TestResponse(status: response.status, headers: response.headers, body: Array(buffer: response.body))
        }
    }

    func get(_ path: String, token: String?) async throws -> TestResponse {
        try await request(.get, path, token: token)
    }

    func post(_ path: String, token: String?, json: Any, key: String? = nil) async throws -> TestResponse {
        try await request(.post, path, token: token, json: json,
                          headers: key.map { ["Idempotency-Key": $0] } ?? [:])
    }
}

/// Runs `body` against a fresh database, its fixture and the router, all connected as the
/// application role, as the daemon is. `configure` changes the daemon's settings from its
/// defaults (with a 1 MiB body limit).
func withAPI(bodyLimitBytes: Int = 1_048_576, rateLimitPerToken: Double = ServerSettings.defaultRateLimitPerToken,
             webhookRule: WebhookAddressRule = .init(), maximumConnections: Int = 40,
             configure: @Sendable (inout ServerSettings) -> Void = { _ in },
             _ body: @escaping @Sendable (API, Fixture, Store) async throws -> Void) async throws {
    try await withAPIAndOwner(bodyLimitBytes: bodyLimitBytes, rateLimitPerToken: rateLimitPerToken, webhookRule: webhookRule,
                              maximumConnections: maximumConnections, configure: configure) { api, fixture, store, _ in
        try await body(api, fixture, store)
    }
}

/// The same, with a store connected as the tables' owner beside it, for what only the owner
/// may try.
func withAPIAndOwner(bodyLimitBytes: Int = 1_048_576, rateLimitPerToken: Double = ServerSettings.defaultRateLimitPerToken,
                     webhookRule: WebhookAddressRule = .init(), maximumConnections: Int = 40,
                     configure: @Sendable (inout ServerSettings) -> Void = { _ in },
                     _ body: @escaping @Sendable (API, Fixture, Store, _ owner: Store) async throws -> Void) async throws {
    try await withFreshStores(maximumConnections: maximumConnections) { store, owner in
        let fixture = try await Fixture.make(store)
        var settings = ServerSettings(bodyLimitBytes: bodyLimitBytes, rateLimitPerToken: rateLimitPerToken, webhookRule: webhookRule)
        configure(&settings)
        let router = try buildRouter(store: store, settings: settings, logger: TestDatabase.logger)
        let app = Application(router: router, logger: TestDatabase.logger)
        try await app.test(.router) { client in
            try await body(API(client: client), fixture, store, owner)
        }
    }
}

extension UUID {
    var lower: String { uuidString.lowercased() }
}

/// An RFC 3339 instant `hours` before now, in UTC.
func hoursAgo(_ hours: Double) -> String {
    Instant(TestClock.now().date.addingTimeInterval(-hours * 3600)).rfc3339(keepingOffset: false)
}
