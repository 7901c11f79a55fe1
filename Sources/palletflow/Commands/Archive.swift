import ArgumentParser
import Foundation
import PalletFlowCore
import PalletFlowStore

struct Archive: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Move whole months of the ledger out of the database into files (retention).",
        discussion: """
            Every monthly partition recorded before --before is written as JSON lines (movements, \
            lines, entries, and the discrepancies and EPCIS events that refer to them) with a \
            manifest of SHA-256 sums under --output/YYYY-MM/, then removed from the database in one \
            transaction per month that keeps each account's archived sum, so balances and \
            `palletflow ledger verify` still hold. Months with movements still declared or contested \
            stop the run. --list shows the partitions and what they hold without changing anything.
            """)
    @OptionGroup var database: DatabaseOptions
    @Option(help: "First month to keep, as YYYY-MM (UTC): every month before it is archived.") var before: String?
    @Option(name: .customLong("output"), help: "Directory the archive files go to.") var outputDirectory: String?
    @Option(name: .customLong("keep-months"),
            help: "Refuse cutoffs less than this many months before the current month (at least 14: declarations may be dated 400 days back).")
    var keepMonths = 14
    @Flag(help: "List the monthly partitions and exit.") var list = false

    func validate() throws {
        if list { return }
        guard let before, before.count == 7, Instant.parse(before + "-01T00:00:00Z") != nil else {
            throw ValidationError("--before must be a month as YYYY-MM, e.g. --before 2025-01")
        }
        if outputDirectory == nil { throw ValidationError("--output must name the directory the archive is written to") }
        if keepMonths < 14 {
            throw ValidationError("--keep-months must be at least 14: declarations may be dated up to 400 days back, so younger months still change")
        }
    }

    func run() async throws {
        if list {
            let partitions = try await database.withStore { store in try await store.ledgerPartitions() }
            output("month     movements  open")
            for partition in partitions {
                output(partition.month.padding(toLength: 10, withPad: " ", startingAt: 0)
                       + String(partition.movements).leftPadded(9) + String(partition.open).leftPadded(6))
            }
            return
        }
        let cutoff = Instant.parse(before! + "-01T00:00:00Z")!
        let directory = URL(fileURLWithPath: outputDirectory!, isDirectory: true)
        let keepMonths = keepMonths
        let archived = try await database.withStore { store in
            do {
                return try await store.archive(before: cutoff, keepMonths: keepMonths, to: directory) { line in
                    FileHandle.standardError.write(Data((line + "\n").utf8))
                }
            } catch let error as ArchiveError {
                throw ValidationError(error.description)
            }
        }
        if archived.isEmpty {
            output("Nothing to archive before \(before!).")
        }
        for month in archived {
            output("\(month.month): \(month.movements) movements, \(month.lines) lines, \(month.entries) entries, " +
                   "\(month.discrepancies) discrepancies, \(month.epcisEvents) EPCIS events -> \(directory.path)/\(month.month)/")
        }
        if let last = archived.last {
            output("ledger verify holds (\(last.verification.accounts) accounts, \(last.verification.entries) live entries)")
        }
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
