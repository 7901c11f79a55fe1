import ArgumentParser
import Foundation
import PalletFlowCore
import PalletFlowStore
import PalletFlowWorker

struct IndicatorsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "indicators", abstract: "Compute restitution and loss indicators.",
        subcommands: [Recompute.self, Update.self])

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Count the movements recorded since the last run (what the worker does continuously).")
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var choice: EcosystemChoice

        func run() async throws {
            let choice = choice
            try await database.withStore { store in
                for ecosystem in try await choice.ecosystems(in: store) {
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
        @OptionGroup var choice: EcosystemChoice

        func run() async throws {
            let choice = choice
            try await database.withStore { store in
                let engine = IndicatorEngine(store: store)
                for ecosystem in try await choice.ecosystems(in: store) {
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
