import ArgumentParser
import Foundation
import Logging
import PalletFlowCore
import PalletFlowStore

@main
struct Palletflow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "palletflow",
        abstract: "PalletFlow's administration tool.",
        discussion: """
            Every command works on the database named by DATABASE_URL, or else on the embedded \
            PostgreSQL under --data-dir (started for the command if no daemon runs it). It is the \
            administrator's tool: it connects as the tables' owner (give it the owner's DATABASE_URL; \
            the embedded cluster's superuser otherwise), while palletflowd and palletflow-worker \
            connect as the application role (`palletflow database roles`).
            """,
        version: "\(Release.version) (schema \(Migration.all.count))",
        subcommands: [Migrate.self, DatabaseCommand.self, Demo.self, EcosystemCommand.self, TokenCommand.self,
                      LedgerCommand.self, IndicatorsCommand.self, Vacuum.self, Backup.self, Restore.self, Archive.self])

    /// ArgumentParser's own `main`, but for `ledger verify`, which promises 2 for a broken
    /// ledger and 1 for anything else, a command line it cannot read included (ArgumentParser
    /// answers those with 64): a script must tell a broken ledger from a failed check.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            if Array(CommandLine.arguments.dropFirst().prefix(2)) == ["ledger", "verify"],
               code != .success, code.rawValue != LedgerCommand.Verify.brokenLedger {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\nThe ledger was not checked.\n").utf8))
                Foundation.exit(1)
            }
            exit(withError: error)
        }
    }
}

/// Where the database is; shared by every command.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "Data directory of the embedded PostgreSQL (env PALLETFLOW_DATA_DIR).")
    var dataDirectory: String = ProcessInfo.processInfo.environment["PALLETFLOW_DATA_DIR"] ?? DatabaseRuntime.defaultDataDirectory

    @Flag(help: "Log what happens (to standard error).")
    var verbose = false

    /// Opens the database as the tables' owner, applies migrations (granting the embedded
    /// cluster's application role what it may do), runs `body` with a store and the versions
    /// applied, and releases all.
    func withStore<Result: Sendable>(migrate: Bool = true,
                                     _ body: @Sendable (Store, [Int]) async throws -> Result) async throws -> Result {
        JSONLogHandler.bootstrap(level: verbose ? .info : .warning, format: "text")
        let logger = Logger(label: "palletflow")
        let clock: WallClock
        do {
            clock = try WallClock.configured().clock
        } catch let error as WallClockSettingError {
            throw ValidationError(error.description)
        }
        let runtime: DatabaseRuntime
        do {
            runtime = try await DatabaseRuntime.open(dataDirectory: dataDirectory,
                                                     databaseURL: ProcessInfo.processInfo.environment["DATABASE_URL"],
                                                     logger: logger, maximumConnections: 4)
        } catch let error as EmbeddedPostgresError {
            throw ValidationError(error.description)
        }
        defer { runtime.close() }
        let applicationRole = runtime.applicationRole
        do {
            return try await runtime.asOwner.withClient(logger: logger) { client in
                let applied = migrate ? try await Migrator().migrate(client, logger: logger, applicationRole: applicationRole) : []
                return try await body(Store(client: client, logger: logger, clock: clock), applied)
            }
        } catch let error as MigrationError where error.needsOwner {
            throw ValidationError(error.description)
        } catch {
            // Run with the application role's URL: say so rather than print a bare PSQLError.
            guard let denied = DatabaseRoles.permissionDenied(error) else { throw error }
            throw ValidationError("""
                \(denied): palletflow works as the tables' owner. Run it with the owner's DATABASE_URL, not the \
                application role's (docs/operations.md, "Two database roles").
                """)
        }
    }

    /// Opens the database, applies migrations, runs `body` with a store, and releases all.
    func withStore<Result: Sendable>(migrate: Bool = true, _ body: @Sendable (Store) async throws -> Result) async throws -> Result {
        try await withStore(migrate: migrate) { store, _ in try await body(store) }
    }
}

/// Ids on the command line (`--ecosystem`, `--member`, `--token`) are UUIDs; anything else
/// gets ArgumentParser's own error naming the option.
extension UUID: @retroactive ExpressibleByArgument {
    public init?(argument: String) { self.init(parsing: argument) }
}

/// `--ecosystem ID` of the commands that work on one ecosystem or, without it, on every one.
struct EcosystemChoice: ParsableArguments {
    @Option(help: "One ecosystem only (its id); without it, every ecosystem.") var ecosystem: UUID?

    /// The chosen ecosystem, or every ecosystem of the database.
    func ecosystems(in store: Store) async throws -> [UUID] {
        if let ecosystem { return [ecosystem] }
        return try await store.allEcosystems()
    }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    FileHandle.standardOutput.write(try encoder.encode(value) + Data("\n".utf8))
}

func output(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}
