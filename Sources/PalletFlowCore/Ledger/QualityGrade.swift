/// GS1 Germany / ECR quality classes for exchange pallets.
public enum QualityGrade: String, Sendable, CaseIterable, Codable, Hashable, Comparable {
    case new
    case a = "A"
    case b = "B"
    case c = "C"
    case unusable

    /// Best first: new > A > B > C > unusable.
    public var rank: Int {
        switch self {
        case .new: 0
        case .a: 1
        case .b: 2
        case .c: 3
        case .unusable: 4
        }
    }

    /// EPAL: a pallet with a broken board or block is not exchangeable.
    public var isExchangeable: Bool { self != .unusable }

    public static func < (lhs: QualityGrade, rhs: QualityGrade) -> Bool { lhs.rank > rhs.rank }
}
