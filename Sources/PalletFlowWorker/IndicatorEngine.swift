import Foundation
import Logging
import PalletFlowCore
import PalletFlowStore

/// Computes the indicators of docs/indicators.md from the ledger and stores them.
/// Incremental by design: a watermark over movements.seq says what was already counted;
/// an update recomputes only the relationships new movements touch, and only the periods
/// from the earliest day they touch (a back-dated movement or a reversal included).
public struct IndicatorEngine: Sendable {
    public let store: Store
    /// Daily rows are kept for the most recent days only; weeks and months go back to the start.
    public var dailyDays = 92

    public init(store: Store) { self.store = store }

    /// The last day periods run to: today, or tomorrow (UTC) while a declaration dated up
    /// to the tolerated clock skew ahead may already fall on it.
    public static func today(_ clock: WallClock) -> Int {
        Instant(microsecondsSinceEpoch: clock.now().microsecondsSinceEpoch + DeclarationLimits.futureToleranceMicroseconds).day
    }

    public struct Outcome: Sendable, Equatable {
        public var relationships: Int
        public var rows: Int
        public var watermark: Int64
    }

    /// Counts what is new since the watermark, from the running state of the indicators
    /// (sql/0010_indicator_state.sql): the state moves forward by the new movements, then
    /// the relationships they touch are recomputed from their state, for the periods from
    /// the earliest day they touch. The rows equal what a full recompute gives.
    @discardableResult
    public func update(ecosystem: UUID, today: Int? = nil,
                       progress: @Sendable (Int, Int) async -> Void = { _, _ in }) async throws -> Outcome {
        let today = today ?? Self.today(store.clock)
        guard let settings = try await store.indicatorSettings(ecosystem: ecosystem) else { return Outcome(relationships: 0, rows: 0, watermark: 0) }
        let values = try await store.unitValues(ecosystem: ecosystem)
        let lossHorizonDays = settings.lossHorizonDays
        let dailyDays = self.dailyDays
        let outcome = try await store.updateIndicatorsIncrementally(ecosystem: ecosystem, shipper: settings.shipper, today: today) { pairs, state in
            var rows: [IndicatorRow] = []
            let ordered = pairs.sorted { ($0.key.partner.uuidString, $0.key.palletType.uuidString) < ($1.key.partner.uuidString, $1.key.palletType.uuidString) }
            for (key, fromDay) in ordered {
                rows += Self.rows(for: key, state: state, values: values[key.palletType] ?? [],
                                  fromDay: fromDay, today: today, lossHorizonDays: lossHorizonDays, dailyDays: dailyDays)
            }
            return rows
        }
        await progress(outcome.relationships, outcome.relationships)
        return Outcome(relationships: outcome.relationships, rows: outcome.rows, watermark: outcome.watermark)
    }

    /// The rows of one relationship from its running state (see `rows(for:facts:activity:...)`).
    static func rows(for key: RelationshipKey, state: IndicatorState, values: [(day: Int, minor: Int64, currency: String)],
                     fromDay: Int, today: Int, lossHorizonDays: Int, dailyDays: Int) -> [IndicatorRow] {
        let contested = state.contested[key] ?? [:]
        let firstDay = state.firstDay[key] ?? today
        func contestedIn(_ start: Int, _ end: Int) -> Int64 {
            contested.reduce(Int64(0)) { $0 + ($1.key >= start && $1.key < end ? $1.value : 0) }
        }
        var toDate: DeclarationStats?
        if !state.completeLateness.contains(key) {
            var stats = state.toDate[key] ?? DeclarationStats()
            stats.contested = contestedIn(firstDay, today + 1)
            toDate = stats
        }
        return rows(for: key, facts: state.facts[key] ?? [], firstDay: firstDay, values: values, fromDay: fromDay, today: today,
                    lossHorizonDays: lossHorizonDays, dailyDays: dailyDays, toDate: toDate,
                    overdueNotes: { end in state.overdueNotes[EndKey(key: key, end: end)] ?? (0, 0) }) { start, end in
            var stats = state.periods[PeriodKey(key: key, start: start, end: end)] ?? DeclarationStats()
            stats.contested = contestedIn(start, end)
            return stats
        }
    }

    /// Rebuilds every indicator of the ecosystem from the whole ledger.
    @discardableResult
    public func recompute(ecosystem: UUID, today: Int? = nil,
                          progress: @Sendable (Int, Int) async -> Void = { _, _ in }) async throws -> Outcome {
        let today = today ?? Self.today(store.clock)
        guard let settings = try await store.indicatorSettings(ecosystem: ecosystem) else { return Outcome(relationships: 0, rows: 0, watermark: 0) }
        let last = try await store.committedSeq(ecosystem: ecosystem)
        let facts = try await store.relationshipFacts(ecosystem: ecosystem, shipper: settings.shipper, partners: nil)
        let activity = try await store.declarationActivity(ecosystem: ecosystem, shipper: settings.shipper, partners: nil)
        var pairs: [RelationshipKey: Int] = [:]
        for key in Set(facts.keys).union(activity.keys) { pairs[key] = Int.min / 4 }
        return try await compute(ecosystem: ecosystem, shipper: settings.shipper, lossHorizonDays: settings.lossHorizonDays,
                                 pairs: pairs, watermark: last, today: today, facts: facts, activity: activity,
                                 replaceAll: true, progress: progress)
    }

    func compute(ecosystem: UUID, shipper: UUID, lossHorizonDays: Int, pairs: [RelationshipKey: Int], watermark: Int64,
                 today: Int, facts preloaded: [RelationshipKey: [RelationshipFact]]? = nil,
                 activity preloadedActivity: [RelationshipKey: [DeclarationActivity]]? = nil, replaceAll: Bool = false,
                 progress: @Sendable (Int, Int) async -> Void) async throws -> Outcome {
        let partners = Array(Set(pairs.keys.map(\.partner)))
        let facts: [RelationshipKey: [RelationshipFact]]
        if let preloaded { facts = preloaded } else {
            facts = try await store.relationshipFacts(ecosystem: ecosystem, shipper: shipper, partners: partners)
        }
        let activity: [RelationshipKey: [DeclarationActivity]]
        if let preloadedActivity { activity = preloadedActivity } else {
            activity = try await store.declarationActivity(ecosystem: ecosystem, shipper: shipper, partners: partners)
        }
        let notes = try await store.noteFacts(ecosystem: ecosystem)
        let values = try await store.unitValues(ecosystem: ecosystem)
        var rows: [IndicatorRow] = []
        let ordered = pairs.sorted { ($0.key.partner.uuidString, $0.key.palletType.uuidString) < ($1.key.partner.uuidString, $1.key.palletType.uuidString) }
        for (index, (key, fromDay)) in ordered.enumerated() {
            rows += Self.rows(for: key, facts: facts[key] ?? [], activity: activity[key] ?? [], notes: notes[key] ?? [],
                              values: values[key.palletType] ?? [], fromDay: fromDay, today: today,
                              lossHorizonDays: lossHorizonDays, dailyDays: dailyDays)
            if index % 10 == 9 || index == ordered.count - 1 { await progress(index + 1, ordered.count) }
        }
        // Relationships seen for the first time have nothing to delete: pass them anyway so a
        // back-dated change replaces exactly the periods it touches.
        var deletions = pairs
        for key in deletions.keys where deletions[key]! < Int.min / 8 { deletions[key] = -1_000_000 }
        try await store.replaceIndicators(ecosystem: ecosystem, pairs: deletions, rows: rows, watermark: watermark,
                                          replaceAll: replaceAll, stateFor: replaceAll ? shipper : nil)
        return Outcome(relationships: pairs.count, rows: rows.count, watermark: watermark)
    }

    /// Every row of one relationship for the periods ending after `fromDay`, plus to-date.
    static func rows(for key: RelationshipKey, facts: [RelationshipFact], activity: [DeclarationActivity], notes: [NoteFact],
                     values: [(day: Int, minor: Int64, currency: String)], fromDay: Int, today: Int,
                     lossHorizonDays: Int, dailyDays: Int) -> [IndicatorRow] {
        let firstDay = min(facts.map(\.day).min() ?? today, activity.map(\.day).min() ?? today)
        return rows(for: key, facts: facts, firstDay: firstDay, values: values, fromDay: fromDay, today: today,
                    lossHorizonDays: lossHorizonDays, dailyDays: dailyDays, toDate: nil,
                    overdueNotes: { end in
                        let overdue = notes.filter { $0.issueDay < end && $0.dueDay < end - 1 }
                        return (Int64(overdue.count), overdue.reduce(Int64(0)) { $0 + $1.outstanding })
                    }) { start, end in
            // The partner's own declarations: how late, and how often the other side contested them.
            let declared = activity.filter { $0.day >= start && $0.day < end && $0.declaredByPartner }
            let lateness = declared.map(\.latenessSeconds).sorted()
            var stats = DeclarationStats()
            stats.declarations = Int64(declared.count)
            stats.latenessMedianSeconds = IndicatorMath.percentile(lateness, 0.5)
            stats.latenessP90Seconds = IndicatorMath.percentile(lateness, 0.9)
            stats.declaredWithin24h = Int64(lateness.filter { $0 <= 86_400 }.count)
            stats.contested = Int64(declared.filter(\.contested).count)
            return stats
        }
    }

    /// The rows of one relationship: `declarations` gives the declaration figures of a
    /// period [start, end), `toDate` (when known) those of the to-date row, `overdueNotes`
    /// the overdue notes (count, quantity) as of the last day of a period ending on a day.
    static func rows(for key: RelationshipKey, facts: [RelationshipFact], firstDay: Int,
                     values: [(day: Int, minor: Int64, currency: String)], fromDay: Int, today: Int,
                     lossHorizonDays: Int, dailyDays: Int, toDate: DeclarationStats?,
                     overdueNotes: (Int) -> (count: Int64, quantity: Int64),
                     declarations: (Int, Int) -> DeclarationStats) -> [IndicatorRow] {
        var rows: [IndicatorRow] = []
        func row(_ period: String, _ start: Int, _ end: Int, _ known: DeclarationStats? = nil) -> IndicatorRow {
            let figures = IndicatorMath.figures(facts, startDay: start, endDay: end, lossHorizonDays: lossHorizonDays)
            let valuationDay = end - 1
            let value = values.last { $0.day <= valuationDay }
            // Notes issued before the end and due before the valuation day.
            let overdue = overdueNotes(end)
            let declared = known ?? declarations(start, end)
            return IndicatorRow(
                key: key, period: period, startDay: start, endDay: end, figures: figures,
                outstandingValueMinor: value.map { $0.minor * figures.outstanding }, currency: value?.currency,
                overdueNotesCount: overdue.count, overdueNotesQuantity: overdue.quantity,
                overdueNotesValueMinor: value.map { $0.minor * overdue.quantity },
                declarations: declared.declarations,
                latenessMedianSeconds: declared.latenessMedianSeconds,
                latenessP90Seconds: declared.latenessP90Seconds,
                declaredWithin24h: declared.declaredWithin24h,
                contested: declared.contested)
        }
        for kind in PeriodKind.allCases {
            let earliest = kind == .day ? max(firstDay, today - dailyDays + 1) : firstDay
            var start = kind.start(of: max(earliest, kind.start(of: max(fromDay, earliest))))
            while start <= today {
                let end = kind.end(startingAt: start)
                if end > fromDay { rows.append(row(kind.rawValue, start, end)) }
                start = end
            }
        }
        rows.append(row("to_date", firstDay, today + 1, toDate))
        return rows
    }
}
