import Foundation
import PalletFlowStore
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The real `palletflowd` binary, as a user runs it: start on a fresh data directory,
/// refuse a second daemon there, stop on Ctrl-C with its PostgreSQL, restart on the same data.
@Suite("palletflowd process", .serialized)
struct DaemonProcessTests {
    static let binary = #filePath.components(separatedBy: "/Tests/")[0] + "/.build/debug/palletflowd"

    func launch(_ arguments: [String], output: URL) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = arguments
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    func waitUntilReady(port: Int, timeout: TimeInterval = 90) async throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let (_, response) = try? await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/readyz")!),
               (response as? HTTPURLResponse)?.statusCode == 200 {
                return true
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        return false
    }

    func waitForExit(_ process: Process, timeout: TimeInterval = 60) async throws -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(100)) }
        return process.isRunning ? nil : process.terminationStatus
    }

    @Test("start, second instance refused, Ctrl-C stops daemon and cluster, restart reuses the data")
    func lifecycle() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary),
                     "build the daemon first (scripts/test does): \(Self.binary)")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pf-daemon-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let dataDirectory = directory.appendingPathComponent("data").path
        let port = Int.random(in: 20_000...40_000)
        let arguments = ["--data-dir", dataDirectory, "--port", String(port), "--demo", "--with-worker", "--log-format", "text"]

        let first = try launch(arguments, output: directory.appendingPathComponent("first.log"))
        #expect(try await waitUntilReady(port: port))
        let firstLog = try String(contentsOf: directory.appendingPathComponent("first.log"), encoding: .utf8)
        #expect(firstLog.contains("Demo tokens"))

        let second = try launch(["--data-dir", dataDirectory, "--port", String(port + 1)],
                                output: directory.appendingPathComponent("second.log"))
        let secondStatus = try await waitForExit(second)
        #expect(secondStatus != nil && secondStatus != 0)
        let secondLog = try String(contentsOf: directory.appendingPathComponent("second.log"), encoding: .utf8)
        #expect(secondLog.contains("another palletflowd is already running"))
        #expect(first.isRunning)

        first.interrupt()
        #expect(try await waitForExit(first) == 0)
        let cluster = try EmbeddedPostgres(dataDirectory: dataDirectory, logger: TestDatabase.logger)
        #expect(!cluster.isRunning(), "Ctrl-C must stop the embedded PostgreSQL too")

        let third = try launch(arguments, output: directory.appendingPathComponent("third.log"))
        #expect(try await waitUntilReady(port: port))
        third.interrupt()
        #expect(try await waitForExit(third) == 0)
        let thirdLog = try String(contentsOf: directory.appendingPathComponent("third.log"), encoding: .utf8)
        #expect(!thirdLog.contains("creating embedded PostgreSQL cluster"), "the second run must reuse the cluster")
        #expect(!thirdLog.contains("applying migration"), "the second run must find the schema in place")
    }
}
