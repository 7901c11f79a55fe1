import Foundation

/// A measurable commitment of a charter clause, read from the worker's indicators.
public enum CharterMetric: String, Sendable, CaseIterable, Codable {
    /// returned / issued over the period.
    case restitutionRate = "restitution_rate"
    /// Share of the partner's own declarations recorded within 24 h of the event.
    case declaredWithin24hShare = "declared_within_24h_share"
    /// contested / declared over the partner's own declarations.
    case discrepancyRate = "discrepancy_rate"
    /// Pallets out at the period's end.
    case outstanding
    /// Average days outstanding of the pallets returned in the period (FIFO).
    case rotationAverageDays = "rotation_average_days"
    /// (declared + presumed losses + scrapped) / issued.
    case lossRate = "loss_rate"
    /// Share of the declarations awaiting the partner's answer that it confirmed or
    /// contested within 48 hours of their recording.
    case answeredWithin48hShare = "answered_within_48h_share"
    /// Share of the empties the partner handed over on the spot that were grade B or better.
    case exchangedGradeBOrBetterShare = "exchanged_grade_b_or_better_share"
}

public enum ClauseComparator: String, Sendable, CaseIterable, Codable {
    case atLeast = ">="
    case atMost = "<="
    case above = ">"
    case below = "<"

    public func holds(_ measured: Double, _ target: Double) -> Bool {
        switch self {
        case .atLeast: measured >= target
        case .atMost: measured <= target
        case .above: measured > target
        case .below: measured < target
        }
    }
}

public enum ClauseResult: String, Sendable, Codable {
    case met
    case notMet = "not_met"
    case notMeasurable = "not_measurable"
}

/// One clause of a commitment charter: prose, and where measurable, how it is measured.
public struct CharterClause: Sendable, Hashable, Codable {
    public var number: Int
    public var text: String
    public var metric: CharterMetric?
    public var comparator: ClauseComparator?
    public var target: Double?
    public var period: PeriodKind?
    public var roles: [Role]

    public init(number: Int, text: String, metric: CharterMetric? = nil, comparator: ClauseComparator? = nil,
                target: Double? = nil, period: PeriodKind? = nil, roles: [Role] = []) {
        self.number = number
        self.text = text
        self.metric = metric
        self.comparator = comparator
        self.target = target
        self.period = period
        self.roles = roles
    }

    public var isMeasurable: Bool { metric != nil && comparator != nil && target != nil }

    /// Whether the clause binds a member of this role (no roles listed: everyone but the
    /// shipper and the coordinator).
    public func binds(_ role: Role) -> Bool {
        roles.isEmpty ? (role != .shipper && role != .coordinator) : roles.contains(role)
    }

    /// The canonical text a signature's hash covers.
    public var canonical: String {
        [String(number), text, metric?.rawValue ?? "", comparator?.rawValue ?? "", target.map { String($0) } ?? "",
         period?.rawValue ?? "", roles.map(\.rawValue).sorted().joined(separator: ",")].joined(separator: "\u{1F}")
    }
}

/// A partner's figures over one period, summed over pallet types, as the clauses read them.
public struct PeriodTotals: Sendable, Hashable {
    public var issued: Int64 = 0
    public var returned: Int64 = 0
    public var outstanding: Int64 = 0
    public var losses: Int64 = 0
    public var declarations: Int64 = 0
    public var declaredWithin24h: Int64 = 0
    public var contested: Int64 = 0
    /// Sum of (average rotation x pallets returned), to weigh the average by pallets.
    public var rotationWeighted: Double = 0
    public var rotationPallets: Int64 = 0
    /// Declarations the partner had to answer, and those it answered within 48 h.
    public var answersDue: Int64 = 0
    public var answeredWithin48h: Int64 = 0
    /// Empties the partner handed over on the spot, and those of grade B or better.
    public var exchangedHandedOver: Int64 = 0
    public var exchangedBOrBetter: Int64 = 0

    public init() {}

    public init(issued: Int64, returned: Int64, outstanding: Int64, losses: Int64, declarations: Int64,
                declaredWithin24h: Int64, contested: Int64, rotationWeighted: Double, rotationPallets: Int64) {
        self.issued = issued
        self.returned = returned
        self.outstanding = outstanding
        self.losses = losses
        self.declarations = declarations
        self.declaredWithin24h = declaredWithin24h
        self.contested = contested
        self.rotationWeighted = rotationWeighted
        self.rotationPallets = rotationPallets
    }

    public func measure(_ metric: CharterMetric) -> Double? {
        switch metric {
        case .restitutionRate: issued > 0 ? Double(returned) / Double(issued) : nil
        case .declaredWithin24hShare: declarations > 0 ? Double(declaredWithin24h) / Double(declarations) : nil
        case .discrepancyRate: declarations > 0 ? Double(contested) / Double(declarations) : nil
        case .outstanding: Double(outstanding)
        case .rotationAverageDays: rotationPallets > 0 ? rotationWeighted / Double(rotationPallets) : nil
        case .lossRate: issued > 0 ? Double(losses) / Double(issued) : nil
        case .answeredWithin48hShare: answersDue > 0 ? Double(answeredWithin48h) / Double(answersDue) : nil
        case .exchangedGradeBOrBetterShare: exchangedHandedOver > 0 ? Double(exchangedBOrBetter) / Double(exchangedHandedOver) : nil
        }
    }
}

public enum CharterRules {
    /// met / not met against the target; not measurable when the period has no data for it.
    public static func evaluate(_ clause: CharterClause, totals: PeriodTotals?) -> (ClauseResult, Double?) {
        guard let metric = clause.metric, let comparator = clause.comparator, let target = clause.target else {
            return (.notMeasurable, nil)
        }
        guard let totals, let measured = totals.measure(metric) else { return (.notMeasurable, nil) }
        return (comparator.holds(measured, target) ? .met : .notMet, measured)
    }
}

/// Where a partner stands in the shipper's prescription funnel.
public enum FunnelStage: String, Sendable, CaseIterable, Codable {
    case invited
    case joined
    case charterSigned = "charter_signed"
    case kitCompleted = "kit_completed"
    case firstDeclaration = "first_declaration"
    case active
    case dormant

    /// The furthest stage reached, from the facts. Active = declared in the last 30 days;
    /// dormant = declared once, but not in the last 30 days.
    public static func of(joined: Bool, signedCurrentCharter: Bool, firstDeclarationDay: Int?, lastDeclarationDay: Int?,
                          today: Int, kitCompleted: Bool = false) -> FunnelStage {
        guard joined else { return .invited }
        if let last = lastDeclarationDay {
            return today - last <= 30 ? .active : .dormant
        }
        if firstDeclarationDay != nil { return .firstDeclaration }
        if kitCompleted { return .kitCompleted }
        return signedCurrentCharter ? .charterSigned : .joined
    }
}
