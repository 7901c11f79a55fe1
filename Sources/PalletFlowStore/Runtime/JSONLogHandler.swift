import Foundation
import Logging
import PalletFlowCore

/// One line per event on standard error: a JSON object (time, level, label, message and
/// metadata, the request id among them), ready for a log shipper, or plain text in the
/// layout of swift-log's `StreamLogHandler`. The metadata is rendered when a line is
/// written; `StreamLogHandler` renders it each time a key is set, and the daemon sets the
/// request id and the member on every request (2% of its CPU per declaration at warning
/// level, where nothing is written: docs/performance.md, 'What limits each figure', B1).
public struct JSONLogHandler: LogHandler {
    public enum Format: Sendable { case json, text }

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let format: Format

    public init(label: String, level: Logger.Level = .info, format: Format = .json) {
        self.label = label
        self.logLevel = level
        self.format = format
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let time = Instant(Date()).rfc3339(keepingOffset: false)
        let all = metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 })
        var line: Data
        switch format {
        case .text:
            var text = time + " " + event.level.rawValue + " " + label + " :"
            for (key, value) in all.sorted(by: { $0.key < $1.key }) { text += " \(key)=\(value)" }
            line = Data((text + " " + event.message.description).utf8)
        case .json:
            var object: [String: Any] = [
                "time": time, "level": event.level.rawValue, "label": label, "message": event.message.description,
            ]
            for (key, value) in all { object[key] = Self.json(value) }
            guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            else { return }
            line = data
        }
        line.append(0x0A)
        FileHandle.standardError.write(line)
    }

    static func json(_ value: Logger.MetadataValue) -> Any {
        switch value {
        case .string(let text): text
        case .stringConvertible(let convertible): convertible.description
        case .array(let values): values.map(json)
        case .dictionary(let dictionary): dictionary.mapValues(json)
        }
    }

    /// Bootstraps swift-log once per process: JSON lines, or plain text when asked.
    public static func bootstrap(level: Logger.Level, format: String = "json") {
        LoggingSystem.bootstrap { label in
            JSONLogHandler(label: label, level: level, format: format == "text" ? .text : .json)
        }
    }
}
