import Foundation
import PalletFlowCore
import PalletFlowStore
import PostgresNIO
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A hot standby of the test cluster, built with pg_basebackup and streaming from it: the
/// daemon given READ_DATABASE_URL reads its reports there while its writes go to the primary.
@Suite("Read replica", .serialized)
struct ReplicaTests {
    /// Runs a PostgreSQL program as the cluster's owner (the `postgres` user when we are root).
    func asOwner(_ tool: String, _ arguments: [String]) throws -> (Int32, String) {
        let result = try EmbeddedPostgres.runAsClusterOwner(tool, arguments)
        return (result.status, result.output)
    }

    func ownedDirectory(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        if getuid() == 0 { try FileManager.default.setAttributes([.ownerAccountName: "postgres"], ofItemAtPath: path) }
    }

    func events(_ port: Int, _ base: String, token: String) async throws -> Int {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(base)/epcis/events?perPage=1000")!)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        let (data, _) = try await URLSession.shared.data(for: request)
        let json = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        let body = (json?["epcisBody"] as? [String: Any])?["queryResults"] as? [String: Any]
        return (((body?["resultsBody"] as? [String: Any])?["eventList"]) as? [Any])?.count ?? -1
    }

    /// The carrier's pending EPAL balance in the mediation report, as the daemon serves it;
    /// nil when the report does not come back with the carrier in it.
    func reportedPending(_ port: Int, _ base: String, session: UUID, carrier: UUID, token: String) async throws -> Int64? {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(base)/sessions/\(session.lower)/report")!)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        let (data, _) = try await URLSession.shared.data(for: request)
        let json = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        let participants = json?["participants"] as? [[String: Any]] ?? []
        guard let participant = participants.first(where: { $0["memberId"] as? String == carrier.lower }) else { return nil }
        let balances = participant["balances"] as? [[String: Any]] ?? []
        return balances.filter { $0["palletType"] as? String == "EPAL1" }.compactMap { ($0["pending"] as? NSNumber)?.int64Value }
            .reduce(0, +)
    }

    @Test("the mediation report and the EPCIS query are read from the hot standby: paused replay hides a new movement there, resumed replay shows it")
    func readsFromStandby() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: DaemonProcessTests.binary), "build the daemon first")
        let binaries = try PostgresBinaries.locate()
        let (settings, primaryURL) = try await TestDatabase.shared.freshDatabaseURL()
        let primarySockets = try #require(URLComponents(string: primaryURL)?.queryItems?.first { $0.name == "host" }?.value)
        let primaryPort = try #require(URLComponents(string: primaryURL)?.port)
        let root = "/tmp/pf-standby-\(UUID().uuidString.prefix(8))"
        let data = root + "/data"
        let sockets = root + "/sockets"
        try ownedDirectory(root)
        try ownedDirectory(sockets)
        defer {
            _ = try? asOwner(binaries.pgCtl, ["-D", data, "-m", "immediate", "-w", "stop"])
            try? FileManager.default.removeItem(atPath: root)
        }
        // Beside initdb, else in PostgreSQL's own folder, else on PATH (Debian's client wrappers).
        let candidates = [binaries.directory + "/pg_basebackup",
                          URL(fileURLWithPath: binaries.initdb).resolvingSymlinksInPath().deletingLastPathComponent().path + "/pg_basebackup",
                          "/usr/bin/pg_basebackup"]
        let basebackup = try #require(candidates.first { FileManager.default.isExecutableFile(atPath: $0) }, "pg_basebackup not found")
        // A copy of the primary that follows its WAL (-R writes primary_conninfo and standby.signal).
        let (backup, backupOutput) = try asOwner(basebackup, [
            "-h", primarySockets, "-p", String(primaryPort), "-U", "postgres", "-D", data, "-R", "-X", "stream", "--checkpoint=fast",
        ])
        try #require(backup == 0, "pg_basebackup: \(backupOutput)")
        // The copy's settings are the primary's: give the standby its own socket and no log collector.
        let (appended, appendOutput) = try asOwner("/bin/sh", ["-c", """
            printf "unix_socket_directories = '\(sockets)'\\nhot_standby = on\\nlogging_collector = off\\n" >> \(data)/postgresql.auto.conf
            """])
        try #require(appended == 0, "\(appendOutput)")
        let (started, startOutput) = try asOwner(binaries.pgCtl, ["-D", data, "-l", root + "/standby.log", "-w", "-t", "300", "start"])
        try #require(started == 0, "standby: \(startOutput)")
        let standbyURL = primaryURL.replacingOccurrences(of: "host=\(primarySockets)", with: "host=\(sockets)")

        // The daemon reads the standby as the application role; the test pauses and resumes
        // its replay, which takes the superuser.
        let standby = try DatabaseSettings.url(
            standbyURL.replacingOccurrences(of: "://palletflow_app@", with: "://postgres@"), maximumConnections: 2)
        try await DatabaseRuntime(settings: standby, cluster: nil).withClient(logger: TestDatabase.logger) { replica in
            try await DatabaseRuntime(settings: settings, cluster: nil).withClient(logger: TestDatabase.logger) { primary in
                let store = Store(client: primary, logger: TestDatabase.logger, clock: TestClock.clock)
                let fixture = try await Fixture.make(store)
                let today = TestClock.now().day
                let session = try await store.createSession(
                    ecosystem: fixture.ecosystem, title: "Quarterly review", scheduledAt: TestClock.now().date, periodStartDay: today - 30,
                    periodEndDay: today + 1, agenda: nil, participants: [fixture.carrier.id, fixture.shipper.id],
                    by: fixture.shipper.id)
                // Wait until the standby has the fixture.
                var caughtUp = false
                for _ in 0..<200 where !caughtUp {
                    for try await count in try await replica.query(
                        "SELECT count(*)::int8 FROM memberships WHERE ecosystem_id = \(fixture.ecosystem)", logger: TestDatabase.logger
                    ).decode(Int64.self) { caughtUp = count == 6 }
                    if !caughtUp { try await Task.sleep(for: .milliseconds(100)) }
                }
                try #require(caughtUp, "the standby never received the fixture")
                for try await inRecovery in try await replica.query("SELECT pg_is_in_recovery()", logger: TestDatabase.logger)
                    .decode(Bool.self) { #expect(inRecovery, "the standby must be a standby") }

                // The daemon writes to the primary and reads reports from the standby.
                let port = Int.random(in: 20_000...40_000)
                let daemon = Process()
                daemon.executableURL = URL(fileURLWithPath: DaemonProcessTests.binary)
                daemon.arguments = ["--port", String(port), "--log-format", "text", "--log-level", "warning"]
                daemon.environment = ProcessInfo.processInfo.environment.merging(
                    ["DATABASE_URL": primaryURL, "READ_DATABASE_URL": standbyURL]) { $1 }
                try daemon.run()
                defer { if daemon.isRunning { daemon.interrupt() } }
                #expect(try await DaemonProcessTests().waitUntilReady(port: port))

                // With replay paused, the standby stops at this point of the primary's history.
                try await replica.query("SELECT pg_wal_replay_pause()", logger: TestDatabase.logger)
                var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(fixture.base)/movements")!)
                request.httpMethod = "POST"
                request.setValue("Bearer \(fixture.carrier.token)", forHTTPHeaderField: "Authorization")
                request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                request.setValue("replica-1", forHTTPHeaderField: "Idempotency-Key")
                request.httpBody = try JSONSerialization.data(withJSONObject: [
                    "kind": "pickup", "eventTime": hoursAgo(1),
                    "from": ["partyId": fixture.shipper.id.lower, "siteId": fixture.shipper.site!.lower],
                    "to": ["partyId": fixture.carrier.id.lower], "lines": [["palletType": "EPAL1", "quantity": 9]],
                ] as [String: Any])
                let (_, response) = try await URLSession.shared.data(for: request)
                #expect((response as? HTTPURLResponse)?.statusCode == 201)
                // Written on the primary...
                #expect(try await store.movements(ecosystem: fixture.ecosystem, MovementFilter()).count == 1)
                // ...but the EPCIS query and the mediation report are answered by the paused
                // standby, which has not seen it.
                #expect(try await events(port, fixture.base, token: fixture.shipper.token) == 0)
                #expect(try await reportedPending(port, fixture.base, session: session, carrier: fixture.carrier.id,
                                                  token: fixture.shipper.token) == 0)

                try await replica.query("SELECT pg_wal_replay_resume()", logger: TestDatabase.logger)
                var seen = 0
                for _ in 0..<200 where seen != 1 {
                    seen = try await events(port, fixture.base, token: fixture.shipper.token)
                    if seen != 1 { try await Task.sleep(for: .milliseconds(100)) }
                }
                #expect(seen == 1, "once replay resumes, the standby serves the new movement")
                // The carrier's pickup of 9 awaits the shipper's confirmation: 9 pending in the report.
                #expect(try await reportedPending(port, fixture.base, session: session, carrier: fixture.carrier.id,
                                                  token: fixture.shipper.token) == 9)
                daemon.interrupt()
                #expect(try await DaemonProcessTests().waitForExit(daemon) == 0)
            }
        }
    }
}
