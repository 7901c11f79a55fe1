import Foundation

/// The class of a ledger account. Two books share one ledger:
/// - holdings: where pallets physically are (a party, optionally at one of its sites);
/// - owed: the bilateral account, what `party` owes `counterparty`, kept mirrored so that
///   each pair sums to zero;
/// - the pool's boundary accounts, where pallets enter or leave the ecosystem.
public enum AccountClass: String, Sendable, CaseIterable, Codable, Hashable {
    case holding
    case owed
    case poolIn = "pool_in"
    case scrapped
    case lost
    case adjusted

    public var isBoundary: Bool {
        switch self {
        case .poolIn, .scrapped, .lost, .adjusted: true
        case .holding, .owed: false
        }
    }
}

/// The all-zero UUID stands for "no party" or "no site" in account keys, so keys are
/// never NULL and the unique index can order and compare them directly.
public let noneID = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))

/// Identifies one ledger account inside an ecosystem.
public struct AccountKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var accountClass: AccountClass
    public var party: UUID
    public var counterparty: UUID
    public var site: UUID
    public var palletType: UUID
    public var quality: QualityGrade

    public init(_ accountClass: AccountClass, party: UUID = noneID, counterparty: UUID = noneID,
                site: UUID = noneID, palletType: UUID, quality: QualityGrade) {
        self.accountClass = accountClass
        self.party = party
        self.counterparty = counterparty
        self.site = site
        self.palletType = palletType
        self.quality = quality
    }

    public static func holding(_ party: UUID, site: UUID?, _ palletType: UUID, _ quality: QualityGrade) -> AccountKey {
        AccountKey(.holding, party: party, site: site ?? noneID, palletType: palletType, quality: quality)
    }

    public static func owed(_ debtor: UUID, to creditor: UUID, _ palletType: UUID, _ quality: QualityGrade) -> AccountKey {
        AccountKey(.owed, party: debtor, counterparty: creditor, palletType: palletType, quality: quality)
    }

    public static func boundary(_ accountClass: AccountClass, _ palletType: UUID, _ quality: QualityGrade) -> AccountKey {
        AccountKey(accountClass, palletType: palletType, quality: quality)
    }

    /// The one global lock order: every writer touches accounts sorted by this key, so two
    /// declarations on the same accounts can wait for each other but never deadlock.
    /// UUIDs compare by their bytes, which is the order of their strings (and of PostgreSQL's
    /// uuid type) without formatting any: formatting eight UUIDs per comparison was a
    /// quarter of the daemon's CPU on batches (docs/performance.md).
    public static func < (lhs: AccountKey, rhs: AccountKey) -> Bool {
        if lhs.accountClass != rhs.accountClass { return lhs.accountClass.rawValue < rhs.accountClass.rawValue }
        if lhs.party != rhs.party { return lhs.party.precedes(rhs.party) }
        if lhs.counterparty != rhs.counterparty { return lhs.counterparty.precedes(rhs.counterparty) }
        if lhs.site != rhs.site { return lhs.site.precedes(rhs.site) }
        if lhs.palletType != rhs.palletType { return lhs.palletType.precedes(rhs.palletType) }
        return lhs.quality.rawValue < rhs.quality.rawValue
    }

    public var description: String {
        "\(accountClass.rawValue)(\(party) \(counterparty) \(site) \(palletType) \(quality.rawValue))"
    }
}

/// One ledger entry before it is written: an amount on an account.
public struct Posting: Sendable, Hashable {
    public var account: AccountKey
    public var amount: Int64
    public init(_ account: AccountKey, _ amount: Int64) {
        self.account = account
        self.amount = amount
    }
}

extension UUID {
    /// Byte-wise order: the order of `uuidString` and of PostgreSQL's uuid type.
    public func precedes(_ other: UUID) -> Bool {
        let (a, b) = (halves, other.halves)
        return a.high != b.high ? a.high < b.high : a.low < b.low
    }

    private var halves: (high: UInt64, low: UInt64) {
        let u = uuid
        let high = UInt64(u.0) << 56 | UInt64(u.1) << 48 | UInt64(u.2) << 40 | UInt64(u.3) << 32
            | UInt64(u.4) << 24 | UInt64(u.5) << 16 | UInt64(u.6) << 8 | UInt64(u.7)
        let low = UInt64(u.8) << 56 | UInt64(u.9) << 48 | UInt64(u.10) << 40 | UInt64(u.11) << 32
            | UInt64(u.12) << 24 | UInt64(u.13) << 16 | UInt64(u.14) << 8 | UInt64(u.15)
        return (high, low)
    }
}
