import ArgumentParser
import Foundation
import Hummingbird
import Logging
import PalletFlowAPI
import PalletFlowCore
import PalletFlowDemo
import PalletFlowStore
import PalletFlowWorker
import NIOPosix
import PostgresNIO
import ServiceLifecycle

@main
struct Palletflowd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "palletflowd",
        abstract: "The PalletFlow HTTP daemon.",
        discussion: """
            Without DATABASE_URL, palletflowd runs its own PostgreSQL cluster under the data directory \
            (created on first run, stopped on exit) and connects as its application role. With \
            DATABASE_URL it uses that server, as that URL's role: the application role made by \
            `palletflow database roles`, which cannot rewrite history (migrations are then applied \
            with `palletflow migrate` and the owner's URL).
            """,
        version: "\(Release.version) (schema \(Migration.all.count))")

    @Option(help: "Address to listen on (env PALLETFLOW_HOST). Loopback unless you say otherwise.")
    var host: String = ProcessInfo.processInfo.environment["PALLETFLOW_HOST"] ?? "127.0.0.1"

    @Option(help: "Port to listen on (env PALLETFLOW_PORT).")
    var port: Int = Int(ProcessInfo.processInfo.environment["PALLETFLOW_PORT"] ?? "") ?? 8080

    @Option(name: .customLong("data-dir"), help: "Data directory of the embedded PostgreSQL (env PALLETFLOW_DATA_DIR).")
    var dataDirectory: String = ProcessInfo.processInfo.environment["PALLETFLOW_DATA_DIR"] ?? DatabaseRuntime.defaultDataDirectory

    @Flag(help: "Seed the demo ecosystem (or find it again) and print its tokens.")
    var demo = false

    @Flag(name: .customLong("with-worker"), help: "Also run the background worker in this process.")
    var withWorker = false

    @Flag(name: .customLong("no-migrate"), help: "Do not apply migrations at start (they must already be applied).")
    var noMigrate = false

    @Option(name: .customLong("body-limit-bytes"), help: "Largest request body accepted; larger ones get 413 (env PALLETFLOW_BODY_LIMIT_BYTES).")
    var bodyLimitBytes: Int = Int(ProcessInfo.processInfo.environment["PALLETFLOW_BODY_LIMIT_BYTES"] ?? "") ?? 16 * 1024 * 1024

    @Option(name: .customLong("db-connections"),
            help: "Size of the database connection pool; default twice the processor count, at least 4 (env PALLETFLOW_DB_CONNECTIONS).")
    var databaseConnections: Int = Int(ProcessInfo.processInfo.environment["PALLETFLOW_DB_CONNECTIONS"] ?? "")
        ?? Self.defaultDatabaseConnections

    /// Twice the processors, at least 4: more transactions at once than PostgreSQL has cores
    /// to run them only queue inside the database, holding row locks while they wait for a
    /// CPU; with 20 connections on 2 cores the p99 of declarations at 1,000/s was 133 ms,
    /// with 4 it was 38 ms, at the same throughput (docs/performance.md, 'What limits each figure', B1).
    static var defaultDatabaseConnections: Int { max(4, 2 * ProcessInfo.processInfo.activeProcessorCount) }

    @Option(name: .customLong("statement-timeout-seconds"),
            help: "Longest a database statement of an API request may run before PostgreSQL cancels it and the request gets 503 query-timeout; 0 for no limit (env PALLETFLOW_STATEMENT_TIMEOUT_SECONDS). Migrations, the demo and the worker are not limited.")
    var statementTimeoutSeconds: Double = Double(ProcessInfo.processInfo.environment["PALLETFLOW_STATEMENT_TIMEOUT_SECONDS"] ?? "")
        ?? 30

    @Option(name: .customLong("rate-limit-per-token"),
            help: "Requests per second allowed per API token, in bursts of twice that; beyond it 429. 0 disables (env PALLETFLOW_RATE_LIMIT_PER_TOKEN).")
    var rateLimitPerToken: Double = Double(ProcessInfo.processInfo.environment["PALLETFLOW_RATE_LIMIT_PER_TOKEN"] ?? "")
        ?? ServerSettings.defaultRateLimitPerToken

    @Option(name: .customLong("rate-limit-per-address"),
            help: "Attempts per second per client address, in bursts of 20 times that, at signing in, accepting an invitation and with an unknown token; beyond it 429. 0 disables (env PALLETFLOW_RATE_LIMIT_PER_ADDRESS).")
    var rateLimitPerAddress: Double = Double(ProcessInfo.processInfo.environment["PALLETFLOW_RATE_LIMIT_PER_ADDRESS"] ?? "")
        ?? ServerSettings.defaultRateLimitPerAddress

    @Option(name: .customLong("max-tokens-per-member"),
            help: "Live API tokens a member may hold at once; issuing one more is refused until one is revoked (env PALLETFLOW_MAX_TOKENS_PER_MEMBER).")
    var maxTokensPerMember: Int = Int(ProcessInfo.processInfo.environment["PALLETFLOW_MAX_TOKENS_PER_MEMBER"] ?? "")
        ?? ServerSettings.defaultMaxTokensPerMember

    @Option(name: .customLong("heavy-reads-per-ecosystem"),
            help: "Expensive reads (ledger check, reports, exports, EPCIS queries, indicator lists) of one ecosystem that run at once; more wait up to 10 s, then 429; default half the processors, at least 1 (env PALLETFLOW_HEAVY_READS_PER_ECOSYSTEM).")
    var heavyReadsPerEcosystem: Int = Int(ProcessInfo.processInfo.environment["PALLETFLOW_HEAVY_READS_PER_ECOSYSTEM"] ?? "")
        ?? ServerSettings.defaultHeavyReadsPerEcosystem

    @Option(name: .customLong("heavy-read-connections"),
            help: "Size of the pool the expensive reads run on, apart from the requests' pool; default half of --db-connections, and always one more than --heavy-reads-per-ecosystem (env PALLETFLOW_HEAVY_READ_CONNECTIONS).")
    var heavyReadConnections: Int?

    @Option(name: .customLong("heavy-read-timeout-seconds"),
            help: "Longest a statement of an expensive read may run (the ledger check included); 0 for no limit (env PALLETFLOW_HEAVY_READ_TIMEOUT_SECONDS).")
    var heavyReadTimeoutSeconds: Double = Double(ProcessInfo.processInfo.environment["PALLETFLOW_HEAVY_READ_TIMEOUT_SECONDS"] ?? "")
        ?? ServerSettings.defaultHeavyReadTimeoutSeconds

    /// The flag, else the variable, else half the request pool; by default always one more
    /// than one ecosystem may take, so that another ecosystem's report finds a connection
    /// while the first runs its share of ledger checks (instead of waiting out the lease and
    /// getting 503).
    var heavyReadPoolSize: Int {
        heavyReadConnections ?? Int(ProcessInfo.processInfo.environment["PALLETFLOW_HEAVY_READ_CONNECTIONS"] ?? "")
            ?? max(max(1, heavyReadsPerEcosystem) + 1, databaseConnections / 2)
    }

    @Option(name: .customLong("auth-cache-seconds"),
            help: "How long an authenticated token is kept in memory (env PALLETFLOW_AUTH_CACHE_SECONDS); 0 looks every token up. Tokens revoked through this daemon stop at once; revoked elsewhere, within this time.")
    var authCacheSeconds: Double = Double(ProcessInfo.processInfo.environment["PALLETFLOW_AUTH_CACHE_SECONDS"] ?? "") ?? 5

    @Flag(name: .customLong("webhooks-allow-private-addresses"),
          help: "Let webhooks reach loopback, private (RFC 1918, fc00::/7), link-local and shared (100.64.0.0/10) addresses, for a private deployment whose receivers sit on its own network (env PALLETFLOW_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES=true). Applies to registration and to the in-process worker.")
    var webhooksAllowPrivateAddresses = false

    @Option(name: .customLong("tls-certificate"),
            help: "PEM certificate chain: serve HTTPS (with --tls-key; env PALLETFLOW_TLS_CERTIFICATE).")
    var tlsCertificate: String?

    @Option(name: .customLong("tls-key"), help: "PEM private key of the certificate (env PALLETFLOW_TLS_KEY).")
    var tlsKey: String?

    /// The flag, else the environment variable when it is set and not empty.
    static func setting(_ flag: String?, _ variable: String) -> String? {
        flag ?? ProcessInfo.processInfo.environment[variable].flatMap { $0.isEmpty ? nil : $0 }
    }

    var certificatePath: String? { Self.setting(tlsCertificate, "PALLETFLOW_TLS_CERTIFICATE") }
    var keyPath: String? { Self.setting(tlsKey, "PALLETFLOW_TLS_KEY") }

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (env PALLETFLOW_LOG_LEVEL).")
    var logLevel: String = ProcessInfo.processInfo.environment["PALLETFLOW_LOG_LEVEL"] ?? "info"

    @Option(name: .customLong("log-format"), help: "json or text (env PALLETFLOW_LOG_FORMAT).")
    var logFormat: String = ProcessInfo.processInfo.environment["PALLETFLOW_LOG_FORMAT"] ?? "json"

    func validate() throws {
        if (certificatePath == nil) != (keyPath == nil) {
            throw ValidationError("--tls-certificate and --tls-key go together: give both to serve HTTPS, or neither for HTTP.")
        }
    }

    /// Swift concurrency's jobs run on NIO's event loops, the threads that already do the
    /// HTTP and PostgreSQL I/O, instead of a pool of their own: a declaration no longer hops
    /// between the two pools (a wake-up through an eventfd and a context switch each time),
    /// which on two cores cost CPU and added to the tail latency (docs/performance.md).
    static func main() async {
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        await main(nil)
    }

    func run() async throws {
        JSONLogHandler.bootstrap(level: Logger.Level(rawValue: logLevel) ?? .info, format: logFormat)
        let logger = Logger(label: "palletflowd")
        let clock = try businessClock(logger: logger)
        let databaseURL = ProcessInfo.processInfo.environment["DATABASE_URL"]

        // One daemon per data directory: a second one must not share (and later stop) the cluster.
        var daemonLock: FileLock?
        if databaseURL?.isEmpty ?? true {
            try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
            let lock = FileLock(path: dataDirectory + "/palletflowd.lock")
            do {
                try lock.lock(exclusive: true, wait: false)
            } catch is FileLockBusy {
                let holder = (try? String(contentsOfFile: lock.path, encoding: .utf8)) ?? "unknown"
                throw ValidationError("""
                    another palletflowd is already running on data directory \(dataDirectory) (\(holder.trimmingCharacters(in: .whitespacesAndNewlines))). \
                    Stop it first, or give this one its own --data-dir.
                    """)
            }
            lock.writeHolder("pid \(getpid())\n")
            daemonLock = lock
        }
        defer { daemonLock?.unlock() }

        let runtime: DatabaseRuntime
        do {
            runtime = try await DatabaseRuntime.open(dataDirectory: dataDirectory, databaseURL: databaseURL, logger: logger,
                                                     maximumConnections: databaseConnections)
        } catch let error as EmbeddedPostgresError {
            throw ValidationError(error.description)
        }
        defer { runtime.close() }

        // Leases bounded in time, the pool replaced when it lags behind a database that is back.
        // A request's statements are limited in time: a query its client gave up on must not
        // run on for minutes (docs/reliability.md).
        let client = DatabaseRuntime.makeDatabaseClient(
            runtime.settings.limitingStatements(toSeconds: statementTimeoutSeconds), logger: logger)
        let store = Store(database: client, logger: logger,
                          tokenCacheLifetime: .milliseconds(Int64((max(0, authCacheSeconds) * 1000).rounded())), clock: clock)
        // Work that legitimately runs long (the demo's history, the worker's recomputes) on a
        // small pool of its own, without the limit. Migrations run on the owner's connection.
        let maintenanceClient = DatabaseRuntime.makeDatabaseClient(
            runtime.settings.withMaximumConnections(withWorker ? 4 : 2), logger: logger)
        let maintenanceStore = Store(database: maintenanceClient, logger: logger, clock: clock)
        // Expensive reads on a pool of their own, under their own statement limit: on a
        // streaming replica when one is given, else on the primary. One tenant's ledger checks
        // and reports then wait for that pool, not for the connections of everyone's writes.
        let heavySettings: DatabaseSettings
        if let readURL = ProcessInfo.processInfo.environment["READ_DATABASE_URL"], !readURL.isEmpty {
            do {
                heavySettings = try DatabaseSettings.url(readURL, maximumConnections: heavyReadPoolSize)
            } catch let error as EmbeddedPostgresError {
                throw ValidationError("READ_DATABASE_URL: \(error.description)")
            }
            logger.info("read-heavy answers from a replica", metadata: ["replica": "\(heavySettings.displayName)"])
        } else {
            heavySettings = runtime.settings.withMaximumConnections(heavyReadPoolSize)
        }
        let readClient = DatabaseRuntime.makeDatabaseClient(
            heavySettings.limitingStatements(toSeconds: heavyReadTimeoutSeconds).withoutParallelWorkers(), logger: logger)
        let readStore = Store(database: readClient, logger: logger, clock: clock)
        let webhookRule = WebhookAddressRule.configured(flag: webhooksAllowPrivateAddresses)
        if webhookRule.allowPrivateAddresses {
            logger.warning("webhooks may reach loopback, private, link-local and shared addresses (--webhooks-allow-private-addresses)")
        }
        let settings = ServerSettings(host: host, port: port, bodyLimitBytes: bodyLimitBytes,
                                      databaseConnections: databaseConnections,
                                      tls: certificatePath.flatMap { certificate in keyPath.map { (certificate, $0) } },
                                      rateLimitPerToken: max(0, rateLimitPerToken), webhookRule: webhookRule,
                                      maxTokensPerMember: max(1, maxTokensPerMember), rateLimitPerAddress: max(0, rateLimitPerAddress),
                                      heavyReadsPerEcosystem: max(1, heavyReadsPerEcosystem),
                                      heavyReadTimeoutSeconds: max(0, heavyReadTimeoutSeconds))
        let migrate = !noMigrate
        let seedDemo = demo
        let host = host
        let port = port
        var services: [any Service] = [client, maintenanceClient, readClient]
        if withWorker {
            services.append(WorkerService(store: maintenanceStore, schemaWait: .seconds(600), webhookRule: webhookRule))
        }
        let app = try buildApplication(store: store, readStore: readStore, settings: settings, services: services, logger: logger) {
            if migrate {
                try await migrateAsOwner(runtime, logger: logger)
            }
            await DatabaseRoles.warnIfCanRewriteHistory(maintenanceClient, logger: logger)
            // This month's and the next three months' ledger partitions (the worker keeps
            // creating them ahead); a busy database may make this wait: the worker retries.
            do {
                try await maintenanceStore.ensureLedgerPartitions()
            } catch {
                logger.warning("could not create the coming months' ledger partitions; the worker will retry",
                               metadata: ["error": "\(String(reflecting: error))"])
            }
            if seedDemo {
                let seeded = try await DemoEcosystem.seed(maintenanceStore)
                printDemoBanner(seeded, host: host, port: port, scheme: settings.scheme)
            }
        }
        do {
            try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
        } catch let error as PSQLError {
            // PSQLError hides its details from `description`; an operator needs them.
            throw ValidationError("database error: \(String(reflecting: error))")
        }
    }
}

/// Applies the missing migrations as the tables' owner: the embedded cluster's superuser,
/// or `DATABASE_URL`'s role. When that role is the application's, which may not migrate,
/// the daemon goes on as with `--no-migrate` (`/readyz` answers 503 until the owner runs
/// `palletflow migrate`) and says so.
func migrateAsOwner(_ runtime: DatabaseRuntime, logger: Logger) async throws {
    let owner = DatabaseRuntime(settings: runtime.ownerSettings.withMaximumConnections(1), cluster: nil)
    do {
        _ = try await owner.withClient(logger: logger) { client in
            try await Migrator().migrate(client, logger: logger, applicationRole: runtime.applicationRole)
        }
    } catch let error as MigrationError where error.needsOwner {
        logger.error("\(error.description)")
    }
}

/// The business clock (`WallClock`): the system's, or shifted by `PALLETFLOW_CLOCK_OFFSET_SECONDS`.
func businessClock(logger: Logger) throws -> WallClock {
    let configured: (clock: WallClock, offsetSeconds: Int64)
    do {
        configured = try WallClock.configured()
    } catch let error as WallClockSettingError {
        throw ValidationError(error.description)
    }
    if configured.offsetSeconds != 0 {
        logger.warning("the business clock is shifted from the system's: record times, due dates and periods follow it",
                       metadata: ["offset_seconds": "\(configured.offsetSeconds)"])
    }
    return configured.clock
}

func printDemoBanner(_ seeded: DemoEcosystem.Seeded, host: String, port: Int, scheme: String) {
    let base = "\(scheme)://\(host == "0.0.0.0" ? "127.0.0.1" : host):\(port)"
    var lines = [
        "",
        "PalletFlow is running: \(seeded.name)",
        "  dashboard      \(base)/app  (sign in with a token below: the shipper's, a carrier's, the coordinator's)",
        "  API            \(base)/v1   (contract: \(base)/openapi.yaml)",
        "  health         \(base)/readyz",
        "  ecosystem id   \(seeded.ecosystemId)",
        "",
        "Demo tokens (fresh at each start; use as: Authorization: Bearer <token>):",
    ]
    for organisation in seeded.organisations {
        let role = organisation.role.padding(toLength: 11, withPad: " ", startingAt: 0)
        lines.append("  \(role) \(organisation.token)  \(organisation.name)")
    }
    if let shipper = seeded.token(role: .shipper) {
        lines += ["", "Try:", "  curl -H 'Authorization: Bearer \(shipper)' \(base)/v1/me", ""]
    }
    FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
}
