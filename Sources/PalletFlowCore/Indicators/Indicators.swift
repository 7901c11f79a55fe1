import Foundation

/// One fact of the shipper-partner relationship the indicators are computed from.
/// Days are counted from 1970-01-01 (UTC) so the math is pure integers.
public struct RelationshipFact: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        /// Loaded pallets that left the shipper toward the partner.
        case issued
        /// Empties handed back on the spot at the same movement.
        case spotReturn
        /// Empties brought back later.
        case laterReturn
        /// Pallets the partner declared lost (its debt written off).
        case declaredLoss
        /// Pallets the partner scrapped.
        case scrapped
    }

    public var kind: Kind
    public var day: Int
    public var quantity: Int64

    public init(_ kind: Kind, day: Int, quantity: Int64) {
        self.kind = kind
        self.day = day
        self.quantity = quantity
    }
}

/// FIFO matching of returns to issues: the oldest issued pallets come back first.
public struct FIFOMatch: Sendable, Hashable {
    public var issueDay: Int
    public var returnDay: Int
    public var quantity: Int64
    public var ageDays: Int { returnDay - issueDay }

    public init(issueDay: Int, returnDay: Int, quantity: Int64) {
        self.issueDay = issueDay
        self.returnDay = returnDay
        self.quantity = quantity
    }
}

/// Figures of one partner, pallet type and period (DOMAIN.md, Indicators).
public struct IndicatorFigures: Sendable, Hashable {
    public var issued: Int64 = 0
    public var spotReturned: Int64 = 0
    public var laterReturned: Int64 = 0
    public var declaredLosses: Int64 = 0
    public var scrapped: Int64 = 0
    /// At the period's end, to date.
    public var outstanding: Int64 = 0
    public var aging0to30: Int64 = 0
    public var aging31to60: Int64 = 0
    public var aging61to90: Int64 = 0
    public var aging90plus: Int64 = 0
    public var presumedLosses: Int64 = 0
    /// Days outstanding of the pallets returned in the period, FIFO-matched.
    public var rotationAverageDays: Double?
    public var rotationMedianDays: Int?
    public var rotationP90Days: Int?

    public init() {}

    public var returned: Int64 { spotReturned + laterReturned }

    /// returned / issued over the period; nil when nothing was issued. Not capped: the
    /// display caps at 100%, the raw figure is kept.
    public var restitutionRate: Double? { issued > 0 ? Double(returned) / Double(issued) : nil }

    /// (declared losses + presumed losses + scrapped) / issued. Presumed losses are a
    /// stock at the period's end, the rest flows of the period (DOMAIN.md's definition).
    public var lossRate: Double? {
        issued > 0 ? Double(declaredLosses + presumedLosses + scrapped) / Double(issued) : nil
    }
}

public enum IndicatorMath {
    /// Matches returns (spot and later) and write-offs to issues first-in first-out.
    /// Returns the matched pairs and what is still unmatched per issue day.
    /// Write-offs (declared losses, scrapped pallets) consume the oldest issues like returns
    /// but are not returns: they do not count in rotation. Returns beyond what is out are a
    /// credit that later issues use first, so what stays open is always
    /// max(0, issued - returned - written off).
    public static func fifo(_ facts: [RelationshipFact]) -> (matches: [FIFOMatch], open: [(day: Int, quantity: Int64)]) {
        let ordered = facts.sorted { ($0.day, order($0.kind)) < ($1.day, order($1.kind)) }
        var open: [(day: Int, quantity: Int64)] = []
        var head = 0
        var matches: [FIFOMatch] = []
        var credit: Int64 = 0
        for fact in ordered {
            switch fact.kind {
            case .issued:
                let covered = min(credit, fact.quantity)
                credit -= covered
                if fact.quantity > covered { open.append((fact.day, fact.quantity - covered)) }
            case .spotReturn, .laterReturn, .declaredLoss, .scrapped:
                var remaining = fact.quantity
                while remaining > 0, head < open.count {
                    let take = min(remaining, open[head].quantity)
                    if fact.kind == .spotReturn || fact.kind == .laterReturn {
                        matches.append(FIFOMatch(issueDay: open[head].day, returnDay: fact.day, quantity: take))
                    }
                    open[head].quantity -= take
                    remaining -= take
                    if open[head].quantity == 0 { head += 1 }
                }
                if fact.kind == .spotReturn || fact.kind == .laterReturn { credit += remaining }
            }
        }
        return (matches, Array(open[head...]).filter { $0.quantity > 0 })
    }

    /// Same-day order: issues before the returns they enable.
    static func order(_ kind: RelationshipFact.Kind) -> Int {
        switch kind {
        case .issued: 0
        case .spotReturn: 1
        case .laterReturn: 2
        case .declaredLoss: 3
        case .scrapped: 4
        }
    }

    /// Figures for the period [startDay, endDay) from the whole history of the relationship.
    public static func figures(_ facts: [RelationshipFact], startDay: Int, endDay: Int, lossHorizonDays: Int) -> IndicatorFigures {
        var figures = IndicatorFigures()
        for fact in facts where fact.day >= startDay && fact.day < endDay {
            switch fact.kind {
            case .issued: figures.issued += fact.quantity
            case .spotReturn: figures.spotReturned += fact.quantity
            case .laterReturn: figures.laterReturned += fact.quantity
            case .declaredLoss: figures.declaredLosses += fact.quantity
            case .scrapped: figures.scrapped += fact.quantity
            }
        }
        let (matches, open) = fifo(facts.filter { $0.day < endDay })
        // Rotation: the days outstanding of pallets returned in this period, weighted by quantity.
        var ages: [(age: Int, quantity: Int64)] = matches.filter { $0.returnDay >= startDay }.map { ($0.ageDays, $0.quantity) }
        ages.sort { $0.age < $1.age }
        let matched = ages.reduce(Int64(0)) { $0 + $1.quantity }
        if matched > 0 {
            figures.rotationAverageDays = Double(ages.reduce(Int64(0)) { $0 + Int64($1.age) * $1.quantity }) / Double(matched)
            figures.rotationMedianDays = percentile(ages, 0.5)
            figures.rotationP90Days = percentile(ages, 0.9)
        }
        // Aging of what is still out at the period's end (the last day of the period).
        let asOf = endDay - 1
        for (day, quantity) in open {
            let age = asOf - day
            figures.outstanding += quantity
            switch age {
            case ...30: figures.aging0to30 += quantity
            case 31...60: figures.aging31to60 += quantity
            case 61...90: figures.aging61to90 += quantity
            default: figures.aging90plus += quantity
            }
            if age > lossHorizonDays { figures.presumedLosses += quantity }
        }
        return figures
    }

    /// The smallest age such that at least `fraction` of the pallets are at most that old
    /// (nearest-rank percentile over pallets, not over pairs).
    public static func percentile(_ sortedAges: [(age: Int, quantity: Int64)], _ fraction: Double) -> Int? {
        let total = sortedAges.reduce(Int64(0)) { $0 + $1.quantity }
        guard total > 0 else { return nil }
        let rank = Int64((Double(total) * fraction).rounded(.up))
        var seen: Int64 = 0
        for entry in sortedAges {
            seen += entry.quantity
            if seen >= max(rank, 1) { return entry.age }
        }
        return sortedAges.last?.age
    }

    /// Nearest-rank percentile of plain values (declaration lateness in seconds).
    public static func percentile(_ sortedValues: [Int64], _ fraction: Double) -> Int64? {
        guard !sortedValues.isEmpty else { return nil }
        let rank = max(1, Int((Double(sortedValues.count) * fraction).rounded(.up)))
        return sortedValues[min(rank, sortedValues.count) - 1]
    }
}

/// Reporting periods. Weeks start on Monday (ISO); days are UTC days since 1970-01-01.
public enum PeriodKind: String, Sendable, CaseIterable, Codable {
    case day, week, month

    /// The first day of the period containing `day`.
    public func start(of day: Int) -> Int {
        switch self {
        case .day: return day
        case .week:
            // 1970-01-01 was a Thursday: Monday-based weekday = (day + 3) mod 7.
            let weekday = ((day + 3) % 7 + 7) % 7
            return day - weekday
        case .month:
            let (year, month, _) = Instant.civil(fromDays: Int64(day))
            return Instant.daysFromCivil(year: year, month: month, day: 1)
        }
    }

    /// The first day after the period that starts on `start`.
    public func end(startingAt start: Int) -> Int {
        switch self {
        case .day: return start + 1
        case .week: return start + 7
        case .month:
            let (year, month, _) = Instant.civil(fromDays: Int64(start))
            return month == 12 ? Instant.daysFromCivil(year: year + 1, month: 1, day: 1)
                : Instant.daysFromCivil(year: year, month: month + 1, day: 1)
        }
    }
}

extension Instant {
    /// The UTC day number of this instant.
    public var day: Int { Int(microsecondsSinceEpoch.floorDivided(by: 86_400_000_000).quotient) }

    public static func date(ofDay day: Int) -> String {
        let (year, month, dayOfMonth) = civil(fromDays: Int64(day))
        return String(format: "%04d-%02d-%02d", year, month, dayOfMonth)
    }
}
