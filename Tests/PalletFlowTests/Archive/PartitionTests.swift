import Crypto
import Foundation
import PalletFlowCore
import PalletFlowStore
import PostgresNIO
import Testing

@Suite("Time partitions of the ledger and the archive command")
struct PartitionTests {
    /// Every account's balance and confirmed balance, keyed so two moments compare.
    func balances(_ store: Store, _ ecosystem: UUID) async throws -> [String: [Int64]] {
        var result: [String: [Int64]] = [:]
        for balance in try await store.balances(ecosystem: ecosystem, classes: AccountClass.allCases, party: nil, asOf: nil) {
            let key = balance.key
            result["\(key.accountClass) \(key.party) \(key.counterparty) \(key.site) \(key.palletType) \(key.quality)"] =
                [balance.balance, balance.confirmed]
        }
        return result
    }

    /// A confirmed transfer of `quantity` EPAL (quality A) recorded at `recorded`.
    func transfer(_ store: Store, _ fixture: Fixture, from: Fixture.Party, to: Fixture.Party, _ quantity: Int64,
                  recorded: Date, confirmed: Bool = true) async throws -> UUID {
        let declaration = MovementDeclaration(
            kind: .transfer, eventTime: Instant(recorded.addingTimeInterval(-3_600)),
            from: PartyAtSite(party: from.id, site: from.site), to: PartyAtSite(party: to.id, site: to.site),
            lines: [MovementLine(palletType: fixture.epal, quality: .a, quantity: quantity)])
        let id = newID(at: recorded)
        _ = try await store.post(ecosystem: fixture.ecosystem, by: from.id, [MovementToPost(
            id: id, declaration: declaration, declarer: from.id, counterparty: to.id, recordTime: Instant(recorded),
            postings: LedgerRules.postings(for: declaration), confirmed: confirmed)], idempotency: nil)
        return id
    }

    func partition(of table: String, column: String, id: UUID, _ store: Store) async throws -> String? {
        for try await name in try await store.client.query(PostgresQuery(unsafeSQL: """
            SELECT tableoid::regclass::text FROM \(table) WHERE \(column) = $1 LIMIT 1
            """, binds: { var binds = PostgresBindings(); binds.append(id); return binds }()), logger: store.logger).decode(String.self) {
            return name
        }
        return nil
    }

    /// The UTC month start `months` away from the current one.
    func monthStart(_ months: Int) -> Date { TestClock.now().utcMonthStart(adding: months).date }

    @Test("a time-ordered id gives back the millisecond it was made for; other ids carry no time")
    func idTime() {
        let instant = Date(timeIntervalSince1970: 1_772_668_800.123)  // 2026-03-05T00:00:00.123Z
        #expect(recordingInstant(of: newID(at: instant))?.microsecondsSinceEpoch == 1_772_668_800_123_000)
        #expect(recordingInstant(of: UUID(uuidString: "5d41402a-bc4b-4a76-b971-9d911017c592")!) == nil)
    }

    @Test("a movement, its lines and its entries live in the partition of the month it was recorded in; partitions refuse TRUNCATE")
    func placement() async throws {
        try await withFreshStore(as: .owner) { store in
            let fixture = try await Fixture.make(store)
            let before = Set(try await store.ledgerPartitions().map(\.month))
            let past = monthStart(-5).addingTimeInterval(9 * 86_400)
            try await store.ensureLedgerPartitions(from: Instant(past), through: Instant(past))
            let old = try await transfer(store, fixture, from: fixture.shipper, to: fixture.carrier, 7, recorded: past)
            let now = try await transfer(store, fixture, from: fixture.shipper, to: fixture.carrier, 3, recorded: TestClock.now().date)
            let oldMonth = String(Instant(past).rfc3339(keepingOffset: false).prefix(7)).replacingOccurrences(of: "-", with: "_")
            let thisMonth = String(TestClock.now().rfc3339(keepingOffset: false).prefix(7)).replacingOccurrences(of: "-", with: "_")
            #expect(try await partition(of: "movements", column: "id", id: old, store) == "movements_\(oldMonth)")
            #expect(try await partition(of: "movement_lines", column: "movement_id", id: old, store) == "movement_lines_\(oldMonth)")
            #expect(try await partition(of: "ledger_entries", column: "movement_id", id: old, store) == "ledger_entries_\(oldMonth)")
            #expect(try await partition(of: "movements", column: "id", id: now, store) == "movements_\(thisMonth)")
            #expect(try await partition(of: "ledger_entries", column: "movement_id", id: now, store) == "ledger_entries_\(thisMonth)")
            // The daemon made this month and the next three (under a shifted clock the migrations
            // also made the machine's); the test asked for the one 5 months ago, and only it.
            let months = try await store.ledgerPartitions().map(\.month)
            func name(_ offset: Int) -> String { String(Instant(monthStart(offset)).rfc3339(keepingOffset: false).prefix(7)) }
            #expect(Set([0, 1, 2, 3].map(name)).isSubset(of: before), "\(before)")
            #expect(Set(months) == before.union([name(-5)]), "\(months)")
            // Asking again creates nothing.
            #expect(try await store.ensureLedgerPartitions() == 0)
            for table in ["ledger_entries_\(oldMonth)", "movement_lines_\(oldMonth)", "movements_\(oldMonth)"] {
                await #expect(throws: PSQLError.self) {
                    try await store.client.query(PostgresQuery(unsafeSQL: "TRUNCATE \(table) CASCADE"), logger: store.logger)
                }
            }
            await #expect(throws: PSQLError.self) {
                try await store.client.query("DELETE FROM ledger_entries WHERE movement_id = \(old)", logger: store.logger)
            }
            #expect(try await store.verifyLedger(ecosystem: fixture.ecosystem).holds)
        }
    }

    @Test("a line or an entry whose movement does not exist is refused: this month, a month created later, the default partition")
    func linesAndEntriesNeedTheirMovement() async throws {
        try await withFreshStore { store in
            let fixture = try await Fixture.make(store)
            let existing = try await transfer(store, fixture, from: fixture.shipper, to: fixture.carrier, 2, recorded: TestClock.now().date)
            var account: Int64?
            for try await id in try await store.client.query(
                "SELECT id FROM accounts WHERE ecosystem_id = \(fixture.ecosystem) LIMIT 1", logger: store.logger
            ).decode(Int64.self) { account = id }
            let later = monthStart(7).addingTimeInterval(86_400)
            #expect(try await store.ensureLedgerPartitions(from: Instant(later), through: Instant(later)) == 1)
            func line(_ movement: UUID, _ number: Int16) -> PostgresQuery {
                """
                INSERT INTO movement_lines (ecosystem_id, movement_id, line_no, pallet_type_id, quality, quantity,
                                            exchanged_quantity, exchanged_quality)
                VALUES (\(fixture.ecosystem), \(movement), \(number), \(fixture.epal), 'A', 1, 0, 'A')
                """
            }
            func entry(_ movement: UUID) -> PostgresQuery {
                """
                INSERT INTO ledger_entries (ecosystem_id, movement_id, account_id, amount, event_time)
                VALUES (\(fixture.ecosystem), \(movement), \(account ?? 0), 5, now())
                """
            }
            // No movement has these ids: one of this month, one of the month made above (after
            // the migrations), one that carries no time (the default partition).
            let missing = [newID(), newID(at: later), UUID(uuidString: "5d41402a-bc4b-4a76-b971-9d911017c592")!]
            for movement in missing {
                for query in [line(movement, 0), entry(movement)] {
                    do {
                        try await store.client.query(query, logger: store.logger)
                        Issue.record("a row for the missing movement \(movement) was written")
                    } catch let error as PSQLError {
                        #expect(error.serverInfo?[.sqlState] == "23503", "\(String(reflecting: error))")
                    }
                }
            }
            // The movement that exists takes another line: the check is on the movement, not the table.
            try await store.client.query(line(existing, 1), logger: store.logger)
            #expect(try await partition(of: "movement_lines", column: "movement_id", id: existing, store) != nil)
        }
    }

    @Test("archive: old months go to files with checksums, balances and ledger verify still hold, open months stop it")
    func archive() async throws {
        try await withAPIAndOwner { api, fixture, store, owner in
            let older = monthStart(-16).addingTimeInterval(4 * 86_400)
            let old = monthStart(-15).addingTimeInterval(3 * 86_400)
            try await store.ensureLedgerPartitions(from: Instant(older), through: Instant(old))
            // 16 months ago the carrier took 8, still waiting for the shipper's confirmation.
            let pending = try await transfer(store, fixture, from: fixture.carrier, to: fixture.shipper, 8, recorded: older,
                                             confirmed: false)
            // 15 months ago: the shipper gave 30, the carrier brought 20 back; this month 5 more.
            _ = try await transfer(store, fixture, from: fixture.shipper, to: fixture.carrier, 30, recorded: old)
            _ = try await transfer(store, fixture, from: fixture.carrier, to: fixture.shipper, 20,
                                   recorded: old.addingTimeInterval(86_400))
            _ = try await transfer(store, fixture, from: fixture.carrier, to: fixture.shipper, 5, recorded: TestClock.now().date)
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("archive-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: directory) }
            let cutoff = Instant(monthStart(-14))

            // The declared movement stops the run before anything leaves the database.
            let before = try await balances(store, fixture.ecosystem)
            let partitions = try await owner.ledgerPartitions().count
            await #expect(throws: ArchiveError.self) {
                try await owner.archive(before: cutoff, keepMonths: 14, to: directory) { _ in }
            }
            #expect(try await owner.ledgerPartitions().count == partitions)
            #expect(try await store.archiveHorizon(ecosystem: fixture.ecosystem) == nil)
            // Too recent a cutoff is refused too.
            await #expect(throws: ArchiveError.self) {
                try await owner.archive(before: Instant(monthStart(-2)), keepMonths: 14, to: directory) { _ in }
            }

            // Contested, it is still open; resolved as declared, it is settled (and confirmed).
            _ = try await store.contest(ecosystem: fixture.ecosystem, movement: pending, by: fixture.shipper.id,
                                        counterLines: [CounterLine(lineNo: 0, quantity: 6, exchangedQuantity: 0)],
                                        evidence: nil, note: "only 6 arrived")
            await #expect(throws: ArchiveError.self) {
                try await owner.archive(before: cutoff, keepMonths: 14, to: directory) { _ in }
            }
            _ = try await store.resolve(ecosystem: fixture.ecosystem, movement: pending, by: fixture.shipper.id,
                                        resolution: .declared, agreedLines: nil, note: "the CMR says 8")
            let confirmedBefore = try await balances(store, fixture.ecosystem)
            let archived = try await owner.archive(before: cutoff, keepMonths: 14, to: directory) { _ in }
            #expect(archived.map(\.month) == [older, old].map { String(Instant($0).rfc3339(keepingOffset: false).prefix(7)) })
            #expect(archived.map(\.movements) == [1, 2])
            #expect(archived.map(\.lines) == [1, 2])
            #expect(archived.map(\.discrepancies) == [1, 0])
            #expect(archived.allSatisfy { $0.verification.holds })
            // The archive disabled the EPCIS events' append-only trigger for its deletion, and
            // gave it back as sql/0020 made it: firing always ("A"), whatever the session's role.
            var states: [String] = []
            for try await state in try await owner.client.query("""
                SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'epcis_events_append_only'
                """, logger: owner.logger).decode(String.self) { states.append(state) }
            #expect(states == ["A"])

            // Every balance is what it was; the live ledger holds only this month's movement.
            #expect(try await balances(store, fixture.ecosystem) == confirmedBefore)
            #expect(before != confirmedBefore)
            let verification = try await store.verifyLedger(ecosystem: fixture.ecosystem)
            #expect(verification.holds)
            #expect(verification.movements == 1)
            // The two archived months' partitions are gone, no other.
            #expect(try await owner.ledgerPartitions().count == partitions - 2)

            // What the carrier owes the shipper: 30 received, 20 and 8 given back before the
            // horizon (opening 2), 5 given back since (closing -3: the shipper owes it 3).
            let horizon = try #require(try await store.archiveHorizon(ecosystem: fixture.ecosystem))
            // The month after the last one archived.
            #expect(horizon.microsecondsSinceEpoch == Instant(monthStart(-14)).microsecondsSinceEpoch)
            let statement = try await store.statement(ecosystem: fixture.ecosystem, party: fixture.carrier.id,
                                                      counterparty: fixture.shipper.id, from: horizon,
                                                      until: Instant(TestClock.now().date.addingTimeInterval(3_600)))
            let line = try #require(statement.lines.first { $0.palletType == fixture.epal && $0.quality == .a })
            #expect(line.opening == 30 - 20 - 8)
            #expect(line.movements == -5)
            #expect(line.closing == 30 - 20 - 8 - 5)
            // Before the horizon the entries are gone: the store says so rather than guess.
            await #expect(throws: StoreError.self) {
                try await store.statement(ecosystem: fixture.ecosystem, party: fixture.carrier.id,
                                          counterparty: fixture.shipper.id, from: Instant(older), until: horizon)
            }

            // Through the API: as-of balances before the horizon are refused (409), not guessed;
            // after it they are the archived sums plus the live entries.
            let refused = try await api.get(
                "\(fixture.base)/balances?party=\(fixture.carrier.id.lower)&asOf=\(Instant(old).rfc3339(keepingOffset: false))",
                token: fixture.shipper.token)
            #expect(refused.status == .conflict)
            #expect(refused.text.contains("archived"))
            let now = try await api.get(
                "\(fixture.base)/balances?party=\(fixture.carrier.id.lower)&asOf=\(Instant(TestClock.now().date.addingTimeInterval(60)).rfc3339(keepingOffset: false))",
                token: fixture.shipper.token)
            #expect(now.status == .ok)
            let owed = now.items.filter { $0["counterpartyId"] as? String == fixture.shipper.id.lower }
                .compactMap { $0["balance"] as? Int }.reduce(0, +)
            #expect(owed == 30 - 20 - 8 - 5)

            // The files hold the rows, and the manifest's sums are theirs.
            for month in archived {
                let folder = directory.appendingPathComponent(month.month)
                let manifest = try JSONDecoder().decode(ArchiveManifest.self,
                                                        from: Data(contentsOf: folder.appendingPathComponent("manifest.json")))
                #expect(manifest.rows["movements"] == month.movements)
                for (file, sum) in manifest.sha256 {
                    let data = try Data(contentsOf: folder.appendingPathComponent(file))
                    #expect(SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined() == sum)
                }
                let movements = try String(decoding: Data(contentsOf: folder.appendingPathComponent("movements.jsonl")), as: UTF8.self)
                #expect(movements.split(separator: "\n").count == Int(month.movements))
                let entries = try String(decoding: Data(contentsOf: folder.appendingPathComponent("ledger_entries.jsonl")),
                                         as: UTF8.self)
                // A transfer between two parties posts 4 entries (two holdings, two bilateral).
                #expect(entries.split(separator: "\n").count == 4 * Int(month.movements))
                let discrepancies = try String(decoding: Data(contentsOf: folder.appendingPathComponent("discrepancies.jsonl")),
                                               as: UTF8.self)
                #expect(discrepancies.split(separator: "\n").count == Int(month.discrepancies))
            }
            // The archived movement is gone from the API too.
            #expect(try await api.get("\(fixture.base)/movements/\(pending.lower)", token: fixture.shipper.token).status == .notFound)
            // Archiving again finds nothing older than the cutoff.
            #expect(try await owner.archive(before: cutoff, keepMonths: 14, to: directory) { _ in }.isEmpty)
        }
    }
}

@Suite("Upgrading to the time partitions")
struct PartitionUpgradeTests {
    @Test("a database at schema 8 keeps every ledger row: time-ordered ids go to their month, others to the default partition")
    func upgradeKeepsRows() async throws {
        let settings = try await TestDatabase.shared.emptyDatabase()
        try await DatabaseRuntime(settings: settings, cluster: nil).withClient(logger: TestDatabase.logger) { client in
            try await Migrator(migrations: Migration.all.filter { $0.version <= 8 }).migrate(client, logger: TestDatabase.logger)
            // Tests/Fixtures, whatever the folder of this file.
            let root = URL(fileURLWithPath: #filePath.components(separatedBy: "/Tests/")[0] + "/Tests")
            let rows = try String(decoding: Data(contentsOf: root.appendingPathComponent("Fixtures/migrations/0008_ledger_rows.sql")),
                                  as: UTF8.self)
            for statement in SQLScript.statements(rows) {
                try await client.query(PostgresQuery(unsafeSQL: statement), logger: TestDatabase.logger)
            }
            #expect(try await Migrator().migrate(client, logger: TestDatabase.logger).contains(9))

            var placed: [String: String] = [:]
            for try await (id, table) in try await client.query(
                "SELECT id::text, tableoid::regclass::text FROM movements", logger: TestDatabase.logger).decode((String, String).self) {
                placed[id] = table
            }
            #expect(placed == ["019cb000-0000-7000-8000-000000000001": "movements_2026_03",
                               "5d41402a-bc4b-4a76-b971-9d911017c592": "movements_default"])
            var entries: [String: Int64] = [:]
            for try await (table, count) in try await client.query(
                "SELECT tableoid::regclass::text, count(*)::int8 FROM ledger_entries GROUP BY 1", logger: TestDatabase.logger
            ).decode((String, Int64).self) { entries[table] = count }
            #expect(entries == ["ledger_entries_2026_03": 2, "ledger_entries_default": 2])
            // The discrepancy still refers to its movement, and the ledger still verifies.
            await #expect(throws: PSQLError.self) {
                try await client.query("""
                    INSERT INTO discrepancies (ecosystem_id, id, movement_id, contested_by, counter_lines)
                    VALUES ('00000000-0000-0000-0000-0000000000e1', '00000000-0000-0000-0000-0000000000d2',
                            '00000000-0000-0000-0000-00000000dead', '00000000-0000-0000-0000-0000000000b2', '[]')
                    """, logger: TestDatabase.logger)
            }
            let store = Store(database: DatabaseClient(client, logger: TestDatabase.logger, leaseTimeout: .seconds(20)),
                              logger: TestDatabase.logger, clock: TestClock.clock)
            let verification = try await store.verifyLedger()
            #expect(verification.holds)
            #expect(verification.movements == 2 && verification.entries == 4)
            // New rows continue the sequences after the copied ones (seq 1 and 2).
            for try await next in try await client.query("SELECT nextval('movements_seq_seq')::int8", logger: TestDatabase.logger)
                .decode(Int64.self) { #expect(next == 3) }
        }
    }
}
