import Foundation
import Logging
import PalletFlowCore
@testable import PalletFlowStore
import PostgresNIO
import Testing

@Suite("Database client: bounded leases while the database is down, durable single-statement writes")
struct DatabaseClientTests {
    @Test("a database that cannot be reached fails a lease within its deadline, then at once once the probe knows")
    func unreachable() async throws {
        // A socket nobody listens on: postgres-nio alone would queue the lease until its
        // circuit breaker trips (15 s).
        let socket = "/tmp/pf-none-\(UUID().uuidString.prefix(8))/.s.PGSQL.5432"
        let configuration = PostgresClient.Configuration(unixSocketPath: socket, username: "postgres", password: nil, database: "none")
        let probe = PostgresConnection.Configuration(unixSocketPath: socket, username: "postgres", password: nil, database: "none")
        let database = DatabaseClient(configuration: configuration, probe: probe, logger: TestDatabase.logger,
                                      leaseTimeout: .seconds(1))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await database.run() }
            let began = ContinuousClock.now
            await #expect(throws: DatabaseUnavailable.self) {
                _ = try await database.query("SELECT 1").collect()
            }
            // Within the 1 s deadline plus scheduling, far from postgres-nio's 15 s (the margin is
            // for a loaded machine: 4.9 s was seen with four builds running beside the tests).
            #expect(began.duration(to: .now) < .seconds(10))
            // The failed lease made the monitor probe (every 250 ms): it cannot connect, so
            // the next leases fail without waiting.
            try await Task.sleep(for: .milliseconds(800))
            let again = ContinuousClock.now
            await #expect(throws: DatabaseUnavailable.self) {
                try await database.withConnection { _ in 1 }
            }
            await #expect(throws: DatabaseUnavailable.self) {
                try await database.withTransaction(logger: TestDatabase.logger) { _ in 1 }
            }
            // At once: each of the two would otherwise wait the 1 s deadline, 2 s in all.
            #expect(again.duration(to: .now) < .milliseconds(1_900))
            group.cancelAll()
        }
    }

    @Test("a lease behind a pool that leases nothing is given up after the deadline; behind a pool that keeps leasing, it waits its turn")
    func leaseDeadline() async throws {
        let settings = try await TestDatabase.shared.freshDatabase().withMaximumConnections(1)
        let runtime = DatabaseRuntime(settings: settings, cluster: nil)
        try await runtime.withClient(logger: TestDatabase.logger) { client in
            // The pool's one connection is opened first, outside the deadline: opening it
            // on a loaded machine is not what is measured here.
            try await client.query("SELECT 1", logger: TestDatabase.logger)
            let database = DatabaseClient(client, logger: TestDatabase.logger, leaseTimeout: .seconds(2))
            // That connection, held 4 s by a single lease: for over the deadline (2 s) the
            // pool leases nothing, so the leases behind it are given up.
            try await withThrowingTaskGroup(of: Void.self) { group in
                let holding = AsyncStream<Void>.makeStream()
                group.addTask {
                    try await database.withConnection { _ in
                        holding.continuation.yield()
                        try await Task.sleep(for: .seconds(4))
                    }
                }
                for await _ in holding.stream { break }
                // Two leases wait meanwhile, one through each path of the client.
                let began = ContinuousClock.now
                await withTaskGroup(of: Void.self) { waiting in
                    waiting.addTask {
                        _ = await #expect(throws: DatabaseUnavailable.self) {
                            try await database.withConnection { _ in 1 }
                        }
                    }
                    waiting.addTask {
                        _ = await #expect(throws: DatabaseUnavailable.self) {
                            _ = try await database.query("SELECT 1").collect()
                        }
                    }
                }
                // Not before the deadline.
                #expect(began.duration(to: .now) >= .seconds(2))
                try await group.waitForAll()
            }
            // The same wait on a pool that keeps leasing: 40 leases of 200 ms one after
            // another through the one connection, 8 s in all, the last ones waiting longer
            // than the deadline (5 s here) for the ones before them, all served. A lease is
            // given up only if none was granted for 5 s: a margin of 4.8 s over each hold,
            // as the leases' wake-ups can be seconds late when the whole suite runs on two
            // busy cores (2 s was once not enough).
            let patient = DatabaseClient(client, logger: TestDatabase.logger, leaseTimeout: .seconds(5))
            let began = ContinuousClock.now
            let served = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<40 {
                    group.addTask {
                        try await patient.withConnection { connection in
                            try await Task.sleep(for: .milliseconds(200))
                            let query: PostgresQuery = "SELECT \(index)::int8"
                            var answer = -1
                            for try await value in try await connection.query(query, logger: TestDatabase.logger).decode(Int.self) {
                                answer = value
                            }
                            return answer
                        }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(served.sorted() == Array(0..<40))
            #expect(began.duration(to: .now) >= .seconds(8))
        }
    }

    @Test("statements that write are recognised, reads are not")
    func writeDetection() {
        #expect(DatabaseClient.writes("UPDATE jobs SET state = 'done' WHERE id = $1"))
        #expect(DatabaseClient.writes("insert into alerts (id) values ($1)"))
        #expect(DatabaseClient.writes("WITH gone AS (DELETE FROM jobs WHERE x RETURNING 1) SELECT count(*) FROM gone"))
        #expect(DatabaseClient.writes("SELECT id FROM jobs FOR UPDATE SKIP LOCKED"))  // harmless in a transaction
        #expect(!DatabaseClient.writes("SELECT updated_at, deleted, inserted_by FROM movements"))
        #expect(!DatabaseClient.writes("SELECT 1"))
    }

    @Test("a single-statement write returns its rows, read before it returns; its errors come out unwrapped")
    func writesReturnTheirRows() async throws {
        try await withFreshStore(as: .owner) { store in
            let created = try await store.createEcosystem(name: "Durable", shipperName: "Shipper", shipperPGLN: nil)
            // Its RETURNING rows are read, then handed back once PostgreSQL has committed.
            var names: [String] = []
            for try await name in try await store.client.query("""
                UPDATE ecosystems SET name = name || ' network' WHERE id = \(created.ecosystem.id) RETURNING name
                """).decode(String.self) {
                names.append(name)
            }
            #expect(names == ["Durable network"])
            #expect(try await store.ecosystem(created.ecosystem.id)?.name == "Durable network")
            // A write's failure is the server's error, not a transaction wrapper.
            await #expect(throws: PSQLError.self) {
                try await store.client.query("UPDATE ecosystems SET name = NULL WHERE id = \(created.ecosystem.id)")
            }
            #expect(try await store.ecosystem(created.ecosystem.id)?.name == "Durable network")
        }
    }

    /// A deferred constraint trigger that refuses every commit of a transaction that
    /// inserted into `table`: PostgreSQL runs it at commit, after it has sent the
    /// statement's CommandComplete, as a crash in the middle of the commit would.
    func refuseCommits(insertingInto table: String, _ store: Store) async throws {
        try await store.client.query("""
            CREATE OR REPLACE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'commit refused by the test'; END $$
            """)
        try await store.client.query(PostgresQuery(unsafeSQL: """
            CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON \(table)
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit()
            """))
    }

    @Test("a write is answered only once PostgreSQL has committed it: a commit that fails after the statement completed fails the write, and nothing is written")
    func writesAnswerAfterTheirCommit() async throws {
        try await withFreshStore(as: .owner) { store in
            let fixture = try await Fixture.make(store)
            // A declaration (Store.post): a transfer of 12 EPAL from the shipper to the carrier.
            let declaration = MovementDeclaration(
                kind: .transfer, eventTime: TestClock.now(),
                from: PartyAtSite(party: fixture.shipper.id, site: fixture.shipper.site),
                to: PartyAtSite(party: fixture.carrier.id, site: fixture.carrier.site),
                lines: [MovementLine(palletType: fixture.epal, quality: .a, quantity: 12)])
            func post() async throws -> PostOutcome {
                try await store.post(ecosystem: fixture.ecosystem, by: fixture.shipper.id, [MovementToPost(
                    id: newID(), declaration: declaration, declarer: fixture.shipper.id, counterparty: fixture.carrier.id,
                    recordTime: TestClock.now(), postings: LedgerRules.postings(for: declaration), confirmed: true)],
                    idempotency: nil)
            }
            func count(_ table: String) async throws -> Int64 {
                var total: Int64 = -1
                for try await n in try await store.client.query(PostgresQuery(unsafeSQL: "SELECT count(*) FROM \(table)"))
                    .decode(Int64.self) { total = n }
                return total
            }
            try await refuseCommits(insertingInto: "ledger_entries", store)
            await #expect(throws: (any Error).self, "a declaration whose commit failed must not be answered as posted") {
                _ = try await post()
            }
            #expect(try await count("movements") == 0)
            #expect(try await count("ledger_entries") == 0)
            // The same through DatabaseClient.query, the path of the other single-statement writes.
            try await store.client.query("CREATE TABLE commit_probe (n int)")
            try await refuseCommits(insertingInto: "commit_probe", store)
            await #expect(throws: (any Error).self, "a write whose commit failed must not be answered") {
                try await store.client.query("INSERT INTO commit_probe VALUES (1) RETURNING n")
            }
            #expect(try await count("commit_probe") == 0)
            // Once commits go through again, both answer, and the ledger holds the transfer.
            try await store.client.query("DROP TRIGGER refuse_commit ON ledger_entries")
            try await store.client.query("DROP TRIGGER refuse_commit ON commit_probe")
            #expect(try await post() == .posted)
            try await store.client.query("INSERT INTO commit_probe VALUES (1)")
            #expect(try await count("commit_probe") == 1)
            #expect(try await count("movements") == 1)
            #expect(try await store.verifyLedger(ecosystem: fixture.ecosystem).holds)
        }
    }
}
