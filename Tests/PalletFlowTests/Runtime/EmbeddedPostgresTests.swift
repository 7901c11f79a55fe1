import Foundation
import PalletFlowStore
import PostgresNIO
import Testing

@Suite("Embedded PostgreSQL")
struct EmbeddedPostgresTests {
    @Test("created on first start, stopped by its last user, reused with its data on the next start")
    func lifecycle() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pf-lifecycle-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try EmbeddedPostgres(dataDirectory: directory, logger: TestDatabase.logger)
        try first.start()
        #expect(first.isRunning())
        #expect(FileManager.default.fileExists(atPath: directory + "/postgres/PG_VERSION"))
        try await DatabaseRuntime.ensureDatabase(first, named: "kept", logger: TestDatabase.logger)
        try await DatabaseRuntime.withAdminConnection(first, logger: TestDatabase.logger) { connection in
            _ = try await connection.query("CREATE TABLE IF NOT EXISTS marker (value text)", logger: TestDatabase.logger)
            _ = try await connection.query("INSERT INTO marker VALUES ('still here')", logger: TestDatabase.logger)
        }
        // A second user of the same cluster (a worker, the CLI) shares it ...
        let second = try EmbeddedPostgres(dataDirectory: directory, logger: TestDatabase.logger)
        try second.start()
        first.stop()
        #expect(second.isRunning(), "the cluster must stay up while another process uses it")
        // ... and the last one out stops it.
        second.stop()
        #expect(!second.isRunning())

        let again = try EmbeddedPostgres(dataDirectory: directory, logger: TestDatabase.logger)
        try again.start()
        let value = try await DatabaseRuntime.withAdminConnection(again, logger: TestDatabase.logger) { connection in
            var found = ""
            for try await text in try await connection.query("SELECT value FROM marker", logger: TestDatabase.logger)
                .decode(String.self) { found = text }
            return found
        }
        #expect(value == "still here")
        again.stop()
        #expect(!again.isRunning())
    }

    @Test("only the cluster's owner can reach its socket folder")
    func socketFolderIsPrivate() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pf-private-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cluster = try EmbeddedPostgres(dataDirectory: directory, logger: TestDatabase.logger)
        try cluster.start()
        defer { cluster.stop() }
        let attributes = try FileManager.default.attributesOfItem(atPath: cluster.socketDirectory)
        #expect((attributes[.posixPermissions] as? Int) == 0o700)
    }

    @Test("a second daemon on the same data directory is refused by the daemon lock")
    func secondDaemonRefused() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pf-lock-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = FileLock(path: directory + "/palletflowd.lock")
        try first.lock(exclusive: true, wait: false)
        let second = FileLock(path: directory + "/palletflowd.lock")
        #expect(throws: FileLockBusy.self) { try second.lock(exclusive: true, wait: false) }
        first.unlock()
        try second.lock(exclusive: true, wait: false)
        second.unlock()
    }

    @Test("missing PostgreSQL programs give one clear error naming the package")
    func missingBinaries() {
        let error = #expect(throws: EmbeddedPostgresError.self) {
            _ = try PostgresBinaries.locate(environment: ["PATH": "/nonexistent"], searchDebianFolders: false)
        }
        #expect(error?.description.contains("apt-get install postgresql") == true)
    }
}
