import Crypto
import Foundation
import Logging
import NIOCore
import PalletFlowCore
import PostgresNIO

public struct CharterVersionRecord: Sendable, Hashable {
    public var id: UUID
    public var version: Int
    public var title: String
    public var status: String
    public var contentHash: String?
    public var publishedAt: Date?
    public var clauses: [CharterClause]
    public var signatures: [(member: UUID, signedAt: Date, contentHash: String)]

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.id == rhs.id && lhs.status == rhs.status }
    public func hash(into hasher: inout Hasher) { hasher.combine(id) }

    /// SHA-256 of the title and every clause in canonical form: what a signature binds.
    public static func contentHash(title: String, clauses: [CharterClause]) -> String {
        let text = ([title] + clauses.sorted { $0.number < $1.number }.map(\.canonical)).joined(separator: "\u{1E}")
        return SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

public struct FunnelEntry: Sendable, Hashable {
    public var member: UUID?
    public var invitation: UUID?
    public var name: String
    public var role: Role
    public var stage: FunnelStage
    public var since: Date
}

public struct ClauseEvaluation: Sendable, Hashable {
    public var version: UUID
    public var clause: Int
    public var member: UUID
    public var periodStartDay: Int
    public var result: ClauseResult
    public var measured: Double?
}

public struct SessionRecord: Sendable, Hashable {
    public var id: UUID
    public var title: String
    public var state: String
    public var scheduledAt: Date
    public var periodStartDay: Int
    public var periodEndDay: Int
    public var agenda: String?
    public var minutes: String?
    public var reviewInside: String?
    public var reviewRelationship: String?
    public var reviewPartner: String?
    public var previousSession: UUID?
    public var participants: [UUID]
    public var resolvedDiscrepancies: [UUID]
}

public struct ActionRecord: Sendable, Hashable {
    public var id: UUID
    public var session: UUID
    public var description: String
    public var owner: UUID
    public var dueDate: String
    public var status: String
}

extension Store {
    // MARK: Prescription

    public func createInvitation(ecosystem: UUID, name: String, pgln: String?, role: Role, validDays: Int, by member: UUID) async throws
        -> (id: UUID, code: String, expiresAt: Date)
    {
        let id = newID()
        let code = "pfi_" + TokenSecret.generate().text.dropFirst(TokenSecret.prefix.count)
        let expires = nowDate.addingTimeInterval(Double(validDays) * 86_400)
        try await transaction { connection in
            try await connection.query("""
                INSERT INTO invitations (ecosystem_id, id, code_hash, organisation_name, pgln, role, expires_at, created_by,
                                         created_at)
                VALUES (\(ecosystem), \(id), \(ByteBuffer(bytes: Array(SHA256.hash(data: Data(code.utf8))))), \(name), \(pgln),
                        \(role.rawValue)::member_role, \(expires), \(member), \(nowDate))
                """, logger: logger)
            try await audit(connection, ecosystem: ecosystem, by: member, action: "invitation.create", subject: id)
        }
        return (id, String(code), expires)
    }

    /// Uses an invitation once: creates the membership and its first token.
    public func acceptInvitation(code: String) async throws -> (ecosystem: UUID, member: MemberRecord, token: TokenSecret) {
        let hash = ByteBuffer(bytes: Array(SHA256.hash(data: Data(code.utf8))))
        return try await transaction { connection in
            var found: (UUID, UUID, String, String?, String)?
            for try await row in try await connection.query("""
                UPDATE invitations SET accepted_at = \(nowDate)
                WHERE code_hash = \(hash) AND accepted_at IS NULL AND expires_at > \(nowDate)
                RETURNING ecosystem_id, id, organisation_name, pgln, role::text
                """, logger: logger).decode((UUID, UUID, String, String?, String).self) { found = row }
            guard let (ecosystem, invitation, name, pgln, roleText) = found, let role = Role(rawValue: roleText) else {
                throw StoreError.notFound("invitation (unknown, already used or expired)")
            }
            let member: MemberRecord
            do {
                member = try await insertMember(connection, ecosystem: ecosystem, name: name, pgln: pgln, role: role)
            } catch let error as PSQLError where error.sqlState == SQLState.uniqueViolation {
                throw StoreError.conflict("this organisation is already a member of the ecosystem")
            }
            let secret = TokenSecret.generate()
            try await connection.query("""
                INSERT INTO api_tokens (ecosystem_id, id, membership_id, name, token_hash, created_at)
                VALUES (\(ecosystem), \(newID()), \(member.id), 'invitation', \(ByteBuffer(bytes: secret.hash)), \(nowDate))
                """, logger: logger)
            try await connection.query("""
                UPDATE invitations SET membership_id = \(member.id) WHERE ecosystem_id = \(ecosystem) AND id = \(invitation)
                """, logger: logger)
            try await audit(connection, ecosystem: ecosystem, by: member.id, action: "invitation.accept", subject: invitation)
            return (ecosystem, member, secret)
        }
    }

    /// Who is where in the funnel, and since when.
    public func funnel(ecosystem: UUID, today: Int? = nil) async throws -> [FunnelEntry] {
        let today = today ?? self.today
        var entries: [FunnelEntry] = []
        var kitsDone: [UUID: Bool] = [:]
        for assignment in try await kitAssignments(ecosystem: ecosystem, member: nil) {
            kitsDone[assignment.member] = (kitsDone[assignment.member] ?? true) && assignment.completed
        }
        for try await (id, name, role, created) in try await client.query("""
            SELECT id, organisation_name, role::text, created_at FROM invitations
            WHERE ecosystem_id = \(ecosystem) AND accepted_at IS NULL AND expires_at > \(nowDate)
            """, logger: logger).decode((UUID, String, String, Date).self) {
            entries.append(FunnelEntry(member: nil, invitation: id, name: name, role: Role(rawValue: role) ?? .carrier,
                                       stage: .invited, since: created))
        }
        for try await row in try await client.query("""
            WITH current AS (
                SELECT id FROM charter_versions WHERE ecosystem_id = \(ecosystem) AND status = 'published'
                ORDER BY version DESC LIMIT 1)
            SELECT m.id, m.name, m.role::text, m.created_at,
                   (SELECT s.signed_at FROM charter_signatures s WHERE s.ecosystem_id = m.ecosystem_id
                       AND s.membership_id = m.id AND s.version_id = (SELECT id FROM current)),
                   (SELECT min(record_time) FROM movements v WHERE v.ecosystem_id = m.ecosystem_id AND v.declarer_id = m.id),
                   (SELECT max(record_time) FROM movements v WHERE v.ecosystem_id = m.ecosystem_id AND v.declarer_id = m.id)
            FROM memberships m JOIN organisations o ON o.id = m.organisation_id
            WHERE m.ecosystem_id = \(ecosystem) AND m.active AND m.role NOT IN ('shipper', 'coordinator')
            ORDER BY m.name
            """, logger: logger) {
            let (id, name, role, joined, signed, first, last) = try row.decode((UUID, String, String, Date, Date?, Date?, Date?).self)
            let stage = FunnelStage.of(joined: true, signedCurrentCharter: signed != nil,
                                       firstDeclarationDay: first.map { Instant($0).day },
                                       lastDeclarationDay: last.map { Instant($0).day }, today: today,
                                       kitCompleted: kitsDone[id] ?? false)
            let since: Date = switch stage {
            case .invited, .joined: joined
            case .charterSigned, .kitCompleted: signed ?? joined
            case .firstDeclaration: first ?? joined
            case .active: first ?? joined
            case .dormant: last ?? joined
            }
            entries.append(FunnelEntry(member: id, invitation: nil, name: name, role: Role(rawValue: role) ?? .carrier,
                                       stage: stage, since: since))
        }
        return entries
    }

    // MARK: Charters

    public func createCharterDraft(ecosystem: UUID, title: String, clauses: [CharterClause], by member: UUID) async throws -> UUID {
        let id = newID()
        try await transaction { connection in
            try await connection.query("""
                INSERT INTO charter_versions (ecosystem_id, id, version, title, created_at)
                SELECT \(ecosystem), \(id), coalesce(max(version), 0) + 1, \(title), \(nowDate) FROM charter_versions WHERE ecosystem_id = \(ecosystem)
                """, logger: logger)
            for clause in clauses {
                try await connection.query("""
                    INSERT INTO charter_clauses (ecosystem_id, version_id, clause_no, text, metric, comparator, target, period, roles)
                    VALUES (\(ecosystem), \(id), \(clause.number), \(clause.text), \(clause.metric?.rawValue),
                            \(clause.comparator?.rawValue), \(clause.target), \(clause.period?.rawValue),
                            \(clause.roles.map(\.rawValue))::text[]::member_role[])
                    """, logger: logger)
            }
            try await audit(connection, ecosystem: ecosystem, by: member, action: "charter.draft", subject: id)
        }
        return id
    }

    public func charters(ecosystem: UUID) async throws -> [CharterVersionRecord] {
        var versions: [CharterVersionRecord] = []
        for try await (id, version, title, status, hash, published) in try await client.query("""
            SELECT id, version, title, status, content_hash, published_at FROM charter_versions
            WHERE ecosystem_id = \(ecosystem) ORDER BY version
            """, logger: logger).decode((UUID, Int, String, String, String?, Date?).self) {
            versions.append(CharterVersionRecord(id: id, version: version, title: title, status: status, contentHash: hash,
                                                 publishedAt: published, clauses: [], signatures: []))
        }
        for try await row in try await client.query("""
            SELECT version_id, clause_no, text, metric, comparator, target, period, roles::text[]
            FROM charter_clauses WHERE ecosystem_id = \(ecosystem) ORDER BY version_id, clause_no
            """, logger: logger) {
            let (version, number, text, metric, comparator, target, period, roles) =
                try row.decode((UUID, Int, String, String?, String?, Double?, String?, [String]).self)
            guard let index = versions.firstIndex(where: { $0.id == version }) else { continue }
            versions[index].clauses.append(CharterClause(
                number: number, text: text, metric: metric.flatMap(CharterMetric.init(rawValue:)),
                comparator: comparator.flatMap(ClauseComparator.init(rawValue:)), target: target,
                period: period.flatMap(PeriodKind.init(rawValue:)), roles: roles.compactMap(Role.init(rawValue:))))
        }
        for try await (version, member, signed, hash) in try await client.query("""
            SELECT version_id, membership_id, signed_at, content_hash FROM charter_signatures WHERE ecosystem_id = \(ecosystem)
            ORDER BY signed_at
            """, logger: logger).decode((UUID, UUID, Date, String).self) {
            guard let index = versions.firstIndex(where: { $0.id == version }) else { continue }
            versions[index].signatures.append((member, signed, hash))
        }
        return versions
    }

    public func publishCharter(ecosystem: UUID, version id: UUID, by member: UUID) async throws -> CharterVersionRecord {
        guard let draft = try await charters(ecosystem: ecosystem).first(where: { $0.id == id }) else {
            throw StoreError.notFound("charter version")
        }
        guard draft.status == "draft" else { throw StoreError.conflict("version \(draft.version) is already published") }
        let hash = CharterVersionRecord.contentHash(title: draft.title, clauses: draft.clauses)
        try await transaction { connection in
            try await connection.query("""
                UPDATE charter_versions SET status = 'published', content_hash = \(hash), published_at = \(nowDate)
                WHERE ecosystem_id = \(ecosystem) AND id = \(id) AND status = 'draft'
                """, logger: logger)
            try await audit(connection, ecosystem: ecosystem, by: member, action: "charter.publish", subject: id)
        }
        guard let published = try await charters(ecosystem: ecosystem).first(where: { $0.id == id }) else {
            throw StoreError.notFound("charter version")
        }
        return published
    }

    /// A member signs a published version, naming the content hash it read.
    public func signCharter(ecosystem: UUID, version id: UUID, member: UUID, contentHash: String, token: UUID) async throws {
        guard let version = try await charters(ecosystem: ecosystem).first(where: { $0.id == id }) else {
            throw StoreError.notFound("charter version")
        }
        guard version.status == "published", let hash = version.contentHash else {
            throw StoreError.conflict("only a published version can be signed")
        }
        guard hash == contentHash else {
            throw StoreError.invalid([FieldError("contentHash", "does not match version \(version.version) (\(hash)); read it again before signing")])
        }
        try await transaction { connection in
            try await connection.query("""
                INSERT INTO charter_signatures (ecosystem_id, version_id, membership_id, content_hash, signed_by_token, signed_at)
                VALUES (\(ecosystem), \(id), \(member), \(hash), \(token), \(nowDate))
                ON CONFLICT (ecosystem_id, version_id, membership_id) DO NOTHING
                """, logger: logger)
            try await audit(connection, ecosystem: ecosystem, by: member, action: "charter.sign", subject: id)
        }
    }

    /// Period totals per partner from the stored indicators (summed over pallet types).
    public func periodTotals(ecosystem: UUID, period: PeriodKind, startDay: Int) async throws -> [UUID: PeriodTotals] {
        var result: [UUID: PeriodTotals] = [:]
        for try await row in try await client.query("""
            SELECT partner_id, sum(issued)::int8, sum(spot_returned + later_returned)::int8, sum(outstanding)::int8,
                   sum(declared_losses + presumed_losses + scrapped)::int8, max(declarations)::int8, max(declared_within_24h)::int8,
                   max(contested)::int8,
                   coalesce(sum(rotation_average_days * (spot_returned + later_returned)), 0)::float8,
                   coalesce(sum(spot_returned + later_returned) FILTER (WHERE rotation_average_days IS NOT NULL), 0)::int8
            FROM indicators
            WHERE ecosystem_id = \(ecosystem) AND period::text = \(period.rawValue)
              AND period_start = date '1970-01-01' + \(Int32(startDay))
            GROUP BY partner_id
            """, logger: logger) {
            let (partner, issued, returned, outstanding, losses, declarations, within, contested, rotation, rotationPallets) =
                try row.decode((UUID, Int64, Int64, Int64, Int64, Int64, Int64, Int64, Double, Int64).self)
            // Declarations are per movement and repeated on each pallet type's row: the SQL takes one.
            result[partner] = PeriodTotals(issued: issued, returned: returned, outstanding: outstanding, losses: losses,
                                           declarations: declarations, declaredWithin24h: within, contested: contested,
                                           rotationWeighted: rotation, rotationPallets: rotationPallets)
        }
        return result
    }

    /// Facts the clauses read from the ledger directly rather than from the indicators:
    /// answers to declarations within 48 h, and the grade of empties handed over.
    public func conductTotals(ecosystem: UUID, startDay: Int, endDay: Int) async throws
        -> [UUID: (due: Int64, answered: Int64, handedOver: Int64, bOrBetter: Int64)]
    {
        var result: [UUID: (due: Int64, answered: Int64, handedOver: Int64, bOrBetter: Int64)] = [:]
        let start = Int32(startDay)
        let end = Int32(endDay)
        for try await (partner, due, answered) in try await client.query("""
            SELECT m.counterparty_id, count(*)::int8,
                   count(*) FILTER (WHERE (m.confirmed_by = m.counterparty_id AND m.confirmed_at <= m.record_time + interval '48 hours')
                       OR EXISTS (SELECT 1 FROM discrepancies d WHERE d.ecosystem_id = m.ecosystem_id AND d.movement_id = m.id
                                  AND d.contested_by = m.counterparty_id AND d.opened_at <= m.record_time + interval '48 hours'))::int8
            FROM movements m
            WHERE m.ecosystem_id = \(ecosystem) AND m.counterparty_id IS NOT NULL AND m.source NOT IN ('reversal', 'correction')
              AND m.record_time >= date '1970-01-01' + \(start) AND m.record_time < date '1970-01-01' + \(end)
            GROUP BY 1
            """, logger: logger).decode((UUID, Int64, Int64).self) {
            result[partner, default: (0, 0, 0, 0)].due = due
            result[partner, default: (0, 0, 0, 0)].answered = answered
        }
        for try await (partner, handed, good) in try await client.query("""
            SELECT m.to_party_id, sum(l.exchanged_quantity)::int8,
                   coalesce(sum(l.exchanged_quantity) FILTER (WHERE l.exchanged_quality IN ('new', 'A', 'B')), 0)::int8
            FROM movements m JOIN movement_lines l ON l.ecosystem_id = m.ecosystem_id AND l.movement_id = m.id
            WHERE m.ecosystem_id = \(ecosystem) AND m.status <> 'reversed' AND m.reverses_id IS NULL AND l.exchanged_quantity > 0
              AND m.event_time >= date '1970-01-01' + \(start) AND m.event_time < date '1970-01-01' + \(end)
            GROUP BY 1
            """, logger: logger).decode((UUID, Int64, Int64).self) {
            result[partner, default: (0, 0, 0, 0)].handedOver = handed
            result[partner, default: (0, 0, 0, 0)].bOrBetter = good
        }
        return result
    }

    /// Evaluates every measurable clause of the current published charter for each
    /// signatory it binds, for the period starting on `startDay`, and keeps the history.
    @discardableResult
    public func evaluateCharter(ecosystem: UUID, period: PeriodKind, startDay: Int) async throws -> [ClauseEvaluation] {
        guard let current = try await charters(ecosystem: ecosystem).last(where: { $0.status == "published" }) else { return [] }
        let members = Dictionary(uniqueKeysWithValues: try await members(ecosystem: ecosystem).map { ($0.id, $0) })
        var totals = try await periodTotals(ecosystem: ecosystem, period: period, startDay: startDay)
        for (partner, conduct) in try await conductTotals(ecosystem: ecosystem, startDay: startDay,
                                                          endDay: period.end(startingAt: startDay)) {
            totals[partner, default: PeriodTotals()].answersDue = conduct.due
            totals[partner, default: PeriodTotals()].answeredWithin48h = conduct.answered
            totals[partner, default: PeriodTotals()].exchangedHandedOver = conduct.handedOver
            totals[partner, default: PeriodTotals()].exchangedBOrBetter = conduct.bOrBetter
        }
        var evaluations: [ClauseEvaluation] = []
        for signature in current.signatures {
            guard let member = members[signature.member] else { continue }
            for clause in current.clauses where clause.isMeasurable && (clause.period ?? .month) == period && clause.binds(member.role) {
                let (result, measured) = CharterRules.evaluate(clause, totals: totals[member.id])
                evaluations.append(ClauseEvaluation(version: current.id, clause: clause.number, member: member.id,
                                                    periodStartDay: startDay, result: result, measured: measured))
            }
        }
        try await transaction { connection in
            for evaluation in evaluations {
                try await connection.query("""
                    INSERT INTO clause_evaluations (ecosystem_id, version_id, clause_no, membership_id, period_start, result, measured,
                                                    evaluated_at)
                    VALUES (\(ecosystem), \(evaluation.version), \(evaluation.clause), \(evaluation.member),
                            date '1970-01-01' + \(Int32(evaluation.periodStartDay)), \(evaluation.result.rawValue), \(evaluation.measured),
                            \(nowDate))
                    ON CONFLICT (ecosystem_id, version_id, clause_no, membership_id, period_start)
                    DO UPDATE SET result = excluded.result, measured = excluded.measured, evaluated_at = \(nowDate)
                    """, logger: logger)
            }
        }
        return evaluations
    }

    public func clauseEvaluations(ecosystem: UUID, member: UUID?) async throws -> [ClauseEvaluation] {
        try await clauseEvaluations(ecosystem: ecosystem, members: member.map { [$0] })
    }

    /// The evaluations of `members` only, or of every member when nil.
    public func clauseEvaluations(ecosystem: UUID, members: [UUID]?) async throws -> [ClauseEvaluation] {
        var result: [ClauseEvaluation] = []
        for try await (version, clause, owner, day, outcome, measured) in try await client.query("""
            SELECT version_id, clause_no, membership_id, (period_start - date '1970-01-01')::int8, result, measured
            FROM clause_evaluations WHERE ecosystem_id = \(ecosystem)
              AND (\(members == nil) OR membership_id = ANY(\(members ?? [])::uuid[]))
            ORDER BY period_start, membership_id, clause_no
            """, logger: logger).decode((UUID, Int, UUID, Int64, String, Double?).self) {
            result.append(ClauseEvaluation(version: version, clause: clause, member: owner, periodStartDay: Int(day),
                                           result: ClauseResult(rawValue: outcome) ?? .notMeasurable, measured: measured))
        }
        return result
    }
}
