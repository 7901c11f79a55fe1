import Foundation
import Logging
import PalletFlowCore

/// One JSON object per line on standard error: time, level, label, message and metadata
/// (the request id among them), ready for a log shipper.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String

    public init(label: String, level: Logger.Level = .info) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var object: [String: Any] = [
            "time": Instant.now().rfc3339(keepingOffset: false),
            "level": event.level.rawValue,
            "label": label,
            "message": event.message.description,
        ]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
            object[key] = Self.json(value)
        }
        guard var data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return
        }
        data.append(0x0A)
        FileHandle.standardError.write(data)
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
            if format == "text" { return TextLogHandler(label: label, level: level) }
            return JSONLogHandler(label: label, level: level)
        }
    }
}

/// Plain text lines on standard error: time, level, label, metadata and message, as
/// swift-log's `StreamLogHandler` lays them out. The metadata is rendered when a line is
/// written; `StreamLogHandler` renders it each time a key is set, and the daemon sets the
/// request id and the member on every request (2% of its CPU per declaration at warning
/// level, where nothing is written: docs/performance.md, change 20).
public struct TextLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String

    public init(label: String, level: Logger.Level = .info) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = Instant.now().rfc3339(keepingOffset: false) + " " + event.level.rawValue + " " + label + " :"
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }).sorted(by: { $0.key < $1.key }) {
            line += " \(key)=\(value)"
        }
        line += " " + event.message.description + "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }
}
