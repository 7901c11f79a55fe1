import Foundation
import Logging
import PalletFlowCore
import PostgresNIO

extension Store {
    public func createSession(ecosystem: UUID, title: String, scheduledAt: Date, periodStartDay: Int, periodEndDay: Int,
                              agenda: String?, participants: [UUID], by member: UUID) async throws -> UUID {
        let id = newID()
        try await transaction { connection in
            // The previous session of the ecosystem: its actions are followed up in this report.
            try await connection.query("""
                INSERT INTO mediation_sessions (ecosystem_id, id, title, scheduled_at, period_start, period_end, agenda,
                                                previous_session_id, created_by, created_at)
                SELECT \(ecosystem), \(id), \(title), \(scheduledAt), date '1970-01-01' + \(Int32(periodStartDay)),
                       date '1970-01-01' + \(Int32(periodEndDay)), \(agenda),
                       (SELECT id FROM mediation_sessions WHERE ecosystem_id = \(ecosystem) ORDER BY scheduled_at DESC LIMIT 1),
                       \(member), \(nowDate)
                """, logger: logger)
            for participant in Set(participants + [member]) {
                try await connection.query("""
                    INSERT INTO mediation_participants (ecosystem_id, session_id, membership_id) VALUES (\(ecosystem), \(id), \(participant))
                    """, logger: logger)
            }
            try await audit(connection, ecosystem: ecosystem, by: member, action: "session.create", subject: id)
        }
        return id
    }

    public func sessions(ecosystem: UUID) async throws -> [SessionRecord] {
        var result: [SessionRecord] = []
        for try await row in try await client.query("""
            SELECT s.id, s.title, s.state, s.scheduled_at, (s.period_start - date '1970-01-01')::int8,
                   (s.period_end - date '1970-01-01')::int8, s.agenda, s.minutes, s.review_inside, s.review_relationship,
                   s.review_partner, s.previous_session_id,
                   coalesce((SELECT array_agg(membership_id) FROM mediation_participants p
                             WHERE p.ecosystem_id = s.ecosystem_id AND p.session_id = s.id), '{}'),
                   coalesce((SELECT array_agg(discrepancy_id) FROM mediation_resolutions r
                             WHERE r.ecosystem_id = s.ecosystem_id AND r.session_id = s.id), '{}')
            FROM mediation_sessions s WHERE s.ecosystem_id = \(ecosystem) ORDER BY s.scheduled_at
            """, logger: logger) {
            let (id, title, state, scheduled, start, end, agenda, minutes, inside, relationship, partner, previous, participants, resolved) =
                try row.decode((UUID, String, String, Date, Int64, Int64, String?, String?, String?, String?, String?, UUID?, [UUID], [UUID]).self)
            result.append(SessionRecord(id: id, title: title, state: state, scheduledAt: scheduled, periodStartDay: Int(start),
                                        periodEndDay: Int(end), agenda: agenda, minutes: minutes, reviewInside: inside,
                                        reviewRelationship: relationship, reviewPartner: partner, previousSession: previous,
                                        participants: participants, resolvedDiscrepancies: resolved))
        }
        return result
    }

    public func session(ecosystem: UUID, id: UUID) async throws -> SessionRecord? {
        try await sessions(ecosystem: ecosystem).first { $0.id == id }
    }

    /// Minutes, the three-level review and the state (planned -> held -> closed, never back).
    public func updateSession(ecosystem: UUID, id: UUID, state: String?, minutes: String?, reviewInside: String?,
                              reviewRelationship: String?, reviewPartner: String?, by member: UUID) async throws {
        try await transaction { connection in
            var current: String?
            for try await state in try await connection.query("""
                SELECT state FROM mediation_sessions WHERE ecosystem_id = \(ecosystem) AND id = \(id) FOR UPDATE
                """, logger: logger).decode(String.self) { current = state }
            guard let current else { throw StoreError.notFound("session") }
            let order = ["planned": 0, "held": 1, "closed": 2]
            if current == "closed" { throw StoreError.conflict("the session is closed; its record is final") }
            if let state, (order[state] ?? -1) < (order[current] ?? 0) {
                throw StoreError.invalid([FieldError("state", "cannot go back from \(current) to \(state)")])
            }
            try await connection.query("""
                UPDATE mediation_sessions SET
                    state = coalesce(\(state), state),
                    minutes = coalesce(\(minutes), minutes),
                    review_inside = coalesce(\(reviewInside), review_inside),
                    review_relationship = coalesce(\(reviewRelationship), review_relationship),
                    review_partner = coalesce(\(reviewPartner), review_partner),
                    held_at = CASE WHEN \(state) = 'held' AND held_at IS NULL THEN \(nowDate) ELSE held_at END,
                    closed_at = CASE WHEN \(state) = 'closed' THEN \(nowDate) ELSE closed_at END
                WHERE ecosystem_id = \(ecosystem) AND id = \(id)
                """, logger: logger)
            try await audit(connection, ecosystem: ecosystem, by: member, action: "session.update", subject: id)
        }
    }

    public func addAction(ecosystem: UUID, session: UUID, description: String, owner: UUID, dueDate: String, by member: UUID) async throws
        -> ActionRecord
    {
        let id = newID()
        try await transaction { connection in
            try await connection.query("""
                INSERT INTO mediation_actions (ecosystem_id, id, session_id, description, owner_id, due_date, created_at,
                                               updated_at)
                VALUES (\(ecosystem), \(id), \(session), \(description), \(owner), \(dueDate)::date, \(nowDate), \(nowDate))
                """, logger: logger)
            try await audit(connection, ecosystem: ecosystem, by: member, action: "session.action", subject: id)
        }
        return ActionRecord(id: id, session: session, description: description, owner: owner, dueDate: dueDate, status: "open")
    }

    public func updateAction(ecosystem: UUID, id: UUID, status: String, by member: UUID) async throws {
        try await transaction { connection in
            var found = false
            for try await _ in try await connection.query("""
                UPDATE mediation_actions SET status = \(status), updated_at = \(nowDate)
                WHERE ecosystem_id = \(ecosystem) AND id = \(id) RETURNING id
                """, logger: logger) { found = true }
            guard found else { throw StoreError.notFound("action") }
            try await audit(connection, ecosystem: ecosystem, by: member, action: "session.action.\(status)", subject: id)
        }
    }

    public func actions(ecosystem: UUID, session: UUID) async throws -> [ActionRecord] {
        var result: [ActionRecord] = []
        for try await (id, description, owner, due, status) in try await client.query("""
            SELECT id, description, owner_id, due_date::text, status FROM mediation_actions
            WHERE ecosystem_id = \(ecosystem) AND session_id = \(session) ORDER BY created_at
            """, logger: logger).decode((UUID, String, UUID, String, String).self) {
            result.append(ActionRecord(id: id, session: session, description: description, owner: owner, dueDate: due, status: status))
        }
        return result
    }

    public func recordResolution(ecosystem: UUID, session: UUID, discrepancy: UUID) async throws {
        try await client.query("""
            INSERT INTO mediation_resolutions (ecosystem_id, session_id, discrepancy_id, decided_at)
            VALUES (\(ecosystem), \(session), \(discrepancy), \(nowDate))
            ON CONFLICT DO NOTHING
            """, logger: logger)
    }
}

extension Store {
    /// Month rows summed per partner over [startDay, endDay), and per month for trends.
    /// Month figures per partner, summed over pallet types, for the months starting in
    /// [startDay, endDay). Only `partners` when given (the report reads its participants'
    /// rows through the primary key, not the whole ecosystem's).
    public func monthTotals(ecosystem: UUID, startDay: Int, endDay: Int, partners: [UUID]? = nil) async throws
        -> [UUID: [Int: PeriodTotals]]
    {
        var result: [UUID: [Int: PeriodTotals]] = [:]
        for try await row in try await client.query("""
            SELECT partner_id, (period_start - date '1970-01-01')::int8, sum(issued)::int8,
                   sum(spot_returned + later_returned)::int8, sum(outstanding)::int8,
                   sum(declared_losses + presumed_losses + scrapped)::int8, max(declarations)::int8,
                   max(declared_within_24h)::int8, max(contested)::int8,
                   coalesce(sum(rotation_average_days * (spot_returned + later_returned)), 0)::float8,
                   coalesce(sum(spot_returned + later_returned) FILTER (WHERE rotation_average_days IS NOT NULL), 0)::int8
            FROM indicators
            WHERE ecosystem_id = \(ecosystem) AND period = 'month'
              AND (\(partners == nil) OR partner_id = ANY(\(partners ?? [])::uuid[]))
              AND period_start >= date '1970-01-01' + \(Int32(startDay)) AND period_start < date '1970-01-01' + \(Int32(endDay))
            GROUP BY 1, 2
            """, logger: logger) {
            let (partner, day, issued, returned, outstanding, losses, declarations, within, contested, rotation, rotationPallets) =
                try row.decode((UUID, Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64, Double, Int64).self)
            result[partner, default: [:]][Int(day)] = PeriodTotals(
                issued: issued, returned: returned, outstanding: outstanding, losses: losses, declarations: declarations,
                declaredWithin24h: within, contested: contested, rotationWeighted: rotation, rotationPallets: rotationPallets)
        }
        return result
    }
}

extension Store {
    /// The to-date aging buckets (0-30, 31-60, 61-90, 90+ days) of each of `partners`,
    /// summed over pallet types.
    public func agingToDate(ecosystem: UUID, partners: [UUID]) async throws -> [UUID: [Int64]] {
        var result: [UUID: [Int64]] = [:]
        guard !partners.isEmpty else { return result }
        for try await (partner, a, b, c, d) in try await client.query("""
            SELECT partner_id, sum(aging_0_30)::int8, sum(aging_31_60)::int8, sum(aging_61_90)::int8, sum(aging_90_plus)::int8
            FROM indicators
            WHERE ecosystem_id = \(ecosystem) AND partner_id = ANY(\(partners)::uuid[]) AND period = 'to_date'
            GROUP BY partner_id
            """, logger: logger).decode((UUID, Int64, Int64, Int64, Int64).self) {
            result[partner] = [a, b, c, d]
        }
        return result
    }
}

extension PeriodTotals {
    /// Several months as one period: flows add up, the stock is the last month's.
    public static func combine(_ months: [Int: PeriodTotals]) -> PeriodTotals? {
        guard !months.isEmpty else { return nil }
        var total = PeriodTotals()
        for (_, month) in months.sorted(by: { $0.key < $1.key }) {
            total.issued += month.issued
            total.returned += month.returned
            total.losses += month.losses
            total.declarations += month.declarations
            total.declaredWithin24h += month.declaredWithin24h
            total.contested += month.contested
            total.rotationWeighted += month.rotationWeighted
            total.rotationPallets += month.rotationPallets
            total.outstanding = month.outstanding
        }
        return total
    }
}
