import Foundation

/// A member of an ecosystem as the ledger rules need to know it.
public struct Member: Sendable, Hashable {
    public var id: UUID
    public var organisation: UUID
    public var name: String
    public var role: Role
    public var active: Bool
    public init(id: UUID, organisation: UUID, name: String, role: Role, active: Bool = true) {
        self.id = id
        self.organisation = organisation
        self.name = name
        self.role = role
        self.active = active
    }
}

public struct Site: Sendable, Hashable {
    public var id: UUID
    public var owner: UUID
    public var name: String
    public var active: Bool
    public init(id: UUID, owner: UUID, name: String, active: Bool = true) {
        self.id = id
        self.owner = owner
        self.name = name
        self.active = active
    }
}

public struct PalletType: Sendable, Hashable {
    public var id: UUID
    public var code: String
    public var name: String
    public var exchangeable: Bool
    public var active: Bool
    public init(id: UUID, code: String, name: String, exchangeable: Bool = true, active: Bool = true) {
        self.id = id
        self.code = code
        self.name = name
        self.exchangeable = exchangeable
        self.active = active
    }
}

/// A snapshot of an ecosystem's members, sites and pallet types: what a declaration is
/// checked against.
public struct Directory: Sendable {
    public var ecosystem: UUID
    public var members: [UUID: Member]
    public var sites: [UUID: Site]
    public var palletTypes: [UUID: PalletType]

    public init(ecosystem: UUID, members: [Member], sites: [Site], palletTypes: [PalletType]) {
        self.ecosystem = ecosystem
        self.members = Dictionary(members.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        self.sites = Dictionary(sites.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        self.palletTypes = Dictionary(palletTypes.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
    }

    public func palletType(code: String) -> PalletType? {
        palletTypes.values.first { $0.code == code }
    }
}
