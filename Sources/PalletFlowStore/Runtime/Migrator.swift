import Crypto
import Foundation
import Logging
import PostgresNIO

/// One SQL migration file, `NNNN_name.sql`.
public struct Migration: Sendable, Hashable {
    public var version: Int
    public var name: String
    public var sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// SHA-256 of the file's text: an applied file must never change.
    public var checksum: String {
        SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// The migrations built into this binary from `sql/`.
    public static let all: [Migration] = EmbeddedMigrations.files.compactMap { file in
        let stem = file.name.replacingOccurrences(of: ".sql", with: "")
        guard let underscore = stem.firstIndex(of: "_"), let version = Int(stem[..<underscore]) else { return nil }
        return Migration(version: version, name: String(stem[stem.index(after: underscore)...]), sql: file.contents)
    }.sorted { $0.version < $1.version }
}

public struct MigrationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    /// The connection's role is not the tables' owner: it may not migrate (by design).
    public var needsOwner = false

    static func notOwner(role: String, missing: [Int]) -> MigrationError {
        MigrationError(description: """
            the schema lacks migrations \(missing.map(String.init).joined(separator: ", ")), and role \(role) may not apply \
            them: it is not the tables' owner (the application's role, by design). Run `palletflow migrate` with the \
            owner's DATABASE_URL (docs/operations.md, "Two database roles").
            """, needsOwner: true)
    }
}

/// Applies migrations in order, each in its own transaction, recorded with its checksum.
/// Concurrent starters serialise on an advisory lock, so only one applies each file.
public struct Migrator: Sendable {
    /// Arbitrary but fixed: the advisory lock key PalletFlow's migrators share.
    static let advisoryLockKey: Int64 = 0x7061_6c6c_6574_666c
    public var migrations: [Migration]

    public init(migrations: [Migration] = Migration.all) {
        self.migrations = migrations
    }

    /// On a pool the caller runs (the CLI, tests), a connection is waited for longer than a
    /// request's 2 s: a migration is not in a hurry, and a fresh pool's first connection can
    /// take seconds on a busy machine (a test run on two cores failed at 2 s).
    static let callerPoolLeaseTimeout: Duration = .seconds(30)

    /// Applies what is missing; returns the versions applied now.
    @discardableResult
    public func migrate(_ client: PostgresClient, logger: Logger, applicationRole: String? = nil) async throws -> [Int] {
        try await migrate(DatabaseClient(client, logger: logger, leaseTimeout: Self.callerPoolLeaseTimeout), logger: logger,
                          applicationRole: applicationRole)
    }

    /// Applies what is missing, then grants the application roles what `app_privileges`
    /// lists (sql/0020), recording `applicationRole` among them first when given; returns
    /// the versions applied now.
    ///
    /// Only the tables' owner migrates. Connected as another role (the application's, with
    /// `DATABASE_URL`), it checks the schema and returns when nothing is missing, and throws
    /// `MigrationError` saying what to do otherwise.
    @discardableResult
    public func migrate(_ client: DatabaseClient, logger: Logger, applicationRole: String? = nil) async throws -> [Int] {
        try await client.withConnection { connection in
            guard try await Self.ownsSchema(connection, logger: logger) else {
                let applied: [Int: String]
                do {
                    applied = try await appliedVersions(connection, logger: logger, create: false)
                } catch let error as PSQLError where error.serverInfo?[.sqlState] == "42501" {
                    // Not even granted the list of migrations: sql/0020 is not applied yet.
                    throw MigrationError.notOwner(role: try await Self.currentRole(connection, logger: logger),
                                                  missing: migrations.filter { $0.version >= 20 }.map(\.version))
                }
                try validate(applied)
                let missing = migrations.filter { applied[$0.version] == nil }.map(\.version)
                if missing.isEmpty { return [] }
                throw MigrationError.notOwner(role: try await Self.currentRole(connection, logger: logger), missing: missing)
            }
            _ = try await connection.query("SELECT pg_advisory_lock(\(Self.advisoryLockKey))", logger: logger)
            do {
                let applied = try await apply(on: connection, logger: logger, applicationRole: applicationRole)
                if applied.isEmpty {
                    // Nothing new: the grants are applied again all the same (a role recorded
                    // since, privileges changed by hand).
                    try await inTransaction(connection, logger: logger) {
                        try await grantApplicationRoles(on: connection, logger: logger, applicationRole: applicationRole)
                    }
                }
                _ = try await connection.query("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))", logger: logger)
                return applied
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))", logger: logger)
                throw error
            }
        }
    }

    /// True when the connection's role owns `schema_migrations` (or is a superuser, or a
    /// member of its owner), or when nothing is migrated yet: the one who starts owns.
    static func ownsSchema(_ connection: PostgresConnection, logger: Logger) async throws -> Bool {
        for try await owns in try await connection.query("""
            SELECT coalesce((SELECT pg_has_role(current_user, relowner, 'USAGE') FROM pg_class
                             WHERE oid = to_regclass('schema_migrations')), true)
            """, logger: logger).decode(Bool.self) {
            return owns
        }
        return true
    }

    static func currentRole(_ connection: PostgresConnection, logger: Logger) async throws -> String {
        for try await role in try await connection.query("SELECT current_user::text", logger: logger).decode(String.self) {
            return role
        }
        return "?"
    }

    /// Grants the recorded application roles what `app_privileges` lists, once sql/0020 has
    /// made the function; `applicationRole` is recorded first. In the caller's transaction.
    private func grantApplicationRoles(on connection: PostgresConnection, logger: Logger,
                                       applicationRole: String?) async throws {
        var present = false
        for try await exists in try await connection.query(
            "SELECT to_regproc('apply_app_privileges') IS NOT NULL", logger: logger).decode(Bool.self) { present = exists }
        guard present else { return }
        if let applicationRole {
            _ = try await connection.query(
                "INSERT INTO app_roles (role_name) VALUES (\(applicationRole)) ON CONFLICT DO NOTHING", logger: logger)
        }
        var unlisted: [String] = []
        for try await table in try await connection.query("SELECT * FROM apply_app_privileges()", logger: logger).decode(String.self) {
            unlisted.append(table)
        }
        if !unlisted.isEmpty {
            logger.warning("tables missing from app_privileges: the application role gets nothing on them",
                           metadata: ["tables": "\(unlisted.joined(separator: ", "))"])
        }
    }

    private func inTransaction(_ connection: PostgresConnection, logger: Logger, _ body: () async throws -> Void) async throws {
        _ = try await connection.query("BEGIN", logger: logger)
        do {
            try await body()
            _ = try await connection.query("COMMIT", logger: logger)
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
    }

    /// Versions recorded as applied, with their checksums.
    public func appliedVersions(_ connection: PostgresConnection, logger: Logger, create: Bool = true) async throws -> [Int: String] {
        if create {
            try await ensureTable(connection, logger: logger)
        } else {
            // Readers must not race the migrator's CREATE TABLE: look before reading.
            var exists = false
            for try await found in try await connection.query(
                "SELECT to_regclass('schema_migrations') IS NOT NULL", logger: logger).decode(Bool.self) { exists = found }
            if !exists { return [:] }
        }
        var applied: [Int: String] = [:]
        for try await (version, checksum) in try await connection.query(
            "SELECT version, checksum FROM schema_migrations", logger: logger
        ).decode((Int, String).self) {
            applied[version] = checksum
        }
        return applied
    }

    /// True when every migration of this binary is applied and unchanged.
    public func isUpToDate(_ client: PostgresClient, logger: Logger) async throws -> Bool {
        try await isUpToDate(DatabaseClient(client, logger: logger, leaseTimeout: Self.callerPoolLeaseTimeout), logger: logger)
    }

    /// True when every migration of this binary is applied and unchanged.
    public func isUpToDate(_ client: DatabaseClient, logger: Logger) async throws -> Bool {
        try await client.withConnection { connection in
            let applied = try await appliedVersions(connection, logger: logger, create: false)
            return migrations.allSatisfy { applied[$0.version] == $0.checksum }
        }
    }

    private func ensureTable(_ connection: PostgresConnection, logger: Logger) async throws {
        _ = try await connection.query("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())
            """, logger: logger)
    }

    /// Refuses an edited applied file, and a database migrated by a newer binary.
    private func validate(_ applied: [Int: String]) throws {
        for migration in migrations {
            if let checksum = applied[migration.version], checksum != migration.checksum {
                throw MigrationError(description: """
                    migration \(migration.version)_\(migration.name).sql was edited after it was applied \
                    (recorded checksum \(checksum.prefix(12))…, file \(migration.checksum.prefix(12))…). \
                    Applied migrations are frozen: restore the file and put the change in a new migration.
                    """)
            }
        }
        let known = Set(migrations.map(\.version))
        if let unknown = applied.keys.filter({ !known.contains($0) }).max() {
            throw MigrationError(description: """
                the database has migration \(unknown), which this binary does not know: it was migrated by a \
                newer PalletFlow. Run that version, or restore a backup taken before it.
                """)
        }
    }

    private func apply(on connection: PostgresConnection, logger: Logger, applicationRole: String?) async throws -> [Int] {
        let applied = try await appliedVersions(connection, logger: logger)
        try validate(applied)
        var done: [Int] = []
        for migration in migrations where applied[migration.version] == nil {
            logger.info("applying migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            do {
                _ = try await connection.query("BEGIN", logger: logger)
                for statement in SQLScript.statements(migration.sql) {
                    // Migration files are the project's own trusted SQL, not user input.
                    _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                // Every committed schema has its grants: a table this file adds is never
                // visible to the application role without them, nor for lack of them.
                try await grantApplicationRoles(on: connection, logger: logger, applicationRole: applicationRole)
                _ = try await connection.query("""
                    INSERT INTO schema_migrations (version, name, checksum)
                    VALUES (\(migration.version), \(migration.name), \(migration.checksum))
                    """, logger: logger)
                _ = try await connection.query("COMMIT", logger: logger)
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw MigrationError(description: """
                    migration \(migration.version)_\(migration.name).sql failed and was rolled back: \(String(reflecting: error))
                    """)
            }
            done.append(migration.version)
        }
        return done
    }
}
