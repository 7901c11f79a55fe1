import Foundation
import Logging
import PalletFlowCore
import PostgresNIO

public struct PalletNoteRecord: Sendable, Hashable {
    public var id: UUID
    public var serial: String?
    public var issuer: UUID
    public var holder: UUID
    public var palletType: UUID
    public var quality: QualityGrade
    public var quantity: Int64
    public var redeemed: Int64
    public var issueDate: String
    public var dueDate: String
    public var movement: UUID?
    public var cancelled: Bool
    public var overdue: Bool
    /// The member the holder proposed to hand the note to, until it accepts or declines.
    public var pendingHolder: UUID?

    public var outstanding: Int64 { quantity - redeemed }
    public var state: PalletNoteState {
        if cancelled { return .cancelled }
        if redeemed >= quantity { return .redeemed }
        if overdue { return .overdue }
        return redeemed > 0 ? .partiallyRedeemed : .open
    }
}

extension Store {
    static let noteColumns = """
        n.id, n.serial, n.issuer_id, n.holder_id, n.pallet_type_id, n.quality::text, n.quantity, n.redeemed_quantity,
        n.issue_date::text, n.due_date::text, n.movement_id, n.cancelled, n.pending_holder_id
        """

    func notes(_ query: PostgresQuery, on connection: PostgresConnection? = nil) async throws -> [PalletNoteRecord] {
        var result: [PalletNoteRecord] = []
        // Overdue after its due date, by the store's clock (ISO dates compare as text).
        let today = Instant.date(ofDay: self.today)
        for try await row in try await run(query, on: connection) {
            let (id, serial, issuer, holder, type, quality, quantity, redeemed, issue, due, movement, cancelled, pending) =
                try row.decode((UUID, String?, UUID, UUID, UUID, String, Int64, Int64, String, String, UUID?, Bool, UUID?).self)
            let pastDue = due < today
            result.append(PalletNoteRecord(
                id: id, serial: serial, issuer: issuer, holder: holder, palletType: type,
                quality: QualityGrade(rawValue: quality) ?? .a, quantity: quantity, redeemed: redeemed, issueDate: issue,
                dueDate: due, movement: movement, cancelled: cancelled, overdue: pastDue, pendingHolder: pending))
        }
        return result
    }

    /// Notes where `party` is issuer, holder or proposed holder (all notes when nil), oldest due first.
    public func palletNotes(ecosystem: UUID, party: UUID?) async throws -> [PalletNoteRecord] {
        let none = noneID
        return try await notes("""
            SELECT \(unescaped: Self.noteColumns) FROM pallet_notes n
            WHERE n.ecosystem_id = \(ecosystem)
              AND (\(party ?? none) = \(none) OR n.issuer_id = \(party ?? none) OR n.holder_id = \(party ?? none)
                   OR n.pending_holder_id = \(party ?? none))
            ORDER BY n.due_date, n.id
            """)
    }

    /// The overdue notes `issuer` issued (pallets still owed past the due date), oldest due
    /// first: what the mediation report shows, without reading the party's other notes.
    public func overdueNotes(ecosystem: UUID, issuer: UUID) async throws -> [PalletNoteRecord] {
        try await notes("""
            SELECT \(unescaped: Self.noteColumns) FROM pallet_notes n
            WHERE n.ecosystem_id = \(ecosystem) AND n.issuer_id = \(issuer)
              AND NOT n.cancelled AND n.redeemed_quantity < n.quantity AND n.due_date < \(Instant.date(ofDay: today))::date
            ORDER BY n.due_date, n.id
            """)
    }

    public func palletNote(ecosystem: UUID, id: UUID) async throws -> PalletNoteRecord? {
        try await notes("SELECT \(unescaped: Self.noteColumns) FROM pallet_notes n WHERE n.ecosystem_id = \(ecosystem) AND n.id = \(id)").first
    }

    /// A note issued on its own (not from a delivery): the issuer acknowledges a debt.
    public func issueNote(ecosystem: UUID, terms: PalletNoteTerms, issueDate: String, dueDate: String, by member: UUID) async throws
        -> PalletNoteRecord
    {
        let id = newID()
        do {
            try await transaction { connection in
                try await connection.query("""
                    INSERT INTO pallet_notes (ecosystem_id, id, serial, issuer_id, holder_id, pallet_type_id, quality, quantity,
                                              issue_date, due_date, created_at)
                    VALUES (\(ecosystem), \(id), \(terms.serial), \(terms.issuer), \(terms.holder), \(terms.palletType),
                            \(terms.quality.rawValue)::quality_grade, \(terms.quantity), \(issueDate)::date, \(dueDate)::date,
                            \(nowDate))
                    """, logger: logger)
                try await connection.query("""
                    INSERT INTO pallet_note_events (ecosystem_id, note_id, kind, quantity, by_membership_id, at)
                    VALUES (\(ecosystem), \(id), 'issued', \(terms.quantity), \(member), \(nowDate))
                    """, logger: logger)
                try await audit(connection, ecosystem: ecosystem, by: member, action: "pallet_note.issue", subject: id)
            }
        } catch let error as PSQLError where error.sqlState == SQLState.uniqueViolation {
            throw StoreError.invalid([FieldError("serial", "a pallet note with this serial already exists")])
        } catch let error as PSQLError where error.sqlState == SQLState.checkViolation {
            throw StoreError.invalid([FieldError("dueDate", "must not be before the issue date")])
        }
        guard let note = try await palletNote(ecosystem: ecosystem, id: id) else { throw StoreError.notFound("pallet note") }
        return note
    }

    /// The note, locked until the transaction ends: a permission that depends on who holds
    /// it is checked on this, not on a read made before the lock.
    func lockNote(ecosystem: UUID, id: UUID, on connection: PostgresConnection) async throws -> PalletNoteRecord {
        guard let note = try await notes("""
            SELECT \(unescaped: Self.noteColumns) FROM pallet_notes n WHERE n.ecosystem_id = \(ecosystem) AND n.id = \(id) FOR UPDATE
            """, on: connection).first else { throw StoreError.notFound("pallet note") }
        return note
    }

    func readNote(ecosystem: UUID, id: UUID, on connection: PostgresConnection) async throws -> PalletNoteRecord {
        try await notes("""
            SELECT \(unescaped: Self.noteColumns) FROM pallet_notes n WHERE n.ecosystem_id = \(ecosystem) AND n.id = \(id)
            """, on: connection)[0]
    }

    func noteEvent(_ connection: PostgresConnection, ecosystem: UUID, note: UUID, kind: String, quantity: Int64? = nil,
                   movement: UUID? = nil, from: UUID? = nil, to: UUID? = nil, by member: UUID) async throws {
        try await connection.query("""
            INSERT INTO pallet_note_events (ecosystem_id, note_id, kind, quantity, movement_id, from_holder_id, to_holder_id,
                                            by_membership_id, at)
            VALUES (\(ecosystem), \(note), \(kind), \(quantity), \(movement), \(from), \(to), \(member), \(nowDate))
            """, logger: logger)
        try await audit(connection, ecosystem: ecosystem, by: member, action: "pallet_note.\(kind)", subject: note)
    }

    /// Records pallets returned against a note, never beyond what it still owes. Only its
    /// holder does: a redemption lowers what the issuer owes the holder.
    public func redeemNote(ecosystem: UUID, id: UUID, quantity: Int64, movement: UUID?, by member: UUID) async throws -> PalletNoteRecord {
        try await transaction { connection in
            let note = try await lockNote(ecosystem: ecosystem, id: id, on: connection)
            guard note.holder == member else {
                throw StoreError.forbidden("only the note's holder (who is owed) records what was returned against it")
            }
            guard !note.cancelled else { throw StoreError.conflict("the pallet note is cancelled") }
            guard quantity <= note.outstanding else {
                throw StoreError.invalid([FieldError("quantity", "is \(quantity) but the note still owes only \(note.outstanding)")])
            }
            try await connection.query("""
                UPDATE pallet_notes SET redeemed_quantity = redeemed_quantity + \(quantity)
                WHERE ecosystem_id = \(ecosystem) AND id = \(id)
                """, logger: logger)
            try await noteEvent(connection, ecosystem: ecosystem, note: id, kind: "redeemed", quantity: quantity,
                                movement: movement, by: member)
            return try await readNote(ecosystem: ecosystem, id: id, on: connection)
        }
    }

    /// The holder proposes to hand the note to `holder`; it moves when that member accepts.
    public func proposeNoteTransfer(ecosystem: UUID, id: UUID, to holder: UUID, by member: UUID) async throws -> PalletNoteRecord {
        try await transaction { connection in
            let note = try await lockNote(ecosystem: ecosystem, id: id, on: connection)
            guard note.holder == member else { throw StoreError.forbidden("only the note's holder hands it on") }
            guard note.state != .redeemed, note.state != .cancelled else {
                throw StoreError.conflict("the pallet note is \(note.state.rawValue); only an outstanding note is handed on")
            }
            guard holder != note.issuer else {
                throw StoreError.invalid([FieldError("holderId", "the issuer cannot hold its own note")])
            }
            guard holder != note.holder else { throw StoreError.invalid([FieldError("holderId", "already holds the note")]) }
            try await connection.query("""
                UPDATE pallet_notes SET pending_holder_id = \(holder) WHERE ecosystem_id = \(ecosystem) AND id = \(id)
                """, logger: logger)
            try await noteEvent(connection, ecosystem: ecosystem, note: id, kind: "transfer_proposed", from: note.holder,
                                to: holder, by: member)
            return try await readNote(ecosystem: ecosystem, id: id, on: connection)
        }
    }

    /// The proposed holder takes the note: from now on the issuer owes it.
    public func acceptNoteTransfer(ecosystem: UUID, id: UUID, by member: UUID) async throws -> PalletNoteRecord {
        try await transaction { connection in
            let note = try await lockNote(ecosystem: ecosystem, id: id, on: connection)
            guard let pending = note.pendingHolder else { throw StoreError.conflict("no transfer of this note is pending") }
            guard pending == member else { throw StoreError.forbidden("only the member the note is handed to accepts it") }
            guard note.state != .redeemed, note.state != .cancelled else {
                throw StoreError.conflict("the pallet note is \(note.state.rawValue); only an outstanding note is handed on")
            }
            try await connection.query("""
                UPDATE pallet_notes SET holder_id = \(member), pending_holder_id = NULL
                WHERE ecosystem_id = \(ecosystem) AND id = \(id)
                """, logger: logger)
            try await noteEvent(connection, ecosystem: ecosystem, note: id, kind: "transferred", from: note.holder, to: member,
                                by: member)
            return try await readNote(ecosystem: ecosystem, id: id, on: connection)
        }
    }

    /// The proposed holder declines the note, or its holder withdraws the proposal.
    public func declineNoteTransfer(ecosystem: UUID, id: UUID, by member: UUID) async throws -> PalletNoteRecord {
        try await transaction { connection in
            let note = try await lockNote(ecosystem: ecosystem, id: id, on: connection)
            guard let pending = note.pendingHolder else { throw StoreError.conflict("no transfer of this note is pending") }
            guard pending == member || note.holder == member else {
                throw StoreError.forbidden("only the member the note is handed to, or its holder, declines the transfer")
            }
            try await connection.query("""
                UPDATE pallet_notes SET pending_holder_id = NULL WHERE ecosystem_id = \(ecosystem) AND id = \(id)
                """, logger: logger)
            try await noteEvent(connection, ecosystem: ecosystem, note: id, kind: "transfer_declined", from: note.holder,
                                to: pending, by: member)
            return try await readNote(ecosystem: ecosystem, id: id, on: connection)
        }
    }
}
