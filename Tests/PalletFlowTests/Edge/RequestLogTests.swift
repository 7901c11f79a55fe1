import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import PalletFlowAPI
import PalletFlowCore
import PalletFlowStore
import Synchronization
import Testing

/// Keeps every line logged through it, with the logger's metadata and the line's merged.
final class LogLines: Sendable {
    struct Line: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: Logger.Metadata
    }

    private let lines = Mutex<[Line]>([])
    func add(_ line: Line) { lines.withLock { $0.append(line) } }
    var all: [Line] { lines.withLock { $0 } }
}

struct CapturingLogHandler: LogHandler {
    let sink: LogLines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        sink.add(.init(level: event.level, message: event.message.description,
                       metadata: metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 })))
    }
}

@Suite("Request log")
struct RequestLogTests {
    @Test("each request is logged once, when answered, at info: status, route, duration in ms and request id")
    func oneLinePerRequest() async throws {
        try await withFreshStores { store, _ in
            let fixture = try await Fixture.make(store)
            let sink = LogLines()
            let logger = Logger(label: "palletflowd") { _ in CapturingLogHandler(sink: sink) }
            let router = try buildRouter(store: store, settings: ServerSettings(), logger: logger, metrics: DaemonMetrics())
            let app = Application(router: router, logger: logger)
            try await app.test(.router) { client in
                let api = API(client: client)
                var answered: [(status: HTTPResponse.Status, requestID: String?)] = []
                var response = try await api.get("/healthz", token: nil)
                answered.append((response.status, response.headers[.init("X-Request-Id")!]))
                response = try await api.request(.get, "/v1/me", token: fixture.carrier.token,
                                                 headers: ["X-Request-Id": "from-the-proxy-1"])
                answered.append((response.status, response.headers[.init("X-Request-Id")!]))
                response = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token,
                                              json: MetricsTests.movement(fixture, "pickup", quantity: 5), key: "log-1")
                answered.append((response.status, response.headers[.init("X-Request-Id")!]))
                response = try await api.get("/v1/no-such-route", token: nil)
                answered.append((response.status, response.headers[.init("X-Request-Id")!]))
                #expect(answered.map(\.status) == [.ok, .ok, .created, .notFound])
                #expect(answered[1].requestID == "from-the-proxy-1")

                let lines = sink.all.filter { $0.message == "request" }
                #expect(lines.count == 4, "\(sink.all.map(\.message))")
                // Hummingbird's own line at the start of each request is gone.
                #expect(!sink.all.contains { $0.message == "Request" })
                #expect(lines.allSatisfy { $0.level == .info })
                #expect(lines.map { $0.metadata["status"]?.description } == ["200", "200", "201", "404"])
                #expect(lines.map { $0.metadata["request_id"]?.description } == answered.map(\.requestID))
                #expect(lines.map { $0.metadata["method"]?.description } == ["GET", "GET", "POST", "GET"])
                #expect(lines.map { $0.metadata["route"]?.description }
                    == ["/healthz", "/v1/me", "/v1/ecosystems/{ecosystemId}/movements", "unmatched"])
                #expect(lines[2].metadata["path"]?.description == "\(fixture.base)/movements")
                for line in lines {
                    let milliseconds = try #require(line.metadata["duration_ms"].flatMap { Double($0.description) })
                    #expect(milliseconds >= 0 && milliseconds < 60_000)
                }
            }
        }
    }

    @Test("the JSON log handler never lets metadata replace a line's time, level, label or message")
    func recordFieldsKept() throws {
        var handler = JSONLogHandler(label: "palletflowd", level: .info, format: .json)
        handler[metadataKey: "level"] = "debug"
        handler[metadataKey: "request_id"] = "r-1"
        let event = LogEvent(level: .warning, message: "database unreachable",
                             metadata: ["message": "from a request", "time": "yesterday", "label": "other", "count": "3"],
                             source: nil, file: #fileID, function: #function, line: #line)
        let line = try #require(handler.render(event, time: "2026-01-02T03:04:05Z"))
        let object = try #require(try JSONSerialization.jsonObject(with: line) as? [String: String])
        #expect(object == [
            "time": "2026-01-02T03:04:05Z", "level": "warning", "label": "palletflowd", "message": "database unreachable",
            "meta.time": "yesterday", "meta.level": "debug", "meta.label": "other", "meta.message": "from a request",
            "request_id": "r-1", "count": "3",
        ])
    }
}
