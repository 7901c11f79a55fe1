import ArgumentParser
import Foundation
import PalletFlowCore
import PalletFlowStore

struct Vacuum: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete old idempotency keys and finished jobs.",
        discussion: "Idempotency keys are kept at least 7 days whatever you ask: clients may retry within that window.")
    @OptionGroup var database: DatabaseOptions
    @Option(name: .customLong("keys-older-than-days"), help: "Idempotency keys older than this (at least 7).")
    var keyDays = 30
    @Option(name: .customLong("jobs-older-than-days"), help: "Finished jobs older than this.")
    var jobDays = 30

    func run() async throws {
        let (keyDays, jobDays) = (keyDays, jobDays)
        let removed = try await database.withStore { store in
            try await store.vacuum(idempotencyKeysOlderThanDays: keyDays, jobsOlderThanDays: jobDays)
        }
        output("Deleted \(removed.idempotencyKeys) idempotency keys and \(removed.jobs) finished jobs.")
    }
}
