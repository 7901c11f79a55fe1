import Foundation
import NIOPosix
import PalletFlowCore
import PalletFlowStore
import PostgresNIO
import Testing

/// The two database roles (sql/0020, docs/operations.md "Two database roles"): the
/// application role the daemon and the worker connect as cannot rewrite history.
@Suite("Least privilege: the application role cannot rewrite history")
struct PrivilegeTests {
    /// The tables that keep history, with a column holding a fact of each (never one the
    /// application may update). Their partitions are found in the catalog.
    static let history: [(table: String, fact: String)] = [
        ("movements", "note"), ("movement_lines", "quantity"), ("ledger_entries", "amount"), ("accounts", "party_id"),
        ("pallet_notes", "quantity"), ("pallet_note_events", "quantity"), ("discrepancies", "counter_lines"),
        ("audit_log", "action"), ("ledger_archived_totals", "amount"), ("ledger_archives", "movements"),
        ("epcis_events", "document"), ("epcis_capture_jobs", "outcomes"), ("statement_answers", "answer"),
        ("statements_issued", "closing"), ("charter_signatures", "content_hash"),
    ]

    func connect(_ settings: DatabaseSettings) async throws -> PostgresConnection {
        try await PostgresConnection.connect(on: MultiThreadedEventLoopGroup.singleton.next(), configuration: settings.probe,
                                             id: 7, logger: TestDatabase.logger)
    }

    /// The SQLSTATE `sql` fails with, or nil when it succeeds.
    func failure(of sql: String, on connection: PostgresConnection) async -> String? {
        do {
            _ = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: TestDatabase.logger).collect()
            return nil
        } catch let error as PSQLError {
            return error.serverInfo?[.sqlState] ?? "no SQLSTATE: \(String(reflecting: error))"
        } catch {
            return "\(error)"
        }
    }

    func strings(_ sql: PostgresQuery, on connection: PostgresConnection) async throws -> [String] {
        var result: [String] = []
        for try await value in try await connection.query(sql, logger: TestDatabase.logger).decode(String.self) { result.append(value) }
        return result
    }

    @Test("app_privileges names every table of the schema, and only tables that exist")
    func everyTableListed() async throws {
        try await withFreshStore(as: .owner) { store in
            try await store.client.withConnection { connection in
                // A table a migration adds without its row here would give the application nothing.
                let unlisted = try await strings("""
                    SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                      AND c.relname NOT IN (SELECT table_name FROM app_privileges) ORDER BY 1
                    """, on: connection)
                #expect(unlisted == [], "add these tables to app_privileges in a new migration")
                let stale = try await strings("""
                    SELECT table_name FROM app_privileges WHERE to_regclass(quote_ident(table_name)) IS NULL ORDER BY 1
                    """, on: connection)
                #expect(stale == [])
                #expect(try await strings("SELECT * FROM apply_app_privileges()", on: connection) == [])
            }
        }
    }

    @Test("as the application role, UPDATE of a fact, DELETE, TRUNCATE, DISABLE TRIGGER, session_replication_role, DETACH and DROP are refused on every ledger table and partition")
    func historyCannotBeRewritten() async throws {
        try await withAPIAndOwner { api, fixture, store, owner in
            // A movement of this month, and a month created now, ahead, by the application role
            // itself (through the owner's function), beside the DEFAULT partitions.
            let posted = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token,
                                            json: LedgerAPITests.pickup(fixture, quantity: 10, exchanged: 2), key: "p-1")
            #expect(posted.status == .created, "\(posted.text)")
            let ahead = TestClock.now().utcMonthStart(adding: 7)
            #expect(try await store.ensureLedgerPartitions(from: ahead, through: ahead) == 1)
            let aheadSuffix = String(ahead.rfc3339(keepingOffset: false).prefix(7)).replacingOccurrences(of: "-", with: "_")

            try await store.client.withConnection { app in
                try await owner.client.withConnection { root in
                    #expect(try await strings("SELECT current_user::text", on: app) == ["palletflow_app"])
                    #expect(try await DatabaseRoles.canRewriteHistory(app, logger: TestDatabase.logger) == false)
                    #expect(try await DatabaseRoles.canRewriteHistory(root, logger: TestDatabase.logger) == true)

                    var checked: [String] = []
                    for (table, fact) in Self.history {
                        let partitions = try await strings("""
                            SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                            WHERE i.inhparent = to_regclass(\(table)) ORDER BY 1
                            """, on: root)
                        if ["movements", "movement_lines", "ledger_entries"].contains(table) {
                            #expect(partitions.contains("\(table)_default"))
                            #expect(partitions.contains("\(table)_\(aheadSuffix)"))
                            #expect(partitions.count >= 6)  // DEFAULT, this month, the months ahead
                        }
                        for relation in [table] + partitions {
                            // 42501: insufficient_privilege ("permission denied", "must be owner").
                            #expect(await failure(of: "UPDATE \(relation) SET \(fact) = \(fact)", on: app) == "42501", "\(relation)")
                            #expect(await failure(of: "DELETE FROM \(relation)", on: app) == "42501", "\(relation)")
                            #expect(await failure(of: "TRUNCATE \(relation)", on: app) == "42501", "\(relation)")
                            #expect(await failure(of: "ALTER TABLE \(relation) DISABLE TRIGGER ALL", on: app) == "42501", "\(relation)")
                            checked.append(relation)
                        }
                        for partition in partitions {
                            #expect(await failure(of: "ALTER TABLE \(table) DETACH PARTITION \(partition)", on: app) == "42501", "\(partition)")
                            #expect(await failure(of: "DROP TABLE \(partition)", on: app) == "42501", "\(partition)")
                        }
                    }
                    #expect(checked.contains("movements_default") && checked.contains("ledger_entries_\(aheadSuffix)"))
                    #expect(await failure(of: "SET session_replication_role = replica", on: app) == "42501")
                    // Nothing changed: the movement and its entries are all there.
                    #expect(try await strings("SELECT count(*)::text FROM movements", on: app) == ["1"])
                    #expect(try await store.verifyLedger(ecosystem: fixture.ecosystem).holds)

                    // Every guard trigger fires always, on every table and partition, the new month's too.
                    let notAlways = try await strings("""
                        SELECT t.tgrelid::regclass::text || '.' || t.tgname FROM pg_trigger t
                        WHERE t.tgfoid = ANY (guard_trigger_functions()) AND t.tgenabled <> 'A' ORDER BY 1
                        """, on: root)
                    #expect(notAlways == [])
                    let aheadTriggers = try await strings("""
                        SELECT t.tgname::text FROM pg_trigger t
                        WHERE t.tgrelid = to_regclass(\("movements_" + aheadSuffix)) AND t.tgfoid = ANY (guard_trigger_functions())
                          AND t.tgenabled = 'A' ORDER BY 1
                        """, on: root)
                    #expect(aheadTriggers == ["movements_\(aheadSuffix)_no_truncate", "movements_guard_update", "movements_no_delete"])
                    // The partitions belong to the owner, whoever asked for them.
                    #expect(try await strings("""
                        SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE relname = \("ledger_entries_" + aheadSuffix)
                        """, on: root) == ["postgres"])
                }
            }
        }
    }

    @Test("the setup command creates the application role, sets its password as a SCRAM verifier and grants what the list says")
    func setUpCommand() async throws {
        try await withFreshStore(as: .owner) { store in
            let name = "pf_app_\(UInt32.random(in: 1...UInt32.max))"
            let report = try await DatabaseRoles.setUp(applicationRole: name, password: "correct horse", client: store.client,
                                                       logger: store.logger)
            #expect(report.created && report.passwordSet)
            // sql/0020's list: 53 tables; SELECT on all but app_privileges and app_roles; INSERT on 48
            // (not on schema_migrations and the two archive tables); UPDATE and DELETE of the 7
            // tables of derived indicators; UPDATE of some columns on 23.
            #expect([report.select, report.insert, report.update, report.delete, report.updateColumnsOnly] as [Int] == [51, 48, 7, 7, 23])
            // Nothing on any partition: DEFAULT and at least this month to three months ahead, of
            // 3 tables (under a shifted clock the migrations also made the machine's months).
            let partitions = try await store.client.withConnection { connection in
                try await strings("""
                    SELECT count(*)::text FROM pg_inherits
                    WHERE inhparent IN ('movements'::regclass, 'movement_lines'::regclass, 'ledger_entries'::regclass)
                    """, on: connection)
            }
            #expect(report.partitions >= 15 && [String(report.partitions)] == partitions)
            #expect(report.unlisted == [])
            let again = try await DatabaseRoles.setUp(applicationRole: name, password: nil, client: store.client, logger: store.logger)
            #expect(!again.created && !again.passwordSet && again.select == 51)
            try await store.client.withConnection { connection in
                let rows = try await strings("""
                    SELECT rolpassword::text FROM pg_authid WHERE rolname = \(name) AND rolpassword LIKE 'SCRAM-SHA-256$4096:%'
                    """, on: connection)
                #expect(rows.count == 1)
                #expect(try await strings("SELECT role_name FROM app_roles ORDER BY 1", on: connection) == [name, "palletflow_app"].sorted())
            }
            // Refused: a superuser, and the owner itself.
            await #expect(throws: DatabaseRoleError.self) {
                _ = try await DatabaseRoles.setUp(applicationRole: "postgres", password: nil, client: store.client, logger: store.logger)
            }
            // The new role connects and reads, and may not rewrite.
            let database = try await store.client.withConnection { try await strings("SELECT current_database()::text", on: $0) }
            let settings = DatabaseSettings.embedded(try await TestDatabase.shared.start(), database: database.first ?? "", role: name)
            let app = try await connect(settings)
            defer { Task { try? await app.close() } }
            #expect(try await strings("SELECT count(*)::text FROM movements", on: app) == ["0"])
            #expect(await failure(of: "DELETE FROM ledger_entries", on: app) == "42501")
        }
    }

    @Test("a SCRAM-SHA-256 verifier is PostgreSQL's (vector from Python's hashlib.pbkdf2_hmac and hmac)")
    func scramVerifier() {
        #expect(DatabaseRoles.scramVerifier(password: "correct horse", salt: Array(0..<16)) ==
                "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$yERwYmHlx0VrpoYfOn54hMTjBUKWnmK42IDjnWgQWkk=:RQZr9F8QCYmmp35tAVzp0VB/kDwY283N+s24jDDliG4=")
    }

    @Test("the application role does not migrate: up to date it goes on, with a migration missing it says to run palletflow migrate as the owner")
    func applicationRoleDoesNotMigrate() async throws {
        try await withFreshStore { store in
            #expect(try await Migrator().migrate(store.client, logger: store.logger) == [])
            let newer = Migrator(migrations: Migration.all + [Migration(version: 9_999, name: "later", sql: "CREATE TABLE later (id int)")])
            do {
                try await newer.migrate(store.client, logger: store.logger)
                Issue.record("the application role applied a migration")
            } catch let error as MigrationError {
                #expect(error.needsOwner)
                #expect(error.description.contains("migrations 9999"))
                #expect(error.description.contains("palletflow migrate"))
            }
        }
    }

    @Test("a table a later migration adds gets nothing until app_privileges names it; the migrator grants again after every run")
    func laterTableGetsNothing() async throws {
        let settings = try await TestDatabase.shared.freshDatabase(as: .owner)
        let appSettings = try await TestDatabase.shared.settings(settings, as: .application)
        try await DatabaseRuntime(settings: settings, cluster: nil).withClient(logger: TestDatabase.logger) { client in
            let later = Migrator(migrations: Migration.all + [
                Migration(version: 9_998, name: "later", sql: "CREATE TABLE later_things (id int)"),
            ])
            #expect(try await later.migrate(client, logger: TestDatabase.logger) == [9_998])
            let app = try await connect(appSettings)
            defer { Task { try? await app.close() } }
            #expect(await failure(of: "SELECT * FROM later_things", on: app) == "42501")
            // Listed (as a later migration would), the next run of the migrator grants it.
            _ = try await client.query("INSERT INTO app_privileges VALUES ('later_things', '{SELECT}', '{}', 'test')",
                                       logger: TestDatabase.logger)
            #expect(try await later.migrate(client, logger: TestDatabase.logger) == [])
            #expect(await failure(of: "SELECT * FROM later_things", on: app) == nil)
            #expect(await failure(of: "INSERT INTO later_things VALUES (1)", on: app) == "42501")
        }
    }
}
