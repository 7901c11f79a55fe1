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
        n.issue_date::text, n.due_date::text, n.movement_id, n.cancelled
        """

    func notes(_ query: PostgresQuery, on connection: PostgresConnection? = nil) async throws -> [PalletNoteRecord] {
        var result: [PalletNoteRecord] = []
        // Overdue after its due date, by the store's clock (ISO dates compare as text).
        let today = Instant.date(ofDay: self.today)
        for try await row in try await run(query, on: connection) {
            let (id, serial, issuer, holder, type, quality, quantity, redeemed, issue, due, movement, cancelled) =
                try row.decode((UUID, String?, UUID, UUID, UUID, String, Int64, Int64, String, String, UUID?, Bool).self)
            let pastDue = due < today
            result.append(PalletNoteRecord(
                id: id, serial: serial, issuer: issuer, holder: holder, palletType: type,
                quality: QualityGrade(rawValue: quality) ?? .a, quantity: quantity, redeemed: redeemed, issueDate: issue,
                dueDate: due, movement: movement, cancelled: cancelled, overdue: pastDue))
        }
        return result
    }

    /// Notes where `party` is issuer or holder (all notes when nil), oldest due first.
    public func palletNotes(ecosystem: UUID, party: UUID?) async throws -> [PalletNoteRecord] {
        let none = noneID
        return try await notes("""
            SELECT \(unescaped: Self.noteColumns) FROM pallet_notes n
            WHERE n.ecosystem_id = \(ecosystem)
              AND (\(party ?? none) = \(none) OR n.issuer_id = \(party ?? none) OR n.holder_id = \(party ?? none))
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

    /// Records pallets returned against a note; never beyond what it still owes.
    public func redeemNote(ecosystem: UUID, id: UUID, quantity: Int64, movement: UUID?, by member: UUID) async throws -> PalletNoteRecord {
        try await transaction { connection in
            guard let note = try await notes("""
                SELECT \(unescaped: Self.noteColumns) FROM pallet_notes n WHERE n.ecosystem_id = \(ecosystem) AND n.id = \(id) FOR UPDATE
                """, on: connection).first else { throw StoreError.notFound("pallet note") }
            guard !note.cancelled else { throw StoreError.conflict("the pallet note is cancelled") }
            guard quantity <= note.outstanding else {
                throw StoreError.invalid([FieldError("quantity", "is \(quantity) but the note still owes only \(note.outstanding)")])
            }
            try await connection.query("""
                UPDATE pallet_notes SET redeemed_quantity = redeemed_quantity + \(quantity)
                WHERE ecosystem_id = \(ecosystem) AND id = \(id)
                """, logger: logger)
            try await connection.query("""
                INSERT INTO pallet_note_events (ecosystem_id, note_id, kind, quantity, movement_id, by_membership_id, at)
                VALUES (\(ecosystem), \(id), 'redeemed', \(quantity), \(movement), \(member), \(nowDate))
                """, logger: logger)
            try await audit(connection, ecosystem: ecosystem, by: member, action: "pallet_note.redeem", subject: id)
            return try await notes("""
                SELECT \(unescaped: Self.noteColumns) FROM pallet_notes n WHERE n.ecosystem_id = \(ecosystem) AND n.id = \(id)
                """, on: connection)[0]
        }
    }

    /// Hands the note to another holder (a carrier passing it to the shipper, say).
    public func transferNote(ecosystem: UUID, id: UUID, to holder: UUID, by member: UUID) async throws -> PalletNoteRecord {
        try await transaction { connection in
            guard let note = try await notes("""
                SELECT \(unescaped: Self.noteColumns) FROM pallet_notes n WHERE n.ecosystem_id = \(ecosystem) AND n.id = \(id) FOR UPDATE
                """, on: connection).first else { throw StoreError.notFound("pallet note") }
            guard note.state != .redeemed, note.state != .cancelled else {
                throw StoreError.conflict("the pallet note is \(note.state.rawValue); only an outstanding note is transferred")
            }
            guard holder != note.issuer else {
                throw StoreError.invalid([FieldError("holderId", "the issuer cannot hold its own note")])
            }
            try await connection.query("""
                UPDATE pallet_notes SET holder_id = \(holder) WHERE ecosystem_id = \(ecosystem) AND id = \(id)
                """, logger: logger)
            try await connection.query("""
                INSERT INTO pallet_note_events (ecosystem_id, note_id, kind, from_holder_id, to_holder_id, by_membership_id, at)
                VALUES (\(ecosystem), \(id), 'transferred', \(note.holder), \(holder), \(member), \(nowDate))
                """, logger: logger)
            try await audit(connection, ecosystem: ecosystem, by: member, action: "pallet_note.transfer", subject: id)
            return try await notes("""
                SELECT \(unescaped: Self.noteColumns) FROM pallet_notes n WHERE n.ecosystem_id = \(ecosystem) AND n.id = \(id)
                """, on: connection)[0]
        }
    }
}
