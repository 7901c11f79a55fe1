import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What a collector received: each export's content type and body.
final class Exports: Sendable {
    private let items = Mutex<[(contentType: String?, body: String)]>([])
    func add(contentType: String?, body: String) { items.withLock { $0.append((contentType, body)) } }
    var all: [(contentType: String?, body: String)] { items.withLock { $0 } }
}

/// The real binaries with their observability flags: `palletflowd --otel-endpoint` sends its
/// spans to a collector, `palletflow-worker --metrics-port` answers a scrape. In the
/// processes' suite, so that they run one at a time with its other processes.
extension DaemonProcessTests {
    static let buildFolder = #filePath.components(separatedBy: "/Tests/")[0] + "/.build/debug/"

    /// Starts `binary` on the test database, its output in a file removed afterwards; stops
    /// it (SIGINT) when `body` returns.
    func running(_ binary: String, _ arguments: [String], environment: [String: String] = [:],
                 _ body: (_ log: URL) async throws -> Void) async throws {
        let path = Self.buildFolder + binary
        try #require(FileManager.default.isExecutableFile(atPath: path), "build it first: \(path)")
        let (_, url) = try await TestDatabase.shared.freshDatabaseURL()
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("pf-\(binary)-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: log) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments + ["--log-format", "text"]
        process.environment = ProcessInfo.processInfo.environment.merging(environment.merging(["DATABASE_URL": url]) { $1 }) { $1 }
        process.standardOutput = try FileHandle(forWritingTo: log)
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
        defer {
            if process.isRunning { process.interrupt() }
            process.waitUntilExit()
        }
        try await body(log)
    }

    /// GETs `url` until it answers 200 (or `timeout` passes): its body.
    func fetch(_ url: String, timeout: TimeInterval = 90) async throws -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let (data, response) = try? await URLSession.shared.data(from: URL(string: url)!),
               (response as? HTTPURLResponse)?.statusCode == 200 {
                return String(decoding: data, as: UTF8.self)
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        return nil
    }

    @Test("palletflowd --otel-endpoint: each request's span reaches the collector over OTLP/HTTP, named by its route")
    func tracesExported() async throws {
        let exports = Exports()
        let router = Router()
        router.post("/v1/traces") { request, _ -> HTTPResponse.Status in
            let bytes = try await request.body.collect(upTo: 10_000_000)
            // Protobuf keeps strings as UTF-8 bytes: names and paths can be looked for as text.
            exports.add(contentType: request.headers[.contentType], body: String(decoding: bytes.readableBytesView, as: UTF8.self))
            return .ok
        }
        let collector = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                                    logger: TestDatabase.logger)
        try await collector.test(.live) { client in
            let collectorPort = try #require(client.port)
            let port = Int.random(in: 20_000...40_000)
            // Spans leave in batches; a short delay keeps the test short.
            try await running("palletflowd", ["--port", String(port), "--otel-endpoint", "http://127.0.0.1:\(collectorPort)"],
                              environment: ["OTEL_BSP_SCHEDULE_DELAY": "100"]) { log in
                let ready = try await fetch("http://127.0.0.1:\(port)/readyz")
                #expect(ready != nil, "\((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
                _ = try await fetch("http://127.0.0.1:\(port)/healthz")
                let deadline = Date().addingTimeInterval(30)
                func received(_ text: String) -> Bool {
                    exports.all.contains { $0.body.contains(text) }
                }
                while !received("/healthz"), Date() < deadline { try await Task.sleep(for: .milliseconds(200)) }
                #expect(received("/healthz"), "\((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
                // OTLP/HTTP: protobuf, the service named palletflowd.
                #expect(exports.all.allSatisfy { $0.contentType == "application/x-protobuf" })
                #expect(received("palletflowd"))
            }
        }
    }

    @Test("palletflowd refuses an --otel-endpoint that is not an http(s) URL")
    func badEndpointRefused() async throws {
        try await running("palletflowd", ["--port", String(Int.random(in: 20_000...40_000)), "--otel-endpoint", "collector:4318"]) { log in
            let deadline = Date().addingTimeInterval(30)
            var text = ""
            while !text.contains("--otel-endpoint"), Date() < deadline {
                try await Task.sleep(for: .milliseconds(200))
                text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            }
            #expect(text.contains("must be an http:// or https:// URL"), "\(text)")
        }
    }

    @Test("palletflow-worker --metrics-port, or its variable, opens a port that answers a scrape")
    func workerMetricsPort() async throws {
        let port = Int.random(in: 20_000...40_000)
        try await running("palletflow-worker", ["--metrics-port", String(port)]) { log in
            let text = try await fetch("http://127.0.0.1:\(port)/metrics")
            let metrics = Scrape(try #require(text, "\((try? String(contentsOf: log, encoding: .utf8)) ?? "")"))
            // A fresh ecosystem-less database: nothing behind.
            #expect(metrics["palletflow_worker_indicators_lag_seconds"] == 0)
            #expect(metrics.types["palletflow_worker_indicators_lag_seconds"] == "gauge")
        }
        let other = Int.random(in: 20_000...40_000)
        try await running("palletflow-worker", [], environment: ["PALLETFLOW_WORKER_METRICS_PORT": String(other)]) { log in
            let text = try await fetch("http://127.0.0.1:\(other)/metrics")
            #expect(text != nil, "the variable alone opens the port: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
        }
    }
}
