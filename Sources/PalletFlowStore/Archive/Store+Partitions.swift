import Crypto
import Foundation
import Logging
import PalletFlowCore
import PostgresNIO

/// One month of the ledger's time partitions (sql/0009_time_partitions.sql).
public struct LedgerPartition: Sendable, Codable, Hashable {
    /// `2026-11`: the UTC month of recording the partition holds.
    public var month: String
    public var movements: Int64
    /// Movements still waiting for confirmation or contested: the month cannot be archived.
    public var open: Int64
}

/// What `palletflow archive` took out of the database for one month.
public struct ArchivedMonth: Sendable, Codable {
    public var month: String
    public var movements: Int64
    public var lines: Int64
    public var entries: Int64
    public var discrepancies: Int64
    public var epcisEvents: Int64
    /// File name -> SHA-256 of its content.
    public var files: [String: String]
    public var verification: LedgerVerification
}

public enum ArchiveError: Error, CustomStringConvertible, Sendable {
    case tooRecent(cutoff: String, earliest: String)
    case openMovements(month: String, count: Int64)
    case ledgerDoesNotVerify(month: String, detail: String)
    case cannotWrite(String)

    public var description: String {
        switch self {
        case .tooRecent(let cutoff, let earliest):
            "cutoff \(cutoff) keeps too little history: the latest allowed cutoff is \(earliest) (declarations may be dated 400 days back, and --keep-months asks for more)"
        case .openMovements(let month, let count):
            "\(month) still has \(count) movements declared or contested: confirm or resolve them (or reverse them) before archiving this month; nothing was archived from it"
        case .ledgerDoesNotVerify(let month, let detail):
            "archiving \(month) would leave a ledger that does not verify (\(detail)); nothing was archived from it"
        case .cannotWrite(let detail): "cannot write the archive: \(detail)"
        }
    }
}

extension Store {
    /// Creates the monthly ledger partitions from this month to `monthsAhead` months ahead
    /// that do not exist yet; returns how many months were created. Waits at most a few
    /// seconds for the table locks (a long report must not stall every declaration behind
    /// a queued DDL lock): it is called again later when it gives up.
    @discardableResult
    public func ensureLedgerPartitions(monthsAhead: Int = 3) async throws -> Int {
        try await ensureLedgerPartitions(from: now, through: now.utcMonthStart(adding: monthsAhead))
    }

    @discardableResult
    public func ensureLedgerPartitions(from: Instant, through: Instant) async throws -> Int {
        try await transaction { connection in
            try await ensureLedgerPartitions(from: from, through: through, on: connection)
        }
    }

    func ensureLedgerPartitions(from: Instant, through: Instant, on connection: PostgresConnection) async throws -> Int {
        try await connection.query("SET LOCAL lock_timeout = '5s'", logger: logger)
        for try await created in try await connection.query("""
            SELECT ensure_ledger_partitions('epoch'::timestamptz + \(from.microsecondsSinceEpoch) * interval '1 microsecond',
                                            'epoch'::timestamptz + \(through.microsecondsSinceEpoch) * interval '1 microsecond')
            """, logger: logger).decode(Int32.self) {
            return Int(created)
        }
        return 0
    }

    /// The monthly partitions, oldest first, with their size and open movements. Read from the
    /// partitions themselves: the owner only (`archive --list`); the application role has no
    /// privilege on a partition.
    public func ledgerPartitions() async throws -> [LedgerPartition] {
        var months: [String] = []
        for try await name in try await client.query("""
            SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'movements'::regclass AND c.relname ~ '^movements_[0-9]{4}_[0-9]{2}$'
            ORDER BY c.relname
            """, logger: logger).decode(String.self) {
            months.append(String(name.dropFirst("movements_".count)).replacingOccurrences(of: "_", with: "-"))
        }
        var result: [LedgerPartition] = []
        for month in months {
            let table = "movements_" + month.replacingOccurrences(of: "-", with: "_")
            // The name comes from the catalog, never from input.
            for try await (count, open) in try await client.query(PostgresQuery(unsafeSQL: """
                SELECT count(*)::int8, count(*) FILTER (WHERE status IN ('declared', 'contested'))::int8 FROM "\(table)"
                """), logger: logger).decode((Int64, Int64).self) {
                result.append(LedgerPartition(month: month, movements: count, open: open))
            }
        }
        return result
    }

    /// The first instant from which the ecosystem's entries are all still in the database:
    /// the month after the last month `palletflow archive` took entries of it out, or nil
    /// when none was. Read from the archived sums themselves, so a backup and restore of
    /// the ecosystem carries it along.
    public func archiveHorizon(ecosystem: UUID) async throws -> Instant? {
        for try await micros in try await client.query("""
            SELECT (extract(epoch FROM (max(month) + interval '1 month')::timestamp) * 1000000)::int8
            FROM ledger_archived_totals WHERE ecosystem_id = \(ecosystem)
            HAVING count(*) > 0
            """, logger: logger).decode(Int64.self) {
            return Instant(microsecondsSinceEpoch: micros, offsetMinutes: nil)
        }
        return nil
    }

    /// Refuses an instant before the ecosystem's archive horizon: the entries it needs left
    /// the database (balances now and from the horizon on are exact).
    func refuseArchived(ecosystem: UUID, before instant: Instant) async throws {
        if let horizon = try await archiveHorizon(ecosystem: ecosystem),
           instant.microsecondsSinceEpoch < horizon.microsecondsSinceEpoch {
            let day = String(horizon.rfc3339(keepingOffset: false).prefix(10))
            throw StoreError.conflict("the ledger before \(day) is archived: ask from that date on, or read the archive files")
        }
    }

    /// Archives every whole month recorded before `cutoff` (a UTC month start), oldest
    /// first, one transaction per month. For each month it writes the movements, their
    /// lines and entries, and the discrepancies and EPCIS events that refer to them as JSON
    /// lines under `directory/YYYY-MM/` with a manifest of SHA-256 sums; then, in the same
    /// transaction, it runs the ledger check (nothing leaves a ledger that does not verify),
    /// records each account's archived sum, removes the rows, drops the month's partitions,
    /// and commits only if every account the month touched still equals its archived plus
    /// live entries.
    /// A month with movements still declared or contested stops the run before it.
    public func archive(before cutoff: Instant, keepMonths: Int, to directory: URL,
                        progress: @Sendable (String) -> Void) async throws -> [ArchivedMonth] {
        // Declarations may be dated up to 400 days back: a cutoff younger than that would let
        // new entries fall before the horizon, where opening balances can no longer see them.
        let latestByMonths = now.utcMonthStart(adding: -keepMonths)
        let latestByAge = Instant(microsecondsSinceEpoch: now.microsecondsSinceEpoch - DeclarationLimits.pastMaxMicroseconds)
            .utcMonthStart()
        let latest = latestByMonths.microsecondsSinceEpoch < latestByAge.microsecondsSinceEpoch ? latestByMonths : latestByAge
        guard cutoff.microsecondsSinceEpoch <= latest.microsecondsSinceEpoch else {
            throw ArchiveError.tooRecent(cutoff: String(cutoff.rfc3339(keepingOffset: false).prefix(10)),
                                         earliest: String(latest.rfc3339(keepingOffset: false).prefix(10)))
        }
        let cutoffMonth = String(cutoff.rfc3339(keepingOffset: false).prefix(7))
        let months = try await ledgerPartitions().filter { $0.month < cutoffMonth }
        var archived: [ArchivedMonth] = []
        for (index, partition) in months.enumerated() {
            progress("[\(index + 1)/\(months.count)] \(partition.month): \(partition.movements) movements")
            guard partition.open == 0 else { throw ArchiveError.openMovements(month: partition.month, count: partition.open) }
            archived.append(try await archiveMonth(partition.month, to: directory))
            progress("[\(index + 1)/\(months.count)] \(partition.month): archived, partitions dropped, ledger verified")
        }
        return archived
    }

    func archiveMonth(_ month: String, to directory: URL) async throws -> ArchivedMonth {
        let suffix = month.replacingOccurrences(of: "-", with: "_")
        let movements = "movements_\(suffix)", lines = "movement_lines_\(suffix)", entries = "ledger_entries_\(suffix)"
        let folder = directory.appendingPathComponent(month, isDirectory: true)
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw ArchiveError.cannotWrite("\(folder.path): \(error.localizedDescription)")
        }
        return try await transaction { connection in
            // One snapshot for the export, the ledger check and the archived sums.
            try await connection.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", logger: logger)
            // Nothing may confirm, contest or reverse these movements while they are archived;
            // declarations (into the current month's partitions) go on.
            try await connection.query(PostgresQuery(unsafeSQL: """
                LOCK TABLE "\(movements)", "\(lines)", "\(entries)" IN SHARE MODE
                """), logger: logger)
            for try await open in try await connection.query(PostgresQuery(unsafeSQL: """
                SELECT count(*)::int8 FROM "\(movements)" WHERE status IN ('declared', 'contested')
                """), logger: logger).decode(Int64.self) where open > 0 {
                throw ArchiveError.openMovements(month: month, count: open)
            }
            var files: [String: String] = [:]
            var counts: [String: Int64] = [:]
            // Table names come from the catalog and the month from our own partition list.
            let exports: [(String, String)] = [
                ("movements", "SELECT row_to_json(t)::text FROM \"\(movements)\" t ORDER BY t.seq"),
                ("movement_lines", "SELECT row_to_json(t)::text FROM \"\(lines)\" t ORDER BY t.movement_id, t.line_no"),
                ("ledger_entries", "SELECT row_to_json(t)::text FROM \"\(entries)\" t ORDER BY t.seq"),
                ("discrepancies", """
                    SELECT row_to_json(t)::text FROM discrepancies t
                    WHERE (t.ecosystem_id, t.movement_id) IN (SELECT ecosystem_id, id FROM "\(movements)") ORDER BY t.id
                    """),
                ("epcis_events", """
                    SELECT row_to_json(t)::text FROM epcis_events t
                    WHERE (t.ecosystem_id, t.movement_id) IN (SELECT ecosystem_id, id FROM "\(movements)") ORDER BY t.seq
                    """),
            ]
            for (name, sql) in exports {
                let url = folder.appendingPathComponent("\(name).jsonl")
                guard FileManager.default.createFile(atPath: url.path, contents: nil),
                      let handle = try? FileHandle(forWritingTo: url)
                else { throw ArchiveError.cannotWrite(url.path) }
                var hash = SHA256()
                var count: Int64 = 0
                var buffer = Data()
                for try await row in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).decode(String.self) {
                    buffer.append(contentsOf: row.utf8)
                    buffer.append(0x0a)
                    count += 1
                    if buffer.count > 1 << 20 {
                        hash.update(data: buffer)
                        try handle.write(contentsOf: buffer)
                        buffer.removeAll(keepingCapacity: true)
                    }
                }
                hash.update(data: buffer)
                try handle.write(contentsOf: buffer)
                try handle.synchronize()
                try handle.close()
                files["\(name).jsonl"] = hash.finalize().map { String(format: "%02x", $0) }.joined()
                counts[name] = count
            }
            let manifest = ArchiveManifest(format: "palletflow-ledger-archive", month: month, rows: counts, sha256: files)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            do {
                try encoder.encode(manifest).write(to: folder.appendingPathComponent("manifest.json"), options: .atomic)
            } catch {
                throw ArchiveError.cannotWrite("\(folder.path)/manifest.json: \(error.localizedDescription)")
            }

            // The whole ledger must verify before a month leaves it. This runs before the
            // strong locks below, so declarations wait only for the short removal.
            let verification = try await verifyLedger(ecosystem: nil, on: connection)
            guard verification.holds else {
                throw ArchiveError.ledgerDoesNotVerify(month: month, detail: "\(verification)")
            }
            var touched: Int64 = 0
            for try await count in try await connection.query(PostgresQuery(unsafeSQL: """
                SELECT count(DISTINCT (ecosystem_id, account_id))::int8 FROM "\(entries)"
                """), logger: logger).decode(Int64.self) { touched = count }
            try await connection.query(PostgresQuery(unsafeSQL: """
                INSERT INTO ledger_archived_totals (ecosystem_id, account_id, month, amount, confirmed_amount, entries)
                SELECT e.ecosystem_id, e.account_id, $1::date, sum(e.amount), coalesce(sum(e.amount) FILTER (WHERE m.confirmed), 0),
                       count(*)
                FROM "\(entries)" e JOIN "\(movements)" m ON m.ecosystem_id = e.ecosystem_id AND m.id = e.movement_id
                GROUP BY e.ecosystem_id, e.account_id
                """, binds: { var binds = PostgresBindings(); binds.append(month + "-01"); return binds }()), logger: logger)
            // Lines and entries go first: they refer to the movements.
            for table in [lines, entries] {
                let parent = table.hasPrefix("movement_lines") ? "movement_lines" : "ledger_entries"
                try await connection.query(PostgresQuery(unsafeSQL: """
                    ALTER TABLE \(parent) DETACH PARTITION "\(table)"
                    """), logger: logger)
                try await connection.query(PostgresQuery(unsafeSQL: "DROP TABLE \"\(table)\""), logger: logger)
            }
            try await connection.query(PostgresQuery(unsafeSQL: """
                DELETE FROM discrepancies WHERE (ecosystem_id, movement_id) IN (SELECT ecosystem_id, id FROM "\(movements)")
                """), logger: logger)
            // Captured events are append-only for every role; the archive is the one place
            // that removes them, with their export already written, inside this transaction.
            try await connection.query("ALTER TABLE epcis_events DISABLE TRIGGER epcis_events_append_only", logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL: """
                DELETE FROM epcis_events WHERE (ecosystem_id, movement_id) IN (SELECT ecosystem_id, id FROM "\(movements)")
                """), logger: logger)
            // ALWAYS, as sql/0020 made it: it fires whatever session_replication_role says.
            try await connection.query("ALTER TABLE epcis_events ENABLE ALWAYS TRIGGER epcis_events_append_only", logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL: "ALTER TABLE movements DETACH PARTITION \"\(movements)\""),
                                       logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL: "DROP TABLE \"\(movements)\""), logger: logger)

            // After the removal, every account the month touched still has a balance equal to
            // its archived sums plus its live entries (the others did not change).
            var checked: Int64 = 0
            for try await (account, balance, sum) in try await connection.query("""
                SELECT a.id, a.balance, coalesce((SELECT sum(t.amount) FROM ledger_archived_totals t
                                                 WHERE t.ecosystem_id = a.ecosystem_id AND t.account_id = a.id), 0)::int8
                                      + coalesce((SELECT sum(e.amount) FROM ledger_entries e
                                                 WHERE e.ecosystem_id = a.ecosystem_id AND e.account_id = a.id), 0)::int8
                FROM accounts a
                JOIN ledger_archived_totals m ON m.ecosystem_id = a.ecosystem_id AND m.account_id = a.id
                                             AND m.month = \(month + "-01")::date
                """, logger: logger).decode((Int64, Int64, Int64).self) {
                checked += 1
                if balance != sum {
                    throw ArchiveError.ledgerDoesNotVerify(
                        month: month, detail: "account \(account): balance \(balance), archived and live entries \(sum)")
                }
            }
            guard checked == touched else {
                throw ArchiveError.ledgerDoesNotVerify(
                    month: month, detail: "\(touched) accounts had entries in the month but \(checked) have archived sums")
            }
            let filesJSON = String(decoding: try JSONSerialization.data(withJSONObject: files, options: [.sortedKeys]), as: UTF8.self)
            try await connection.query("""
                INSERT INTO ledger_archives (month, movements, lines, entries, files, location, archived_at)
                VALUES (\(month + "-01")::date, \(counts["movements"] ?? 0), \(counts["movement_lines"] ?? 0),
                        \(counts["ledger_entries"] ?? 0), \(filesJSON)::jsonb, \(folder.path), \(nowDate))
                """, logger: logger)
            return ArchivedMonth(month: month, movements: counts["movements"] ?? 0, lines: counts["movement_lines"] ?? 0,
                                 entries: counts["ledger_entries"] ?? 0, discrepancies: counts["discrepancies"] ?? 0,
                                 epcisEvents: counts["epcis_events"] ?? 0, files: files, verification: verification)
        }
    }
}

/// `manifest.json` of an archived month: row counts and the SHA-256 of each file.
public struct ArchiveManifest: Codable, Sendable {
    public var format: String
    public var month: String
    public var rows: [String: Int64]
    public var sha256: [String: String]
}

extension Instant {
    /// The first instant of this instant's UTC month, moved by `months`.
    public func utcMonthStart(adding months: Int = 0) -> Instant {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        var parts = calendar.dateComponents([.year, .month], from: date)
        parts.month = (parts.month ?? 1) + months
        parts.day = 1
        return Instant(calendar.date(from: parts) ?? date)
    }
}
