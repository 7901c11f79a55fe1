import Foundation

/// One line of a movement: a quantity of one pallet type in one quality.
public struct MovementLine: Sendable, Hashable, Codable {
    public var palletType: UUID
    public var quality: QualityGrade
    /// Pallets moved from `from` to `to` (loaded pallets for pickup and delivery; the
    /// counted stock for an inventory).
    public var quantity: Int64
    /// Empties handed back from `to` to `from` on the spot (pickup and delivery only).
    public var exchangedQuantity: Int64
    /// Quality of the exchanged empties; the line's quality when not given.
    public var exchangedQuality: QualityGrade
    /// New quality after a repair (repair only).
    public var targetQuality: QualityGrade?

    public init(palletType: UUID, quality: QualityGrade, quantity: Int64, exchangedQuantity: Int64 = 0,
                exchangedQuality: QualityGrade? = nil, targetQuality: QualityGrade? = nil) {
        self.palletType = palletType
        self.quality = quality
        self.quantity = quantity
        self.exchangedQuantity = exchangedQuantity
        self.exchangedQuality = exchangedQuality ?? quality
        self.targetQuality = targetQuality
    }

    /// Loaded pallets not matched by empties on the spot: the receiver's new debt.
    public var shortfall: Int64 { max(0, quantity - exchangedQuantity) }
}

/// A party and, optionally, one of its sites.
public struct PartyAtSite: Sendable, Hashable, Codable {
    public var party: UUID
    public var site: UUID?
    public init(party: UUID, site: UUID? = nil) {
        self.party = party
        self.site = site
    }
}

/// Documents a movement refers to.
public struct MovementReferences: Sendable, Hashable, Codable {
    public var deliveryNote: String?
    public var cmr: String?
    public var order: String?
    public var palletNote: String?
    public init(deliveryNote: String? = nil, cmr: String? = nil, order: String? = nil, palletNote: String? = nil) {
        self.deliveryNote = deliveryNote
        self.cmr = cmr
        self.order = order
        self.palletNote = palletNote
    }
}

/// A photo or document backing a declaration, identified by its hash.
public struct Evidence: Sendable, Hashable, Codable {
    public var sha256: String
    public var url: String?
    public init(sha256: String, url: String? = nil) {
        self.sha256 = sha256
        self.url = url
    }
}

/// What a declarer sends: a movement before it is checked and posted.
public struct MovementDeclaration: Sendable, Hashable {
    public var kind: MovementKind
    public var eventTime: Instant
    public var from: PartyAtSite?
    public var to: PartyAtSite?
    public var lines: [MovementLine]
    public var references: MovementReferences
    public var evidence: Evidence?
    public var note: String?

    public init(kind: MovementKind, eventTime: Instant, from: PartyAtSite?, to: PartyAtSite?, lines: [MovementLine],
                references: MovementReferences = .init(), evidence: Evidence? = nil, note: String? = nil) {
        self.kind = kind
        self.eventTime = eventTime
        self.from = from
        self.to = to
        self.lines = lines
        self.references = references
        self.evidence = evidence
        self.note = note
    }
}
