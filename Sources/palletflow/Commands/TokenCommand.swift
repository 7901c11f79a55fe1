import ArgumentParser
import Foundation
import PalletFlowCore
import PalletFlowStore

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Issue and rotate API tokens.", subcommands: [Issue.self, Rotate.self])

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replace a token: the old one stops working at once, the new secret is shown once.")
        @OptionGroup var database: DatabaseOptions
        @Option(help: "Ecosystem id.") var ecosystem: UUID
        @Option(help: "The token's id (GET /members/{id}/tokens lists them).") var token: UUID

        func run() async throws {
            let (ecosystem, token) = (ecosystem, token)
            do {
                let (record, secret) = try await database.withStore { store in
                    try await store.rotateToken(ecosystem: ecosystem, token: token, by: nil)
                }
                output("Token \(record.id.uuidString.lowercased()) replaces \(token.uuidString.lowercased()) for member \(record.member.uuidString.lowercased()):")
                output(secret.text)
            } catch StoreError.notFound {
                throw ValidationError("no live token \(token.uuidString.lowercased()) in ecosystem \(ecosystem.uuidString.lowercased())")
            }
        }
    }

    struct Issue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Issue a token for a member; the secret is shown once.")
        @OptionGroup var database: DatabaseOptions
        @Option(help: "Ecosystem id.") var ecosystem: UUID
        @Option(help: "Member id (a membership of the ecosystem).") var member: UUID
        @Option(help: "A name to recognise the token by.") var name = "cli"

        func run() async throws {
            let (ecosystem, member, name) = (ecosystem, member, name)
            do {
                let (_, secret) = try await database.withStore { store in
                    try await store.issueToken(ecosystem: ecosystem, member: member, name: name, by: nil)
                }
                output(secret.text)
            } catch StoreError.notFound {
                throw ValidationError("no active member \(member.uuidString.lowercased()) in ecosystem \(ecosystem.uuidString.lowercased())")
            }
        }
    }
}
