import Foundation
import PackagePlugin

/// Embeds the package's SQL migrations (target PalletFlowStore) or OpenAPI document
/// (target PalletFlowContract) into the target as string literals.
@main
struct EmbedFiles: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let packageDirectory = context.package.directoryURL
        let inputs: [URL]
        let enumName: String
        switch target.name {
        case "PalletFlowStore":
            let sqlDirectory = packageDirectory.appending(path: "sql")
            inputs = try FileManager.default.contentsOfDirectory(at: sqlDirectory, includingPropertiesForKeys: nil)
                .filter { $0.pathExtension == "sql" }
                .sorted { $0.lastPathComponent < $1.lastPathComponent }
            enumName = "EmbeddedMigrations"
        case "PalletFlowContract":
            inputs = [packageDirectory.appending(path: "Sources/PalletFlowContract/openapi.yaml")]
            enumName = "EmbeddedContract"
        default:
            return []
        }
        let output = context.pluginWorkDirectoryURL.appending(path: "\(enumName).swift")
        return [
            .buildCommand(
                displayName: "Embedding \(inputs.count) file(s) into \(target.name)",
                executable: try context.tool(named: "EmbedTool").url,
                arguments: [output.path(), enumName] + inputs.map { $0.path() },
                inputFiles: inputs,
                outputFiles: [output]
            )
        ]
    }
}
