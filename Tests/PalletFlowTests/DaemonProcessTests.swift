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

    /// Runs a command, returns its exit status and output.
    func run(_ tool: String, _ arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test("given a certificate and key, the daemon serves HTTPS (TLS 1.2+) and no plain HTTP; one without the other is refused")
    func https() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build the daemon first: \(Self.binary)")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pf-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let certificate = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        let (status, output) = try run("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", certificate,
        ])
        try #require(status == 0, "openssl: \(output)")

        let half = try launch(["--data-dir", directory.appendingPathComponent("data").path, "--tls-certificate", certificate],
                              output: directory.appendingPathComponent("half.log"))
        #expect(try await waitForExit(half) != 0)
        #expect(try String(contentsOf: directory.appendingPathComponent("half.log"), encoding: .utf8).contains("go together"))

        let port = Int.random(in: 20_000...40_000)
        let daemon = try launch(["--data-dir", directory.appendingPathComponent("data").path, "--port", String(port),
                                 "--tls-certificate", certificate, "--tls-key", key, "--log-format", "text"],
                                output: directory.appendingPathComponent("daemon.log"))
        defer { daemon.interrupt() }
        var ready = false
        for _ in 0..<240 where !ready {
            let (code, body) = try run("/usr/bin/curl", ["-s", "--cacert", certificate, "https://127.0.0.1:\(port)/readyz"])
            ready = code == 0 && body.contains("\"ok\"")
            if !ready { try await Task.sleep(for: .milliseconds(250)) }
        }
        #expect(ready, "\((try? String(contentsOf: directory.appendingPathComponent("daemon.log"), encoding: .utf8)) ?? "")")
        // The certificate is checked: without the CA the connection is refused by curl.
        let (untrusted, _) = try run("/usr/bin/curl", ["-s", "https://127.0.0.1:\(port)/healthz"])
        #expect(untrusted != 0)
        // Plain HTTP on the TLS port gets no HTTP answer.
        let (plain, plainBody) = try run("/usr/bin/curl", ["-s", "-m", "5", "http://127.0.0.1:\(port)/healthz"])
        #expect(plain != 0 || !plainBody.contains("ok"))
        let (tls11, _) = try run("/usr/bin/curl", ["-s", "--cacert", certificate, "--tlsv1.1", "--tls-max", "1.1",
                                                   "https://127.0.0.1:\(port)/healthz"])
        #expect(tls11 != 0, "TLS 1.1 must be refused")
        daemon.interrupt()
        #expect(try await waitForExit(daemon) == 0)
    }
}
