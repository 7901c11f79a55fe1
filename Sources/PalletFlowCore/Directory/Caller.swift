import Foundation

/// The authenticated member behind a request: one token belongs to one membership.
public struct Caller: Sendable, Hashable {
    public var ecosystem: UUID
    public var membership: UUID
    public var organisation: UUID
    public var organisationName: String
    public var role: Role
    public var token: UUID

    public init(ecosystem: UUID, membership: UUID, organisation: UUID, organisationName: String, role: Role, token: UUID) {
        self.ecosystem = ecosystem
        self.membership = membership
        self.organisation = organisation
        self.organisationName = organisationName
        self.role = role
        self.token = token
    }

    /// Whether this caller may read figures that concern `party` (a membership id).
    public func mayRead(party: UUID) -> Bool {
        role.readsWholeEcosystem || party == membership
    }
}
