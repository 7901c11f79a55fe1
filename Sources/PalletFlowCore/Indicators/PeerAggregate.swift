/// What a partner may learn of the others at a mediation session: the ecosystem's totals and
/// the spread of restitution over its partners, with no name, id or single partner's figure.
///
/// A partner who knows its own figures could subtract them from a total, so aggregates are
/// shown to a partner only when at least `minimumPartners` partners had pallets issued in
/// the period (itself included): with fewer, the remainder would be one competitor's figure.
public struct PeerAggregate: Sendable, Equatable {
    /// Partners with at least one pallet issued in the period.
    public var partners: Int
    public var issued: Int64
    public var returned: Int64
    /// returned / issued over the whole ecosystem; nil when nothing was issued.
    public var restitutionRate: Double?
    /// Quartiles of the partners' own restitution rates (linear interpolation between the
    /// two nearest ranks, as PostgreSQL's percentile_cont); nil when no partner had issues.
    public var restitutionFirstQuartile: Double?
    public var restitutionMedian: Double?
    public var restitutionThirdQuartile: Double?

    /// The fewest partners for which a partner is shown the aggregates.
    public static let minimumPartners = 3

    /// From each partner's (issued, returned) in the period. Partners with nothing issued
    /// count for neither the quartiles nor `partners` (a rate of 0/0 means nothing).
    public init(_ figures: [(issued: Int64, returned: Int64)]) {
        let active = figures.filter { $0.issued > 0 }
        partners = active.count
        issued = figures.reduce(0) { $0 + $1.issued }
        returned = figures.reduce(0) { $0 + $1.returned }
        restitutionRate = issued > 0 ? Double(returned) / Double(issued) : nil
        let rates = active.map { Double($0.returned) / Double($0.issued) }.sorted()
        restitutionFirstQuartile = Self.percentile(rates, 0.25)
        restitutionMedian = Self.percentile(rates, 0.5)
        restitutionThirdQuartile = Self.percentile(rates, 0.75)
    }

    /// Whether a partner (not the shipper or the coordinator) may be shown these figures.
    public var shownToPartners: Bool { partners >= Self.minimumPartners }

    /// The `fraction` percentile of sorted values, interpolated linearly between ranks.
    static func percentile(_ sorted: [Double], _ fraction: Double) -> Double? {
        guard !sorted.isEmpty else { return nil }
        let position = fraction * Double(sorted.count - 1)
        let lower = Int(position.rounded(.down))
        let upper = min(lower + 1, sorted.count - 1)
        return sorted[lower] + (sorted[upper] - sorted[lower]) * (position - Double(lower))
    }
}
