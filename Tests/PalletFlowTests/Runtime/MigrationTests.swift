import Foundation
import PalletFlowStore
import PostgresNIO
import Testing

@Suite("Migrations")
struct MigrationTests {
    @Test("apply every file once, record checksums, and do nothing the second time")
    func appliesOnce() async throws {
        let settings = try await TestDatabase.shared.emptyDatabase()
        try await DatabaseRuntime(settings: settings, cluster: nil).withClient(logger: TestDatabase.logger) { client in
            let first = try await Migrator().migrate(client, logger: TestDatabase.logger)
            #expect(first == Migration.all.map(\.version))
            #expect(first.count >= 2)
            let second = try await Migrator().migrate(client, logger: TestDatabase.logger)
            #expect(second.isEmpty)
            var recorded: [Int: String] = [:]
            for try await (version, checksum) in try await client.query(
                "SELECT version, checksum FROM schema_migrations").decode((Int, String).self) {
                recorded[version] = checksum
            }
            for migration in Migration.all { #expect(recorded[migration.version] == migration.checksum) }
            #expect(try await Migrator().isUpToDate(client, logger: TestDatabase.logger))
        }
    }

    @Test("an edited, already-applied file stops the migrator with a clear error")
    func editedFileRefused() async throws {
        let settings = try await TestDatabase.shared.emptyDatabase()
        try await DatabaseRuntime(settings: settings, cluster: nil).withClient(logger: TestDatabase.logger) { client in
            try await Migrator().migrate(client, logger: TestDatabase.logger)
            var edited = Migration.all
            edited[0].sql += "\n-- a harmless looking edit\n"
            let error = await #expect(throws: MigrationError.self) {
                try await Migrator(migrations: edited).migrate(client, logger: TestDatabase.logger)
            }
            #expect(error?.description.contains("0001") == true || error?.description.contains("1_foundation") == true)
            #expect(error?.description.contains("edited after it was applied") == true)
            #expect(try await Migrator(migrations: edited).isUpToDate(client, logger: TestDatabase.logger) == false)
        }
    }

    @Test("a failing migration is rolled back whole")
    func failingMigrationRollsBack() async throws {
        let settings = try await TestDatabase.shared.emptyDatabase()
        try await DatabaseRuntime(settings: settings, cluster: nil).withClient(logger: TestDatabase.logger) { client in
            let broken = Migration.all + [Migration(version: 9999, name: "broken",
                                                    sql: "CREATE TABLE half_done (id int);\nSELECT no_such_function();")]
            await #expect(throws: MigrationError.self) {
                try await Migrator(migrations: broken).migrate(client, logger: TestDatabase.logger)
            }
            var tables = 0
            for try await count in try await client.query(
                "SELECT count(*)::int8 FROM pg_tables WHERE tablename = 'half_done'").decode(Int64.self) { tables = Int(count) }
            #expect(tables == 0)
            var applied: [Int] = []
            for try await version in try await client.query("SELECT version FROM schema_migrations ORDER BY 1").decode(Int.self) {
                applied.append(version)
            }
            #expect(applied == Migration.all.map(\.version))
        }
    }

    @Test("concurrent starters serialize on the advisory lock: each file applied exactly once")
    func concurrentMigrators() async throws {
        let settings = try await TestDatabase.shared.emptyDatabase()
        try await DatabaseRuntime(settings: settings, cluster: nil).withClient(logger: TestDatabase.logger) { client in
            let results = try await withThrowingTaskGroup(of: [Int].self) { group in
                for _ in 0..<4 { group.addTask { try await Migrator().migrate(client, logger: TestDatabase.logger) } }
                return try await group.reduce(into: [[Int]]()) { $0.append($1) }
            }
            #expect(results.flatMap { $0 }.sorted() == Migration.all.map(\.version))
        }
    }

    @Test("SQL scripts split at top-level semicolons only")
    func scriptSplitting() {
        let script = """
            -- comment; with a semicolon
            CREATE TABLE a (b text DEFAULT 'x;y');
            CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;
            /* block; comment */ SELECT "odd;name" FROM a
            """
        let statements = SQLScript.statements(script)
        #expect(statements.count == 3)
        #expect(statements[0] == "CREATE TABLE a (b text DEFAULT 'x;y')")
        #expect(statements[1].hasSuffix("BEGIN RETURN 1; END $$"))
        #expect(statements[2].hasSuffix("SELECT \"odd;name\" FROM a"))
    }
}

@Suite("Upgrading to the period lateness histograms")
struct PeriodHistogramUpgradeTests {
    @Test("migration 15 derives the week and month histograms from the lateness already counted")
    func derivesHistograms() async throws {
        let settings = try await TestDatabase.shared.emptyDatabase()
        try await DatabaseRuntime(settings: settings, cluster: nil).withClient(logger: TestDatabase.logger) { client in
            try await Migrator(migrations: Migration.all.filter { $0.version <= 14 }).migrate(client, logger: TestDatabase.logger)
            // One relationship's own declarations, as the state at schema 14 counts them:
            // (UTC day number, lateness in seconds, declarations). Day 20775 is Wednesday
            // 2026-11-18, 20787 Monday 2026-11-30, 20788 Tuesday 2026-12-01.
            let counted: [(Int, Int64, Int64)] = [(20775, 100, 2), (20775, 5_000, 1), (20775, 90_000, 3),
                                                   (20787, 86_401, 1), (20788, 86_400, 1)]
            let ecosystem = UUID(), partner = UUID(), type = UUID()
            for (day, lateness, declarations) in counted {
                try await client.query("""
                    INSERT INTO indicator_lateness (ecosystem_id, partner_id, pallet_type_id, day, lateness_seconds, declarations)
                    VALUES (\(ecosystem), \(partner), \(type), \(day), \(lateness), \(declarations))
                    """, logger: TestDatabase.logger)
            }
            #expect(try await Migrator().migrate(client, logger: TestDatabase.logger).contains(15))
            struct Bucket: Hashable { var start, end: Int; var low, high, declarations, within: Int64 }
            var buckets: Set<Bucket> = []
            for try await (start, end, low, high, declarations, within) in try await client.query("""
                SELECT period_start, period_end, low, high, declarations, within_24h FROM indicator_period_lateness_buckets
                WHERE ecosystem_id = \(ecosystem) AND partner_id = \(partner) AND pallet_type_id = \(type)
                """, logger: TestDatabase.logger).decode((Int, Int, Int64, Int64, Int64, Int64).self) {
                buckets.insert(Bucket(start: start, end: end, low: low, high: high, declarations: declarations, within: within))
            }
            // Buckets: exact below 128 s; 5,000 s has 13 bits, so width 2^6 from 78 x 64 = 4,992;
            // 86,400 to 90,000 s have 17 bits, width 2^10: 86,400 and 86,401 fall in
            // [86,016, 87,040), 90,000 in [89,088, 90,112). Within 24 h: lateness <= 86,400.
            let week1 = (20773, 20780), november = (20758, 20788), week2 = (20787, 20794), december = (20788, 20819)
            func b(_ period: (Int, Int), _ low: Int64, _ high: Int64, _ declarations: Int64, _ within: Int64) -> Bucket {
                Bucket(start: period.0, end: period.1, low: low, high: high, declarations: declarations, within: within)
            }
            #expect(buckets == [
                b(week1, 100, 101, 2, 2), b(week1, 4_992, 5_056, 1, 1), b(week1, 89_088, 90_112, 3, 0),
                b(november, 100, 101, 2, 2), b(november, 4_992, 5_056, 1, 1), b(november, 89_088, 90_112, 3, 0),
                b(november, 86_016, 87_040, 1, 0),
                b(week2, 86_016, 87_040, 2, 1),
                b(december, 86_016, 87_040, 1, 1),
            ])
        }
    }
}
