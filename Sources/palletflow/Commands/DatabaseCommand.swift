import ArgumentParser
import Foundation
import PalletFlowCore
import PalletFlowStore

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
