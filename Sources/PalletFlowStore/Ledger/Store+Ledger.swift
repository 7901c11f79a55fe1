import Foundation
import Logging
import NIOCore
import PalletFlowCore
import PostgresNIO

/// A checked movement, ready to be written with its entries and notes.
public struct MovementToPost: Sendable {
    public var id: UUID
    public var declaration: MovementDeclaration
    public var declarer: UUID
    public var counterparty: UUID?
    public var recordTime: Instant
    public var reverses: UUID?
    public var corrects: UUID?
    public var source: String
    public var postings: [Posting]
    public var notes: [IssuedNote]
    /// Confirmed from the start: a one-party movement, or a reversal of a confirmed one.
    public var confirmed: Bool
    /// A reversal of a movement nobody had confirmed: it takes the pending entries back and
    /// is final (status `final`): nobody confirms or contests it.
    public var isFinal = false

    public init(id: UUID, declaration: MovementDeclaration, declarer: UUID, counterparty: UUID?, recordTime: Instant,
                reverses: UUID? = nil, corrects: UUID? = nil, source: String = "api", postings: [Posting],
                notes: [IssuedNote] = [], confirmed: Bool) {
        self.id = id
        self.declaration = declaration
        self.declarer = declarer
        self.counterparty = counterparty
        self.recordTime = recordTime
        self.reverses = reverses
        self.corrects = corrects
        self.source = source
        self.postings = postings
        self.notes = notes
        self.confirmed = confirmed
    }

    public var status: String { isFinal ? "final" : confirmed ? "confirmed" : "declared" }
}

public struct IssuedNote: Sendable, Hashable {
    public var id: UUID
    public var terms: PalletNoteTerms
    public var issueDate: String
    public var dueDate: String
    public init(id: UUID, terms: PalletNoteTerms, issueDate: String, dueDate: String) {
        self.id = id
        self.terms = terms
        self.issueDate = issueDate
        self.dueDate = dueDate
    }
}

/// The response a write stores with its Idempotency-Key, in the same statement.
public struct IdempotentWrite: Sendable {
    public var key: String
    public var requestHash: [UInt8]
    public var status: Int
    public var body: [UInt8]
    public init(key: String, requestHash: [UInt8], status: Int, body: [UInt8]) {
        self.key = key
        self.requestHash = requestHash
        self.status = status
        self.body = body
    }
}

public enum PostOutcome: Sendable, Equatable {
    /// Written now.
    case posted
    /// The key was used before with the same request: here is the first response.
    case replay(status: Int, body: [UInt8])
    /// The key was used before with another request.
    case keyReused
}

extension Store {
    /// Writes movements, their lines, entries, account balances, notes, audit rows and the
    /// idempotency record in one SQL statement: one round trip, all or nothing. Accounts are upserted
    /// in their natural-key order, the global lock order, so concurrent writers on the
    /// same accounts queue up instead of deadlocking.
    public func post(ecosystem: UUID, by member: UUID, _ movements: [MovementToPost],
                     idempotency: IdempotentWrite?, on connection: PostgresConnection? = nil) async throws -> PostOutcome {
        var m = MovementColumns()
        var l = LineColumns()
        var p = PostingColumns()
        var n = NoteColumns()
        for movement in movements {
            m.append(movement)
            for (index, line) in movement.declaration.lines.enumerated() { l.append(movement.id, index, line) }
            for posting in movement.postings { p.append(movement, posting) }
            for note in movement.notes { n.append(movement.id, note) }
        }
        let statement = PostStatement(query: Self.postQuery(ecosystem: ecosystem, member: member, m, l, p, n,
                                                            idempotency: idempotency))
        @Sendable func execute(_ connection: PostgresConnection) async throws -> PostOutcome? {
            var outcome: PostOutcome?
            for try await (insertedKeys, _, _, hash, status, body) in try await connection.execute(statement, logger: logger) {
                if idempotency == nil || insertedKeys == 1 {
                    outcome = .posted
                } else if let hash, let status, let body {
                    outcome = Array(buffer: hash) == idempotency!.requestHash
                        ? .replay(status: Int(status), body: Array(buffer: body)) : .keyReused
                }
            }
            return outcome
        }
        let outcome: PostOutcome?
        do {
            if let connection {
                outcome = try await execute(connection)
            } else {
                // The statement is its own transaction; the answer waits for its commit
                // (`committed(on:)`), or a crash in between would lose a write answered 201.
                outcome = try await client.withConnection { connection in
                    let outcome = try await execute(connection)
                    try await DatabaseClient.committed(on: connection, logger: logger)
                    return outcome
                }
            }
        } catch let error as PSQLError where error.sqlState == SQLState.uniqueViolation {
            if error.constraintName == "pallet_notes_serial_key" {
                throw StoreError.invalid([FieldError("palletNote.serial", "a pallet note with this serial already exists")])
            }
            throw error
        }
        if let outcome { return outcome }
        // The key was taken by a concurrent request that committed after this statement
        // started: read what it stored.
        return try await storedResponse(ecosystem: ecosystem, member: member, key: idempotency!)
    }

    /// The statement of `post`. Its text does not depend on the values (they are all bound),
    /// so it is prepared once per connection (`PostStatement`): PostgreSQL then skips
    /// parsing and planning this large statement at every declaration (docs/performance.md).
    static func postQuery(ecosystem: UUID, member: UUID, _ m: MovementColumns, _ l: LineColumns, _ p: PostingColumns,
                          _ n: NoteColumns, idempotency: IdempotentWrite?) -> PostgresQuery {
        let key = idempotency?.key ?? ""
        // When the key was recorded: the clock's instant the movements carry as record time.
        let recordMicros = m.recordMicros.first ?? 0
        return """
            WITH lock AS (
                -- Shared among writers; the indicators' watermark reader takes it exclusively.
                SELECT pg_advisory_xact_lock_shared(hashtextextended(\(ecosystem)::text, 7)) AS held
            ), key AS (
                INSERT INTO idempotency_keys (ecosystem_id, membership_id, key, request_hash, response_status, response_body,
                                              created_at)
                SELECT \(ecosystem), \(member), \(key), \(ByteBuffer(bytes: idempotency?.requestHash ?? [])),
                       \(idempotency?.status ?? 0), \(ByteBuffer(bytes: idempotency?.body ?? [])),
                       'epoch'::timestamptz + \(recordMicros) * interval '1 microsecond'
                WHERE \(key) <> ''
                ON CONFLICT DO NOTHING
                RETURNING 1 AS inserted
            ), go AS (
                SELECT 1 AS ok FROM lock WHERE \(key) = '' OR EXISTS (SELECT 1 FROM key)
            ), mv AS (
                INSERT INTO movements (ecosystem_id, id, kind, event_time, event_offset_minutes, record_time, declarer_id,
                    from_party_id, from_site_id, to_party_id, to_site_id, counterparty_id, status, confirmed, confirmed_at,
                    delivery_note, cmr, order_reference, pallet_note_reference, evidence_sha256, evidence_url, note,
                    reverses_id, corrects_id, source)
                SELECT \(ecosystem), x.id, x.kind::movement_kind,
                       'epoch'::timestamptz + x.event_us * interval '1 microsecond', nullif(x.offset_minutes, 9999),
                       'epoch'::timestamptz + x.record_us * interval '1 microsecond', x.declarer,
                       nullif(x.from_party, \(noneID)), nullif(x.from_site, \(noneID)),
                       nullif(x.to_party, \(noneID)), nullif(x.to_site, \(noneID)), nullif(x.counterparty, \(noneID)),
                       x.status::movement_status, x.confirmed,
                       CASE WHEN x.confirmed THEN 'epoch'::timestamptz + x.record_us * interval '1 microsecond' END,
                       nullif(x.delivery_note, ''), nullif(x.cmr, ''), nullif(x.order_reference, ''),
                       nullif(x.pallet_note_reference, ''), nullif(x.evidence_sha256, ''), nullif(x.evidence_url, ''),
                       nullif(x.note, ''), nullif(x.reverses, \(noneID)), nullif(x.corrects, \(noneID)), x.source
                FROM unnest(\(m.id)::uuid[], \(m.kind)::text[], \(m.eventMicros)::int8[], \(m.offsetMinutes)::int4[],
                            \(m.recordMicros)::int8[], \(m.declarer)::uuid[], \(m.fromParty)::uuid[], \(m.fromSite)::uuid[],
                            \(m.toParty)::uuid[], \(m.toSite)::uuid[], \(m.counterparty)::uuid[], \(m.status)::text[],
                            \(m.confirmed)::bool[], \(m.deliveryNote)::text[], \(m.cmr)::text[], \(m.orderReference)::text[],
                            \(m.palletNoteReference)::text[], \(m.evidenceSHA256)::text[], \(m.evidenceURL)::text[],
                            \(m.note)::text[], \(m.reverses)::uuid[], \(m.corrects)::uuid[], \(m.source)::text[])
                     AS x(id, kind, event_us, offset_minutes, record_us, declarer, from_party, from_site, to_party, to_site,
                          counterparty, status, confirmed, delivery_note, cmr, order_reference, pallet_note_reference,
                          evidence_sha256, evidence_url, note, reverses, corrects, source)
                WHERE EXISTS (SELECT 1 FROM go)
                RETURNING 1
            ), ln AS (
                INSERT INTO movement_lines (ecosystem_id, movement_id, line_no, pallet_type_id, quality, quantity,
                                            exchanged_quantity, exchanged_quality, target_quality)
                SELECT \(ecosystem), x.movement, x.line_no, x.pallet_type, x.quality::quality_grade, x.quantity,
                       x.exchanged, x.exchanged_quality::quality_grade, nullif(x.target_quality, '')::quality_grade
                FROM unnest(\(l.movement)::uuid[], \(l.lineNo)::int2[], \(l.palletType)::uuid[], \(l.quality)::text[],
                            \(l.quantity)::int8[], \(l.exchanged)::int8[], \(l.exchangedQuality)::text[],
                            \(l.targetQuality)::text[])
                     AS x(movement, line_no, pallet_type, quality, quantity, exchanged, exchanged_quality, target_quality)
                WHERE EXISTS (SELECT 1 FROM go)
                RETURNING 1
            ), p AS (
                SELECT x.movement, x.class::account_class AS class, x.party, x.counterparty, x.site, x.pallet_type,
                       x.quality::quality_grade AS quality, x.amount, x.confirmed,
                       'epoch'::timestamptz + x.event_us * interval '1 microsecond' AS event_time
                FROM unnest(\(p.movement)::uuid[], \(p.accountClass)::text[], \(p.party)::uuid[], \(p.counterparty)::uuid[],
                            \(p.site)::uuid[], \(p.palletType)::uuid[], \(p.quality)::text[], \(p.amount)::int8[],
                            \(p.confirmed)::bool[], \(p.eventMicros)::int8[])
                     AS x(movement, class, party, counterparty, site, pallet_type, quality, amount, confirmed, event_us)
                WHERE EXISTS (SELECT 1 FROM go)
            ), acc AS (
                INSERT INTO accounts AS a (ecosystem_id, class, party_id, counterparty_id, site_id, pallet_type_id, quality,
                                           balance, confirmed_balance)
                SELECT \(ecosystem), class, party, counterparty, site, pallet_type, quality,
                       sum(amount), coalesce(sum(amount) FILTER (WHERE confirmed), 0)
                FROM p
                GROUP BY class, party, counterparty, site, pallet_type, quality
                ORDER BY class, party, counterparty, site, pallet_type, quality
                ON CONFLICT ON CONSTRAINT accounts_natural_key DO UPDATE
                    SET balance = a.balance + excluded.balance,
                        confirmed_balance = a.confirmed_balance + excluded.confirmed_balance
                RETURNING id, class, party_id, counterparty_id, site_id, pallet_type_id, quality
            ), en AS (
                INSERT INTO ledger_entries (ecosystem_id, movement_id, account_id, amount, event_time)
                SELECT \(ecosystem), p.movement, acc.id, p.amount, p.event_time
                FROM p JOIN acc ON acc.class = p.class AND acc.party_id = p.party AND acc.counterparty_id = p.counterparty
                               AND acc.site_id = p.site AND acc.pallet_type_id = p.pallet_type AND acc.quality = p.quality
                RETURNING 1
            ), nt AS (
                INSERT INTO pallet_notes (ecosystem_id, id, serial, issuer_id, holder_id, pallet_type_id, quality, quantity,
                                          issue_date, due_date, movement_id)
                SELECT \(ecosystem), x.id, nullif(x.serial, ''), x.issuer, x.holder, x.pallet_type, x.quality::quality_grade,
                       x.quantity, x.issue_date::date, x.due_date::date, x.movement
                FROM unnest(\(n.id)::uuid[], \(n.serial)::text[], \(n.issuer)::uuid[], \(n.holder)::uuid[],
                            \(n.palletType)::uuid[], \(n.quality)::text[], \(n.quantity)::int8[], \(n.issueDate)::text[],
                            \(n.dueDate)::text[], \(n.movement)::uuid[])
                     AS x(id, serial, issuer, holder, pallet_type, quality, quantity, issue_date, due_date, movement)
                WHERE EXISTS (SELECT 1 FROM go)
                RETURNING id, quantity
            ), ne AS (
                INSERT INTO pallet_note_events (ecosystem_id, note_id, kind, quantity, by_membership_id)
                SELECT \(ecosystem), nt.id, 'issued', nt.quantity, \(member) FROM nt
            ), au AS (
                -- Who declared what and when: one audit row per movement posted.
                INSERT INTO audit_log (ecosystem_id, membership_id, action, subject_id, detail)
                SELECT \(ecosystem), \(member), 'movement.declare', x.id,
                       jsonb_build_object('source', x.source, 'kind', x.kind)
                FROM unnest(\(m.id)::uuid[], \(m.source)::text[], \(m.kind)::text[]) AS x(id, source, kind)
                WHERE EXISTS (SELECT 1 FROM go)
            )
            SELECT (SELECT count(*) FROM key)::int8, (SELECT count(*) FROM mv)::int8, (SELECT count(*) FROM en)::int8,
                   k.request_hash, k.response_status::int4, k.response_body
            FROM (SELECT 1) AS one
            LEFT JOIN idempotency_keys k
              ON k.ecosystem_id = \(ecosystem) AND k.membership_id = \(member) AND k.key = \(key)
            """
    }

    func storedResponse(ecosystem: UUID, member: UUID, key: IdempotentWrite) async throws -> PostOutcome {
        for try await (hash, status, body) in try await client.query("""
            SELECT request_hash, response_status::int4, response_body FROM idempotency_keys
            WHERE ecosystem_id = \(ecosystem) AND membership_id = \(member) AND key = \(key.key)
            """, logger: logger).decode((ByteBuffer, Int32, ByteBuffer).self) {
            return Array(buffer: hash) == key.requestHash ? .replay(status: Int(status), body: Array(buffer: body)) : .keyReused
        }
        throw StoreError.conflict("the Idempotency-Key is being used by a request still in flight; retry in a moment")
    }

    /// A stored response for this key, if any (checked before work that cannot be redone
    /// in one statement, such as an inventory count).
    public func idempotentReplay(ecosystem: UUID, member: UUID, key: IdempotentWrite) async throws -> PostOutcome? {
        for try await (hash, status, body) in try await client.query("""
            SELECT request_hash, response_status::int4, response_body FROM idempotency_keys
            WHERE ecosystem_id = \(ecosystem) AND membership_id = \(member) AND key = \(key.key)
            """, logger: logger).decode((ByteBuffer, Int32, ByteBuffer).self) {
            return Array(buffer: hash) == key.requestHash ? .replay(status: Int(status), body: Array(buffer: body)) : .keyReused
        }
        return nil
    }

    /// Current balances of holding accounts, locked until the transaction ends (inventory).
    public func lockHoldings(ecosystem: UUID, _ keys: [AccountKey], on connection: PostgresConnection) async throws -> [AccountKey: Int64] {
        var result: [AccountKey: Int64] = [:]
        for key in keys.sorted() {
            let rows = try await connection.query("""
                SELECT balance FROM accounts
                WHERE ecosystem_id = \(ecosystem) AND class = \(key.accountClass.rawValue)::account_class
                  AND party_id = \(key.party) AND counterparty_id = \(key.counterparty) AND site_id = \(key.site)
                  AND pallet_type_id = \(key.palletType) AND quality = \(key.quality.rawValue)::quality_grade
                FOR UPDATE
                """, logger: logger)
            for try await balance in rows.decode(Int64.self) { result[key] = balance }
        }
        return result
    }
}

/// `Store.post`'s statement as a named prepared statement: prepared on a connection the
/// first time it runs there, then only bound and executed.
struct PostStatement: PostgresPreparedStatement {
    static let name = "palletflow_post_v1"
    /// The text of `Store.postQuery`, which is the same whatever the values.
    static let sql = Store.postQuery(ecosystem: noneID, member: noneID, MovementColumns(), LineColumns(), PostingColumns(),
                                     NoteColumns(), idempotency: nil).sql
    typealias Row = (Int64, Int64, Int64, ByteBuffer?, Int32?, ByteBuffer?)

    let query: PostgresQuery

    func makeBindings() throws -> PostgresBindings { query.binds }
    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

// Column arrays for unnest(): postgres-nio binds arrays of non-optional values, so "none"
// travels as the zero UUID, the empty string or 9999 and becomes NULL in SQL.
struct MovementColumns {
    var id: [UUID] = [], kind: [String] = [], eventMicros: [Int64] = [], offsetMinutes: [Int32] = []
    var recordMicros: [Int64] = [], declarer: [UUID] = [], fromParty: [UUID] = [], fromSite: [UUID] = []
    var toParty: [UUID] = [], toSite: [UUID] = [], counterparty: [UUID] = [], status: [String] = []
    var confirmed: [Bool] = [], deliveryNote: [String] = [], cmr: [String] = [], orderReference: [String] = []
    var palletNoteReference: [String] = [], evidenceSHA256: [String] = [], evidenceURL: [String] = []
    var note: [String] = [], reverses: [UUID] = [], corrects: [UUID] = [], source: [String] = []

    mutating func append(_ movement: MovementToPost) {
        let declaration = movement.declaration
        id.append(movement.id)
        kind.append(declaration.kind.rawValue)
        eventMicros.append(declaration.eventTime.microsecondsSinceEpoch)
        offsetMinutes.append(Int32(declaration.eventTime.offsetMinutes ?? 9999))
        recordMicros.append(movement.recordTime.microsecondsSinceEpoch)
        declarer.append(movement.declarer)
        fromParty.append(declaration.from?.party ?? noneID)
        fromSite.append(declaration.from?.site ?? noneID)
        toParty.append(declaration.to?.party ?? noneID)
        toSite.append(declaration.to?.site ?? noneID)
        counterparty.append(movement.counterparty ?? noneID)
        status.append(movement.status)
        confirmed.append(movement.confirmed)
        deliveryNote.append(declaration.references.deliveryNote ?? "")
        cmr.append(declaration.references.cmr ?? "")
        orderReference.append(declaration.references.order ?? "")
        palletNoteReference.append(declaration.references.palletNote ?? "")
        evidenceSHA256.append(declaration.evidence?.sha256.lowercased() ?? "")
        evidenceURL.append(declaration.evidence?.url ?? "")
        note.append(declaration.note ?? "")
        reverses.append(movement.reverses ?? noneID)
        corrects.append(movement.corrects ?? noneID)
        source.append(movement.source)
    }
}

struct LineColumns {
    var movement: [UUID] = [], lineNo: [Int16] = [], palletType: [UUID] = [], quality: [String] = []
    var quantity: [Int64] = [], exchanged: [Int64] = [], exchangedQuality: [String] = [], targetQuality: [String] = []

    mutating func append(_ movementID: UUID, _ index: Int, _ line: MovementLine) {
        movement.append(movementID)
        lineNo.append(Int16(index))
        palletType.append(line.palletType)
        quality.append(line.quality.rawValue)
        quantity.append(line.quantity)
        exchanged.append(line.exchangedQuantity)
        exchangedQuality.append(line.exchangedQuality.rawValue)
        targetQuality.append(line.targetQuality?.rawValue ?? "")
    }
}

struct PostingColumns {
    var movement: [UUID] = [], accountClass: [String] = [], party: [UUID] = [], counterparty: [UUID] = []
    var site: [UUID] = [], palletType: [UUID] = [], quality: [String] = [], amount: [Int64] = []
    var confirmed: [Bool] = [], eventMicros: [Int64] = []

    mutating func append(_ movementToPost: MovementToPost, _ posting: Posting) {
        movement.append(movementToPost.id)
        accountClass.append(posting.account.accountClass.rawValue)
        party.append(posting.account.party)
        counterparty.append(posting.account.counterparty)
        site.append(posting.account.site)
        palletType.append(posting.account.palletType)
        quality.append(posting.account.quality.rawValue)
        amount.append(posting.amount)
        confirmed.append(movementToPost.confirmed)
        eventMicros.append(movementToPost.declaration.eventTime.microsecondsSinceEpoch)
    }
}

struct NoteColumns {
    var id: [UUID] = [], serial: [String] = [], issuer: [UUID] = [], holder: [UUID] = [], palletType: [UUID] = []
    var quality: [String] = [], quantity: [Int64] = [], issueDate: [String] = [], dueDate: [String] = []
    var movement: [UUID] = []

    mutating func append(_ movementID: UUID, _ note: IssuedNote) {
        id.append(note.id)
        serial.append(note.terms.serial ?? "")
        issuer.append(note.terms.issuer)
        holder.append(note.terms.holder)
        palletType.append(note.terms.palletType)
        quality.append(note.terms.quality.rawValue)
        quantity.append(note.terms.quantity)
        issueDate.append(note.issueDate)
        dueDate.append(note.dueDate)
        movement.append(movementID)
    }
}
