import Foundation
import Logging
import PalletFlowCore
import PostgresNIO

/// A shipper-partner relationship for one pallet type.
public struct RelationshipKey: Sendable, Hashable {
    public var partner: UUID
    public var palletType: UUID
    public init(partner: UUID, palletType: UUID) {
        self.partner = partner
        self.palletType = palletType
    }
}

/// One declaration of the partner, for lateness and discrepancy rates.
public struct DeclarationActivity: Sendable, Hashable {
    public var day: Int
    public var latenessSeconds: Int64
    public var declaredByPartner: Bool
    public var contested: Bool
}

public struct NoteFact: Sendable, Hashable {
    public var issueDay: Int
    public var dueDay: Int
    public var outstanding: Int64
}

/// One stored row of indicators.
public struct IndicatorRow: Sendable, Hashable {
    public var key: RelationshipKey
    public var period: String
    public var startDay: Int
    public var endDay: Int
    public var figures: IndicatorFigures
    public var outstandingValueMinor: Int64?
    public var currency: String?
    public var overdueNotesCount: Int64
    public var overdueNotesQuantity: Int64
    public var overdueNotesValueMinor: Int64?
    public var declarations: Int64
    public var latenessMedianSeconds: Int64?
    public var latenessP90Seconds: Int64?
    public var declaredWithin24h: Int64
    public var contested: Int64

    public init(key: RelationshipKey, period: String, startDay: Int, endDay: Int, figures: IndicatorFigures,
                outstandingValueMinor: Int64?, currency: String?, overdueNotesCount: Int64, overdueNotesQuantity: Int64,
                overdueNotesValueMinor: Int64?, declarations: Int64, latenessMedianSeconds: Int64?,
                latenessP90Seconds: Int64?, declaredWithin24h: Int64, contested: Int64) {
        self.key = key
        self.period = period
        self.startDay = startDay
        self.endDay = endDay
        self.figures = figures
        self.outstandingValueMinor = outstandingValueMinor
        self.currency = currency
        self.overdueNotesCount = overdueNotesCount
        self.overdueNotesQuantity = overdueNotesQuantity
        self.overdueNotesValueMinor = overdueNotesValueMinor
        self.declarations = declarations
        self.latenessMedianSeconds = latenessMedianSeconds
        self.latenessP90Seconds = latenessP90Seconds
        self.declaredWithin24h = declaredWithin24h
        self.contested = contested
    }
}

extension Store {
    /// The shipper's member id and the loss horizon of an ecosystem.
    public func indicatorSettings(ecosystem: UUID) async throws -> (shipper: UUID, lossHorizonDays: Int)? {
        for try await (shipper, horizon) in try await client.query("""
            SELECT m.id, e.loss_horizon_days FROM ecosystems e
            JOIN memberships m ON m.ecosystem_id = e.id AND m.role = 'shipper' WHERE e.id = \(ecosystem)
            """, logger: logger).decode((UUID, Int).self) { return (shipper, horizon) }
        return nil
    }

    /// The facts of every shipper-partner relationship (or of the given partners), in one
    /// set-based query. Reversed movements and their reversals cancel out and are skipped.
    public func relationshipFacts(ecosystem: UUID, shipper: UUID, partners: [UUID]?) async throws -> [RelationshipKey: [RelationshipFact]] {
        let all = partners == nil
        let chosen = partners ?? []
        var result: [RelationshipKey: [RelationshipFact]] = [:]
        for try await (partner, type, kind, day, quantity) in try await client.query("""
            WITH m AS (
                SELECT m.id, m.kind, m.from_party_id, m.to_party_id,
                       floor(extract(epoch FROM m.event_time) / 86400)::int8 AS day
                FROM movements m
                WHERE m.ecosystem_id = \(ecosystem) AND m.status <> 'reversed' AND m.reverses_id IS NULL
                  AND (m.from_party_id = \(shipper) OR m.to_party_id = \(shipper) OR m.kind IN ('loss', 'scrap'))
                  AND (\(all) OR m.from_party_id = ANY(\(chosen)::uuid[]) OR m.to_party_id = ANY(\(chosen)::uuid[]))
            ), l AS (
                SELECT m.*, l.pallet_type_id, l.quantity, l.exchanged_quantity
                FROM m JOIN movement_lines l ON l.ecosystem_id = \(ecosystem) AND l.movement_id = m.id
            )
            SELECT partner, pallet_type_id, kind, day, sum(quantity)::int8 FROM (
                SELECT to_party_id AS partner, pallet_type_id, 'issued' AS kind, day, quantity FROM l
                 WHERE from_party_id = \(shipper) AND to_party_id <> \(shipper) AND kind IN ('pickup', 'delivery', 'transfer', 'return')
                UNION ALL
                SELECT to_party_id, pallet_type_id, 'spotReturn', day, exchanged_quantity FROM l
                 WHERE from_party_id = \(shipper) AND to_party_id <> \(shipper) AND exchanged_quantity > 0
                UNION ALL
                SELECT from_party_id, pallet_type_id, 'laterReturn', day, quantity FROM l
                 WHERE to_party_id = \(shipper) AND from_party_id <> \(shipper) AND kind IN ('pickup', 'delivery', 'transfer', 'return')
                UNION ALL
                SELECT from_party_id, pallet_type_id, 'issued', day, exchanged_quantity FROM l
                 WHERE to_party_id = \(shipper) AND from_party_id <> \(shipper) AND exchanged_quantity > 0
                UNION ALL
                SELECT from_party_id, pallet_type_id, 'declaredLoss', day, quantity FROM l
                 WHERE kind = 'loss' AND to_party_id = \(shipper) AND from_party_id <> \(shipper)
                UNION ALL
                SELECT from_party_id, pallet_type_id, 'scrapped', day, quantity FROM l
                 WHERE kind = 'scrap' AND from_party_id <> \(shipper)
            ) facts
            WHERE quantity > 0 AND (\(all) OR partner = ANY(\(chosen)::uuid[]))
            GROUP BY 1, 2, 3, 4
            ORDER BY 1, 2, 4
            """, logger: logger).decode((UUID, UUID, String, Int64, Int64).self) {
            guard let factKind = RelationshipFact.Kind(rawValue: kind) else { continue }
            result[RelationshipKey(partner: partner, palletType: type), default: []]
                .append(RelationshipFact(factKind, day: Int(day), quantity: quantity))
        }
        return result
    }

    /// Declarations involving each partner, per pallet type: lateness and contests.
    public func declarationActivity(ecosystem: UUID, shipper: UUID, partners: [UUID]?) async throws
        -> [RelationshipKey: [DeclarationActivity]]
    {
        let all = partners == nil
        let chosen = partners ?? []
        var result: [RelationshipKey: [DeclarationActivity]] = [:]
        for try await (partner, type, day, lateness, byPartner, contested) in try await client.query("""
            SELECT DISTINCT ON (m.id, p.partner, l.pallet_type_id) p.partner, l.pallet_type_id,
                   floor(extract(epoch FROM m.event_time) / 86400)::int8, m.lateness_seconds,
                   m.declarer_id = p.partner, EXISTS (SELECT 1 FROM discrepancies d WHERE d.ecosystem_id = m.ecosystem_id AND d.movement_id = m.id)
            FROM movements m
            JOIN movement_lines l ON l.ecosystem_id = m.ecosystem_id AND l.movement_id = m.id
            CROSS JOIN LATERAL (VALUES (m.from_party_id), (m.to_party_id), (m.declarer_id)) AS p(partner)
            WHERE m.ecosystem_id = \(ecosystem) AND m.reverses_id IS NULL AND m.source NOT IN ('reversal', 'correction')
              AND p.partner IS NOT NULL AND p.partner <> \(shipper)
              AND (\(all) OR p.partner = ANY(\(chosen)::uuid[]))
            """, logger: logger).decode((UUID, UUID, Int64, Int64, Bool, Bool).self) {
            result[RelationshipKey(partner: partner, palletType: type), default: []].append(
                DeclarationActivity(day: Int(day), latenessSeconds: lateness, declaredByPartner: byPartner, contested: contested))
        }
        return result
    }

    /// Pallet notes each partner issued (owes), per pallet type.
    public func noteFacts(ecosystem: UUID, partners: [UUID]? = nil) async throws -> [RelationshipKey: [NoteFact]] {
        let all = partners == nil
        let chosen = partners ?? []
        var result: [RelationshipKey: [NoteFact]] = [:]
        for try await (issuer, type, issue, due, outstanding) in try await client.query("""
            SELECT issuer_id, pallet_type_id, (issue_date - date '1970-01-01')::int8, (due_date - date '1970-01-01')::int8,
                   (quantity - redeemed_quantity)::int8
            FROM pallet_notes WHERE ecosystem_id = \(ecosystem) AND NOT cancelled AND quantity > redeemed_quantity
              AND (\(all) OR issuer_id = ANY(\(chosen)::uuid[]))
            """, logger: logger).decode((UUID, UUID, Int64, Int64, Int64).self) {
            result[RelationshipKey(partner: issuer, palletType: type), default: []].append(
                NoteFact(issueDay: Int(issue), dueDay: Int(due), outstanding: outstanding))
        }
        return result
    }

    /// Unit values per pallet type as (valid from day, minor units, currency), oldest first.
    public func unitValues(ecosystem: UUID) async throws -> [UUID: [(day: Int, minor: Int64, currency: String)]] {
        var result: [UUID: [(day: Int, minor: Int64, currency: String)]] = [:]
        for try await (type, day, minor, currency) in try await client.query("""
            SELECT pallet_type_id, (valid_from - date '1970-01-01')::int8, unit_value_minor, currency::text
            FROM pallet_type_values WHERE ecosystem_id = \(ecosystem) ORDER BY valid_from
            """, logger: logger).decode((UUID, Int64, Int64, String).self) {
            result[type, default: []].append((Int(day), minor, currency))
        }
        return result
    }

    /// Replaces the indicator rows of the given relationships from `fromDay` on (periods
    /// ending after it) with `rows`, and moves the watermark, in one transaction. With
    /// `stateFor` (the shipper; a full recompute), the running state of the incremental
    /// updates is brought to the watermark in the same transaction: built from the ledger
    /// the first time, else moved forward by the movements it has not read (it depends on
    /// the movements only, not on the calendar, the notes or the contests a recompute refreshes).
    public func replaceIndicators(ecosystem: UUID, pairs: [RelationshipKey: Int], rows: [IndicatorRow], watermark: Int64?,
                                  replaceAll: Bool = false, stateFor shipper: UUID? = nil) async throws {
        let rebuilt = try await transaction { connection in
            var rebuilt = false
            if let shipper, let watermark {
                // Updates hold this row while they move the state: wait for them.
                try await connection.query("""
                    INSERT INTO indicator_watermarks (ecosystem_id, last_seq) VALUES (\(ecosystem), 0) ON CONFLICT (ecosystem_id) DO NOTHING
                    """, logger: logger)
                var stateSeq: Int64?
                for try await seq in try await connection.query(
                    "SELECT state_seq FROM indicator_watermarks WHERE ecosystem_id = \(ecosystem) FOR UPDATE", logger: logger
                ).decode(Int64?.self) { stateSeq = seq }
                if let stateSeq {
                    if stateSeq < watermark {
                        try await applyIndicatorState(ecosystem: ecosystem, shipper: shipper, after: stateSeq, upTo: watermark, on: connection)
                    }
                } else {
                    try await rebuildIndicatorState(ecosystem: ecosystem, shipper: shipper, upTo: watermark, on: connection)
                    rebuilt = true
                }
                try await connection.query("""
                    UPDATE indicator_watermarks SET state_seq = greatest(coalesce(state_seq, 0), \(watermark)) WHERE ecosystem_id = \(ecosystem)
                    """, logger: logger)
                try await syncContested(ecosystem: ecosystem, on: connection)
            }
            try await replaceIndicatorRows(ecosystem: ecosystem, pairs: pairs, rows: rows, replaceAll: replaceAll, on: connection)
            if let watermark {
                // Every row replaced: they count the movements up to this watermark exactly,
                // so the next update starts from it even if another went further meanwhile.
                try await connection.query("""
                    INSERT INTO indicator_watermarks (ecosystem_id, last_seq) VALUES (\(ecosystem), \(watermark))
                    ON CONFLICT (ecosystem_id) DO UPDATE
                    SET last_seq = CASE WHEN \(replaceAll) THEN excluded.last_seq
                                        ELSE greatest(indicator_watermarks.last_seq, excluded.last_seq) END,
                        updated_at = \(nowDate)
                    """, logger: logger)
            }
            return rebuilt
        }
        if rebuilt { await settleIndicatorState() }
    }

    func replaceIndicatorRows(ecosystem: UUID, pairs: [RelationshipKey: Int], rows: [IndicatorRow], replaceAll: Bool,
                              on connection: PostgresConnection) async throws {
        // Periods that ended before the archive horizon keep the figures computed while
        // their movements were in the database (`palletflow archive` took them out).
        var horizonDay = Int64.min
        for try await day in try await connection.query("""
            SELECT ((max(month) + interval '1 month')::date - date '1970-01-01')::int8
            FROM ledger_archived_totals WHERE ecosystem_id = \(ecosystem) HAVING count(*) > 0
            """, logger: logger).decode(Int64.self) { horizonDay = day }
        if replaceAll {
            // A full recompute swaps every row at once: readers never see an empty table.
            try await connection.query("""
                DELETE FROM indicators WHERE ecosystem_id = \(ecosystem)
                  AND (period = 'to_date' OR period_end > date '1970-01-01' + greatest(\(horizonDay), -1000000)::int)
                """, logger: logger)
        }
        let rows = horizonDay == .min ? rows : rows.filter { $0.period == "to_date" || Int64($0.endDay) > horizonDay }
        let partners = pairs.keys.map(\.partner)
        let types = pairs.keys.map(\.palletType)
        let days = pairs.values.map { max(Int64($0), horizonDay) }
        // Each period kind with a lower bound of the starts to delete (a period ending after
        // from_day starts at most its length before): the rows are found by ranges of the
        // primary key, one lateral probe per relationship and kind (the planner's estimates
        // for the arrays led it to hash the whole table otherwise; OFFSET 0 keeps each
        // probe a subquery), then deleted by tuple id.
        try await connection.query("""
            DELETE FROM indicators WHERE ctid = ANY(ARRAY(
                SELECT i.ctid
                FROM unnest(\(partners)::uuid[], \(types)::uuid[], \(days)::int8[]) AS p(partner, pallet_type, from_day)
                CROSS JOIN (VALUES ('day'::indicator_period, 0), ('week', 6), ('month', 30), ('to_date', 100000000)) AS k(period, span)
                CROSS JOIN LATERAL (
                    SELECT i.ctid FROM indicators i
                    WHERE i.ecosystem_id = \(ecosystem) AND i.partner_id = p.partner AND i.pallet_type_id = p.pallet_type
                      AND i.period = k.period
                      AND i.period_start >= date '1970-01-01' + greatest(p.from_day - k.span, -700000)::int
                      AND (i.period = 'to_date' OR i.period_end > date '1970-01-01' + p.from_day::int)
                    OFFSET 0) i))
            """, logger: logger)
        for chunk in stride(from: 0, to: rows.count, by: 2_000) {
            try await insertIndicators(ecosystem: ecosystem, Array(rows[chunk..<min(rows.count, chunk + 2_000)]), on: connection)
        }
    }

    func insertIndicators(ecosystem: UUID, _ rows: [IndicatorRow], on connection: PostgresConnection) async throws {
        func column<T>(_ value: (IndicatorRow) -> T) -> [T] { rows.map(value) }
        // Optional numbers travel as -1 (never a real value for these) and become NULL.
        try await connection.query("""
            INSERT INTO indicators (ecosystem_id, partner_id, pallet_type_id, period, period_start, period_end, issued,
                spot_returned, later_returned, declared_losses, scrapped, outstanding, outstanding_value_minor, currency,
                aging_0_30, aging_31_60, aging_61_90, aging_90_plus, presumed_losses, rotation_average_days,
                rotation_median_days, rotation_p90_days, overdue_notes_count, overdue_notes_quantity,
                overdue_notes_value_minor, declarations, lateness_median_seconds, lateness_p90_seconds, declared_within_24h,
                contested, computed_at)
            SELECT \(ecosystem), partner, pallet_type, period::indicator_period, date '1970-01-01' + start_day,
                   date '1970-01-01' + end_day, issued, spot, later, losses, scrapped, outstanding, nullif(value, -1),
                   nullif(currency, ''), a0, a1, a2, a3, presumed, nullif(rot_avg, -1), nullif(rot_med, -1)::int4,
                   nullif(rot_p90, -1)::int4, notes_count, notes_quantity, nullif(notes_value, -1), declarations,
                   nullif(late_med, -1), nullif(late_p90, -1), within_24h, contested, \(nowDate)
            FROM unnest(\(column { $0.key.partner })::uuid[], \(column { $0.key.palletType })::uuid[], \(column { $0.period })::text[],
                        \(column { Int32($0.startDay) })::int4[], \(column { Int32($0.endDay) })::int4[],
                        \(column { $0.figures.issued })::int8[], \(column { $0.figures.spotReturned })::int8[],
                        \(column { $0.figures.laterReturned })::int8[], \(column { $0.figures.declaredLosses })::int8[],
                        \(column { $0.figures.scrapped })::int8[], \(column { $0.figures.outstanding })::int8[],
                        \(column { $0.outstandingValueMinor ?? -1 })::int8[], \(column { $0.currency ?? "" })::text[],
                        \(column { $0.figures.aging0to30 })::int8[], \(column { $0.figures.aging31to60 })::int8[],
                        \(column { $0.figures.aging61to90 })::int8[], \(column { $0.figures.aging90plus })::int8[],
                        \(column { $0.figures.presumedLosses })::int8[], \(column { $0.figures.rotationAverageDays ?? -1 })::float8[],
                        \(column { Int64($0.figures.rotationMedianDays ?? -1) })::int8[],
                        \(column { Int64($0.figures.rotationP90Days ?? -1) })::int8[],
                        \(column { $0.overdueNotesCount })::int8[], \(column { $0.overdueNotesQuantity })::int8[],
                        \(column { $0.overdueNotesValueMinor ?? -1 })::int8[], \(column { $0.declarations })::int8[],
                        \(column { $0.latenessMedianSeconds ?? -1 })::int8[], \(column { $0.latenessP90Seconds ?? -1 })::int8[],
                        \(column { $0.declaredWithin24h })::int8[], \(column { $0.contested })::int8[])
                 AS r(partner, pallet_type, period, start_day, end_day, issued, spot, later, losses, scrapped, outstanding,
                      value, currency, a0, a1, a2, a3, presumed, rot_avg, rot_med, rot_p90, notes_count, notes_quantity,
                      notes_value, declarations, late_med, late_p90, within_24h, contested)
            """, logger: logger)
    }

}

extension Store {
    /// Stored indicator rows, oldest period first.
    public func indicators(ecosystem: UUID, partner: UUID?, palletType: UUID?, period: String, fromDay: Int?, untilDay: Int?)
        async throws -> [IndicatorRow]
    {
        let none = noneID
        var result: [IndicatorRow] = []
        for try await row in try await client.query("""
            SELECT partner_id, pallet_type_id, period::text, (period_start - date '1970-01-01')::int8,
                   (period_end - date '1970-01-01')::int8, issued, spot_returned, later_returned, declared_losses, scrapped,
                   outstanding, outstanding_value_minor, currency::text, aging_0_30, aging_31_60, aging_61_90, aging_90_plus,
                   presumed_losses, rotation_average_days, rotation_median_days::int8, rotation_p90_days::int8,
                   overdue_notes_count, overdue_notes_quantity, overdue_notes_value_minor, declarations,
                   lateness_median_seconds, lateness_p90_seconds, declared_within_24h, contested
            FROM indicators
            WHERE ecosystem_id = \(ecosystem) AND period::text = \(period)
              AND (\(partner ?? none) = \(none) OR partner_id = \(partner ?? none))
              AND (\(palletType ?? none) = \(none) OR pallet_type_id = \(palletType ?? none))
              AND period_start >= date '1970-01-01' + \(Int32(fromDay ?? -1_000_000))
              AND period_start < date '1970-01-01' + \(Int32(untilDay ?? 1_000_000))
            ORDER BY period_start, partner_id, pallet_type_id
            LIMIT 20000
            """, logger: logger) {
            let cells = row.makeRandomAccess()
            func int(_ index: Int) throws -> Int64 { try cells[index].decode(Int64.self) }
            func optional(_ index: Int) throws -> Int64? { try cells[index].decode(Int64?.self) }
            var figures = IndicatorFigures()
            figures.issued = try int(5)
            figures.spotReturned = try int(6)
            figures.laterReturned = try int(7)
            figures.declaredLosses = try int(8)
            figures.scrapped = try int(9)
            figures.outstanding = try int(10)
            figures.aging0to30 = try int(13)
            figures.aging31to60 = try int(14)
            figures.aging61to90 = try int(15)
            figures.aging90plus = try int(16)
            figures.presumedLosses = try int(17)
            figures.rotationAverageDays = try cells[18].decode(Double?.self)
            figures.rotationMedianDays = try optional(19).map { Int($0) }
            figures.rotationP90Days = try optional(20).map { Int($0) }
            result.append(IndicatorRow(
                key: RelationshipKey(partner: try cells[0].decode(UUID.self), palletType: try cells[1].decode(UUID.self)),
                period: try cells[2].decode(String.self), startDay: Int(try int(3)), endDay: Int(try int(4)), figures: figures,
                outstandingValueMinor: try optional(11), currency: try cells[12].decode(String?.self),
                overdueNotesCount: try int(21), overdueNotesQuantity: try int(22), overdueNotesValueMinor: try optional(23),
                declarations: try int(24), latenessMedianSeconds: try optional(25), latenessP90Seconds: try optional(26),
                declaredWithin24h: try int(27), contested: try int(28)))
        }
        return result
    }

    public func indicatorWatermark(ecosystem: UUID) async throws -> Int64 {
        for try await seq in try await client.query(
            "SELECT last_seq FROM indicator_watermarks WHERE ecosystem_id = \(ecosystem)", logger: logger).decode(Int64.self) {
            return seq
        }
        return 0
    }
}
