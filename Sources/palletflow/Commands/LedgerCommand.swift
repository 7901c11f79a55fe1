import ArgumentParser
import Foundation
import PalletFlowCore
import PalletFlowStore

struct LedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger", abstract: "Check the pallet ledger.", subcommands: [Verify.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Prove every balance equals the sum of its entries and every pallet type is conserved.",
            discussion: "Exits 0 when the ledger holds, 2 when it does not (each violation is printed), 1 when the check could not run (the database unreachable, a bad option...): a script tells a broken ledger from a failed check.")
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var choice: EcosystemChoice
        @Flag(help: "Print the report as JSON.") var json = false

        /// Exit status of a ledger that does not hold.
        static let brokenLedger: Int32 = 2

        func run() async throws {
            let report: LedgerVerification
            do {
                let chosen = choice.ecosystem
                report = try await database.withStore { store in try await store.verifyLedger(ecosystem: chosen) }
            } catch {
                // Anything but a verdict on the ledger exits 1, never 2.
                FileHandle.standardError.write(Data("Error: \(Self.describe(error))\nThe ledger was not checked.\n".utf8))
                throw ExitCode(1)
            }
            if json {
                try printJSON(report)
            } else {
                output("Checked \(report.accounts) accounts, \(report.entries) entries, \(report.movements) movements.")
                for line in report.balanceMismatches + report.conservationViolations + report.mirrorViolations
                    + report.unbalancedMovements + report.reversedTwice {
                    output("  VIOLATION \(line)")
                }
                output(report.holds ? "Ledger holds: every balance equals its entries, every pallet type is conserved."
                                    : "Ledger does NOT hold.")
            }
            if !report.holds { throw ExitCode(Self.brokenLedger) }
        }

        /// A database error hides its details from `description`; an operator needs them.
        static func describe(_ error: any Error) -> String {
            error is ValidationError ? String(describing: error) : String(reflecting: error)
        }
    }
}
