import Foundation

/// A member of an ecosystem as the ledger rules need to know it.
public struct Member: Sendable, Hashable {
    public var id: UUID
    public var organisation: UUID
    public var name: String
    public var role: Role
    public var active: Bool
    public var pgln: String?
    public init(id: UUID, organisation: UUID, name: String, role: Role, active: Bool = true, pgln: String? = nil) {
        self.id = id
        self.organisation = organisation
        self.name = name
        self.role = role
        self.active = active
        self.pgln = pgln
    }
}

public struct Site: Sendable, Hashable {
    public var id: UUID
    public var owner: UUID
    public var name: String
    public var active: Bool
    public var sgln: String?
    public init(id: UUID, owner: UUID, name: String, active: Bool = true, sgln: String? = nil) {
        self.id = id
        self.owner = owner
        self.name = name
        self.active = active
        self.sgln = sgln
    }
}

public struct PalletType: Sendable, Hashable {
    public var id: UUID
    public var code: String
    public var name: String
    public var exchangeable: Bool
    public var active: Bool
    /// GS1 GRAI class (GRAI without serial), in whichever notation the shipper entered it.
    public var graiClass: String?
    public init(id: UUID, code: String, name: String, exchangeable: Bool = true, active: Bool = true,
                graiClass: String? = nil) {
        self.id = id
        self.code = code
        self.name = name
        self.exchangeable = exchangeable
        self.active = active
        self.graiClass = graiClass
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

    /// A pallet type by id or by code.
    public func palletType(_ reference: String) -> PalletType? {
        if let id = UUID(parsing: reference), let type = palletTypes[id] { return type }
        return palletTypes.values.first { $0.code.caseInsensitiveCompare(reference) == .orderedSame }
    }

    /// A member by id or by GS1 PGLN.
    public func member(_ reference: String) -> Member? {
        if let id = UUID(parsing: reference) { return members[id] }
        return members.values.first { $0.pgln == reference }
    }

    /// A site by id or by SGLN.
    public func site(_ reference: String) -> Site? {
        if let id = UUID(parsing: reference) { return sites[id] }
        return sites.values.first { $0.sgln == reference }
    }

    /// Whether `viewer` may know that `member` belongs to the ecosystem (a carrier never
    /// learns which other carriers serve the shipper: `Role.mayListInDirectory`).
    public func sees(_ member: Member, from viewer: Member) -> Bool {
        viewer.role.mayListInDirectory(member.role, isSelf: member.id == viewer.id)
    }

    /// The directory as `viewer` may know it: the members it may not see, and their sites,
    /// are left out, so that naming one answers exactly as naming an unknown party.
    public func seen(by viewer: Member) -> Directory {
        let hidden = Set(members.values.filter { !sees($0, from: viewer) }.map(\.id))
        guard !hidden.isEmpty else { return self }
        var view = self
        view.members = members.filter { !hidden.contains($0.key) }
        view.sites = sites.filter { !hidden.contains($0.value.owner) }
        return view
    }
}
