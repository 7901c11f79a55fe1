import Foundation
import Logging
import PalletFlowCore
import PostgresNIO

public struct KitItem: Sendable, Hashable {
    public var number: Int
    public var kind: String
    public var title: String
    public var detail: String?
    public var url: String?
    public var scheduledAt: Date?
    public var fact: String?
    public init(number: Int, kind: String, title: String, detail: String? = nil, url: String? = nil, scheduledAt: Date? = nil,
                fact: String? = nil) {
        self.number = number
        self.kind = kind
        self.title = title
        self.detail = detail
        self.url = url
        self.scheduledAt = scheduledAt
        self.fact = fact
    }
}

public struct KitTemplate: Sendable, Hashable {
    public var id: UUID
    public var name: String
    public var items: [KitItem]
}

public struct KitAssignment: Sendable, Hashable {
    public struct Item: Sendable, Hashable {
        public var item: KitItem
        public var done: Bool
        /// Completed by a fact (charter signed, first declaration, statement acknowledged).
        public var byFact: Bool
        public var attended: Bool?
        public var note: String?
    }

    public var id: UUID
    public var template: UUID
    public var templateName: String
    public var member: UUID
    public var assignedAt: Date
    public var items: [Item]
    public var completed: Bool { items.allSatisfy(\.done) }
}

public struct WorkStatement: Sendable, Hashable {
    public var id: UUID
    public var member: UUID
    public var periodStartDay: Int
    public var periodEndDay: Int
    public var movementsHandled: Int64
    public var palletsIssued: Int64
    public var palletsRecovered: Int64
    public var losses: Int64
    public var lossesValueMinor: Int64
    public var previousLossesValueMinor: Int64
    public var disputesClosed: Int64
    public var answer: String?
    public var answerComment: String?
    /// Value of the losses avoided against the previous period (never negative).
    public var lossesAvoidedMinor: Int64 { max(0, previousLossesValueMinor - lossesValueMinor) }
}

extension Store {
    // MARK: Kits

    public func createKit(ecosystem: UUID, name: String, items: [KitItem], by member: UUID) async throws -> UUID {
        let id = newID()
        try await transaction { connection in
            try await connection.query("INSERT INTO kit_templates (ecosystem_id, id, name) VALUES (\(ecosystem), \(id), \(name))",
                                       logger: logger)
            for item in items {
                try await connection.query("""
                    INSERT INTO kit_items (ecosystem_id, template_id, item_no, kind, title, detail, url, scheduled_at, fact)
                    VALUES (\(ecosystem), \(id), \(item.number), \(item.kind), \(item.title), \(item.detail), \(item.url),
                            \(item.scheduledAt), \(item.fact))
                    """, logger: logger)
            }
            try await audit(connection, ecosystem: ecosystem, by: member, action: "kit.create", subject: id)
        }
        return id
    }

    public func kits(ecosystem: UUID) async throws -> [KitTemplate] {
        var templates: [KitTemplate] = []
        for try await (id, name) in try await client.query("""
            SELECT id, name FROM kit_templates WHERE ecosystem_id = \(ecosystem) ORDER BY created_at
            """, logger: logger).decode((UUID, String).self) { templates.append(KitTemplate(id: id, name: name, items: [])) }
        for try await row in try await client.query("""
            SELECT template_id, item_no, kind, title, detail, url, scheduled_at, fact FROM kit_items
            WHERE ecosystem_id = \(ecosystem) ORDER BY template_id, item_no
            """, logger: logger) {
            let (template, number, kind, title, detail, url, scheduled, fact) =
                try row.decode((UUID, Int, String, String, String?, String?, Date?, String?).self)
            guard let index = templates.firstIndex(where: { $0.id == template }) else { continue }
            templates[index].items.append(KitItem(number: number, kind: kind, title: title, detail: detail, url: url,
                                                  scheduledAt: scheduled, fact: fact))
        }
        return templates
    }

    public func assignKit(ecosystem: UUID, template: UUID, member: UUID, by actor: UUID) async throws -> UUID {
        let id = newID()
        do {
            try await transaction { connection in
                try await connection.query("""
                    INSERT INTO kit_assignments (ecosystem_id, id, template_id, membership_id, assigned_at)
                    VALUES (\(ecosystem), \(id), \(template), \(member), \(nowDate))
                    """, logger: logger)
                try await audit(connection, ecosystem: ecosystem, by: actor, action: "kit.assign", subject: id)
            }
        } catch let error as PSQLError where error.sqlState == SQLState.uniqueViolation {
            throw StoreError.conflict("this kit is already assigned to this partner")
        }
        return id
    }

    /// Assignments with each item's state: recorded progress, or the fact it is tied to.
    public func kitAssignments(ecosystem: UUID, member: UUID?) async throws -> [KitAssignment] {
        let none = noneID
        let templates = Dictionary(uniqueKeysWithValues: try await kits(ecosystem: ecosystem).map { ($0.id, $0) })
        var progress: [UUID: [Int: (Bool, Bool?, String?)]] = [:]
        for try await (assignment, number, done, attended, note) in try await client.query("""
            SELECT assignment_id, item_no, done, attended, note FROM kit_item_progress WHERE ecosystem_id = \(ecosystem)
            """, logger: logger).decode((UUID, Int, Bool, Bool?, String?).self) {
            progress[assignment, default: [:]][number] = (done, attended, note)
        }
        var result: [KitAssignment] = []
        for try await row in try await client.query("""
            WITH current AS (SELECT id FROM charter_versions WHERE ecosystem_id = \(ecosystem) AND status = 'published'
                             ORDER BY version DESC LIMIT 1)
            SELECT a.id, a.template_id, a.membership_id, a.assigned_at,
                   EXISTS (SELECT 1 FROM charter_signatures s WHERE s.ecosystem_id = a.ecosystem_id
                           AND s.membership_id = a.membership_id AND s.version_id = (SELECT id FROM current)),
                   EXISTS (SELECT 1 FROM movements m WHERE m.ecosystem_id = a.ecosystem_id AND m.declarer_id = a.membership_id),
                   EXISTS (SELECT 1 FROM statement_answers s WHERE s.ecosystem_id = a.ecosystem_id
                           AND s.answered_by = a.membership_id AND s.answer = 'acknowledged')
            FROM kit_assignments a
            WHERE a.ecosystem_id = \(ecosystem) AND (\(member ?? none) = \(none) OR a.membership_id = \(member ?? none))
            ORDER BY a.assigned_at
            """, logger: logger) {
            let (id, template, owner, assigned, signed, declared, acknowledged) =
                try row.decode((UUID, UUID, UUID, Date, Bool, Bool, Bool).self)
            guard let kit = templates[template] else { continue }
            let facts = ["charter_signed": signed, "first_declaration": declared, "first_statement_acknowledged": acknowledged]
            let items = kit.items.map { item -> KitAssignment.Item in
                let recorded = progress[id]?[item.number]
                let byFact = item.fact.flatMap { facts[$0] } ?? false
                return KitAssignment.Item(item: item, done: byFact || (recorded?.0 ?? false), byFact: byFact,
                                          attended: recorded?.1, note: recorded?.2)
            }
            result.append(KitAssignment(id: id, template: template, templateName: kit.name, member: owner, assignedAt: assigned,
                                        items: items))
        }
        return result
    }

    public func recordKitProgress(ecosystem: UUID, assignment: UUID, item: Int, done: Bool, attended: Bool?, note: String?,
                                  by member: UUID) async throws {
        try await transaction { connection in
            try await connection.query("""
                INSERT INTO kit_item_progress (ecosystem_id, assignment_id, item_no, done, attended, note, updated_by, updated_at)
                VALUES (\(ecosystem), \(assignment), \(item), \(done), \(attended), \(note), \(member), \(nowDate))
                ON CONFLICT (ecosystem_id, assignment_id, item_no) DO UPDATE
                SET done = excluded.done, attended = excluded.attended, note = excluded.note,
                    updated_by = excluded.updated_by, updated_at = \(nowDate)
                """, logger: logger)
            try await audit(connection, ecosystem: ecosystem, by: member, action: "kit.progress", subject: assignment)
        }
    }

    // MARK: Statement after the work

    /// Computes and stores each partner's statement after the work for [startDay, endDay),
    /// once; returns how many were issued now.
    @discardableResult
    public func issueWorkStatements(ecosystem: UUID, shipper: UUID, startDay: Int, endDay: Int) async throws -> Int {
        let previousStart = PeriodKind.month.start(of: startDay - 1)
        var issued = 0
        for try await _ in try await client.query("""
            WITH partners AS (
                SELECT id FROM memberships WHERE ecosystem_id = \(ecosystem) AND active AND role NOT IN ('shipper', 'coordinator')
            ), values AS (
                SELECT DISTINCT ON (pallet_type_id) pallet_type_id, unit_value_minor FROM pallet_type_values
                WHERE ecosystem_id = \(ecosystem) AND valid_from < date '1970-01-01' + \(Int32(endDay))
                ORDER BY pallet_type_id, valid_from DESC
            ), figures AS (
                SELECT i.partner_id,
                       sum(i.issued) FILTER (WHERE i.period_start = date '1970-01-01' + \(Int32(startDay))) AS issued,
                       sum(i.later_returned) FILTER (WHERE i.period_start = date '1970-01-01' + \(Int32(startDay))) AS recovered,
                       sum(i.declared_losses + i.scrapped) FILTER (WHERE i.period_start = date '1970-01-01' + \(Int32(startDay))) AS losses,
                       sum((i.declared_losses + i.scrapped) * coalesce(v.unit_value_minor, 0))
                           FILTER (WHERE i.period_start = date '1970-01-01' + \(Int32(startDay))) AS losses_value,
                       sum((i.declared_losses + i.scrapped) * coalesce(v.unit_value_minor, 0))
                           FILTER (WHERE i.period_start = date '1970-01-01' + \(Int32(previousStart))) AS previous_value
                FROM indicators i LEFT JOIN values v ON v.pallet_type_id = i.pallet_type_id
                WHERE i.ecosystem_id = \(ecosystem) AND i.period = 'month'
                  AND i.period_start IN (date '1970-01-01' + \(Int32(startDay)), date '1970-01-01' + \(Int32(previousStart)))
                GROUP BY i.partner_id
            )
            INSERT INTO work_statements (ecosystem_id, id, membership_id, period_start, period_end, movements_handled,
                                         pallets_issued, pallets_recovered, losses, losses_value_minor,
                                         previous_losses_value_minor, disputes_closed, created_at)
            SELECT \(ecosystem), gen_random_uuid(), p.id, date '1970-01-01' + \(Int32(startDay)), date '1970-01-01' + \(Int32(endDay)),
                   (SELECT count(*) FROM movements m WHERE m.ecosystem_id = \(ecosystem) AND m.reverses_id IS NULL
                      AND (m.from_party_id = p.id OR m.to_party_id = p.id)
                      AND m.event_time >= date '1970-01-01' + \(Int32(startDay)) AND m.event_time < date '1970-01-01' + \(Int32(endDay))),
                   coalesce(f.issued, 0), coalesce(f.recovered, 0), coalesce(f.losses, 0), coalesce(f.losses_value, 0),
                   coalesce(f.previous_value, 0),
                   (SELECT count(*) FROM discrepancies d JOIN movements m ON m.ecosystem_id = d.ecosystem_id AND m.id = d.movement_id
                    WHERE d.ecosystem_id = \(ecosystem) AND (m.from_party_id = p.id OR m.to_party_id = p.id)
                      AND d.resolved_at >= date '1970-01-01' + \(Int32(startDay)) AND d.resolved_at < date '1970-01-01' + \(Int32(endDay))),
                   \(nowDate)
            FROM partners p LEFT JOIN figures f ON f.partner_id = p.id
            WHERE \(shipper) IS NOT NULL
            ON CONFLICT ON CONSTRAINT work_statements_once DO NOTHING
            RETURNING id
            """, logger: logger) { issued += 1 }
        return issued
    }

    public func workStatements(ecosystem: UUID, member: UUID?) async throws -> [WorkStatement] {
        let none = noneID
        var result: [WorkStatement] = []
        for try await row in try await client.query("""
            SELECT id, membership_id, (period_start - date '1970-01-01')::int8, (period_end - date '1970-01-01')::int8,
                   movements_handled, pallets_issued, pallets_recovered, losses, losses_value_minor, previous_losses_value_minor,
                   disputes_closed, answer, answer_comment
            FROM work_statements WHERE ecosystem_id = \(ecosystem) AND (\(member ?? none) = \(none) OR membership_id = \(member ?? none))
            ORDER BY period_start DESC, membership_id LIMIT 1000
            """, logger: logger) {
            let (id, owner, start, end, handled, issued, recovered, losses, value, previous, closed, answer, comment) =
                try row.decode((UUID, UUID, Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64, String?, String?).self)
            result.append(WorkStatement(id: id, member: owner, periodStartDay: Int(start), periodEndDay: Int(end),
                                        movementsHandled: handled, palletsIssued: issued, palletsRecovered: recovered,
                                        losses: losses, lossesValueMinor: value, previousLossesValueMinor: previous,
                                        disputesClosed: closed, answer: answer, answerComment: comment))
        }
        return result
    }

    public func answerWorkStatement(ecosystem: UUID, id: UUID, member: UUID, answer: String, comment: String?) async throws {
        try await transaction { connection in
            var found = false
            for try await _ in try await connection.query("""
                UPDATE work_statements SET answer = \(answer), answer_comment = \(comment), answered_by = \(member), answered_at = \(nowDate)
                WHERE ecosystem_id = \(ecosystem) AND id = \(id) AND membership_id = \(member) RETURNING id
                """, logger: logger) { found = true }
            guard found else { throw StoreError.notFound("work statement") }
            try await audit(connection, ecosystem: ecosystem, by: member, action: "work_statement.\(answer)", subject: id)
        }
    }
}
