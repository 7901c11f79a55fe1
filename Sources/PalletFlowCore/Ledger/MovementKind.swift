/// The kinds of pallet movement users declare (DOMAIN.md, "Movements").
public enum MovementKind: String, Sendable, CaseIterable, Codable, Hashable {
    /// The carrier takes loaded pallets at a shipper, supplier or warehouse site and may
    /// hand over empties in exchange at the same time.
    case pickup
    /// The carrier delivers loaded pallets and should receive as many empties back; the
    /// shortfall is a debt of the receiver, often evidenced by a pallet note.
    case delivery
    /// Empties brought back to their owner; redeems pallet notes.
    case `return`
    /// Pallets moved between two sites or parties without goods.
    case transfer
    /// Pallets entering the pool (bought, rented in, found).
    case purchase
    /// A quality change at a site: repaired or downgraded pallets.
    case repair
    /// Pallets destroyed or taken out of the pool.
    case scrap
    /// Pallets declared lost; with an owner named, the holder's debt toward it is written off.
    case loss
    /// A physical count at a site; the difference with the book becomes an adjustment.
    case inventory

    /// Kinds that move pallets from one party to another and so touch a bilateral account.
    public var isExchangeBetweenParties: Bool {
        switch self {
        case .pickup, .delivery, .return, .transfer: true
        default: false
        }
    }

    /// Kinds whose counterparty is asked to confirm when the declaration names two parties:
    /// the exchanges, and a loss that names the owner, since it writes off what the holder
    /// owes that owner (nobody lowers its own debt alone).
    public var needsCounterparty: Bool { isExchangeBetweenParties || self == .loss }

    /// Kinds whose lines may carry empties handed back on the spot.
    public var allowsExchange: Bool { self == .pickup || self == .delivery }
}
