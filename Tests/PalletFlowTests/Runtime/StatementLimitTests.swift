import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOPosix
import PalletFlowAPI
import PalletFlowStore
import PostgresNIO
import Testing

/// The daemon's statement limit (`--statement-timeout-seconds`): a request whose query
/// cannot finish in time is cut off by PostgreSQL and answered with a clear error, with
/// nothing written; the reads that legitimately run long lift it.
@Suite("statement limit")
struct StatementLimitTests {
    /// The router on a fresh database whose pool limits statements to `seconds`, a fixture,
    /// and the unlimited settings of the same database (for a session of the test's own).
    func withLimitedAPI(seconds: Double,
                        _ body: @escaping @Sendable (API, Fixture, DatabaseSettings) async throws -> Void) async throws {
        let settings = try await TestDatabase.shared.freshDatabase()
        let runtime = DatabaseRuntime(settings: settings.limitingStatements(toSeconds: seconds), cluster: nil)
        try await runtime.withClient(logger: TestDatabase.logger) { client in
            let store = Store(database: DatabaseClient(client, logger: TestDatabase.logger, leaseTimeout: .seconds(20)),
                              logger: TestDatabase.logger, clock: TestClock.clock)
            let fixture = try await Fixture.make(store)
            let router = try buildRouter(store: store, settings: ServerSettings(), logger: TestDatabase.logger)
            try await Application(router: router, logger: TestDatabase.logger).test(.router) { client in
                // The test's own session holds locks as the owner would (LOCK TABLE needs more than the
                // application role's privileges).
                try await body(API(client: client), fixture, try await TestDatabase.shared.settings(settings, as: .owner))
            }
        }
    }

    /// A session of its own, without the limit, that can hold locks while the API waits.
    func blocker(_ settings: DatabaseSettings) async throws -> PostgresConnection {
        try await PostgresConnection.connect(on: MultiThreadedEventLoopGroup.singleton.next(), configuration: settings.probe,
                                             id: 1, logger: TestDatabase.logger)
    }

    /// Waits until some other session's statement has waited on a lock for `seconds` (the
    /// API's request; this session is outside any transaction, so now() is the clock).
    func waitForLockWaiter(_ connection: PostgresConnection, atLeast seconds: Double) async throws {
        for _ in 0..<600 {
            var waited: Double?
            for try await age in try await connection.query("""
                SELECT extract(epoch FROM now() - query_start)::float8 FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'
                """, logger: TestDatabase.logger).decode(Double.self) {
                waited = max(waited ?? 0, age)
            }
            if let waited, waited >= seconds { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("no request waited on a lock for \(seconds) s")
    }

    @Test("a declaration stuck past the limit is answered 503 query-timeout and writes nothing; the same key then goes through once")
    func stuckDeclaration() async throws {
        try await withLimitedAPI(seconds: 1) { api, fixture, settings in
            let declaration = LedgerAPITests.pickup(fixture, quantity: 12, exchanged: 0)
            let blocker = try await blocker(settings)
            // Another session holds the ledger's movements in SHARE mode: no declaration can
            // insert until it lets go, so the declaration's statement waits past its limit.
            try await blocker.query("BEGIN", logger: TestDatabase.logger)
            try await blocker.query("LOCK TABLE movements IN SHARE MODE", logger: TestDatabase.logger)
            let stuck = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: declaration,
                                           key: "limit-1")
            try await blocker.query("ROLLBACK", logger: TestDatabase.logger)
            try await blocker.close()
            #expect(stuck.status == .serviceUnavailable, "\(stuck.text)")
            #expect(stuck.problemType?.hasSuffix("/query-timeout") == true, "\(stuck.text)")
            #expect(stuck.headers[.retryAfter] == "5")
            #expect(stuck.headers[.contentType] == "application/problem+json")

            let none = try await api.get("\(fixture.base)/movements", token: fixture.shipper.token)
            #expect(none.status == .ok)
            #expect(none.items.isEmpty, "the cancelled declaration wrote \(none.items.count) movement(s)")

            // Sent again on the pool's idle connection, the one whose statement was cancelled
            // while being prepared: postgres-nio would keep that preparation failed for the
            // connection's life, so the daemon replaces the connection.
            let made = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: declaration,
                                          key: "limit-1")
            #expect(made.status == .created, "\(made.text)")
            let replayed = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: declaration,
                                              key: "limit-1")
            #expect(replayed.status == .created)
            #expect(replayed.json["id"] as? String == made.json["id"] as? String)
            let one = try await api.get("\(fixture.base)/movements", token: fixture.shipper.token)
            #expect(one.items.count == 1)
            #expect(one.items.first?["id"] as? String == made.json["id"] as? String)
        }
    }

    @Test("the ledger check outlasts the limit: it waits for a lock longer than the limit and still answers")
    func ledgerCheckIsNotCut() async throws {
        try await withLimitedAPI(seconds: 1) { api, fixture, settings in
            let declared = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token,
                                              json: LedgerAPITests.pickup(fixture, quantity: 5, exchanged: 0), key: "check-1")
            #expect(declared.status == .created, "\(declared.text)")
            let blocker = try await blocker(settings)
            try await blocker.query("BEGIN", logger: TestDatabase.logger)
            // Blocks every reader of the entries, the check included.
            try await blocker.query("LOCK TABLE ledger_entries IN ACCESS EXCLUSIVE MODE", logger: TestDatabase.logger)
            async let check = api.get("\(fixture.base)/ledger/verify", token: fixture.shipper.token)
            let watcher = try await self.blocker(settings)
            try await waitForLockWaiter(watcher, atLeast: 2)
            try await watcher.close()
            try await blocker.query("ROLLBACK", logger: TestDatabase.logger)
            try await blocker.close()
            let report = try await check
            #expect(report.status == .ok, "\(report.text)")
            #expect(report.json["holds"] as? Bool == true)
            #expect(report.json["movements"] as? Int == 1)
        }
    }

    @Test("the expensive reads' sessions run each statement on one core, under their own limit; the requests' sessions keep PostgreSQL's workers")
    func expensiveReadsOnOneCore() async throws {
        let settings = try await TestDatabase.shared.freshDatabase()
        func shown(_ settings: DatabaseSettings, _ name: String) async throws -> String {
            try await DatabaseRuntime(settings: settings, cluster: nil).withClient(logger: TestDatabase.logger) { client in
                var value = ""
                for try await row in try await client.query(PostgresQuery(unsafeSQL: "SHOW \(name)"), logger: TestDatabase.logger)
                    .decode(String.self) { value = row }
                return value
            }
        }
        let heavy = settings.limitingStatements(toSeconds: 300).withoutParallelWorkers()
        #expect(try await shown(heavy, "max_parallel_workers_per_gather") == "0")
        #expect(try await shown(heavy, "statement_timeout") == "5min")
        // PostgreSQL's default (2) where the setting is not applied.
        #expect(try await shown(settings, "max_parallel_workers_per_gather") == "2")
    }
}
