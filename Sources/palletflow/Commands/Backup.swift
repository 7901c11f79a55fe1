import ArgumentParser
import Foundation
import PalletFlowCore
import PalletFlowStore

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write one ecosystem's logical backup (JSON lines, one consistent snapshot).",
        discussion: """
            Every row the ecosystem owns, the organisations of its members and the ecosystem itself, \
            as JSON lines. Restore with `palletflow restore` into a database at the same schema version; \
            sign-in sessions and queued jobs are not included.
            """)
    @OptionGroup var database: DatabaseOptions
    @Option(help: "The ecosystem id.") var ecosystem: UUID
    @Option(help: "File to write (standard output when absent).") var output: String?

    func run() async throws {
        let id = ecosystem
        let path = output
        if let path { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let handle = try path.map { try FileHandle(forWritingTo: URL(fileURLWithPath: $0)) } ?? FileHandle.standardOutput
        let counts = try await database.withStore(migrate: false) { store in
            do {
                return try await store.backup(ecosystem: id) { line in try handle.write(contentsOf: Data((line + "\n").utf8)) }
            } catch let error as BackupError {
                throw ValidationError(error.description)
            }
        }
        try handle.synchronize()
        let total = counts.values.reduce(0, +)
        FileHandle.standardError.write(Data("backed up \(total) rows of \(counts.count) tables\(path.map { " to \($0)" } ?? "")\n".utf8))
    }
}

struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore an ecosystem from `palletflow backup`, checking its ledger before committing.")
    @OptionGroup var database: DatabaseOptions
    @Option(help: "The backup file.") var input: String

    func run() async throws {
        guard let text = FileManager.default.contents(atPath: input).map({ String(decoding: $0, as: UTF8.self) }) else {
            throw ValidationError("cannot read \(input)")
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        let report = try await database.withStore { store in
            do {
                return try await store.restore(lines: lines)
            } catch let error as BackupError {
                throw ValidationError(error.description)
            }
        }
        let total = report.rows.values.reduce(0, +)
        print("restored ecosystem \(report.ecosystem.uuidString.lowercased()): \(total) rows in \(report.rows.count) tables; " +
              "ledger verify holds (\(report.verification.accounts) accounts, \(report.verification.entries) entries, " +
              "\(report.verification.movements) movements)")
    }
}
