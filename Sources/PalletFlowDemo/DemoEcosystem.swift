import Foundation
import PalletFlowCore
import PalletFlowStore
import PalletFlowWorker

/// The demo: a French dairy shipper's pallet network with its carriers, warehouses,
/// suppliers, consignees and a coordinator, so a new user sees a living system at once.
public enum DemoEcosystem {
    public static let name = "Demo: Laiterie du Val de Loire"

    public struct Organisation: Codable, Sendable {
        public var memberId: String
        public var name: String
        public var role: String
        public var token: String
    }

    /// What `palletflow demo --json` prints and `palletflowd --demo` shows.
    public struct Seeded: Codable, Sendable {
        public var ecosystemId: String
        public var name: String
        public var organisations: [Organisation]
        public var palletTypes: [String: String]
        public var freshlyCreated: Bool

        public func token(role: Role) -> String? { organisations.first { $0.role == role.rawValue }?.token }
    }

    struct Party {
        var name: String
        var role: Role
        var pgln: String
        var sites: [String]
    }

    static let parties: [Party] = [
        Party(name: "Laiterie du Val de Loire", role: .shipper, pgln: "3012345000017",
              sites: ["Usine de Saumur", "Plateforme d'Angers"]),
        Party(name: "Transports Morvan", role: .carrier, pgln: "3012345000024", sites: []),
        Party(name: "Loire Fret Express", role: .carrier, pgln: "3012345000031", sites: []),
        Party(name: "Berthelot Logistique", role: .carrier, pgln: "3012345000048", sites: []),
        Party(name: "Transports Guérin & Fils", role: .carrier, pgln: "3012345000055", sites: []),
        Party(name: "Atlantique Froid Routier", role: .carrier, pgln: "3012345000062", sites: []),
        Party(name: "Messageries du Maine", role: .carrier, pgln: "3012345000079", sites: []),
        Party(name: "Rhône-Alpes Distribution", role: .carrier, pgln: "3012345000086", sites: []),
        Party(name: "Transports Le Goff", role: .carrier, pgln: "3012345000093", sites: []),
        Party(name: "Normandie Palettes Transport", role: .carrier, pgln: "3012345000109", sites: []),
        Party(name: "Sud-Ouest Frigo", role: .carrier, pgln: "3012345000116", sites: []),
        Party(name: "Entrepôts Lemoine", role: .warehouse, pgln: "3012345000123", sites: ["Entrepôt de Tours"]),
        Party(name: "Logiparc Rungis", role: .warehouse, pgln: "3012345000130", sites: ["Rungis Bâtiment C"]),
        Party(name: "Plateforme Froid Nantes", role: .warehouse, pgln: "3012345000147", sites: ["Carquefou"]),
        Party(name: "Emballages Poitou", role: .supplier, pgln: "3012345000154", sites: ["Châtellerault"]),
        Party(name: "Cartonnerie de l'Ouest", role: .supplier, pgln: "3012345000161", sites: ["Cholet"]),
        Party(name: "Ferments Bretons", role: .supplier, pgln: "3012345000178", sites: ["Quimper"]),
        Party(name: "HyperFrais Centrale Nord", role: .customer, pgln: "3012345000185", sites: ["Lille Lesquin"]),
        Party(name: "MarchéPlus Île-de-France", role: .customer, pgln: "3012345000192", sites: ["Wissous", "Bonneuil"]),
        Party(name: "Coop Atlantique", role: .customer, pgln: "3012345000208", sites: ["Saintes"]),
        Party(name: "Distri Grand Est", role: .customer, pgln: "3012345000215", sites: ["Metz Actipôle"]),
        Party(name: "Epicerie Fine Lyonnaise", role: .customer, pgln: "3012345000222", sites: ["Corbas"]),
        Party(name: "Cabinet Coopéra Médiation", role: .coordinator, pgln: "3012345000239", sites: []),
    ]

    /// Unit values in force since the start of last year (by the store's clock).
    static func valuesFrom(_ now: Instant) -> Date {
        let year = Int(Instant.date(ofDay: now.day).prefix(4))! - 1
        return Instant.parse("\(year)-01-01T00:00:00Z")!.date
    }

    static func palletTypes(valuesFrom: Date) -> [Store.NewPalletType] { [
        .init(code: "EPAL1", name: "EUR/EPAL 1 (1200x800)", lengthMillimetres: 1200, widthMillimetres: 800,
              heightMillimetres: 144, exchangeable: true, graiClass: "urn:epc:idpat:grai:4000001.11111.*",
              unitValueMinor: 1_850, currency: "EUR", valueValidFrom: valuesFrom),
        .init(code: "EPAL6", name: "EPAL 6 half pallet (800x600)", lengthMillimetres: 800, widthMillimetres: 600,
              heightMillimetres: 144, exchangeable: true, graiClass: "urn:epc:idpat:grai:4000001.11116.*",
              unitValueMinor: 1_100, currency: "EUR", valueValidFrom: valuesFrom),
        .init(code: "GITTERBOX", name: "Gitterbox box pallet (1240x835x970)", lengthMillimetres: 1240,
              widthMillimetres: 835, heightMillimetres: 970, exchangeable: true,
              graiClass: "urn:epc:idpat:grai:4000001.22222.*", unitValueMinor: 12_000, currency: "EUR", valueValidFrom: valuesFrom),
        .init(code: "CHEP-B", name: "CHEP blue pool pallet (1200x1000)", lengthMillimetres: 1200,
              widthMillimetres: 1000, heightMillimetres: 162, exchangeable: false,
              graiClass: "urn:epc:idpat:grai:5000001.33333.*", unitValueMinor: 2_400, currency: "EUR", valueValidFrom: valuesFrom),
    ] }

    /// Creates the demo ecosystem, or finds it again, and issues fresh demo tokens (the
    /// old ones are revoked: secrets are never stored, so they cannot be shown again).
    public static func seed(_ store: Store) async throws -> Seeded {
        var freshlyCreated = false
        let ecosystemID: UUID
        if let existing = try await store.ecosystems(named: name).first {
            ecosystemID = existing.id
        } else {
            freshlyCreated = true
            let shipper = parties[0]
            let created = try await store.createEcosystem(name: name, shipperName: shipper.name, shipperPGLN: shipper.pgln)
            ecosystemID = created.ecosystem.id
            try await store.revokeTokens(ecosystem: ecosystemID, named: "bootstrap admin")
            for (index, party) in parties.enumerated() {
                let member: MemberRecord
                if index == 0 {
                    member = created.shipper
                } else {
                    member = try await store.addMember(ecosystem: ecosystemID, name: party.name, pgln: party.pgln,
                                                       role: party.role, by: created.shipper.id)
                }
                for (siteIndex, site) in party.sites.enumerated() {
                    let sgln = "urn:epc:id:sgln:\(party.pgln.prefix(7)).\(party.pgln.dropFirst(7).prefix(5)).\(siteIndex + 1)"
                    _ = try await store.addSite(ecosystem: ecosystemID, member: member.id, name: site, sgln: sgln,
                                                address: "\(site), France", by: created.shipper.id)
                }
            }
            for type in palletTypes(valuesFrom: valuesFrom(store.now)) {
                _ = try await store.addPalletType(ecosystem: ecosystemID, type, by: created.shipper.id)
            }
            try await DemoHistory.seed(store, ecosystem: ecosystemID, now: store.nowDate)
            try await DemoCooperation.seed(store, ecosystem: ecosystemID)
            // Indicators and charter compliance at once, whether a worker runs or not.
            try await IndicatorEngine(store: store).recompute(ecosystem: ecosystemID)
            let today = store.today
            let lastMonth = PeriodKind.month.start(of: PeriodKind.month.start(of: today) - 1)
            for month in [PeriodKind.month.start(of: lastMonth - 1), lastMonth] {
                try await store.evaluateCharter(ecosystem: ecosystemID, period: .month, startDay: month)
            }
        }
        try await store.revokeTokens(ecosystem: ecosystemID, named: "demo")
        var organisations: [Organisation] = []
        for member in try await store.members(ecosystem: ecosystemID) {
            let (_, secret) = try await store.issueToken(ecosystem: ecosystemID, member: member.id, name: "demo", by: nil)
            organisations.append(Organisation(memberId: member.id.uuidString.lowercased(), name: member.name,
                                              role: member.role.rawValue, token: secret.text))
        }
        let order = Role.allCases
        organisations.sort {
            (order.firstIndex(of: Role(rawValue: $0.role)!)!, $0.name) < (order.firstIndex(of: Role(rawValue: $1.role)!)!, $1.name)
        }
        var types: [String: String] = [:]
        for type in try await store.palletTypes(ecosystem: ecosystemID) { types[type.code] = type.id.uuidString.lowercased() }
        return Seeded(ecosystemId: ecosystemID.uuidString.lowercased(), name: name, organisations: organisations,
                      palletTypes: types, freshlyCreated: freshlyCreated)
    }
}
