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

    @Test("palletflow ledger verify exits 1 for a command line it cannot read, never 2 (a broken ledger); --version names release and schema")
    func verifyExitStatus() throws {
        let cli = Self.binary.replacingOccurrences(of: "/palletflowd", with: "/palletflow")
        let (status, text) = try run(cli, ["ledger", "verify", "--ecosystem", "not-an-id"])
        #expect(status == 1, "\(text)")
        #expect(text.contains("'not-an-id' is invalid for '--ecosystem"), "\(text)")
        #expect(text.contains("The ledger was not checked."), "\(text)")
        // Other commands keep ArgumentParser's usage status.
        let (usage, _) = try run(cli, ["token", "issue", "--ecosystem", "x", "--member", "y"])
        #expect(usage == 64)
        let (versionStatus, version) = try run(cli, ["--version"])
        #expect(versionStatus == 0)
        #expect(version.contains("(schema \(Migration.all.count))"), "\(version)")
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

    @Test("two daemons on one database share nothing else: declarations through both, retries across them, exact balances")
    func twoDaemons() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build the daemon first: \(Self.binary)")
        let (settings, url) = try await TestDatabase.shared.freshDatabaseURL()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pf-two-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let runtime = DatabaseRuntime(settings: settings, cluster: nil)
        try await runtime.withClient(logger: TestDatabase.logger) { client in
            let store = Store(database: DatabaseClient(client, logger: TestDatabase.logger, leaseTimeout: .seconds(20)),
                              logger: TestDatabase.logger, clock: TestClock.clock)
            let fixture = try await Fixture.make(store)
            let ports = [Int.random(in: 20_000...30_000), Int.random(in: 30_001...40_000)]
            var daemons: [Process] = []
            for (index, port) in ports.enumerated() {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: Self.binary)
                process.arguments = ["--port", String(port), "--log-format", "text", "--log-level", "warning"]
                process.environment = ProcessInfo.processInfo.environment.merging(["DATABASE_URL": url]) { $1 }
                let log = directory.appendingPathComponent("daemon\(index).log")
                _ = FileManager.default.createFile(atPath: log.path, contents: nil)
                process.standardOutput = try FileHandle(forWritingTo: log)
                process.standardError = try FileHandle(forWritingTo: log)
                try process.run()
                daemons.append(process)
            }
            defer { for daemon in daemons where daemon.isRunning { daemon.interrupt() } }
            for port in ports { #expect(try await waitUntilReady(port: port)) }

            // 200 pickups of 1 to 7 pallets, alternately through each daemon, 16 at a time; every
            // tenth is sent through both daemons at once with the same key (a retry racing the
            // original), every fifth after it through the other daemon (a late retry).
            let count = 200
            let eventTime = hoursAgo(1)
            func send(_ index: Int, through port: Int) async throws -> (Int, Data) {
                var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(fixture.base)/movements")!)
                request.httpMethod = "POST"
                request.setValue("Bearer \(fixture.carrier.token)", forHTTPHeaderField: "Authorization")
                request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                request.setValue("two-daemons-\(index)", forHTTPHeaderField: "Idempotency-Key")
                request.httpBody = try JSONSerialization.data(withJSONObject: [
                    "kind": "pickup", "eventTime": eventTime,
                    "from": ["partyId": fixture.shipper.id.lower, "siteId": fixture.shipper.site!.lower],
                    "to": ["partyId": fixture.carrier.id.lower],
                    "lines": [["palletType": "EPAL1", "quantity": index % 7 + 1]],
                ] as [String: Any], options: [.sortedKeys])
                let (data, response) = try await URLSession.shared.data(for: request)
                return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
            }
            let results = try await withThrowingTaskGroup(of: (Int, Int, Data, Data?).self) { group in
                var collected: [(Int, Int, Data, Data?)] = []
                for index in 0..<count {
                    if index >= 16, let result = try await group.next() { collected.append(result) }
                    group.addTask {
                        if index % 10 == 0 {
                            async let original = send(index, through: ports[index % 2])
                            async let racing = send(index, through: ports[(index + 1) % 2])
                            let (first, second) = try await (original, racing)
                            return (index, first.0 == second.0 ? first.0 : -second.0, first.1, second.1)
                        }
                        let (status, body) = try await send(index, through: ports[index % 2])
                        var retried: Data?
                        if index % 5 == 0 { retried = try await send(index, through: ports[(index + 1) % 2]).1 }
                        return (index, status, body, retried)
                    }
                }
                for try await result in group { collected.append(result) }
                return collected
            }
            #expect(results.count == count)
            #expect(results.allSatisfy { $0.1 == 201 }, "\(results.filter { $0.1 != 201 }.map { String(decoding: $0.2, as: UTF8.self) }.prefix(3))")
            // A retry through the other daemon answers the first response, byte for byte.
            for result in results where result.3 != nil && result.2 != result.3 {
                Issue.record("retry \(result.0): \(String(decoding: result.2, as: UTF8.self)) vs \(String(decoding: result.3!, as: UTF8.self))")
                break
            }
            var filter = MovementFilter()
            filter.limit = 1_000
            let movements = try await store.movements(ecosystem: fixture.ecosystem, filter)
            #expect(movements.count == count)
            // Sum of (i mod 7) + 1 over i = 0..<200: 28 full weeks of 1...7 (28 x 28 = 784) and 1+2+3+4 = 10.
            let owed = try await store.balances(ecosystem: fixture.ecosystem, classes: [.owed], party: fixture.carrier.id, asOf: nil)
                .filter { $0.key.counterparty == fixture.shipper.id }.map(\.balance).reduce(0, +)
            #expect(owed == 794)
            #expect(try await store.verifyLedger(ecosystem: fixture.ecosystem).holds)
            for daemon in daemons { daemon.interrupt() }
            for daemon in daemons { #expect(try await waitForExit(daemon) == 0) }
        }
    }

    /// A blocking TCP connection to the daemon, for a request sent in pieces.
    struct RawConnection {
        let descriptor: Int32

        init?(port: Int) {
            descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if connected != 0 { close(descriptor); return nil }
        }

        func send(_ bytes: [UInt8]) -> Bool {
            bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, 0) } == bytes.count
        }

        /// Everything until the peer closes.
        func readAll() -> String {
            var result: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
                if count <= 0 { break }
                result += buffer[0..<count]
            }
            close(descriptor)
            return String(decoding: result, as: UTF8.self)
        }
    }

    @Test("SIGTERM drains: a declaration still arriving when the signal comes is answered 201 and stored, new connections are refused, exit 0")
    func drainsRequestsInFlight() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build the daemon first: \(Self.binary)")
        let (settings, url) = try await TestDatabase.shared.freshDatabaseURL()
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("pf-drain-\(UUID().uuidString).log")
        defer { try? FileManager.default.removeItem(at: log) }
        try await DatabaseRuntime(settings: settings, cluster: nil).withClient(logger: TestDatabase.logger) { client in
            let store = Store(database: DatabaseClient(client, logger: TestDatabase.logger, leaseTimeout: .seconds(20)),
                              logger: TestDatabase.logger, clock: TestClock.clock)
            let fixture = try await Fixture.make(store)
            let port = Int.random(in: 20_000...40_000)
            let daemon = Process()
            daemon.executableURL = URL(fileURLWithPath: Self.binary)
            daemon.arguments = ["--port", String(port), "--log-format", "text", "--log-level", "warning"]
            daemon.environment = ProcessInfo.processInfo.environment.merging(["DATABASE_URL": url]) { $1 }
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            daemon.standardOutput = try FileHandle(forWritingTo: log)
            daemon.standardError = try FileHandle(forWritingTo: log)
            try daemon.run()
            defer { if daemon.isRunning { daemon.interrupt() } }
            #expect(try await waitUntilReady(port: port))

            let body = Array(try JSONSerialization.data(withJSONObject: [
                "kind": "pickup", "eventTime": hoursAgo(1),
                "from": ["partyId": fixture.shipper.id.lower, "siteId": fixture.shipper.site!.lower],
                "to": ["partyId": fixture.carrier.id.lower], "lines": [["palletType": "EPAL1", "quantity": 11]],
            ] as [String: Any]))
            let head = """
                POST \(fixture.base)/movements HTTP/1.1\r
                Host: 127.0.0.1:\(port)\r
                Authorization: Bearer \(fixture.carrier.token)\r
                Content-Type: application/json\r
                Idempotency-Key: drain-1\r
                Content-Length: \(body.count)\r
                Connection: close\r
                \r

                """
            let connection = try #require(RawConnection(port: port))
            #expect(connection.send(Array(head.utf8) + body.prefix(body.count / 2)))
            try await Task.sleep(for: .milliseconds(300))
            daemon.terminate()
            try await Task.sleep(for: .milliseconds(700))
            // Stopping: the listener is closed, the request in flight is not.
            #expect(daemon.isRunning)
            #expect(RawConnection(port: port) == nil, "a stopping daemon accepts no new connection")
            #expect(connection.send(Array(body.dropFirst(body.count / 2))))
            let response = connection.readAll()
            #expect(response.hasPrefix("HTTP/1.1 201"), "\(response.prefix(300))")
            #expect(try await waitForExit(daemon) == 0)
            let movements = try await store.movements(ecosystem: fixture.ecosystem, MovementFilter())
            #expect(movements.count == 1)
            #expect(movements.first?.declaration.lines.first?.quantity == 11)
        }
    }
}
