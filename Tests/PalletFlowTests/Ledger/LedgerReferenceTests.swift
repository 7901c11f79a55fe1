import Foundation
import PalletFlowCore
import PalletFlowStore
import PostgresNIO
import Testing

/// The ledger's rows name members, pallet types and accounts that exist in their own
/// ecosystem (sql/0017 checks it once per statement), and those rows are never deleted
/// nor given another key.
@Suite("The ledger's references: checked per statement, and kept")
struct LedgerReferenceTests {
    /// A confirmed transfer of `quantity` EPAL (quality A) from `from` to `to`, declared by `declarer`.
    func transfer(_ fixture: Fixture, from: UUID, to: UUID, declarer: UUID, _ quantity: Int64,
                  palletType: UUID? = nil) -> MovementToPost {
        let declaration = MovementDeclaration(
            kind: .transfer, eventTime: Instant(TestClock.now().date.addingTimeInterval(-3_600)),
            from: PartyAtSite(party: from, site: nil), to: PartyAtSite(party: to, site: nil),
            lines: [MovementLine(palletType: palletType ?? fixture.epal, quality: .a, quantity: quantity)])
        return MovementToPost(id: newID(), declaration: declaration, declarer: declarer, counterparty: to,
                              recordTime: TestClock.now(), postings: LedgerRules.postings(for: declaration), confirmed: true)
    }

    func count(_ table: String, _ ecosystem: UUID, _ store: Store) async throws -> Int64 {
        var result: Int64 = -1
        for try await value in try await store.client.query(PostgresQuery(unsafeSQL: "SELECT count(*) FROM \(table) WHERE ecosystem_id = $1",
            binds: { var binds = PostgresBindings(); binds.append(ecosystem); return binds }()), logger: store.logger).decode(Int64.self) {
            result = value
        }
        return result
    }

    /// Runs `write` and returns the SQLSTATE and constraint PostgreSQL refused it with.
    func refusal(_ write: () async throws -> Void) async -> (state: String?, constraint: String?) {
        do {
            try await write()
            return (nil, nil)
        } catch let error as PSQLError {
            return (error.serverInfo?[.sqlState], error.serverInfo?[.constraintName])
        } catch {
            return ("\(error)", nil)
        }
    }

    @Test("a movement, line or entry naming a member, pallet type or account of another ecosystem is refused whole; nothing is written")
    func foreignReferences() async throws {
        try await withFreshStore { store in
            let fixture = try await Fixture.make(store)
            // A batch of three, the last one to the other ecosystem's carrier: all refused.
            let batch = [
                transfer(fixture, from: fixture.shipper.id, to: fixture.carrier.id, declarer: fixture.shipper.id, 10),
                transfer(fixture, from: fixture.shipper.id, to: fixture.carrier.id, declarer: fixture.shipper.id, 20),
                transfer(fixture, from: fixture.shipper.id, to: fixture.foreignCarrier.id, declarer: fixture.shipper.id, 30),
            ]
            var refused = await refusal {
                _ = try await store.post(ecosystem: fixture.ecosystem, by: fixture.shipper.id, batch, idempotency: nil)
            }
            #expect(refused.state == "23503")
            #expect(refused.constraint == "movements_to_party_id_ref")
            // Declared by the other ecosystem's shipper, between two members of this one.
            refused = await refusal {
                _ = try await store.post(ecosystem: fixture.ecosystem, by: fixture.foreignShipper.id, [
                    transfer(fixture, from: fixture.shipper.id, to: fixture.carrier.id, declarer: fixture.foreignShipper.id, 5),
                ], idempotency: nil)
            }
            #expect(refused.constraint == "movements_declarer_id_ref")
            for table in ["movements", "movement_lines", "ledger_entries", "accounts"] {
                #expect(try await count(table, fixture.ecosystem, store) == 0, "\(table)")
            }
            #expect(try await declarationsAudited(fixture.ecosystem, store) == 0)

            // One movement that is right: 12 pallets from the shipper to the carrier.
            let good = transfer(fixture, from: fixture.shipper.id, to: fixture.carrier.id, declarer: fixture.shipper.id, 12)
            #expect(try await store.post(ecosystem: fixture.ecosystem, by: fixture.shipper.id, [good], idempotency: nil) == .posted)
            // The other ecosystem's own account, after a transfer there.
            let foreignMove = transfer(fixture, from: fixture.foreignShipper.id, to: fixture.foreignCarrier.id,
                                       declarer: fixture.foreignShipper.id, 4, palletType: fixture.foreignPalletType)
            #expect(try await store.post(ecosystem: fixture.foreignEcosystem, by: fixture.foreignShipper.id, [foreignMove],
                                         idempotency: nil) == .posted)
            var foreignAccount: Int64 = 0
            for try await id in try await store.client.query(
                "SELECT min(id) FROM accounts WHERE ecosystem_id = \(fixture.foreignEcosystem)", logger: store.logger
            ).decode(Int64.self) { foreignAccount = id }
            #expect(foreignAccount > 0)

            // A line of the good movement in the other ecosystem's pallet type.
            refused = await refusal {
                try await store.client.query("""
                    INSERT INTO movement_lines (ecosystem_id, movement_id, line_no, pallet_type_id, quality, quantity,
                                                exchanged_quantity, exchanged_quality)
                    VALUES (\(fixture.ecosystem), \(good.id), 1, \(fixture.foreignPalletType), 'A', 1, 0, 'A')
                    """, logger: store.logger)
            }
            #expect(refused.state == "23503")
            #expect(refused.constraint == "movement_lines_pallet_type_id_ref")
            // Entries of the good movement on the other ecosystem's account, then on none at all.
            for account in [foreignAccount, -1] {
                refused = await refusal {
                    try await store.client.query("""
                        INSERT INTO ledger_entries (ecosystem_id, movement_id, account_id, amount, event_time)
                        VALUES (\(fixture.ecosystem), \(good.id), \(account), 5, now()), (\(fixture.ecosystem), \(good.id), \(account), -5, now())
                        """, logger: store.logger)
                }
                #expect(refused.state == "23503")
                #expect(refused.constraint == "ledger_entries_account_id_ref")
            }
            // What stands: the good movement, its one line, its entries, and a ledger that holds.
            #expect(try await count("movements", fixture.ecosystem, store) == 1)
            #expect(try await count("movement_lines", fixture.ecosystem, store) == 1)
            let owed = try await store.balances(ecosystem: fixture.ecosystem, classes: [.owed], party: fixture.carrier.id, asOf: nil)
                .filter { $0.key.counterparty == fixture.shipper.id }.map(\.balance).reduce(0, +)
            #expect(owed == 12)
            #expect(try await store.verifyLedger(ecosystem: fixture.ecosystem).holds)
            #expect(try await store.verifyLedger(ecosystem: fixture.foreignEcosystem).holds)
        }
    }

    /// The audit rows of declarations.
    func declarationsAudited(_ ecosystem: UUID, _ store: Store) async throws -> Int64 {
        var result: Int64 = -1
        for try await value in try await store.client.query(
            "SELECT count(*) FROM audit_log WHERE ecosystem_id = \(ecosystem) AND action = 'movement.declare'",
            logger: store.logger).decode(Int64.self) { result = value }
        return result
    }

    @Test("members, pallet types, accounts and ecosystems the ledger names are never deleted nor re-keyed; other changes go through")
    func referencedRowsAreKept() async throws {
        try await withFreshStore(as: .owner) { store in
            let fixture = try await Fixture.make(store)
            let move = transfer(fixture, from: fixture.shipper.id, to: fixture.carrier.id, declarer: fixture.shipper.id, 7)
            _ = try await store.post(ecosystem: fixture.ecosystem, by: fixture.shipper.id, [move], idempotency: nil)
            var account: Int64 = 0
            for try await id in try await store.client.query(
                "SELECT min(id) FROM accounts WHERE ecosystem_id = \(fixture.ecosystem)", logger: store.logger
            ).decode(Int64.self) { account = id }
            let eco = fixture.ecosystem
            let refusedWrites: [(String, PostgresQuery)] = [
                ("delete a member", "DELETE FROM memberships WHERE ecosystem_id = \(eco) AND id = \(fixture.carrier.id)"),
                ("re-key a member", "UPDATE memberships SET id = gen_random_uuid() WHERE ecosystem_id = \(eco) AND id = \(fixture.carrier.id)"),
                ("truncate the members", "TRUNCATE memberships CASCADE"),
                ("delete a pallet type", "DELETE FROM pallet_types WHERE ecosystem_id = \(eco) AND id = \(fixture.chep)"),
                ("re-key a pallet type", "UPDATE pallet_types SET id = gen_random_uuid() WHERE ecosystem_id = \(eco) AND id = \(fixture.epal)"),
                ("truncate the pallet types", "TRUNCATE pallet_types CASCADE"),
                ("delete an account", "DELETE FROM accounts WHERE ecosystem_id = \(eco) AND id = \(account)"),
                ("re-key an account", "UPDATE accounts SET id = id + 1000000 WHERE ecosystem_id = \(eco) AND id = \(account)"),
                ("truncate the accounts", "TRUNCATE accounts CASCADE"),
                ("delete an ecosystem", "DELETE FROM ecosystems WHERE id = \(fixture.foreignEcosystem)"),
                ("re-key an ecosystem", "UPDATE ecosystems SET id = gen_random_uuid() WHERE id = \(fixture.foreignEcosystem)"),
                ("truncate the ecosystems", "TRUNCATE ecosystems CASCADE"),
            ]
            for (what, query) in refusedWrites {
                let refused = await refusal { try await store.client.query(query, logger: store.logger) }
                #expect(refused.state != nil, "\(what) went through")
            }
            #expect(try await count("memberships", eco, store) == 6)
            #expect(try await count("pallet_types", eco, store) == 2)
            #expect(try await count("movements", eco, store) == 1)
            // Changes that keep the key: a member deactivated, a pallet type renamed, balances moved.
            try await store.client.query("UPDATE memberships SET active = false WHERE ecosystem_id = \(eco) AND id = \(fixture.coordinator.id)",
                                         logger: store.logger)
            try await store.client.query("UPDATE pallet_types SET name = 'CHEP blue (pool)' WHERE ecosystem_id = \(eco) AND id = \(fixture.chep)",
                                         logger: store.logger)
            _ = try await store.post(ecosystem: eco, by: fixture.shipper.id, [
                transfer(fixture, from: fixture.shipper.id, to: fixture.carrier.id, declarer: fixture.shipper.id, 5),
            ], idempotency: nil)
            let owed = try await store.balances(ecosystem: eco, classes: [.owed], party: fixture.carrier.id, asOf: nil)
                .filter { $0.key.counterparty == fixture.shipper.id }.map(\.balance).reduce(0, +)
            #expect(owed == 12)
            #expect(try await store.verifyLedger(ecosystem: eco).holds)
        }
    }
}
