import ArgumentParser
import Foundation
import PalletFlowCore
import PalletFlowStore

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
