import Foundation
import Logging
import NIOCore
import PalletFlowCore
import PostgresNIO

/// What a backup holds and where it came from: its first line.
public struct BackupHeader: Codable, Sendable {
    public var format: String
    public var version: Int
    public var ecosystem: UUID
    public var ecosystemName: String
    public var schemaVersion: Int
    public var createdAt: String
}

public struct RestoreReport: Sendable {
    public var ecosystem: UUID
    public var rows: [String: Int]
    public var verification: LedgerVerification
}

public enum BackupError: Error, CustomStringConvertible {
    case notFound(UUID)
    case unreadable(line: Int, reason: String)
    case schemaMismatch(backup: Int, database: Int)
    case alreadyExists(UUID)
    case ledgerDoesNotVerify(String)
    /// A row of another ecosystem than the header names: a backup restores one ecosystem only.
    case foreignRow(line: Int, table: String, ecosystem: String, expected: UUID)

    public var description: String {
        switch self {
        case .notFound(let id): "no ecosystem \(id) in this database"
        case .unreadable(let line, let reason): "line \(line) of the backup cannot be read: \(reason)"
        case .schemaMismatch(let backup, let database):
            "the backup was taken at schema version \(backup) and this database is at \(database): restore into a database at the same version (palletflow migrate), or take the backup again"
        case .alreadyExists(let id): "ecosystem \(id) already exists in this database; restore into another database, or remove it first"
        case .ledgerDoesNotVerify(let detail): "the restored ledger does not verify (\(detail)); nothing was restored"
        case .foreignRow(let line, let table, let ecosystem, let expected):
            "line \(line) is a \(table) row of ecosystem \(ecosystem), not of \(expected) that the backup's header names; a backup restores one ecosystem and nothing else: nothing was restored"
        }
    }
}

/// Logical backup of one ecosystem: JSON lines, a header then `{"table": ..., "row": ...}`
/// for every row the ecosystem owns, tables in creation order (which is foreign key order),
/// rows in primary key order. Restoring inserts them as they were, in one transaction that
/// also runs the ledger check: a restore that would not verify is rolled back.
extension Store {
    static let backupFormat = "palletflow-ecosystem-backup"
    /// Not part of a backup: sign-in sessions (secrets of the source server's users) and the
    /// job queue (work in flight there; the worker recomputes what is derived).
    static let tablesNotBackedUp: Set<String> = ["web_sessions", "jobs"]

    /// Tables holding ecosystem rows, in creation order, with their primary key columns.
    func ecosystemTables(on connection: PostgresConnection) async throws -> [(name: String, key: [String])] {
        var tables: [(String, [String])] = []
        for try await (name, key) in try await connection.query("""
            SELECT c.relname::text, array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum))
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
            JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey::int2[])
            WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND EXISTS (
                SELECT 1 FROM pg_attribute e WHERE e.attrelid = c.oid AND e.attname = 'ecosystem_id' AND NOT e.attisdropped)
            GROUP BY c.oid, c.relname
            ORDER BY c.oid
            """, logger: logger).decode((String, [String]).self) {
            if !Self.tablesNotBackedUp.contains(name) { tables.append((name, key)) }
        }
        // Referenced tables first (a table rebuilt by a later migration, like the partitioned
        // movements, comes after the tables that refer to it in creation order).
        var references: [String: Set<String>] = [:]
        for try await (table, referenced) in try await connection.query("""
            SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint
            WHERE contype = 'f' AND conparentid = 0 AND conrelid <> confrelid
            """, logger: logger).decode((String, String).self) {
            references[table, default: []].insert(referenced)
        }
        // The references the ledger checks per statement instead of by a foreign key (sql/0017).
        for (table, referenced) in [("movements", "memberships"), ("movement_lines", "pallet_types"), ("ledger_entries", "accounts")] {
            references[table, default: []].insert(referenced)
        }
        var ordered: [(name: String, key: [String])] = []
        var placed: Set<String> = ["ecosystems", "organisations"]
        var pending = tables
        while !pending.isEmpty {
            let names = Set(pending.map(\.0))
            guard let next = pending.firstIndex(where: { table in
                (references[table.0] ?? []).allSatisfy { placed.contains($0) || !names.contains($0) }
            }) else { ordered += pending; break }
            let table = pending.remove(at: next)
            ordered.append(table)
            placed.insert(table.0)
        }
        return ordered
    }

    func schemaVersion(on connection: PostgresConnection) async throws -> Int {
        for try await version in try await connection.query(
            "SELECT coalesce(max(version), 0)::int4 FROM schema_migrations", logger: logger).decode(Int32.self) {
            return Int(version)
        }
        return 0
    }

    /// Writes the backup line by line to `write`, inside one repeatable-read snapshot so the
    /// ledger in the file is the ledger at one instant.
    public func backup(ecosystem: UUID, write: @Sendable (String) throws -> Void) async throws -> [String: Int] {
        try await transaction { connection in
            try await connection.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
            guard let record = try await self.ecosystem(ecosystem) else { throw BackupError.notFound(ecosystem) }
            let header = BackupHeader(format: Self.backupFormat, version: 1, ecosystem: ecosystem, ecosystemName: record.name,
                                      schemaVersion: try await schemaVersion(on: connection),
                                      createdAt: now.rfc3339(keepingOffset: false))
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            try write(String(decoding: try encoder.encode(header), as: UTF8.self))
            var counts: [String: Int] = [:]
            func dump(_ table: String, _ query: PostgresQuery) async throws {
                for try await row in try await connection.query(query, logger: logger).decode(String.self) {
                    try write("{\"table\":\"\(table)\",\"row\":\(row)}")
                    counts[table, default: 0] += 1
                }
            }
            try await dump("ecosystems", "SELECT row_to_json(t)::text FROM ecosystems t WHERE t.id = \(ecosystem)")
            try await dump("organisations", """
                SELECT row_to_json(t)::text FROM organisations t
                WHERE t.id IN (SELECT organisation_id FROM memberships WHERE ecosystem_id = \(ecosystem)) ORDER BY t.id
                """)
            for (table, key) in try await ecosystemTables(on: connection) {
                // Names come from the catalog, never from input.
                let order = key.map { "t.\"\($0)\"" }.joined(separator: ", ")
                try await dump(table, PostgresQuery(unsafeSQL: """
                    SELECT row_to_json(t)::text FROM "\(table)" t WHERE t.ecosystem_id = $1 ORDER BY \(order)
                    """, binds: { var binds = PostgresBindings(); binds.append(ecosystem); return binds }()))
            }
            return counts
        }
    }

    /// Restores a backup into this database, which must be at the same schema version and
    /// must not hold the ecosystem already. Organisations already present (shared with
    /// another ecosystem) are kept as they are.
    public func restore(lines: [String]) async throws -> RestoreReport {
        guard let first = lines.first, let header = try? JSONDecoder().decode(BackupHeader.self, from: Data(first.utf8)),
              header.format == Self.backupFormat, header.version == 1
        else { throw BackupError.unreadable(line: 1, reason: "not a PalletFlow ecosystem backup (version 1)") }
        var rows: [String: [String]] = [:]
        var order: [String] = []
        var organisations = OrganisationsSeen()
        // The recording months the movements' ids name: their partitions are made first.
        var recorded: (first: Int64, last: Int64)?
        for (index, line) in lines.enumerated().dropFirst() where !line.isEmpty {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let table = object["table"] as? String, let row = object["row"],
                  let data = try? JSONSerialization.data(withJSONObject: row)
            else { throw BackupError.unreadable(line: index + 1, reason: "expected {\"table\": ..., \"row\": {...}}") }
            try Self.refuseForeign(row, table: table, line: index + 1, header: header, organisations: &organisations)
            if table == "movements", let id = ((row as? [String: Any])?["id"] as? String).flatMap(UUID.init(uuidString:)),
               let micros = recordingInstant(of: id)?.microsecondsSinceEpoch {
                recorded = (min(recorded?.first ?? micros, micros), max(recorded?.last ?? micros, micros))
            }
            if rows[table] == nil { order.append(table) }
            rows[table, default: []].append(String(decoding: data, as: UTF8.self))
        }
        if let stray = organisations.listed.subtracting(organisations.members).first {
            throw BackupError.foreignRow(line: stray.line, table: "organisations", ecosystem: "none named here",
                                         expected: header.ecosystem)
        }
        return try await transaction { connection in
            let version = try await schemaVersion(on: connection)
            guard version == header.schemaVersion else { throw BackupError.schemaMismatch(backup: header.schemaVersion, database: version) }
            if try await self.ecosystem(header.ecosystem) != nil { throw BackupError.alreadyExists(header.ecosystem) }
            let known = Set(try await ecosystemTables(on: connection).map(\.name) + ["ecosystems", "organisations"])
            var counts: [String: Int] = [:]
            // A published charter version refuses new clauses: restore versions as drafts,
            // their clauses, then publish them again as they were.
            var published: [String] = []
            if let versions = rows["charter_versions"] {
                rows["charter_versions"] = versions.map { row in
                    guard var object = (try? JSONSerialization.jsonObject(with: Data(row.utf8))) as? [String: Any],
                          object["status"] as? String == "published", let id = object["id"] as? String else { return row }
                    published.append(id)
                    object["status"] = "draft"
                    let data = (try? JSONSerialization.data(withJSONObject: object)) ?? Data(row.utf8)
                    return String(decoding: data, as: UTF8.self)
                }
            }
            for table in order {
                guard known.contains(table) else {
                    throw BackupError.unreadable(line: 0, reason: "unknown table \(table) in the backup")
                }
                let conflict = table == "organisations" ? " ON CONFLICT DO NOTHING" : ""
                // Generated columns are computed again, not inserted.
                var columns: [String] = []
                for try await name in try await connection.query("""
                    SELECT a.attname::text FROM pg_attribute a
                    WHERE a.attrelid = to_regclass(quote_ident(\(table))) AND a.attnum > 0 AND NOT a.attisdropped
                      AND a.attgenerated = ''
                    ORDER BY a.attnum
                    """, logger: logger).decode(String.self) { columns.append("\"\(name)\"") }
                let list = columns.joined(separator: ", ")
                if table == "movements", let recorded {
                    // Without their months' partitions they would all land in the default one.
                    _ = try await ensureLedgerPartitions(from: Instant(microsecondsSinceEpoch: recorded.first),
                                                         through: Instant(microsecondsSinceEpoch: recorded.last), on: connection)
                }
                for chunk in stride(from: 0, to: rows[table]!.count, by: 500) {
                    let batch = "[" + rows[table]![chunk..<min(chunk + 500, rows[table]!.count)].joined(separator: ",") + "]"
                    // OVERRIDING SYSTEM VALUE keeps identity columns (seq) as they were.
                    try await connection.query(PostgresQuery(unsafeSQL: """
                        INSERT INTO "\(table)" (\(list)) OVERRIDING SYSTEM VALUE
                        SELECT \(list) FROM json_populate_recordset(NULL::"\(table)", $1::json)\(conflict)
                        """, binds: { var binds = PostgresBindings(); binds.append(batch); return binds }()), logger: logger)
                }
                counts[table] = rows[table]!.count
                // Identity and owned sequences (seq, id) must stay ahead of every restored value.
                var identities: [(String, String)] = []
                for try await (column, sequence) in try await connection.query("""
                    SELECT a.attname::text, pg_get_serial_sequence(quote_ident(c.relname), a.attname)
                    FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
                    WHERE c.oid = to_regclass(quote_ident(\(table))) AND a.attnum > 0 AND NOT a.attisdropped
                      AND pg_get_serial_sequence(quote_ident(c.relname), a.attname) IS NOT NULL
                    """, logger: logger).decode((String, String).self) { identities.append((column, sequence)) }
                for (column, sequence) in identities {
                    try await connection.query(PostgresQuery(unsafeSQL: """
                        SELECT setval($1::regclass, greatest(coalesce((SELECT max("\(column)") FROM "\(table)"), 1),
                                                             coalesce(pg_sequence_last_value($1::regclass), 1)))
                        """, binds: { var binds = PostgresBindings(); binds.append(sequence); return binds }()), logger: logger)
                }
            }
            if !published.isEmpty {
                try await connection.query("""
                    UPDATE charter_versions SET status = 'published'
                    WHERE ecosystem_id = \(header.ecosystem) AND id::text = ANY(\(published)::text[])
                    """, logger: logger)
            }
            let verification = try await verifyLedger(ecosystem: header.ecosystem, on: connection)
            guard verification.holds else { throw BackupError.ledgerDoesNotVerify("\(verification)") }
            try await audit(connection, ecosystem: header.ecosystem, by: nil, action: "ecosystem.restore", subject: header.ecosystem)
            return RestoreReport(ecosystem: header.ecosystem, rows: counts, verification: verification)
        }
    }

    /// The organisations a backup lists, and those its memberships name: a listed one that no
    /// membership of the ecosystem names is another ecosystem's.
    struct OrganisationsSeen {
        struct Listed: Hashable {
            var id: String
            var line: Int
            static func == (a: Listed, b: Listed) -> Bool { a.id == b.id }
            func hash(into hasher: inout Hasher) { hasher.combine(id) }
        }
        var listed: Set<Listed> = []
        var members: Set<Listed> = []
    }

    /// Refuses a row that belongs to another ecosystem than the header's.
    static func refuseForeign(_ row: Any, table: String, line: Int, header: BackupHeader,
                              organisations: inout OrganisationsSeen) throws {
        guard let object = row as? [String: Any] else { return }
        let expected = header.ecosystem.uuidString.lowercased()
        let owner: Any? = table == "ecosystems" ? object["id"] : object["ecosystem_id"]
        if table == "organisations" {
            if let id = object["id"] as? String { organisations.listed.insert(.init(id: id.lowercased(), line: line)) }
            return
        }
        if table == "memberships", let organisation = object["organisation_id"] as? String {
            organisations.members.insert(.init(id: organisation.lowercased(), line: line))
        }
        guard let owner else { return }
        let text = (owner as? String)?.lowercased() ?? "\(owner)"
        guard text == expected else {
            throw BackupError.foreignRow(line: line, table: table, ecosystem: text, expected: header.ecosystem)
        }
    }
}
