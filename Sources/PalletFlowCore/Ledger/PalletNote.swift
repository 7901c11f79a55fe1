import Foundation

/// A pallet note (bon palette, Palettenschein): the issuer owes the holder pallets.
public struct PalletNoteTerms: Sendable, Hashable {
    public var issuer: UUID
    public var holder: UUID
    public var palletType: UUID
    public var quality: QualityGrade
    public var quantity: Int64
    public var serial: String?

    public init(issuer: UUID, holder: UUID, palletType: UUID, quality: QualityGrade, quantity: Int64, serial: String? = nil) {
        self.issuer = issuer
        self.holder = holder
        self.palletType = palletType
        self.quality = quality
        self.quantity = quantity
        self.serial = serial
    }
}

public enum PalletNoteState: String, Sendable, Codable, CaseIterable {
    case open
    case partiallyRedeemed = "partially_redeemed"
    case redeemed
    case overdue
    case cancelled

    /// A note is overdue once its due date has passed with pallets still owed.
    public static func of(quantity: Int64, redeemed: Int64, dueDate: Date, cancelled: Bool, today: Date) -> PalletNoteState {
        if cancelled { return .cancelled }
        if redeemed >= quantity { return .redeemed }
        if dueDate < today { return .overdue }
        return redeemed > 0 ? .partiallyRedeemed : .open
    }
}

extension LedgerRules {
    /// The notes a delivery's shortfall gives rise to: the receiver owes the carrier the
    /// empties it did not hand back, one note per pallet type and quality.
    public static func shortfallNotes(for declaration: MovementDeclaration, serial: String?) -> [PalletNoteTerms] {
        guard declaration.kind == .delivery, let from = declaration.from, let to = declaration.to, from.party != to.party else {
            return []
        }
        var owed: [PalletTypeQuality: Int64] = [:]
        var order: [PalletTypeQuality] = []
        for line in declaration.lines where line.shortfall > 0 {
            let key = PalletTypeQuality(palletType: line.palletType, quality: line.quality)
            if owed[key] == nil { order.append(key) }
            owed[key, default: 0] += line.shortfall
        }
        return order.enumerated().map { index, key in
            PalletNoteTerms(issuer: to.party, holder: from.party, palletType: key.palletType, quality: key.quality,
                            quantity: owed[key]!, serial: serial.map { order.count > 1 ? "\($0)-\(index + 1)" : $0 })
        }
    }
}

public struct PalletTypeQuality: Sendable, Hashable {
    public var palletType: UUID
    public var quality: QualityGrade
    public init(palletType: UUID, quality: QualityGrade) {
        self.palletType = palletType
        self.quality = quality
    }
}
