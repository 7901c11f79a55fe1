import Foundation
import Logging
import NIOCore
import PalletFlowCore
import PostgresNIO

/// A counterparty's own count of one line of a contested movement.
public struct CounterLine: Sendable, Hashable, Codable {
    public var lineNo: Int
    public var quantity: Int64
    public var exchangedQuantity: Int64
    public init(lineNo: Int, quantity: Int64, exchangedQuantity: Int64) {
        self.lineNo = lineNo
        self.quantity = quantity
        self.exchangedQuantity = exchangedQuantity
    }
}

public struct DiscrepancyRecord: Sendable, Hashable {
    public var id: UUID
    public var movement: UUID
    public var contestedBy: UUID
    public var counterLines: [CounterLine]
    public var evidence: Evidence?
    public var note: String?
    public var openedAt: Date
    public var resolvedAt: Date?
    public var resolution: String?
    public var resolutionNote: String?
    public var correction: UUID?
}

extension Store {
    /// Locks a movement's accounts in the global order (the upsert's ORDER BY), then adds
    /// its entries to their confirmed balances.
    func confirmEntries(ecosystem: UUID, movement: UUID, on connection: PostgresConnection) async throws {
        try await connection.query("""
            SELECT a.id FROM accounts a
            WHERE a.ecosystem_id = \(ecosystem)
              AND a.id IN (SELECT account_id FROM ledger_entries WHERE ecosystem_id = \(ecosystem) AND movement_id = \(movement))
            ORDER BY a.class, a.party_id, a.counterparty_id, a.site_id, a.pallet_type_id, a.quality
            FOR UPDATE
            """, logger: logger)
        try await connection.query("""
            UPDATE accounts a SET confirmed_balance = a.confirmed_balance + d.total
            FROM (SELECT account_id, sum(amount) AS total FROM ledger_entries
                  WHERE ecosystem_id = \(ecosystem) AND movement_id = \(movement) GROUP BY account_id) d
            WHERE a.ecosystem_id = \(ecosystem) AND a.id = d.account_id
            """, logger: logger)
    }

    func lockMovement(ecosystem: UUID, id: UUID, on connection: PostgresConnection) async throws -> PostedMovement {
        let rows = try await connection.query("""
            SELECT id FROM movements WHERE ecosystem_id = \(ecosystem) AND id = \(id) FOR UPDATE
            """, logger: logger)
        var found = false
        for try await _ in rows { found = true }
        guard found, let movement = try await movements(ecosystem: ecosystem, """
            SELECT \(unescaped: Self.movementColumns) FROM movements m WHERE m.ecosystem_id = \(ecosystem) AND m.id = \(id)
            """, on: connection).first else { throw StoreError.notFound("movement") }
        return movement
    }

    /// The counterparty agrees with a declaration: its entries become confirmed.
    public func confirm(ecosystem: UUID, movement id: UUID, by member: UUID, asShipper: Bool) async throws -> PostedMovement {
        try await transaction { connection in
            let movement = try await lockMovement(ecosystem: ecosystem, id: id, on: connection)
            guard movement.counterparty == member || (asShipper && movement.counterparty != nil) else {
                throw StoreError.forbidden("only the counterparty asked to confirm this movement may confirm it")
            }
            guard movement.status == "declared" else {
                throw StoreError.conflict("the movement is \(movement.status); only a declared movement can be confirmed")
            }
            try await connection.query("""
                UPDATE movements SET status = 'confirmed', confirmed = true, confirmed_at = \(nowDate), confirmed_by = \(member)
                WHERE ecosystem_id = \(ecosystem) AND id = \(id)
                """, logger: logger)
            try await confirmEntries(ecosystem: ecosystem, movement: id, on: connection)
            try await audit(connection, ecosystem: ecosystem, by: member, action: "movement.confirm", subject: id)
            return try await lockMovement(ecosystem: ecosystem, id: id, on: connection)
        }
    }

    /// The counterparty gives its own counts: a discrepancy opens, balances stay pending.
    public func contest(ecosystem: UUID, movement id: UUID, by member: UUID, counterLines: [CounterLine],
                        evidence: Evidence?, note: String?) async throws -> DiscrepancyRecord {
        let discrepancy = newID()
        try await transaction { connection in
            let movement = try await lockMovement(ecosystem: ecosystem, id: id, on: connection)
            guard movement.counterparty == member else {
                throw StoreError.forbidden("only the counterparty asked to confirm this movement may contest it")
            }
            guard movement.status == "declared" else {
                throw StoreError.conflict("the movement is \(movement.status); only a declared movement can be contested")
            }
            var errors: [FieldError] = []
            for (index, line) in counterLines.enumerated() where !movement.lines.indices.contains(line.lineNo) {
                errors.append(FieldError("lines[\(index)].lineNo", "the movement has no line \(line.lineNo)"))
            }
            if !errors.isEmpty { throw StoreError.invalid(errors) }
            let json = String(decoding: try JSONEncoder().encode(counterLines), as: UTF8.self)
            try await connection.query("""
                INSERT INTO discrepancies (ecosystem_id, id, movement_id, contested_by, counter_lines, evidence_sha256,
                                           evidence_url, note, opened_at)
                VALUES (\(ecosystem), \(discrepancy), \(id), \(member), \(json)::jsonb, \(evidence?.sha256.lowercased()),
                        \(evidence?.url), \(note), \(nowDate))
                """, logger: logger)
            try await connection.query("""
                UPDATE movements SET status = 'contested' WHERE ecosystem_id = \(ecosystem) AND id = \(id)
                """, logger: logger)
            try await audit(connection, ecosystem: ecosystem, by: member, action: "movement.contest", subject: id)
        }
        guard let record = try await discrepancies(ecosystem: ecosystem, movement: id).first else {
            throw StoreError.notFound("discrepancy")
        }
        return record
    }

    /// How many open discrepancies contest a movement `party` declared or takes part in
    /// (what `discrepancies(ecosystem:openOnly:party:)` lists, counted in SQL through the
    /// parties the discrepancy keeps, sql/0011).
    public func openDiscrepancyCount(ecosystem: UUID, party: UUID) async throws -> Int {
        var count = 0
        for try await (n) in try await client.query("""
            SELECT count(*)::int8 FROM discrepancies d
            WHERE d.ecosystem_id = \(ecosystem) AND d.resolved_at IS NULL
              AND (d.from_party_id = \(party) OR d.to_party_id = \(party) OR d.declarer_id = \(party))
            """, logger: logger).decode(Int64.self) {
            count = Int(n)
        }
        return count
    }

    public func discrepancies(ecosystem: UUID, movement: UUID? = nil, openOnly: Bool = false, party: UUID? = nil) async throws
        -> [DiscrepancyRecord]
    {
        let none = noneID
        var result: [DiscrepancyRecord] = []
        for try await row in try await client.query("""
            SELECT d.id, d.movement_id, d.contested_by, d.counter_lines::text, d.evidence_sha256, d.evidence_url, d.note,
                   d.opened_at, d.resolved_at, d.resolution, d.resolution_note, d.correction_movement_id
            FROM discrepancies d JOIN movements m ON m.ecosystem_id = d.ecosystem_id AND m.id = d.movement_id
            WHERE d.ecosystem_id = \(ecosystem)
              AND (\(movement ?? none) = \(none) OR d.movement_id = \(movement ?? none))
              AND (NOT \(openOnly) OR d.resolved_at IS NULL)
              AND (\(party ?? none) = \(none) OR m.from_party_id = \(party ?? none) OR m.to_party_id = \(party ?? none)
                   OR m.declarer_id = \(party ?? none))
            ORDER BY d.opened_at
            """, logger: logger)
        {
            let (id, movement, contestedBy, lines, sha, url, note, opened, resolved, resolution, resolutionNote, correction) =
                try row.decode((UUID, UUID, UUID, String, String?, String?, String?, Date, Date?, String?, String?, UUID?).self)
            let counter = (try? JSONDecoder().decode([CounterLine].self, from: Data(lines.utf8))) ?? []
            result.append(DiscrepancyRecord(
                id: id, movement: movement, contestedBy: contestedBy, counterLines: counter,
                evidence: sha.map { Evidence(sha256: $0, url: url) }, note: note, openedAt: opened, resolvedAt: resolved,
                resolution: resolution, resolutionNote: resolutionNote, correction: correction))
        }
        return result
    }

    /// Who may reverse a movement, judged on the movement once it is locked.
    public enum ReversalRight: Sendable {
        /// In any state (the shipper; a resolution).
        case always
        /// Only while nobody has confirmed it (its declarer).
        case whileUnconfirmed
    }

    /// Cancels a movement with a reversal (its entries with the opposite sign), and posts
    /// the corrected movement if one is given. Both link to the original.
    ///
    /// The reversal of a movement nobody had confirmed takes its pending entries back and is
    /// final: nobody confirms or contests it, and the original's open discrepancy closes with
    /// it. The reversal of a confirmed movement takes back confirmed entries.
    @discardableResult
    public func reverse(ecosystem: UUID, movement id: UUID, by member: UUID, right: ReversalRight = .always,
                        correction: MovementDeclaration?, correctionConfirmed: Bool, reason: String?,
                        recordTime: Instant? = nil, on connection: PostgresConnection) async throws
        -> (reversal: UUID, correction: UUID?)
    {
        let recordTime = recordTime ?? now
        let original = try await lockMovement(ecosystem: ecosystem, id: id, on: connection)
        guard original.status != "reversed" else { throw StoreError.conflict("this movement has already been reversed") }
        guard original.reverses == nil else { throw StoreError.conflict("a reversal cannot itself be reversed") }
        if right == .whileUnconfirmed && original.confirmed {
            throw StoreError.forbidden("the movement was confirmed; the declarer reverses its own movement only until then, the shipper after")
        }
        var postings: [Posting] = []
        for try await (accountClass, party, counterparty, site, type, quality, amount) in try await connection.query("""
            SELECT a.class::text, a.party_id, a.counterparty_id, a.site_id, a.pallet_type_id, a.quality::text, e.amount
            FROM ledger_entries e JOIN accounts a ON a.ecosystem_id = e.ecosystem_id AND a.id = e.account_id
            WHERE e.ecosystem_id = \(ecosystem) AND e.movement_id = \(id)
            """, logger: logger).decode((String, UUID, UUID, UUID, UUID, String, Int64).self)
        {
            postings.append(Posting(AccountKey(AccountClass(rawValue: accountClass)!, party: party, counterparty: counterparty,
                                               site: site, palletType: type, quality: QualityGrade(rawValue: quality)!),
                                    amount))
        }
        var reversalDeclaration = original.declaration
        reversalDeclaration.note = "Reversal of \(id.uuidString.lowercased())" + (reason.map { ": \($0)" } ?? "")
        var reversal = MovementToPost(
            id: newID(at: recordTime.date), declaration: reversalDeclaration, declarer: member,
            counterparty: original.confirmed ? original.counterparty : nil,
            recordTime: recordTime, reverses: id, source: "reversal",
            postings: LedgerRules.reversal(of: postings).sorted { $0.account < $1.account }, confirmed: original.confirmed)
        reversal.isFinal = !original.confirmed
        var batch = [reversal]
        var correctionID: UUID?
        if let correction {
            let corrected = MovementToPost(
                id: newID(at: recordTime.date), declaration: correction, declarer: member,
                counterparty: LedgerRules.counterparty(of: correction, declarer: original.declarer),
                recordTime: recordTime, corrects: id, source: "correction",
                postings: LedgerRules.postings(for: correction), confirmed: correctionConfirmed)
            correctionID = corrected.id
            batch.append(corrected)
        }
        _ = try await post(ecosystem: ecosystem, by: member, batch, idempotency: nil, on: connection)
        try await connection.query("""
            UPDATE movements SET status = 'reversed' WHERE ecosystem_id = \(ecosystem) AND id = \(id)
            """, logger: logger)
        // A contested movement reversed: its discrepancy has nothing left to decide. (A
        // resolution that reverses records its own outcome over this one.)
        try await connection.query("""
            UPDATE discrepancies SET resolved_at = \(nowDate), resolved_by = \(member), resolution = 'reversed',
                   resolution_note = \(reason ?? "the movement was reversed")
            WHERE ecosystem_id = \(ecosystem) AND movement_id = \(id) AND resolved_at IS NULL
            """, logger: logger)
        try await audit(connection, ecosystem: ecosystem, by: member, action: "movement.reverse", subject: id)
        return (reversal.id, correctionID)
    }

    public enum Resolution: String, Sendable {
        /// The declared version stands: the movement is confirmed.
        case declared
        /// The counterparty's version stands: reversal plus corrected movement.
        case contested
        /// An agreed figure: reversal plus a movement with the agreed lines.
        case agreed
    }

    /// Closes a discrepancy; any correction posts linked entries.
    public func resolve(ecosystem: UUID, movement id: UUID, by member: UUID, resolution: Resolution,
                        agreedLines: [CounterLine]?, note: String?) async throws -> DiscrepancyRecord {
        _ = try await transaction { connection in
            let movement = try await lockMovement(ecosystem: ecosystem, id: id, on: connection)
            guard movement.status == "contested",
                  let discrepancy = try await discrepancies(ecosystem: ecosystem, movement: id).first,
                  discrepancy.resolvedAt == nil
            else { throw StoreError.conflict("the movement has no open discrepancy") }
            var correctionID: UUID?
            switch resolution {
            case .declared:
                try await connection.query("""
                    UPDATE movements SET status = 'confirmed', confirmed = true, confirmed_at = \(nowDate), confirmed_by = \(member)
                    WHERE ecosystem_id = \(ecosystem) AND id = \(id)
                    """, logger: logger)
                try await confirmEntries(ecosystem: ecosystem, movement: id, on: connection)
            case .contested, .agreed:
                let counts = resolution == .contested ? discrepancy.counterLines : (agreedLines ?? [])
                var corrected = movement.declaration
                for count in counts where corrected.lines.indices.contains(count.lineNo) {
                    corrected.lines[count.lineNo].quantity = count.quantity
                    corrected.lines[count.lineNo].exchangedQuantity = count.exchangedQuantity
                }
                corrected.lines.removeAll { $0.quantity == 0 && $0.exchangedQuantity == 0 }
                corrected.note = "Correction of \(id.uuidString.lowercased()) (\(resolution.rawValue))"
                let result = try await reverse(ecosystem: ecosystem, movement: id, by: member,
                                               correction: corrected.lines.isEmpty ? nil : corrected,
                                               correctionConfirmed: true, reason: "discrepancy resolved", on: connection)
                correctionID = result.correction
            }
            try await connection.query("""
                UPDATE discrepancies SET resolved_at = \(nowDate), resolved_by = \(member), resolution = \(resolution.rawValue),
                       resolution_note = \(note), correction_movement_id = \(correctionID)
                WHERE ecosystem_id = \(ecosystem) AND id = \(discrepancy.id)
                """, logger: logger)
            try await audit(connection, ecosystem: ecosystem, by: member, action: "discrepancy.resolve", subject: discrepancy.id)
            return discrepancy.id
        }
        guard let record = try await discrepancies(ecosystem: ecosystem, movement: id).first else {
            throw StoreError.notFound("discrepancy")
        }
        return record
    }
}
