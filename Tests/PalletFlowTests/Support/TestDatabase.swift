import Foundation
import Logging
import PalletFlowCore
import PalletFlowStore
import PostgresNIO

/// The test run's own PostgreSQL: one embedded cluster per test process, one migrated
/// template database, and a fresh copy of it for every test (CREATE DATABASE ... TEMPLATE),
/// so tests are isolated, can run in parallel, and never touch a mock.
actor TestDatabase {
    static let shared = TestDatabase()
    static let logger: Logger = {
        var logger = Logger(label: "palletflow-tests")
        // PALLETFLOW_TEST_LOG=1 shows what the store logs; =trace also postgres-nio's messages.
        switch ProcessInfo.processInfo.environment["PALLETFLOW_TEST_LOG"] {
        case "1": logger.logLevel = .info
        case "trace": logger.logLevel = .trace
        default: logger.logLevel = .critical
        }
        return logger
    }()

    private var starting: Task<EmbeddedPostgres, any Error>?
    private var counter = 0
    static let template = "palletflow_template"

    /// Starts the cluster and migrates the template on first use; concurrent callers
    /// (tests run in parallel) wait for the same start.
    func start() async throws -> EmbeddedPostgres {
        if let starting { return try await starting.value }
        let task = Task { try await Self.startCluster() }
        starting = task
        return try await task.value
    }

    private static func startCluster() async throws -> EmbeddedPostgres {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("palletflow-tests-\(getpid())").path
        try? FileManager.default.removeItem(atPath: directory)
        // Tests run in parallel, each with a pool of its own: room for all of them at once.
        let cluster = try EmbeddedPostgres(dataDirectory: directory, logger: Self.logger, maximumConnections: 500)
        try cluster.start()
        clusterToStopAtExit = cluster
        atexit {
            clusterToStopAtExit?.stopImmediately()
            if let directory = clusterToStopAtExit?.dataDirectory { try? FileManager.default.removeItem(atPath: directory) }
        }
        try await DatabaseRuntime.ensureDatabase(cluster, named: Self.template, logger: Self.logger)
        // Both roles, as the daemon's embedded cluster has them: the template is migrated by
        // the owner, which grants the application role; every copy carries the grants.
        try await DatabaseRuntime.ensureApplicationRole(cluster, logger: Self.logger)
        let settings = DatabaseSettings.embedded(cluster, database: Self.template, maximumConnections: 2)
        let runtime = DatabaseRuntime(settings: settings, cluster: nil)
        _ = try await runtime.withClient(logger: Self.logger) { client in
            try await Migrator().migrate(client, logger: Self.logger, applicationRole: cluster.applicationRole)
            // The ledger's monthly partitions around the tests' "now", which the shifted runs
            // move months or a year away from the machine's.
            try await Store(client: client, logger: Self.logger, clock: TestClock.clock).ensureLedgerPartitions()
        }
        return cluster
    }

    /// Who a test connects as: the application role, as the daemon and the worker do (so a
    /// missing grant fails a test), or the tables' owner, for what only the owner does
    /// (migrations, `archive`, `restore`, `vacuum`) and for SQL a test writes by hand.
    enum Role: Sendable {
        case application, owner
    }

    /// A new database holding the migrated schema and nothing else. The cluster takes 500
    /// connections for every test running at once: a test that needs few asks for few.
    func freshDatabase(as role: Role = .application, maximumConnections: Int = 40) async throws -> DatabaseSettings {
        let (cluster, name) = try await copyTemplate()
        return DatabaseSettings.embedded(cluster, database: name, maximumConnections: maximumConnections,
                                         role: Self.roleName(role, cluster))
    }

    /// The same database as `settings`, connecting as `role`.
    func settings(_ settings: DatabaseSettings, as role: Role, maximumConnections: Int = 10) async throws -> DatabaseSettings {
        let cluster = try await start()
        return DatabaseSettings.embedded(cluster, database: settings.configuration.database ?? "",
                                         maximumConnections: maximumConnections, role: Self.roleName(role, cluster))
    }

    /// A fresh migrated database and a DATABASE_URL reaching it through the cluster's Unix
    /// socket as `role`, for processes started by a test; the settings connect as the owner.
    func freshDatabaseURL(as role: Role = .application) async throws -> (DatabaseSettings, String) {
        let (cluster, name) = try await copyTemplate()
        return (DatabaseSettings.embedded(cluster, database: name, maximumConnections: 10),
                "postgres://\(Self.roleName(role, cluster))@localhost:\(cluster.port)/\(name)?host=\(cluster.socketDirectory)")
    }

    private func copyTemplate() async throws -> (EmbeddedPostgres, String) {
        let cluster = try await start()
        counter += 1
        let name = "test_\(counter)"
        try await DatabaseRuntime.ensureDatabase(cluster, named: name, template: Self.template, logger: Self.logger)
        return (cluster, name)
    }

    private static func roleName(_ role: Role, _ cluster: EmbeddedPostgres) -> String {
        role == .owner ? cluster.superuser : cluster.applicationRole
    }

    /// An empty database with no schema at all (migration tests).
    func emptyDatabase() async throws -> DatabaseSettings {
        let cluster = try await start()
        counter += 1
        let name = "empty_\(counter)"
        try await DatabaseRuntime.ensureDatabase(cluster, named: name, template: "template0", logger: Self.logger)
        return DatabaseSettings.embedded(cluster, database: name, maximumConnections: 10)
    }
}

nonisolated(unsafe) var clusterToStopAtExit: EmbeddedPostgres?

/// The tests' business clock: the machine's, shifted like the daemons' by
/// `PALLETFLOW_CLOCK_OFFSET_SECONDS` (`scripts/test` runs the date-sensitive suites again at
/// +45 and +400 days). Tests state their dates relative to `TestClock.now()`, never as
/// calendar literals near today, so they hold on any date.
enum TestClock {
    static let clock: WallClock = {
        do {
            return try WallClock.configured().clock
        } catch {
            fatalError("\(error)")
        }
    }()

    static func now() -> Instant { clock.now() }
    static var today: Int { clock.today }

    /// The date (`YYYY-MM-DD`) `days` from today (negative: before).
    static func date(_ days: Int) -> String { Instant.date(ofDay: today + days) }

    /// The first day of the UTC month `months` away from the current one (days since 1970).
    static func monthStart(_ months: Int) -> Int {
        var day = PeriodKind.month.start(of: today)
        if months >= 0 {
            for _ in 0..<months { day = PeriodKind.month.end(startingAt: day) }
        } else {
            for _ in 0..<(-months) { day = PeriodKind.month.start(of: day - 1) }
        }
        return day
    }

    /// An RFC 3339 time on `day` at `hour`:`minute` local time, written with `offsetMinutes`.
    static func time(day: Int, hour: Int, minute: Int = 0, offsetMinutes: Int = 0) -> String {
        let local = Int64(day) * 86_400 + Int64(hour * 3_600 + minute * 60)
        return Instant(microsecondsSinceEpoch: (local - Int64(offsetMinutes) * 60) * 1_000_000,
                       offsetMinutes: offsetMinutes).rfc3339(keepingOffset: true)
    }
}

/// Runs `body` with a store on a fresh database whose client is running, connected as the
/// application role unless the test needs the owner.
func withFreshStore<Result: Sendable>(clock: WallClock = TestClock.clock, as role: TestDatabase.Role = .application,
                                      maximumConnections: Int = 40,
                                      _ body: @Sendable (Store) async throws -> Result) async throws -> Result {
    let settings = try await TestDatabase.shared.freshDatabase(as: role, maximumConnections: maximumConnections)
    let runtime = DatabaseRuntime(settings: settings, cluster: nil)
    return try await runtime.withClient(logger: TestDatabase.logger) { client in
        // A longer lease deadline than the daemon's 2 s: the tests run in parallel beside
        // each other's clusters, and on a busy 2-core machine a new connection can take
        // longer than that. The deadline itself is tested in DatabaseClientTests.
        try await body(Store(database: DatabaseClient(client, logger: TestDatabase.logger, leaseTimeout: .seconds(20)),
                             logger: TestDatabase.logger, clock: clock))
    }
}

/// Runs `body` with two stores on one fresh database: the application role's, which the
/// test exercises, and the owner's, for SQL only the owner may run (ageing a row, a
/// trigger of the test's own).
func withFreshStores<Result: Sendable>(
    clock: WallClock = TestClock.clock, maximumConnections: Int = 40,
    _ body: @Sendable (_ app: Store, _ owner: Store) async throws -> Result
) async throws -> Result {
    let settings = try await TestDatabase.shared.freshDatabase(maximumConnections: maximumConnections)
    let ownerSettings = try await TestDatabase.shared.settings(settings, as: .owner)
    return try await DatabaseRuntime(settings: settings, cluster: nil).withClient(logger: TestDatabase.logger) { client in
        try await DatabaseRuntime(settings: ownerSettings, cluster: nil).withClient(logger: TestDatabase.logger) { ownerClient in
            func store(_ client: PostgresClient) -> Store {
                Store(database: DatabaseClient(client, logger: TestDatabase.logger, leaseTimeout: .seconds(20)),
                      logger: TestDatabase.logger, clock: clock)
            }
            return try await body(store(client), store(ownerClient))
        }
    }
}
