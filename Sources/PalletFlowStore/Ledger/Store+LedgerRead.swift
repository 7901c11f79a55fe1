import Foundation
import Logging
import NIOCore
import PalletFlowCore
import PostgresNIO

/// A movement as recorded, with its lines.
public struct PostedMovement: Sendable, Hashable {
    public var id: UUID
    public var seq: Int64
    public var kind: MovementKind
    public var status: String
    public var confirmed: Bool
    public var eventTime: Instant
    public var recordTime: Instant
    public var declarer: UUID
    public var from: PartyAtSite?
    public var to: PartyAtSite?
    public var counterparty: UUID?
    public var lines: [MovementLine]
    public var references: MovementReferences
    public var evidence: Evidence?
    public var note: String?
    public var reverses: UUID?
    public var corrects: UUID?
    public var source: String

    /// As a declaration again (for reversals and corrections).
    public var declaration: MovementDeclaration {
        MovementDeclaration(kind: kind, eventTime: eventTime, from: from, to: to, lines: lines, references: references,
                            evidence: evidence, note: note)
    }

    /// The parties a partner must be to see this movement.
    public func involves(_ member: UUID) -> Bool {
        declarer == member || from?.party == member || to?.party == member
    }
}

/// Filters for listing movements. `visibleTo` limits a partner to what it takes part in.
public struct MovementFilter: Sendable {
    public var visibleTo: UUID?
    public var party: UUID?
    /// Movements this member is asked to confirm.
    public var counterparty: UUID?
    public var site: UUID?
    public var palletType: UUID?
    public var kind: MovementKind?
    public var status: String?
    public var from: Instant?
    public var until: Instant?
    /// Internal paging (the CSV export): movements recorded before this sequence number.
    public var beforeSeq: Int64?
    /// The API's paging: movements recorded before this movement of the same ecosystem (none
    /// when it is not one). Its id, not its sequence number, travels in the cursor: the
    /// sequence counts every ecosystem's movements.
    public var beforeMovement: UUID?
    public var limit: Int

    public init(visibleTo: UUID? = nil, party: UUID? = nil, counterparty: UUID? = nil, site: UUID? = nil,
                palletType: UUID? = nil, kind: MovementKind? = nil, status: String? = nil, from: Instant? = nil,
                until: Instant? = nil, beforeSeq: Int64? = nil, limit: Int = 100) {
        self.visibleTo = visibleTo
        self.party = party
        self.counterparty = counterparty
        self.site = site
        self.palletType = palletType
        self.kind = kind
        self.status = status
        self.from = from
        self.until = until
        self.beforeSeq = beforeSeq
        self.limit = limit
    }
}

/// One account's balance: all entries, and the part from confirmed movements.
public struct AccountBalance: Sendable, Hashable {
    public var key: AccountKey
    public var balance: Int64
    public var confirmed: Int64
    public var pending: Int64 { balance - confirmed }
}

extension Store {
    static let movementColumns = """
        m.id, m.seq, m.kind::text, m.status::text, m.confirmed,
        (extract(epoch FROM m.event_time) * 1000000)::int8, m.event_offset_minutes::int4,
        (extract(epoch FROM m.record_time) * 1000000)::int8, m.declarer_id, m.from_party_id, m.from_site_id,
        m.to_party_id, m.to_site_id, m.counterparty_id, m.delivery_note, m.cmr, m.order_reference,
        m.pallet_note_reference, m.evidence_sha256, m.evidence_url, m.note, m.reverses_id, m.corrects_id, m.source
        """

    public func movements(ecosystem: UUID, _ filter: MovementFilter) async throws -> [PostedMovement] {
        let none = noneID
        let query: PostgresQuery = """
            SELECT \(unescaped: Self.movementColumns)
            FROM movements m
            WHERE m.ecosystem_id = \(ecosystem)
              AND (\(filter.visibleTo ?? none) = \(none)
                   OR m.declarer_id = \(filter.visibleTo ?? none) OR m.from_party_id = \(filter.visibleTo ?? none)
                   OR m.to_party_id = \(filter.visibleTo ?? none))
              AND (\(filter.party ?? none) = \(none) OR m.from_party_id = \(filter.party ?? none)
                   OR m.to_party_id = \(filter.party ?? none))
              AND (\(filter.counterparty ?? none) = \(none) OR m.counterparty_id = \(filter.counterparty ?? none))
              AND (\(filter.site ?? none) = \(none) OR m.from_site_id = \(filter.site ?? none)
                   OR m.to_site_id = \(filter.site ?? none))
              AND (\(filter.palletType ?? none) = \(none) OR EXISTS (
                   SELECT 1 FROM movement_lines l WHERE l.ecosystem_id = m.ecosystem_id AND l.movement_id = m.id
                   AND l.pallet_type_id = \(filter.palletType ?? none)))
              AND (\(filter.kind?.rawValue ?? "") = '' OR m.kind::text = \(filter.kind?.rawValue ?? ""))
              AND (\(filter.status ?? "") = '' OR m.status::text = \(filter.status ?? ""))
              AND m.event_time >= 'epoch'::timestamptz + \(filter.from?.microsecondsSinceEpoch ?? -10_000_000_000_000_000) * interval '1 microsecond'
              AND m.event_time < 'epoch'::timestamptz + \(filter.until?.microsecondsSinceEpoch ?? 10_000_000_000_000_000) * interval '1 microsecond'
              AND m.seq < \(filter.beforeSeq ?? Int64.max)
              AND (\(filter.beforeMovement ?? none) = \(none) OR m.seq < (
                   SELECT c.seq FROM movements c WHERE c.ecosystem_id = \(ecosystem) AND c.id = \(filter.beforeMovement ?? none)))
            ORDER BY m.seq DESC
            LIMIT \(filter.limit)
            """
        return try await movements(ecosystem: ecosystem, query)
    }

    public func movement(ecosystem: UUID, id: UUID) async throws -> PostedMovement? {
        try await movements(ecosystem: ecosystem, """
            SELECT \(unescaped: Self.movementColumns) FROM movements m WHERE m.ecosystem_id = \(ecosystem) AND m.id = \(id)
            """).first
    }

    /// Several movements by id in one query, keyed by id (ids of other ecosystems are absent).
    public func movements(ecosystem: UUID, ids: [UUID]) async throws -> [UUID: PostedMovement] {
        guard !ids.isEmpty else { return [:] }
        let found = try await movements(ecosystem: ecosystem, """
            SELECT \(unescaped: Self.movementColumns) FROM movements m
            WHERE m.ecosystem_id = \(ecosystem) AND m.id = ANY(\(Array(Set(ids)))::uuid[])
            """)
        return Dictionary(uniqueKeysWithValues: found.map { ($0.id, $0) })
    }

    /// The movements `query` selects (with `movementColumns`), with their lines, which are
    /// read in the same ecosystem only: a line is never looked up by movement id alone.
    func movements(ecosystem: UUID, _ query: PostgresQuery, on connection: PostgresConnection? = nil) async throws
        -> [PostedMovement]
    {
        var result: [PostedMovement] = []
        var ecosystemLines: [UUID: [MovementLine]] = [:]
        let rows = try await run(query, on: connection)
        for try await row in rows {
            let cells = row.makeRandomAccess()
            func cell<T: PostgresDecodable>(_ index: Int, _ type: T.Type) throws -> T { try cells[index].decode(T.self) }
            let fromParty = try cell(9, UUID?.self)
            let toParty = try cell(11, UUID?.self)
            let sha = try cell(18, String?.self)
            let movement = PostedMovement(
                id: try cell(0, UUID.self), seq: try cell(1, Int64.self),
                kind: MovementKind(rawValue: try cell(2, String.self)) ?? .transfer,
                status: try cell(3, String.self), confirmed: try cell(4, Bool.self),
                eventTime: Instant(microsecondsSinceEpoch: try cell(5, Int64.self), offsetMinutes: try cell(6, Int?.self)),
                recordTime: Instant(microsecondsSinceEpoch: try cell(7, Int64.self)),
                declarer: try cell(8, UUID.self),
                from: fromParty.map { PartyAtSite(party: $0, site: try? cell(10, UUID?.self)) },
                to: toParty.map { PartyAtSite(party: $0, site: try? cell(12, UUID?.self)) },
                counterparty: try cell(13, UUID?.self), lines: [],
                references: MovementReferences(deliveryNote: try cell(14, String?.self), cmr: try cell(15, String?.self),
                                               order: try cell(16, String?.self), palletNote: try cell(17, String?.self)),
                evidence: sha.map { Evidence(sha256: $0, url: try? cell(19, String?.self)) },
                note: try cell(20, String?.self), reverses: try cell(21, UUID?.self), corrects: try cell(22, UUID?.self),
                source: try cell(23, String.self))
            result.append(movement)
        }
        guard !result.isEmpty else { return [] }
        let ids = result.map(\.id)
        let lineQuery: PostgresQuery = """
            SELECT movement_id, pallet_type_id, quality::text, quantity, exchanged_quantity, exchanged_quality::text,
                   target_quality::text
            FROM movement_lines WHERE ecosystem_id = \(ecosystem) AND movement_id = ANY(\(ids)::uuid[])
            ORDER BY movement_id, line_no
            """
        let lineRows = try await run(lineQuery, on: connection)
        for try await (movement, type, quality, quantity, exchanged, exchangedQuality, target) in lineRows.decode(
            (UUID, UUID, String, Int64, Int64, String, String?).self)
        {
            ecosystemLines[movement, default: []].append(MovementLine(
                palletType: type, quality: QualityGrade(rawValue: quality) ?? .a, quantity: quantity,
                exchangedQuantity: exchanged, exchangedQuality: QualityGrade(rawValue: exchangedQuality),
                targetQuality: target.flatMap(QualityGrade.init(rawValue:))))
        }
        for index in result.indices { result[index].lines = ecosystemLines[result[index].id] ?? [] }
        return result
    }

    /// Runs a query on the given connection (inside a transaction) or on the pool.
    func run(_ query: PostgresQuery, on connection: PostgresConnection?) async throws -> DatabaseRows {
        if let connection { return DatabaseRows(try await connection.query(query, logger: logger)) }
        return try await client.query(query, logger: logger)
    }

    /// Balances per account of a class, now or as of an instant (by event time; the
    /// confirmed part counts movements confirmed by then).
    public func balances(ecosystem: UUID, classes: [AccountClass], party: UUID?, asOf: Instant?) async throws -> [AccountBalance] {
        let none = noneID
        let classNames = classes.map(\.rawValue)
        let query: PostgresQuery
        if let asOf {
            try await refuseArchived(ecosystem: ecosystem, before: asOf)
            let at = asOf.microsecondsSinceEpoch
            query = """
                SELECT a.class::text, a.party_id, a.counterparty_id, a.site_id, a.pallet_type_id, a.quality::text,
                       coalesce(sum(e.amount), 0)::int8, coalesce(sum(e.confirmed_amount), 0)::int8
                FROM accounts a
                JOIN (SELECT e.ecosystem_id, e.account_id, e.amount,
                             CASE WHEN m.confirmed AND m.confirmed_at <= 'epoch'::timestamptz + \(at) * interval '1 microsecond'
                                  THEN e.amount ELSE 0 END AS confirmed_amount
                      FROM ledger_entries e JOIN movements m ON m.ecosystem_id = e.ecosystem_id AND m.id = e.movement_id
                      WHERE e.ecosystem_id = \(ecosystem) AND e.event_time <= 'epoch'::timestamptz + \(at) * interval '1 microsecond'
                      UNION ALL
                      -- Months taken out by `palletflow archive`, all before the instant.
                      SELECT t.ecosystem_id, t.account_id, t.amount, t.confirmed_amount
                      FROM ledger_archived_totals t WHERE t.ecosystem_id = \(ecosystem)) e
                  ON e.ecosystem_id = a.ecosystem_id AND e.account_id = a.id
                WHERE a.ecosystem_id = \(ecosystem) AND a.class::text = ANY(\(classNames)::text[])
                  AND (\(party ?? none) = \(none) OR a.party_id = \(party ?? none))
                GROUP BY a.ecosystem_id, a.id
                ORDER BY a.class, a.party_id, a.counterparty_id, a.site_id, a.pallet_type_id, a.quality
                """
        } else {
            query = """
                SELECT a.class::text, a.party_id, a.counterparty_id, a.site_id, a.pallet_type_id, a.quality::text,
                       a.balance, a.confirmed_balance
                FROM accounts a
                WHERE a.ecosystem_id = \(ecosystem) AND a.class::text = ANY(\(classNames)::text[])
                  AND (\(party ?? none) = \(none) OR a.party_id = \(party ?? none))
                ORDER BY a.class, a.party_id, a.counterparty_id, a.site_id, a.pallet_type_id, a.quality
                """
        }
        var result: [AccountBalance] = []
        for try await (accountClass, party, counterparty, site, type, quality, balance, confirmed) in try await client.query(
            query, logger: logger).decode((String, UUID, UUID, UUID, UUID, String, Int64, Int64).self)
        {
            guard balance != 0 || confirmed != 0 else { continue }
            result.append(AccountBalance(
                key: AccountKey(AccountClass(rawValue: accountClass) ?? .holding, party: party, counterparty: counterparty,
                                site: site, palletType: type, quality: QualityGrade(rawValue: quality) ?? .a),
                balance: balance, confirmed: confirmed))
        }
        return result
    }
}
