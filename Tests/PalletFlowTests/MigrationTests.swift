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
