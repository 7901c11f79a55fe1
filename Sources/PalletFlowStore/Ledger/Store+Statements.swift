import Crypto
import Foundation
import Logging
import PalletFlowCore
import PostgresNIO

/// A period statement (relevé de compte, Saldenbestätigung) of what `party` owes
/// `counterparty`: opening balance, movements, closing balance per type and quality.
public struct Statement: Sendable {
    public struct Line: Sendable, Hashable {
        public var palletType: UUID
        public var quality: QualityGrade
        public var opening: Int64
        public var movements: Int64
        public var closing: Int64
    }

    public struct Entry: Sendable, Hashable {
        public var movement: UUID
        public var kind: MovementKind
        public var eventTime: Instant
        public var palletType: UUID
        public var quality: QualityGrade
        public var amount: Int64
        public var confirmed: Bool
    }

    public var party: UUID
    public var counterparty: UUID
    public var from: Instant
    public var until: Instant
    public var lines: [Line]
    public var entries: [Entry]
    public var answers: [StatementAnswer]

    /// SHA-256 of the closing balances: what a partner acknowledges.
    public var hash: String {
        let text = lines.sorted { ($0.palletType.uuidString, $0.quality.rank) < ($1.palletType.uuidString, $1.quality.rank) }
            .map { "\($0.palletType.uuidString.lowercased()):\($0.quality.rawValue):\($0.closing)" }
            .joined(separator: ";")
        let header = "\(party.uuidString.lowercased())|\(counterparty.uuidString.lowercased())|\(from.microsecondsSinceEpoch)|\(until.microsecondsSinceEpoch)|"
        return SHA256.hash(data: Data((header + text).utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

public struct StatementAnswer: Sendable, Hashable {
    public var id: UUID
    public var answer: String
    public var comment: String?
    public var statementHash: String
    public var answeredBy: UUID
    public var answeredAt: Date
}

extension Store {
    public func statement(ecosystem: UUID, party: UUID, counterparty: UUID, from: Instant, until: Instant) async throws -> Statement {
        try await refuseArchived(ecosystem: ecosystem, before: from)
        let start = from.microsecondsSinceEpoch
        let end = until.microsecondsSinceEpoch
        var lines: [PalletTypeQuality: Statement.Line] = [:]
        for try await (type, quality, opening, moved) in try await client.query("""
            SELECT a.pallet_type_id, a.quality::text,
                   coalesce(sum(e.amount) FILTER (WHERE e.event_time < 'epoch'::timestamptz + \(start) * interval '1 microsecond'), 0)::int8,
                   coalesce(sum(e.amount) FILTER (WHERE e.event_time >= 'epoch'::timestamptz + \(start) * interval '1 microsecond'
                                                    AND e.event_time < 'epoch'::timestamptz + \(end) * interval '1 microsecond'), 0)::int8
            FROM accounts a
            JOIN (SELECT ecosystem_id, account_id, amount, event_time FROM ledger_entries
                  UNION ALL
                  -- Months taken out by `palletflow archive`: part of every opening balance.
                  SELECT ecosystem_id, account_id, amount, '-infinity'::timestamptz FROM ledger_archived_totals) e
              ON e.ecosystem_id = a.ecosystem_id AND e.account_id = a.id
            WHERE a.ecosystem_id = \(ecosystem) AND a.class = 'owed' AND a.party_id = \(party) AND a.counterparty_id = \(counterparty)
              AND e.event_time < 'epoch'::timestamptz + \(end) * interval '1 microsecond'
            GROUP BY a.pallet_type_id, a.quality
            """, logger: logger).decode((UUID, String, Int64, Int64).self) {
            let grade = QualityGrade(rawValue: quality) ?? .a
            lines[PalletTypeQuality(palletType: type, quality: grade)] = Statement.Line(
                palletType: type, quality: grade, opening: opening, movements: moved, closing: opening + moved)
        }
        var entries: [Statement.Entry] = []
        for try await (movement, kind, micros, offset, type, quality, amount, confirmed) in try await client.query("""
            SELECT m.id, m.kind::text, (extract(epoch FROM m.event_time) * 1000000)::int8, m.event_offset_minutes::int4,
                   a.pallet_type_id, a.quality::text, e.amount, m.confirmed
            FROM ledger_entries e
            JOIN accounts a ON a.ecosystem_id = e.ecosystem_id AND a.id = e.account_id
            JOIN movements m ON m.ecosystem_id = e.ecosystem_id AND m.id = e.movement_id
            WHERE a.ecosystem_id = \(ecosystem) AND a.class = 'owed' AND a.party_id = \(party) AND a.counterparty_id = \(counterparty)
              AND e.event_time >= 'epoch'::timestamptz + \(start) * interval '1 microsecond'
              AND e.event_time < 'epoch'::timestamptz + \(end) * interval '1 microsecond'
            ORDER BY e.event_time, e.seq
            """, logger: logger).decode((UUID, String, Int64, Int?, UUID, String, Int64, Bool).self) {
            entries.append(Statement.Entry(
                movement: movement, kind: MovementKind(rawValue: kind) ?? .transfer,
                eventTime: Instant(microsecondsSinceEpoch: micros, offsetMinutes: offset), palletType: type,
                quality: QualityGrade(rawValue: quality) ?? .a, amount: amount, confirmed: confirmed))
        }
        var answers: [StatementAnswer] = []
        for try await (id, answer, comment, hash, by, at) in try await client.query("""
            SELECT id, answer, comment, statement_hash, answered_by, answered_at FROM statement_answers
            WHERE ecosystem_id = \(ecosystem) AND party_id = \(party) AND counterparty_id = \(counterparty)
              AND period_start = 'epoch'::timestamptz + \(start) * interval '1 microsecond'
              AND period_end = 'epoch'::timestamptz + \(end) * interval '1 microsecond'
            ORDER BY answered_at
            """, logger: logger).decode((UUID, String, String?, String, UUID, Date).self) {
            answers.append(StatementAnswer(id: id, answer: answer, comment: comment, statementHash: hash, answeredBy: by,
                                           answeredAt: at))
        }
        return Statement(party: party, counterparty: counterparty, from: from, until: until,
                         lines: lines.values.sorted { ($0.palletType.uuidString, $0.quality.rank) < ($1.palletType.uuidString, $1.quality.rank) },
                         entries: entries, answers: answers)
    }

    /// A partner acknowledges (restarting the claims clock) or contests a statement as shown.
    public func answerStatement(ecosystem: UUID, statement: Statement, answer: String, comment: String?, by member: UUID) async throws
        -> StatementAnswer
    {
        let id = newID()
        try await transaction { connection in
            try await connection.query("""
                INSERT INTO statement_answers (ecosystem_id, id, party_id, counterparty_id, period_start, period_end,
                                               statement_hash, answer, comment, answered_by, answered_at)
                VALUES (\(ecosystem), \(id), \(statement.party), \(statement.counterparty),
                        'epoch'::timestamptz + \(statement.from.microsecondsSinceEpoch) * interval '1 microsecond',
                        'epoch'::timestamptz + \(statement.until.microsecondsSinceEpoch) * interval '1 microsecond',
                        \(statement.hash), \(answer), \(comment), \(member), \(nowDate))
                """, logger: logger)
            try await audit(connection, ecosystem: ecosystem, by: member, action: "statement.\(answer)", subject: id)
        }
        return StatementAnswer(id: id, answer: answer, comment: comment, statementHash: statement.hash, answeredBy: member,
                               answeredAt: nowDate)
    }
}

public struct IssuedStatement: Sendable, Hashable {
    public var id: UUID
    public var party: UUID
    public var counterparty: UUID
    public var from: Date
    public var until: Date
    public var hash: String
    public var closing: String
    public var createdAt: Date
}

extension Store {
    /// Partners holding a bilateral account with `counterparty` (the shipper).
    public func partnersWithAccounts(ecosystem: UUID, counterparty: UUID) async throws -> [UUID] {
        var result: [UUID] = []
        for try await party in try await client.query("""
            SELECT DISTINCT party_id FROM accounts
            WHERE ecosystem_id = \(ecosystem) AND class = 'owed' AND counterparty_id = \(counterparty)
            ORDER BY party_id
            """, logger: logger).decode(UUID.self) { result.append(party) }
        return result
    }

    /// Records a statement as issued (once per party, counterparty and period).
    @discardableResult
    public func recordIssuedStatement(ecosystem: UUID, _ statement: Statement) async throws -> Bool {
        let closing = statement.lines.map {
            ["palletTypeId": $0.palletType.uuidString.lowercased(), "quality": $0.quality.rawValue, "closing": String($0.closing)]
        }
        let json = String(decoding: try JSONSerialization.data(withJSONObject: closing, options: [.sortedKeys]), as: UTF8.self)
        var inserted = false
        for try await _ in try await client.query("""
            INSERT INTO statements_issued (ecosystem_id, id, party_id, counterparty_id, period_start, period_end, statement_hash, closing,
                                           created_at)
            VALUES (\(ecosystem), \(newID()), \(statement.party), \(statement.counterparty),
                    'epoch'::timestamptz + \(statement.from.microsecondsSinceEpoch) * interval '1 microsecond',
                    'epoch'::timestamptz + \(statement.until.microsecondsSinceEpoch) * interval '1 microsecond',
                    \(statement.hash), \(json)::jsonb, \(nowDate))
            ON CONFLICT ON CONSTRAINT statements_issued_once DO NOTHING
            RETURNING id
            """, logger: logger) { inserted = true }
        return inserted
    }

    public func issuedStatements(ecosystem: UUID, party: UUID?) async throws -> [IssuedStatement] {
        let none = noneID
        var result: [IssuedStatement] = []
        for try await row in try await client.query("""
            SELECT id, party_id, counterparty_id, period_start, period_end, statement_hash, closing::text, created_at
            FROM statements_issued
            WHERE ecosystem_id = \(ecosystem) AND (\(party ?? none) = \(none) OR party_id = \(party ?? none) OR counterparty_id = \(party ?? none))
            ORDER BY period_start DESC, party_id LIMIT 1000
            """, logger: logger) {
            let (id, party, counterparty, from, until, hash, closing, created) =
                try row.decode((UUID, UUID, UUID, Date, Date, String, String, Date).self)
            result.append(IssuedStatement(id: id, party: party, counterparty: counterparty, from: from, until: until,
                                          hash: hash, closing: closing, createdAt: created))
        }
        return result
    }
}
