import Foundation
import NIOSSL
import PostgresNIO

/// Where PalletFlow's database is: a `DATABASE_URL`, or the embedded cluster.
public struct DatabaseSettings: Sendable {
    public var configuration: PostgresClient.Configuration
    /// The same database for one connection of its own (the pool's outage probe).
    public var probe: PostgresConnection.Configuration
    /// Shown in logs and errors; never carries the password.
    public var displayName: String

    public init(configuration: PostgresClient.Configuration, probe: PostgresConnection.Configuration, displayName: String) {
        self.configuration = configuration
        self.probe = probe
        self.displayName = displayName
    }

    /// The same database with each statement of the pool's sessions limited in time
    /// (PostgreSQL's `statement_timeout`, set when each connection starts, so it costs no
    /// round trip): a query still running after `seconds` is cancelled (SQLSTATE 57014) and
    /// its transaction rolled back. 0 or less leaves statements unlimited. The daemon's API
    /// pool uses it; migrations, the demo and the worker run unlimited.
    public func limitingStatements(toSeconds seconds: Double) -> DatabaseSettings {
        guard seconds > 0 else { return self }
        var limited = self
        let milliseconds = max(1, Int((seconds * 1000).rounded()))
        limited.configuration.options.additionalStartupParameters.removeAll { $0.0 == "statement_timeout" }
        limited.configuration.options.additionalStartupParameters.append(("statement_timeout", "\(milliseconds)ms"))
        return limited
    }

    /// The same database, each statement on one core (`max_parallel_workers_per_gather = 0`).
    /// For the expensive reads: with PostgreSQL's default of 2 workers, one ledger check of a
    /// large ecosystem takes three cores, every core of a small machine, and the other
    /// tenants' declarations queue behind it (bench/run --only fairness measured it).
    public func withoutParallelWorkers() -> DatabaseSettings {
        var limited = self
        limited.configuration.options.additionalStartupParameters.removeAll { $0.0 == "max_parallel_workers_per_gather" }
        limited.configuration.options.additionalStartupParameters.append(("max_parallel_workers_per_gather", "0"))
        return limited
    }

    /// The same database with a pool of `count` connections.
    public func withMaximumConnections(_ count: Int) -> DatabaseSettings {
        var sized = self
        sized.configuration.options.maximumConnections = count
        return sized
    }

    /// The embedded cluster's socket, as `role`: its superuser (the owner) by default, or
    /// its application role. Only the cluster's system user can enter the socket's folder.
    public static func embedded(_ cluster: EmbeddedPostgres, database: String = "palletflow",
                                maximumConnections: Int = 20, role: String? = nil) -> DatabaseSettings {
        let role = role ?? cluster.superuser
        var configuration = PostgresClient.Configuration(
            unixSocketPath: cluster.socketPath, username: role, password: nil, database: database)
        configuration.options.maximumConnections = maximumConnections
        let probe = PostgresConnection.Configuration(
            unixSocketPath: cluster.socketPath, username: role, password: nil, database: database)
        return DatabaseSettings(configuration: configuration, probe: probe,
                                displayName: "embedded \(cluster.socketPath) db=\(database) role=\(role)")
    }

    /// The role these settings connect as.
    public var username: String { configuration.username }

    /// Parses `postgres://user:password@host:port/database?sslmode=...&sslrootcert=...`.
    /// sslmode: disable, prefer (default), require (encrypted, unverified) or verify-full.
    /// As with libpq, `?host=/a/directory` means the server's Unix socket in that directory
    /// (`postgres://postgres@/palletflow?host=/var/run/postgresql`).
    public static func url(_ text: String, maximumConnections: Int = 20) throws -> DatabaseSettings {
        guard let components = URLComponents(string: text),
              components.scheme == "postgres" || components.scheme == "postgresql"
        else {
            throw EmbeddedPostgresError("DATABASE_URL must look like postgres://user:password@host:5432/database")
        }
        let query = Dictionary((components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
        if let directory = query["host"], directory.hasPrefix("/") {
            let database = components.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            let socket = directory + "/.s.PGSQL.\(components.port ?? 5432)"
            var configuration = PostgresClient.Configuration(
                unixSocketPath: socket, username: components.user?.removingPercentEncoding ?? "postgres",
                password: components.password?.removingPercentEncoding, database: database.isEmpty ? nil : database)
            configuration.options.maximumConnections = maximumConnections
            let probe = PostgresConnection.Configuration(
                unixSocketPath: socket, username: configuration.username, password: configuration.password,
                database: configuration.database)
            return DatabaseSettings(configuration: configuration, probe: probe,
                                    displayName: "unix socket \(socket) db=\(database)")
        }
        guard let host = components.host, !host.isEmpty else {
            throw EmbeddedPostgresError("DATABASE_URL must look like postgres://user:password@host:5432/database (or ?host=/socket/directory)")
        }
        let mode = query["sslmode"] ?? "prefer"
        var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
        if let rootCertificate = query["sslrootcert"], !rootCertificate.isEmpty {
            tlsConfiguration.trustRoots = .file(rootCertificate)
        }
        let tls: PostgresClient.Configuration.TLS
        let probeTLS: PostgresConnection.Configuration.TLS
        switch mode {
        case "disable":
            tls = .disable
            probeTLS = .disable
        case "prefer", "allow":
            tlsConfiguration.certificateVerification = .none
            tls = .prefer(tlsConfiguration)
            probeTLS = .prefer(try NIOSSLContext(configuration: tlsConfiguration))
        case "require":
            tlsConfiguration.certificateVerification = .none
            tls = .require(tlsConfiguration)
            probeTLS = .require(try NIOSSLContext(configuration: tlsConfiguration))
        case "verify-ca":
            tlsConfiguration.certificateVerification = .noHostnameVerification
            tls = .require(tlsConfiguration)
            probeTLS = .require(try NIOSSLContext(configuration: tlsConfiguration))
        case "verify-full":
            tlsConfiguration.certificateVerification = .fullVerification
            tls = .require(tlsConfiguration)
            probeTLS = .require(try NIOSSLContext(configuration: tlsConfiguration))
        default:
            throw EmbeddedPostgresError("DATABASE_URL sslmode=\(mode) is not one of disable, prefer, require, verify-ca, verify-full")
        }
        let database = components.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        var configuration = PostgresClient.Configuration(
            host: host, port: components.port ?? 5432,
            username: components.user?.removingPercentEncoding ?? "postgres",
            password: components.password?.removingPercentEncoding,
            database: database.isEmpty ? nil : database, tls: tls)
        configuration.options.maximumConnections = maximumConnections
        let probe = PostgresConnection.Configuration(
            host: host, port: components.port ?? 5432, username: configuration.username,
            password: configuration.password, database: configuration.database, tls: probeTLS)
        return DatabaseSettings(configuration: configuration, probe: probe,
                                displayName: "\(host):\(components.port ?? 5432)/\(database) sslmode=\(mode)")
    }
}
