/// The part a member plays in an ecosystem (DOMAIN.md, "Who takes part").
public enum Role: String, Sendable, CaseIterable, Codable, Hashable {
    case shipper
    case carrier
    case warehouse
    case supplier
    case customer
    case coordinator

    /// Shipper and coordinator read every partner's figures in their ecosystem;
    /// the other roles read only what they take part in.
    public var readsWholeEcosystem: Bool {
        self == .shipper || self == .coordinator
    }

    /// Only the shipper sets the ecosystem's rules, members, sites and pallet types.
    public var administersEcosystem: Bool { self == .shipper }

    /// Roles that hold pallets and so can take part in movements.
    public var holdsPallets: Bool { self != .coordinator }

    /// Whether a member in this role may see another member in the directory.
    /// Carriers compete with each other: a carrier never sees another carrier.
    public func mayListInDirectory(_ other: Role, isSelf: Bool) -> Bool {
        if isSelf || readsWholeEcosystem { return true }
        if self == .carrier && other == .carrier { return false }
        return true
    }
}
