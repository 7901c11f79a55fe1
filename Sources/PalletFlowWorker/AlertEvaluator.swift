import Foundation
import PalletFlowCore
import PalletFlowStore

/// Turns the ecosystem's thresholds into alerts, once per condition and period.
public struct AlertEvaluator: Sendable {
    public let store: Store
    public init(store: Store) { self.store = store }

    /// Candidates from the latest indicators and open discrepancies (pure rule part below).
    @discardableResult
    public func evaluate(ecosystem: UUID, today: Int? = nil) async throws -> [UUID] {
        let today = today ?? store.today
        let rules = try await store.alertRules(ecosystem: ecosystem)
        guard !rules.isEmpty else { return [] }
        let snapshots = try await store.latestIndicators(ecosystem: ecosystem)
        var candidates = Self.candidates(rules: rules, snapshots: snapshots, today: today)
        if let days = rules["discrepancy_open_days"] {
            for (id, movement, age) in try await store.staleDiscrepancies(ecosystem: ecosystem, olderThanDays: days) {
                candidates.append(AlertCandidate(
                    kind: "discrepancy_open_days", partner: nil, palletType: nil, dedupeKey: "discrepancy_open_days:\(id)",
                    message: "Discrepancy on movement \(movement.uuidString.lowercased()) open for \(Int(age)) days (limit \(Int(days)))",
                    value: age, threshold: days))
            }
        }
        return try await store.raiseAlerts(ecosystem: ecosystem, candidates)
    }

    /// The rules on indicator rows. Dedupe keys carry the period (month) so a condition
    /// raises one alert a month per partner and pallet type, however often it is checked.
    public static func candidates(rules: [String: Double], snapshots: [IndicatorSnapshot], today: Int) -> [AlertCandidate] {
        let month = String(Instant.date(ofDay: today).prefix(7))
        var result: [AlertCandidate] = []
        for row in snapshots {
            let pair = "\(row.partner.uuidString.lowercased()):\(row.palletType.uuidString.lowercased())"
            if row.period == "month", let minimum = rules["restitution_below"], row.issued > 0 {
                let rate = Double(row.returned) / Double(row.issued)
                if rate < minimum {
                    result.append(AlertCandidate(
                        kind: "restitution_below", partner: row.partner, palletType: row.palletType,
                        dedupeKey: "restitution_below:\(pair):\(row.periodStart)",
                        message: String(format: "Restitution %.1f%% in the month from %@, below %.1f%%", rate * 100,
                                        row.periodStart, minimum * 100),
                        value: rate, threshold: minimum))
                }
            }
            if row.period == "month", let minimum = rules["declarations_late"], row.declarations > 0 {
                let share = Double(row.declaredWithin24h) / Double(row.declarations)
                if share < minimum {
                    result.append(AlertCandidate(
                        kind: "declarations_late", partner: row.partner, palletType: row.palletType,
                        dedupeKey: "declarations_late:\(pair):\(row.periodStart)",
                        message: String(format: "Only %.1f%% of declarations within 24 h in the month from %@ (target %.1f%%)",
                                        share * 100, row.periodStart, minimum * 100),
                        value: share, threshold: minimum))
                }
            }
            if row.period == "to_date", let maximum = rules["balance_above"], Double(row.outstanding) > maximum {
                result.append(AlertCandidate(
                    kind: "balance_above", partner: row.partner, palletType: row.palletType,
                    dedupeKey: "balance_above:\(pair):\(month)",
                    message: "Outstanding balance \(row.outstanding) pallets, above \(Int(maximum))",
                    value: Double(row.outstanding), threshold: maximum))
            }
            if row.period == "to_date", let maximum = rules["notes_overdue"], Double(row.overdueNotes) > maximum {
                result.append(AlertCandidate(
                    kind: "notes_overdue", partner: row.partner, palletType: row.palletType,
                    dedupeKey: "notes_overdue:\(pair):\(month)",
                    message: "\(row.overdueNotes) pallet notes overdue (more than \(Int(maximum)))",
                    value: Double(row.overdueNotes), threshold: maximum))
            }
        }
        return result
    }
}
