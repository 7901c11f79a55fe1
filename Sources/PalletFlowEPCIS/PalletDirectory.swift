import Foundation
import PalletFlowCore

/// The ecosystem's directory indexed by GS1 key, so that URN, Digital Link and bare
/// digit forms of an identifier all find the same party, site or pallet type. Ids
/// PalletFlow hands out for entities without a GS1 key (`urn:palletflow:site:<uuid>`)
/// resolve too, so events read back from the query interface can be captured again.
public struct PalletDirectory: Sendable {
    public let directory: Directory
    var palletTypes: [GS1Key: UUID] = [:]
    var parties: [GS1Key: UUID] = [:]
    var locations: [GS1Key: UUID] = [:]

    public static let partyURNPrefix = "urn:palletflow:party:"
    public static let siteURNPrefix = "urn:palletflow:site:"
    public static let palletTypeURNPrefix = "urn:palletflow:pallet-type:"

    public init(_ directory: Directory) {
        self.directory = directory
        for type in directory.palletTypes.values {
            if let grai = type.graiClass, let key = GS1Key.graiClass(grai) { palletTypes[key] = type.id }
        }
        for member in directory.members.values {
            if let pgln = member.pgln, let key = GS1Key.party(pgln) { parties[key] = member.id }
        }
        for site in directory.sites.values {
            if let sgln = site.sgln, let key = GS1Key.location(sgln) { locations[key] = site.id }
        }
    }

    public func palletType(forClass text: String) -> PalletType? {
        if let id = text.dropPrefix(Self.palletTypeURNPrefix).flatMap({ UUID(parsing: String($0)) }) {
            return directory.palletTypes[id]
        }
        return GS1Key.graiClass(text).flatMap { palletTypes[$0] }.flatMap { directory.palletTypes[$0] }
    }

    public func member(_ text: String) -> Member? {
        if let id = text.dropPrefix(Self.partyURNPrefix).flatMap({ UUID(parsing: String($0)) }) {
            return directory.members[id]
        }
        return GS1Key.party(text).flatMap { parties[$0] }.flatMap { directory.members[$0] }
    }

    public func site(_ text: String) -> Site? {
        if let id = text.dropPrefix(Self.siteURNPrefix).flatMap({ UUID(parsing: String($0)) }) {
            return directory.sites[id]
        }
        return GS1Key.location(text).flatMap { locations[$0] }.flatMap { directory.sites[$0] }
    }

    /// How PalletFlow names a party, site or pallet type in the events it serves: the
    /// GS1 URN when one is known, a PalletFlow URN otherwise.
    public func partyURI(_ id: UUID) -> String {
        directory.members[id]?.pgln.flatMap(GS1Key.party).map { $0.urn() } ?? Self.partyURNPrefix + id.uuidString.lowercased()
    }

    public func siteURI(_ id: UUID) -> String {
        directory.sites[id]?.sgln.flatMap(GS1Key.location).map { $0.urn() } ?? Self.siteURNPrefix + id.uuidString.lowercased()
    }

    public func palletClassURI(_ id: UUID) -> String {
        directory.palletTypes[id]?.graiClass.flatMap(GS1Key.graiClass).map { $0.urn() }
            ?? Self.palletTypeURNPrefix + id.uuidString.lowercased()
    }

    /// A query parameter's identifier as the canonical text stored with captured events.
    public static func canonical(_ text: String) -> String {
        (GS1Key.party(text) ?? GS1Key.location(text) ?? GS1Key.graiClass(text) ?? GS1Key.document(text))?.description ?? text
    }
}
