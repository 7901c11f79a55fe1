import Foundation
import PalletFlowCore
import PalletFlowDemo
import PalletFlowStore
import Synchronization
import Testing

@Suite("Backup and restore of an ecosystem")
struct BackupTests {
    /// The balances of every account of an ecosystem, keyed so two databases compare.
    func balances(_ store: Store, _ ecosystem: UUID) async throws -> [String: Int64] {
        var result: [String: Int64] = [:]
        for balance in try await store.balances(ecosystem: ecosystem, classes: AccountClass.allCases, party: nil, asOf: nil) {
            let key = balance.key
            result["\(key.accountClass) \(key.party) \(key.counterparty) \(key.site) \(key.palletType) \(key.quality)"] = balance.balance
        }
        return result
    }

    @Test("the demo ecosystem round-trips: same rows, same balances, ledger verify holds; a second restore is refused")
    func demoRoundTrip() async throws {
        let lines = Mutex<[String]>([])
        let (ecosystem, counts, before) = try await withFreshStore(as: .owner) { store in
            let seeded = try await DemoEcosystem.seed(store)
            let ecosystem = UUID(uuidString: seeded.ecosystemId)!
            let counts = try await store.backup(ecosystem: ecosystem) { line in lines.withLock { $0.append(line) } }
            return (ecosystem, counts, try await balances(store, ecosystem))
        }
        let backup = lines.withLock { $0 }
        // The header, then one line per row.
        #expect(backup.count == 1 + counts.values.reduce(0, +))
        #expect(counts["movements"] ?? 0 > 3_000)
        #expect(counts["ledger_entries"] ?? 0 > counts["movements"] ?? 0)
        #expect(counts["organisations"] == counts["memberships"])
        #expect(counts["web_sessions"] == nil && counts["jobs"] == nil)

        try await withFreshStore(as: .owner) { store in
            let report: RestoreReport
            do { report = try await store.restore(lines: backup) } catch {
                Issue.record("\(String(reflecting: error))")
                throw error
            }
            #expect(report.ecosystem == ecosystem)
            #expect(report.verification.holds)
            #expect(report.rows == counts)
            #expect(try await balances(store, ecosystem) == before)
            #expect(try await store.verifyLedger(ecosystem: ecosystem).holds)
            // Tokens came along (hashed): the demo's members can still be authenticated by hash.
            #expect(try await store.members(ecosystem: ecosystem).count == counts["memberships"])
            await #expect(throws: BackupError.self) { try await store.restore(lines: backup) }
            // A backup of the restored ecosystem holds the same rows, plus the restore's audit row.
            var again = try await store.backup(ecosystem: ecosystem) { _ in }
            #expect(again["audit_log"] == (counts["audit_log"] ?? 0) + 1)
            again["audit_log"] = counts["audit_log"]
            #expect(again == counts)
            // The restored ecosystem takes new declarations on new accounts: identity
            // sequences (entries' seq, accounts' id) are ahead of the restored values.
            let directory = try await store.directory(ecosystem: ecosystem)
            let shipper = try #require(directory.members.values.first { $0.role == .shipper })
            let carrier = try #require(directory.members.values.first { $0.role == .carrier })
            let type = try #require(directory.palletTypes.values.first { $0.code == "EPAL1" })
            let declaration = MovementDeclaration(
                kind: .transfer, eventTime: Instant(TestClock.now().date.addingTimeInterval(-60)),
                from: PartyAtSite(party: shipper.id, site: directory.sites.values.first { $0.owner == shipper.id }?.id),
                to: PartyAtSite(party: carrier.id), lines: [MovementLine(palletType: type.id, quality: .c, quantity: 3)])
            _ = try await store.post(ecosystem: ecosystem, by: shipper.id, [MovementToPost(
                id: newID(), declaration: declaration, declarer: shipper.id, counterparty: carrier.id, recordTime: store.now,
                postings: LedgerRules.postings(for: declaration), confirmed: false)], idempotency: nil)
            #expect(try await store.verifyLedger(ecosystem: ecosystem).holds)
        }
    }

    @Test("a backup whose ledger was altered is refused whole: nothing is restored")
    func tamperedBackup() async throws {
        let lines = Mutex<[String]>([])
        let ecosystem = try await withFreshStore(as: .owner) { store in
            let fixture = try await Fixture.make(store)
            let directory = try await store.directory(ecosystem: fixture.ecosystem)
            let declaration = MovementDeclaration(
                kind: .pickup, eventTime: Instant(TestClock.now().date.addingTimeInterval(-3600)),
                from: PartyAtSite(party: fixture.shipper.id, site: fixture.shipper.site), to: PartyAtSite(party: fixture.carrier.id),
                lines: [MovementLine(palletType: fixture.epal, quality: .a, quantity: 30)])
            #expect(LedgerRules.validate(declaration, declarer: directory.members[fixture.carrier.id]!, directory: directory,
                                         now: store.now).isEmpty)
            _ = try await store.post(ecosystem: fixture.ecosystem, by: fixture.carrier.id, [MovementToPost(
                id: newID(), declaration: declaration, declarer: fixture.carrier.id, counterparty: fixture.shipper.id,
                recordTime: store.now, postings: LedgerRules.postings(for: declaration), confirmed: false)], idempotency: nil)
            _ = try await store.backup(ecosystem: fixture.ecosystem) { line in lines.withLock { $0.append(line) } }
            return fixture.ecosystem
        }
        // One entry of 30 becomes 31: its account no longer equals the sum of its entries.
        var tampered = lines.withLock { $0 }
        let index = try #require(tampered.firstIndex { $0.contains("\"table\":\"ledger_entries\"") && $0.contains("\"amount\":30") })
        tampered[index] = tampered[index].replacingOccurrences(of: "\"amount\":30", with: "\"amount\":31")
        let altered = tampered
        try await withFreshStore(as: .owner) { store in
            await #expect(throws: BackupError.self) { try await store.restore(lines: altered) }
            #expect(try await store.ecosystem(ecosystem) == nil)
            #expect(try await store.movements(ecosystem: ecosystem, MovementFilter()).isEmpty)
            let report = try await store.restore(lines: lines.withLock { $0 })
            #expect(report.verification.holds)
        }
    }

    @Test("restore refuses a row of another ecosystem than the header's, or an organisation no member names: nothing restored")
    func foreignRowsRefused() async throws {
        let lines = Mutex<[String]>([])
        let (ecosystem, foreign) = try await withFreshStore(as: .owner) { store in
            let fixture = try await Fixture.make(store)
            _ = try await store.backup(ecosystem: fixture.ecosystem) { line in lines.withLock { $0.append(line) } }
            return (fixture.ecosystem, fixture.foreignEcosystem)
        }
        let original = lines.withLock { $0 }
        // A site slipped in for the other ecosystem: the file claims rows it does not own.
        let siteLine = try #require(original.firstIndex { $0.contains("\"table\":\"sites\"") })
        var smuggled = original
        smuggled[siteLine] = smuggled[siteLine].replacingOccurrences(of: ecosystem.uuidString.lowercased(),
                                                                     with: foreign.uuidString.lowercased())
        // An organisation that none of the ecosystem's memberships names.
        var stray = original
        stray.append(#"{"table":"organisations","row":{"id":"00000000-0000-4000-8000-0000000000aa","name":"Someone else","pgln":null,"created_at":"2026-01-01T00:00:00+00:00"}}"#)
        let (bad, orphan) = (smuggled, stray)
        // Backup and restore are the owner's (palletflow), as in production.
        try await withFreshStore(as: .owner) { store in
            for file in [bad, orphan] {
                do {
                    _ = try await store.restore(lines: file)
                    Issue.record("a backup holding another ecosystem's rows was restored")
                } catch let error as BackupError {
                    guard case .foreignRow = error else { Issue.record("\(error)"); continue }
                    #expect(error.description.contains("nothing was restored"))
                }
                #expect(try await store.ecosystem(ecosystem) == nil)
            }
            #expect(try await store.restore(lines: original).verification.holds)
        }
    }
}
