import Crypto
import Foundation
import Logging
import PostgresNIO

/// A role that cannot serve as the application's, or a setup step the owner may not take.
public struct DatabaseRoleError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// What `palletflow database roles` did, for it to print.
public struct ApplicationRoleReport: Sendable, Codable {
    public var role: String
    public var created: Bool
    public var passwordSet: Bool
    /// Tables the role may read, insert into, update whole (derived data), update in some
    /// columns only (workflow state), and delete from (derived data).
    public var select: Int
    public var insert: Int
    public var update: Int
    public var updateColumnsOnly: Int
    public var delete: Int
    /// Partitions, reached only through their parents: the role holds nothing on them.
    public var partitions: Int
    /// Tables `app_privileges` does not name: the role holds nothing on them.
    public var unlisted: [String]
}

/// The application role (sql/0020): who it is, how it is created, and what it may do.
public enum DatabaseRoles {
    /// A plain lower-case identifier, so the name reads the same quoted or not.
    public static func validName(_ name: String) -> Bool {
        name.range(of: #"^[a-z_][a-z0-9_]{0,62}$"#, options: .regularExpression) != nil
    }

    /// Creates `name` (LOGIN, no other attribute) unless it exists; refuses a superuser.
    /// Returns whether it was created.
    @discardableResult
    public static func createApplicationRole(_ name: String, on connection: PostgresConnection,
                                             logger: Logger) async throws -> Bool {
        guard validName(name) else {
            throw DatabaseRoleError("\(name) is not a role name PalletFlow accepts: lower-case letters, digits and _, 63 at most")
        }
        var superuser: Bool?
        for try await isSuper in try await connection.query(
            "SELECT rolsuper FROM pg_roles WHERE rolname = \(name)", logger: logger).decode(Bool.self) { superuser = isSuper }
        if superuser == true {
            throw DatabaseRoleError("role \(name) is a superuser: it could rewrite history. Give the application a role of its own.")
        }
        guard superuser == nil else { return false }
        do {
            // Identifiers cannot be bound: PostgreSQL quotes the name itself (format's %I).
            try await execute(formatting: "CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
                              name, on: connection, logger: logger)
            return true
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "42710" {
            return false  // created meanwhile by another PalletFlow process starting on the same cluster
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "42501" {
            throw DatabaseRoleError("""
                the owner's role may not create role \(name) (it lacks CREATEROLE). Create it once as a superuser \
                (CREATE ROLE \(name) LOGIN;), then run this command again.
                """)
        }
    }

    /// Runs the statement PostgreSQL builds with `format(template, name, ...)`: the values are
    /// bound, and quoted into the statement by the server (%I, %L).
    static func execute(formatting template: String, _ name: String, _ literal: String? = nil,
                        on connection: PostgresConnection, logger: Logger) async throws {
        var statement = ""
        for try await text in try await connection.query(
            "SELECT format(\(template)::text, \(name)::text, \(literal)::text)", logger: logger).decode(String.self) { statement = text }
        _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
    }

    /// True when the connection's role could rewrite history: a superuser, or the owner of
    /// the ledger's tables (or a member of the owner's role). The daemon and the worker warn.
    public static func canRewriteHistory(_ connection: PostgresConnection, logger: Logger) async throws -> Bool {
        for try await mighty in try await connection.query("""
            SELECT r.rolsuper OR coalesce(pg_has_role(current_user, c.relowner, 'USAGE'), false)
            FROM pg_roles r LEFT JOIN pg_class c ON c.oid = to_regclass('movements')
            WHERE r.rolname = current_user
            """, logger: logger).decode(Bool.self) {
            return mighty
        }
        return false
    }

    /// The daemon and the worker should connect as the application role; a role that owns
    /// the tables could rewrite history, so this says how to set one up.
    public static func warnIfCanRewriteHistory(_ client: DatabaseClient, logger: Logger) async {
        let mighty = try? await client.withConnection { connection in
            try await canRewriteHistory(connection, logger: logger)
        }
        if mighty == true {
            logger.warning("""
                DATABASE_URL's role owns the ledger's tables (or is a superuser): it could rewrite history. Create the \
                application role with `palletflow database roles --app-role palletflow_app` (as the owner) and give \
                palletflowd and palletflow-worker its DATABASE_URL (docs/operations.md, "Two database roles").
                """)
        }
    }

    /// `palletflow database roles`: creates the application role if missing, sets its
    /// password when one is given, records it and grants it what `app_privileges` lists, in
    /// one transaction, under the migrator's lock. Run by the owner, after the migrations.
    public static func setUp(applicationRole name: String, password: String?, client: DatabaseClient,
                             logger: Logger) async throws -> ApplicationRoleReport {
        try await client.withConnection { connection in
            _ = try await connection.query("SELECT pg_advisory_lock(\(Migrator.advisoryLockKey))", logger: logger)
            let result: Result<ApplicationRoleReport, any Error>
            do {
                result = .success(try await connection.withTransaction(logger: logger) { connection in
                    try await setUp(applicationRole: name, password: password, on: connection, logger: logger)
                })
            } catch let error as PostgresTransactionError {
                result = .failure(explained(error.closureError ?? error.beginError ?? error.commitError ?? error))
            } catch {
                result = .failure(error)
            }
            _ = try? await connection.query("SELECT pg_advisory_unlock(\(Migrator.advisoryLockKey))", logger: logger)
            return try result.get()
        }
    }

    /// The server's message when `error` is a refusal for lack of privilege (SQLSTATE 42501).
    public static func permissionDenied(_ error: any Error) -> String? {
        guard let error = error as? PSQLError, error.serverInfo?[.sqlState] == "42501" else { return nil }
        return error.serverInfo?[.message] ?? "permission denied"
    }

    /// apply_app_privileges' refusals (a role that owns the tables) come out as what they say.
    static func explained(_ error: any Error) -> any Error {
        if let error = error as? PSQLError, error.serverInfo?[.sqlState] == "P0001", let message = error.serverInfo?[.message] {
            return DatabaseRoleError(message)
        }
        return error
    }

    static func setUp(applicationRole name: String, password: String?, on connection: PostgresConnection,
                      logger: Logger) async throws -> ApplicationRoleReport {
        for try await me in try await connection.query("SELECT current_user::text", logger: logger).decode(String.self) where me == name {
            throw DatabaseRoleError("role \(name) is the one this command connects as (the owner): the application needs a role of its own")
        }
        let created = try await createApplicationRole(name, on: connection, logger: logger)
        if let password {
            try await execute(formatting: "ALTER ROLE %I PASSWORD %L", name, scramVerifier(password: password),
                              on: connection, logger: logger)
        }
        _ = try await connection.query("INSERT INTO app_roles (role_name) VALUES (\(name)) ON CONFLICT DO NOTHING", logger: logger)
        var unlisted: [String] = []
        for try await table in try await connection.query("SELECT * FROM apply_app_privileges()", logger: logger).decode(String.self) {
            unlisted.append(table)
        }
        var report = ApplicationRoleReport(role: name, created: created, passwordSet: password != nil, select: 0, insert: 0,
                                           update: 0, updateColumnsOnly: 0, delete: 0, partitions: 0, unlisted: unlisted)
        for try await (select, insert, update, columns, delete, partitions) in try await connection.query("""
            SELECT count(*) FILTER (WHERE has_table_privilege(\(name), c.oid, 'SELECT') AND NOT c.relispartition)::int,
                   count(*) FILTER (WHERE has_table_privilege(\(name), c.oid, 'INSERT') AND NOT c.relispartition)::int,
                   count(*) FILTER (WHERE has_table_privilege(\(name), c.oid, 'UPDATE') AND NOT c.relispartition)::int,
                   count(*) FILTER (WHERE NOT has_table_privilege(\(name), c.oid, 'UPDATE')
                                      AND has_any_column_privilege(\(name), c.oid, 'UPDATE') AND NOT c.relispartition)::int,
                   count(*) FILTER (WHERE has_table_privilege(\(name), c.oid, 'DELETE') AND NOT c.relispartition)::int,
                   count(*) FILTER (WHERE c.relispartition)::int
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
            """, logger: logger).decode((Int, Int, Int, Int, Int, Int).self) {
            (report.select, report.insert, report.update, report.updateColumnsOnly, report.delete, report.partitions) =
                (select, insert, update, columns, delete, partitions)
        }
        return report
    }

    /// A SCRAM-SHA-256 verifier of `password` (RFC 5802, 7677), as PostgreSQL stores it: the
    /// server receives the verifier, never the password, so no statement log can show it.
    public static func scramVerifier(password: String, salt: [UInt8] = randomSalt(), iterations: Int = 4096) -> String {
        let key = SymmetricKey(data: Array(password.utf8))
        var block = Array(HMAC<SHA256>.authenticationCode(for: salt + [0, 0, 0, 1], using: key))
        var salted = block
        for _ in 1..<iterations {
            block = Array(HMAC<SHA256>.authenticationCode(for: block, using: key))
            for index in salted.indices { salted[index] ^= block[index] }
        }
        let saltedKey = SymmetricKey(data: salted)
        let clientKey = Array(HMAC<SHA256>.authenticationCode(for: Array("Client Key".utf8), using: saltedKey))
        let storedKey = Array(SHA256.hash(data: clientKey))
        let serverKey = Array(HMAC<SHA256>.authenticationCode(for: Array("Server Key".utf8), using: saltedKey))
        func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }
        return "SCRAM-SHA-256$\(iterations):\(base64(salt))$\(base64(storedKey)):\(base64(serverKey))"
    }

    public static func randomSalt() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }
}
