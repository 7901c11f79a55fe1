import ArgumentParser
import Foundation
import Logging
import PalletFlowCore
import PalletFlowDemo
import PalletFlowStore
import PalletFlowWorker

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

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    FileHandle.standardOutput.write(try encoder.encode(value) + Data("\n".utf8))
}

func output(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply the SQL migrations that are missing.")
    @OptionGroup var database: DatabaseOptions

    func run() async throws {
        let applied = try await database.withStore { _, applied in applied }
        output(applied.isEmpty ? "Schema up to date (\(Migration.all.count) migrations)."
                               : "Applied migrations \(applied.map(String.init).joined(separator: ", ")).")
    }
}

struct DatabaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "database", abstract: "Set up the database's roles.", subcommands: [Roles.self])

    struct Roles: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create or update the application role that palletflowd and palletflow-worker connect as.",
            discussion: """
                Run it with the owner's DATABASE_URL (the role that owns PalletFlow's tables and migrates). \
                It applies the missing migrations, creates the role if it is missing (LOGIN, nothing else: the \
                owner needs CREATEROLE), sets its password when PALLETFLOW_APP_ROLE_PASSWORD is set (sent as a \
                SCRAM-SHA-256 verifier), records it, and grants it exactly what the table app_privileges lists: \
                SELECT and INSERT, UPDATE of the workflow columns, DELETE of derived data; never UPDATE of a fact, \
                DELETE or TRUNCATE of history, nor anything a table's owner alone may do. Every later migration \
                grants it again. Idempotent: run it again after restoring a database or changing the list.
                """)
        @OptionGroup var database: DatabaseOptions
        @Option(name: .customLong("app-role"), help: "The application role's name (lower case, digits, _).")
        var appRole: String

        func validate() throws {
            guard DatabaseRoles.validName(appRole) else {
                throw ValidationError("--app-role must be a lower-case role name (letters, digits, _; 63 at most)")
            }
        }

        func run() async throws {
            let name = appRole
            let password = ProcessInfo.processInfo.environment["PALLETFLOW_APP_ROLE_PASSWORD"].flatMap { $0.isEmpty ? nil : $0 }
            let report: ApplicationRoleReport
            do {
                report = try await database.withStore { store in
                    try await DatabaseRoles.setUp(applicationRole: name, password: password, client: store.client,
                                                  logger: store.logger)
                }
            } catch let error as DatabaseRoleError {
                throw ValidationError(error.description)
            }
            output(report.created ? "Created role \(name) (LOGIN; not a superuser, owns nothing)."
                                  : "Role \(name) exists (not a superuser, owns nothing).")
            output(report.passwordSet ? "Set its password from PALLETFLOW_APP_ROLE_PASSWORD (as a SCRAM-SHA-256 verifier)."
                                      : "Password unchanged (set PALLETFLOW_APP_ROLE_PASSWORD to set it, or use psql's \\password).")
            output("""
                Granted: SELECT on \(report.select) tables, INSERT on \(report.insert), UPDATE of workflow columns on \
                \(report.updateColumnsOnly), UPDATE and DELETE on \(report.delete) tables of derived data; nothing on \
                \(report.partitions) ledger partitions (reached through their parents).
                """)
            if !report.unlisted.isEmpty {
                output("Tables app_privileges does not name, on which it has nothing: \(report.unlisted.joined(separator: ", ")).")
            }
            output("Now run palletflowd and palletflow-worker with DATABASE_URL naming \(name); keep the owner's for palletflow.")
        }
    }
}

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Seed the demo ecosystem (or find it again) and print its tokens.",
        discussion: "Tokens are issued anew at each run; the previous demo tokens are revoked.")
    @OptionGroup var database: DatabaseOptions
    @Flag(help: "Print the ecosystem id, organisations and tokens as JSON.")
    var json = false

    func run() async throws {
        let seeded = try await database.withStore { store in try await DemoEcosystem.seed(store) }
        if json {
            try printJSON(seeded)
        } else {
            output("\(seeded.name)  ecosystem \(seeded.ecosystemId)")
            for organisation in seeded.organisations {
                output("  \(organisation.role.padding(toLength: 11, withPad: " ", startingAt: 0)) \(organisation.token)  \(organisation.name)")
            }
        }
    }
}

struct EcosystemCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ecosystem", abstract: "Create ecosystems.", subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an ecosystem with its shipper and print the shipper's admin token (shown once).")
        @OptionGroup var database: DatabaseOptions
        @Option(help: "The ecosystem's name.") var name: String
        @Option(name: .customLong("shipper-name"), help: "The shipper organisation's name.") var shipperName: String
        @Option(name: .customLong("shipper-pgln"), help: "The shipper's GS1 party GLN (13 digits).") var shipperPGLN: String?
        @Option(help: "Currency of pallet values (ISO 4217).") var currency = "EUR"
        @Flag(help: "Print as JSON.") var json = false

        func validate() throws {
            if name.trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("--name must not be empty") }
            if shipperName.trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("--shipper-name must not be empty") }
            if let shipperPGLN, shipperPGLN.count != 13 || !shipperPGLN.allSatisfy(\.isNumber) {
                throw ValidationError("--shipper-pgln must be 13 digits")
            }
        }

        struct Created: Encodable {
            var ecosystemId: String
            var shipperMemberId: String
            var token: String
        }

        func run() async throws {
            let (name, shipperName, shipperPGLN, currency) = (name, shipperName, shipperPGLN, currency)
            let created = try await database.withStore { store in
                try await store.createEcosystem(name: name, shipperName: shipperName, shipperPGLN: shipperPGLN, currency: currency)
            }
            let result = Created(ecosystemId: created.ecosystem.id.uuidString.lowercased(),
                                 shipperMemberId: created.shipper.id.uuidString.lowercased(), token: created.token.text)
            if json {
                try printJSON(result)
            } else {
                output("Ecosystem \(result.ecosystemId) created; shipper member \(result.shipperMemberId).")
                output("Shipper admin token (shown once, keep it safe): \(result.token)")
            }
        }
    }
}

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Issue and rotate API tokens.", subcommands: [Issue.self, Rotate.self])

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replace a token: the old one stops working at once, the new secret is shown once.")
        @OptionGroup var database: DatabaseOptions
        @Option(help: "Ecosystem id.") var ecosystem: String
        @Option(help: "The token's id (GET /members/{id}/tokens lists them).") var token: String

        func run() async throws {
            guard let ecosystemID = UUID(parsing: ecosystem) else { throw ValidationError("--ecosystem must be a UUID") }
            guard let tokenID = UUID(parsing: token) else { throw ValidationError("--token must be a UUID") }
            do {
                let (record, secret) = try await database.withStore { store in
                    try await store.rotateToken(ecosystem: ecosystemID, token: tokenID, by: nil)
                }
                output("Token \(record.id.uuidString.lowercased()) replaces \(token) for member \(record.member.uuidString.lowercased()):")
                output(secret.text)
            } catch StoreError.notFound {
                throw ValidationError("no live token \(token) in ecosystem \(ecosystem)")
            }
        }
    }

    struct Issue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Issue a token for a member; the secret is shown once.")
        @OptionGroup var database: DatabaseOptions
        @Option(help: "Ecosystem id.") var ecosystem: String
        @Option(help: "Member id (a membership of the ecosystem).") var member: String
        @Option(help: "A name to recognise the token by.") var name = "cli"

        func run() async throws {
            guard let ecosystemID = UUID(parsing: ecosystem) else { throw ValidationError("--ecosystem must be a UUID") }
            guard let memberID = UUID(parsing: member) else { throw ValidationError("--member must be a UUID") }
            let name = name
            do {
                let (_, secret) = try await database.withStore { store in
                    try await store.issueToken(ecosystem: ecosystemID, member: memberID, name: name, by: nil)
                }
                output(secret.text)
            } catch StoreError.notFound {
                throw ValidationError("no active member \(member) in ecosystem \(ecosystem)")
            }
        }
    }
}

struct LedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger", abstract: "Check the pallet ledger.", subcommands: [Verify.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Prove every balance equals the sum of its entries and every pallet type is conserved.",
            discussion: "Exits 0 when the ledger holds, 2 when it does not (each violation is printed), 1 when the check could not run (the database unreachable, a bad option...): a script tells a broken ledger from a failed check.")
        @OptionGroup var database: DatabaseOptions
        @Option(help: "Check one ecosystem only (id).") var ecosystem: String?
        @Flag(help: "Print the report as JSON.") var json = false

        /// Exit status of a ledger that does not hold.
        static let brokenLedger: Int32 = 2

        func run() async throws {
            let report: LedgerVerification
            do {
                var scope: UUID?
                if let ecosystem {
                    guard let id = UUID(parsing: ecosystem) else { throw ValidationError("--ecosystem must be a UUID") }
                    scope = id
                }
                let chosen = scope
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

struct IndicatorsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "indicators", abstract: "Compute restitution and loss indicators.",
        subcommands: [Recompute.self, Update.self])

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Count the movements recorded since the last run (what the worker does continuously).")
        @OptionGroup var database: DatabaseOptions
        @Option(help: "Update one ecosystem only (id).") var ecosystem: String?

        func run() async throws {
            let chosen = try ecosystem.map { text -> UUID in
                guard let id = UUID(parsing: text) else { throw ValidationError("--ecosystem must be a UUID") }
                return id
            }
            try await database.withStore { store in
                var ecosystems = chosen.map { [$0] } ?? []
                if chosen == nil { ecosystems = try await store.allEcosystems() }
                for ecosystem in ecosystems {
                    let started = ContinuousClock.now
                    let outcome = try await IndicatorEngine(store: store).update(ecosystem: ecosystem)
                    output("Ecosystem \(ecosystem.uuidString.lowercased()): \(outcome.relationships) relationships touched, \(outcome.rows) rows, up to movement \(outcome.watermark), in \(ContinuousClock.now - started).")
                }
            }
        }
    }

    struct Recompute: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rebuild the indicators from the whole ledger, with progress.",
            discussion: "Without --ecosystem, every ecosystem is rebuilt. The worker keeps them current afterwards.")
        @OptionGroup var database: DatabaseOptions
        @Option(help: "Rebuild one ecosystem only (id).") var ecosystem: String?

        func run() async throws {
            var scope: UUID?
            if let ecosystem {
                guard let id = UUID(parsing: ecosystem) else { throw ValidationError("--ecosystem must be a UUID") }
                scope = id
            }
            let chosen = scope
            try await database.withStore { store in
                let engine = IndicatorEngine(store: store)
                var ecosystems = chosen.map { [$0] } ?? []
                if chosen == nil { ecosystems = try await store.allEcosystems() }
                for ecosystem in ecosystems {
                    let started = ContinuousClock.now
                    let outcome = try await engine.recompute(ecosystem: ecosystem) { done, total in
                        let width = 30
                        let filled = total > 0 ? width * done / total : width
                        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
                        FileHandle.standardError.write(Data("\r  [\(bar)] \(done)/\(total) relationships".utf8))
                    }
                    try await AlertEvaluator(store: store).evaluate(ecosystem: ecosystem)
                    FileHandle.standardError.write(Data("\n".utf8))
                    output("Ecosystem \(ecosystem.uuidString.lowercased()): \(outcome.relationships) relationships, \(outcome.rows) rows, up to movement \(outcome.watermark), in \(ContinuousClock.now - started).")
                }
            }
        }
    }
}

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

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write one ecosystem's logical backup (JSON lines, one consistent snapshot).",
        discussion: """
            Every row the ecosystem owns, the organisations of its members and the ecosystem itself, \
            as JSON lines. Restore with `palletflow restore` into a database at the same schema version; \
            sign-in sessions and queued jobs are not included.
            """)
    @OptionGroup var database: DatabaseOptions
    @Option(help: "The ecosystem id.") var ecosystem: String
    @Option(help: "File to write (standard output when absent).") var output: String?

    func validate() throws {
        if UUID(parsing: ecosystem) == nil { throw ValidationError("--ecosystem must be an ecosystem id (a UUID)") }
    }

    func run() async throws {
        let id = UUID(parsing: ecosystem)!
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
