import Foundation
import Logging
import NIOPosix
import PostgresNIO

/// Opens PalletFlow's database the way every PalletFlow program does: `DATABASE_URL` when
/// given, otherwise the embedded cluster under the data directory (created and started
/// on first use).
///
/// Two roles (docs/operations.md, "Two database roles"): `settings` is what the daemon and
/// the worker connect with, `ownerSettings` what migrations and the admin CLI connect
/// with. With `DATABASE_URL` both are that URL: each program runs with the role its
/// operator gives it (the application role for the daemon and the worker, the owner for
/// `palletflow`). The embedded cluster has both: its superuser owns the tables, and
/// `palletflow_app` is created at each start if missing.
public struct DatabaseRuntime: Sendable {
    public let settings: DatabaseSettings
    public let ownerSettings: DatabaseSettings
    /// The application role the migrator grants to, when this runtime knows it (embedded).
    public let applicationRole: String?
    public let cluster: EmbeddedPostgres?

    public init(settings: DatabaseSettings, ownerSettings: DatabaseSettings? = nil, applicationRole: String? = nil,
                cluster: EmbeddedPostgres?) {
        self.settings = settings
        self.ownerSettings = ownerSettings ?? settings
        self.applicationRole = applicationRole
        self.cluster = cluster
    }

    public static let defaultDataDirectory = ".palletflow"
    public static let databaseName = "palletflow"

    public static func open(dataDirectory: String?, databaseURL: String?, logger: Logger,
                            maximumConnections: Int = 20) async throws -> DatabaseRuntime {
        if let databaseURL, !databaseURL.isEmpty {
            return DatabaseRuntime(settings: try .url(databaseURL, maximumConnections: maximumConnections), cluster: nil)
        }
        let cluster = try EmbeddedPostgres(dataDirectory: dataDirectory ?? defaultDataDirectory, logger: logger)
        try cluster.start()
        do {
            try await ensureDatabase(cluster, named: databaseName, logger: logger)
            try await ensureApplicationRole(cluster, logger: logger)
        } catch {
            cluster.stop()
            throw error
        }
        return DatabaseRuntime(
            settings: .embedded(cluster, database: databaseName, maximumConnections: maximumConnections, role: cluster.applicationRole),
            ownerSettings: .embedded(cluster, database: databaseName, maximumConnections: maximumConnections),
            applicationRole: cluster.applicationRole, cluster: cluster)
    }

    /// Creates the embedded cluster's application role if it is missing (a new cluster, or
    /// one made by a release before sql/0020). Its privileges come from the migrator.
    public static func ensureApplicationRole(_ cluster: EmbeddedPostgres, logger: Logger) async throws {
        _ = try await withAdminConnection(cluster, logger: logger) { connection in
            try await DatabaseRoles.createApplicationRole(cluster.applicationRole, on: connection, logger: logger)
        }
    }

    /// Creates the application database in the embedded cluster if it is missing.
    public static func ensureDatabase(_ cluster: EmbeddedPostgres, named name: String, template: String? = nil,
                                      logger: Logger) async throws {
        try await withAdminConnection(cluster, logger: logger) { connection in
            let rows = try await connection.query("SELECT 1 FROM pg_database WHERE datname = \(name)", logger: logger)
            var exists = false
            for try await _ in rows { exists = true }
            if !exists {
                let quoted = "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
                var statement = "CREATE DATABASE \(quoted)"
                if let template {
                    statement += " TEMPLATE \"" + template.replacingOccurrences(of: "\"", with: "\"\"") + "\""
                }
                // Identifiers cannot be bound parameters; both are quoted above.
                _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
        }
    }

    /// A short-lived connection to the cluster's `postgres` database, for administration.
    public static func withAdminConnection<Result: Sendable>(
        _ cluster: EmbeddedPostgres, logger: Logger,
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        let configuration = PostgresConnection.Configuration(
            unixSocketPath: cluster.socketPath, username: cluster.superuser, password: nil, database: "postgres")
        let connection = try await PostgresConnection.connect(
            on: MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration, id: 0, logger: logger)
        do {
            let result = try await body(connection)
            try await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    public func makeClient(logger: Logger) -> PostgresClient {
        PostgresClient(configuration: settings.configuration, backgroundLogger: logger)
    }

    /// The same runtime connecting as the owner everywhere (the admin CLI).
    public var asOwner: DatabaseRuntime {
        DatabaseRuntime(settings: ownerSettings, ownerSettings: ownerSettings, applicationRole: applicationRole, cluster: cluster)
    }

    /// A supervised pool (`DatabaseClient`): leases bounded in time, reconnection at once
    /// when the database returns. Run it as a service.
    public func makeDatabaseClient(logger: Logger) -> DatabaseClient {
        Self.makeDatabaseClient(settings, logger: logger)
    }

    /// A supervised pool on other settings (a statement limit, another size).
    public static func makeDatabaseClient(_ settings: DatabaseSettings, logger: Logger) -> DatabaseClient {
        DatabaseClient(configuration: settings.configuration, probe: settings.probe, logger: logger)
    }

    /// Runs `body` with a live client (for the CLI and tests; the daemon runs its client
    /// as a lifecycle service instead).
    public func withClient<Result: Sendable>(logger: Logger, _ body: @Sendable (PostgresClient) async throws -> Result) async throws -> Result {
        let client = makeClient(logger: logger)
        return try await withThrowingTaskGroup(of: Result?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            // Let run() begin before the first lease (postgres-nio warns about leases it has to queue).
            try await Task.sleep(for: .milliseconds(20))
            return try await body(client)
        }
    }

    /// Releases the embedded cluster (the last user stops it).
    public func close() {
        cluster?.stop()
    }
}
