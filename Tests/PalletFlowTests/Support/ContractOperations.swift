import PalletFlowContract

/// One operation of the contract: its method, path template and operationId.
struct ContractOperation: Sendable, Hashable, CustomStringConvertible {
    var method: String
    var path: String
    var operationId: String

    var description: String { "\(operationId) (\(method.uppercased()) \(path))" }
}

/// The operations of openapi.yaml, read at test time from the document the server embeds
/// (`Contract.document`), so that an operation added to the contract is seen by the tests
/// that enumerate them.
///
/// The contract's layout is plain block YAML: under `paths:`, each path is a key indented
/// by 2 spaces, each method a key indented by 4, and the operation's `operationId` a key
/// indented by 6 (`links` name operationIds deeper down; those are not operations).
enum ContractOperations {
    static let methods: Set<String> = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    static func read(_ document: String = Contract.document) -> [ContractOperation] {
        var operations: [ContractOperation] = []
        var inPaths = false
        var path: String?
        var method: String?
        for raw in document.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.hasSuffix("\r") ? String(raw.dropLast()) : String(raw)
            if line.trimmingCharacters(in: .whitespaces).isEmpty || line.trimmingCharacters(in: .whitespaces).hasPrefix("#") {
                continue
            }
            let indent = line.prefix { $0 == " " }.count
            let text = line.dropFirst(indent)
            if indent == 0 {
                inPaths = text == "paths:"
                path = nil
                method = nil
                continue
            }
            guard inPaths else { continue }
            if indent == 2, text.hasPrefix("/"), text.hasSuffix(":") {
                path = String(text.dropLast())
                method = nil
            } else if indent == 4 {
                let key = text.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
                method = methods.contains(key) && text.hasSuffix(":") ? key : nil
            } else if indent == 6, text.hasPrefix("operationId:"), let path, let method {
                let id = text.dropFirst("operationId:".count).trimmingCharacters(in: .whitespaces)
                operations.append(ContractOperation(method: method, path: path, operationId: id))
            }
        }
        return operations
    }
}
