import ArgumentParser
import Foundation
import PalletFlowCore
import PalletFlowStore
import PalletFlowDemo

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
