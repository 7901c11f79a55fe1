import ArgumentParser
import Foundation
import PalletFlowCore
import PalletFlowStore

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply the SQL migrations that are missing.")
    @OptionGroup var database: DatabaseOptions

    func run() async throws {
        let applied = try await database.withStore { _, applied in applied }
        output(applied.isEmpty ? "Schema up to date (\(Migration.all.count) migrations)."
                               : "Applied migrations \(applied.map(String.init).joined(separator: ", ")).")
    }
}
