import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Errors starting or using the embedded cluster; each says what to do.
public struct EmbeddedPostgresError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// The PostgreSQL server programs the embedded cluster needs.
public struct PostgresBinaries: Sendable {
    public var initdb: String
    public var pgCtl: String
    public var directory: String

    /// Looks on PATH first, then under Debian's `/usr/lib/postgresql/*/bin`, newest first.
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment,
                              searchDebianFolders: Bool = true) throws -> PostgresBinaries {
        var candidates: [String] = []
        if let override = environment["PALLETFLOW_PG_BIN"], !override.isEmpty { candidates.append(override) }
        candidates += (environment["PATH"] ?? "").split(separator: ":").map(String.init)
        let root = "/usr/lib/postgresql"
        if searchDebianFolders, let versions = try? FileManager.default.contentsOfDirectory(atPath: root) {
            let sorted = versions.sorted { (Int($0) ?? 0) > (Int($1) ?? 0) }
            candidates += sorted.map { "\(root)/\($0)/bin" }
        }
        for directory in candidates {
            let initdb = directory + "/initdb"
            let pgCtl = directory + "/pg_ctl"
            if FileManager.default.isExecutableFile(atPath: initdb), FileManager.default.isExecutableFile(atPath: pgCtl) {
                return PostgresBinaries(initdb: initdb, pgCtl: pgCtl, directory: directory)
            }
        }
        throw EmbeddedPostgresError("""
            PostgreSQL server programs (initdb, pg_ctl) were not found on PATH or under /usr/lib/postgresql/*/bin. \
            Install them with `apt-get install postgresql` (Debian/Ubuntu; the package is `postgresql` on most \
            systems), set PALLETFLOW_PG_BIN to their folder, or set DATABASE_URL to use an existing server.
            """)
    }
}

/// A private PostgreSQL cluster under PalletFlow's data directory, reachable only through
/// a Unix socket in a folder that only its owner can enter.
///
/// Several PalletFlow processes (daemon, worker, CLI) may share one cluster: each holds a
/// shared lock on `cluster.users` while it uses it, and the last one out stops it.
public final class EmbeddedPostgres: Sendable {
    public let dataDirectory: String
    public let clusterDirectory: String
    public let socketDirectory: String
    /// The cluster's superuser: it owns PalletFlow's tables and runs migrations, `archive`
    /// and `restore` (the CLI connects as it).
    public let superuser = "postgres"
    /// The role the daemon and the worker connect as: neither a superuser nor the tables'
    /// owner, with only the privileges of `app_privileges` (sql/0020).
    public let applicationRole = "palletflow_app"
    public let port = 5432
    private let binaries: PostgresBinaries
    private let logger: Logger
    private let usersLock: FileLock

    /// Connections the cluster accepts: the daemon's pools and a worker fit in the default
    /// with room to spare; the test run, which gives every test its own pool, asks for more.
    public let maximumConnections: Int

    public init(dataDirectory: String, logger: Logger, maximumConnections: Int = 200) throws {
        self.maximumConnections = maximumConnections
        let absolute = URL(fileURLWithPath: dataDirectory).standardizedFileURL.path
        self.dataDirectory = absolute
        self.clusterDirectory = absolute + "/postgres"
        // A Unix socket path must stay under 108 bytes; fall back to /tmp for deep folders.
        let preferred = absolute + "/run"
        if (preferred + "/.s.PGSQL.5432").utf8.count < 100 {
            self.socketDirectory = preferred
        } else {
            let digest = absolute.utf8.reduce(UInt64(14_695_981_039_346_656_037)) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 }
            self.socketDirectory = "/tmp/palletflow-\(String(digest, radix: 16))"
        }
        self.binaries = try PostgresBinaries.locate()
        self.logger = logger
        self.usersLock = FileLock(path: absolute + "/cluster.users")
    }

    /// The PostgreSQL role and socket path to connect with.
    public var socketPath: String { socketDirectory + "/.s.PGSQL.\(port)" }

    /// Creates the cluster on first use, starts it unless it already runs, and registers
    /// this process as one of its users.
    public func start() throws {
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        let startLock = FileLock(path: dataDirectory + "/cluster.start")
        try startLock.lock(exclusive: true, wait: true)
        defer { startLock.unlock() }
        try usersLock.lock(exclusive: false, wait: true)

        let owner = try ClusterOwner.current()
        if owner.isRoot { try owner.grantSearchPermission(toReach: dataDirectory, logger: logger) }
        if !FileManager.default.fileExists(atPath: clusterDirectory + "/PG_VERSION") {
            try initialise(owner: owner)
        }
        try prepareSocketDirectory(owner: owner)
        try writeRuntimeSettings(owner: owner)
        if try isRunning(owner: owner) {
            logger.info("embedded PostgreSQL already running", metadata: ["cluster": "\(clusterDirectory)"])
            return
        }
        logger.info("starting embedded PostgreSQL", metadata: ["cluster": "\(clusterDirectory)", "socket": "\(socketDirectory)"])
        let result = try owner.run(binaries.pgCtl, ["-D", clusterDirectory, "-l", clusterDirectory + "/log/server.log",
                                                     "-w", "-t", "120", "start"])
        guard result.status == 0 else {
            let tail = (try? String(contentsOfFile: clusterDirectory + "/log/server.log", encoding: .utf8))?
                .split(separator: "\n").suffix(15).joined(separator: "\n") ?? ""
            throw EmbeddedPostgresError("""
                the embedded PostgreSQL did not start (pg_ctl exit \(result.status)): \(result.output)
                last lines of \(clusterDirectory)/log/server.log:
                \(tail)
                """)
        }
    }

    /// Unregisters this process; the last user stops the cluster (fast shutdown: running
    /// transactions are rolled back, committed data is safe).
    public func stop() {
        usersLock.unlock()
        let lastOut = FileLock(path: dataDirectory + "/cluster.users")
        guard (try? lastOut.lock(exclusive: true, wait: false)) != nil else {
            logger.info("embedded PostgreSQL left running for its other users")
            return
        }
        defer { lastOut.unlock() }
        guard let owner = try? ClusterOwner.current(), (try? isRunning(owner: owner)) == true else { return }
        logger.info("stopping embedded PostgreSQL", metadata: ["cluster": "\(clusterDirectory)"])
        _ = try? owner.run(binaries.pgCtl, ["-D", clusterDirectory, "-m", "fast", "-w", "-t", "60", "stop"])
    }

    /// Stops the cluster at once, whoever uses it (tests).
    public func stopImmediately() {
        guard let owner = try? ClusterOwner.current() else { return }
        _ = try? owner.run(binaries.pgCtl, ["-D", clusterDirectory, "-m", "immediate", "-w", "stop"])
    }

    public func isRunning() -> Bool {
        guard let owner = try? ClusterOwner.current() else { return false }
        return (try? isRunning(owner: owner)) ?? false
    }

    private func isRunning(owner: ClusterOwner) throws -> Bool {
        let result = try owner.run(binaries.pgCtl, ["-D", clusterDirectory, "status"])
        return result.status == 0
    }

    private func initialise(owner: ClusterOwner) throws {
        logger.info("creating embedded PostgreSQL cluster", metadata: ["cluster": "\(clusterDirectory)"])
        try FileManager.default.createDirectory(atPath: clusterDirectory, withIntermediateDirectories: true)
        try owner.takeOwnership(of: clusterDirectory, mode: 0o700)
        let result = try owner.run(binaries.initdb, ["-D", clusterDirectory, "-U", superuser, "--auth=trust",
                                                      "-E", "UTF8", "--no-locale", "--no-instructions"])
        guard result.status == 0 else {
            throw EmbeddedPostgresError("initdb failed (exit \(result.status)): \(result.output)")
        }
        try owner.writeFile(clusterDirectory + "/postgresql.conf",
                            appending: "\n# PalletFlow: settings rewritten at each start\ninclude_if_exists = 'palletflow.conf'\n")
        try FileManager.default.createDirectory(atPath: clusterDirectory + "/log", withIntermediateDirectories: true)
        try owner.takeOwnership(of: clusterDirectory + "/log", mode: 0o700)
    }

    private func prepareSocketDirectory(owner: ClusterOwner) throws {
        try FileManager.default.createDirectory(atPath: socketDirectory, withIntermediateDirectories: true)
        try owner.takeOwnership(of: socketDirectory, mode: 0o700)
    }

    private func writeRuntimeSettings(owner: ClusterOwner) throws {
        let settings = """
            # Written by PalletFlow at each start; edit postgresql.conf for your own settings.
            listen_addresses = ''
            unix_socket_directories = '\(socketDirectory.replacingOccurrences(of: "'", with: "''"))'
            unix_socket_permissions = 0700
            port = \(port)
            max_connections = \(maximumConnections)
            shared_buffers = 256MB
            synchronous_commit = on
            fsync = on
            # Segments kept for reuse at each checkpoint. With the default (80MB) a steady
            # write load outran the recycled segments, and PostgreSQL then created each new
            # 16 MB segment by writing and syncing zeros while every commit waited: a 40-80 ms
            # stall at each segment switch, every 5-6 s at 600 declarations/s
            # (docs/performance.md, change 19). It costs disk only once WAL has grown that far.
            min_wal_size = 1GB

            """
        try owner.writeFile(clusterDirectory + "/palletflow.conf", contents: settings)
    }
}

/// Who runs the cluster's programs. PostgreSQL refuses to run as root, so when PalletFlow
/// runs as root the cluster belongs to the unprivileged `postgres` system user.
struct ClusterOwner {
    var isRoot: Bool
    var uid: uid_t
    var gid: gid_t

    static func current() throws -> ClusterOwner {
        guard geteuid() == 0 else { return ClusterOwner(isRoot: false, uid: geteuid(), gid: getegid()) }
        guard let entry = getpwnam("postgres") else {
            throw EmbeddedPostgresError("""
                running as root, the embedded PostgreSQL needs the unprivileged system user `postgres` \
                (PostgreSQL refuses to run as root). Install the `postgresql` package, which creates it, \
                or run PalletFlow as an ordinary user.
                """)
        }
        return ClusterOwner(isRoot: true, uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid)
    }

    func takeOwnership(of path: String, mode: mode_t) throws {
        if isRoot, chown(path, uid, gid) != 0 {
            throw EmbeddedPostgresError("cannot give \(path) to the postgres user: \(String(cString: strerror(errno)))")
        }
        chmod(path, mode)
    }

    /// The postgres user must be able to walk down to the cluster; a private parent folder
    /// (a 0700 home or temporary folder) gets the search bit only, never read.
    func grantSearchPermission(toReach path: String, logger: Logger) throws {
        var current = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var chain: [String] = []
        while current != "/" && !current.isEmpty {
            chain.append(current)
            current = (current as NSString).deletingLastPathComponent
        }
        for directory in chain {
            var info = stat()
            guard stat(directory, &info) == 0 else { continue }
            if info.st_mode & 0o001 == 0 {
                logger.notice("granting search permission (o+x) so the postgres user can reach the cluster",
                              metadata: ["folder": "\(directory)"])
                chmod(directory, info.st_mode & 0o7777 | 0o001)
            }
        }
        var dataInfo = stat()
        if stat(path, &dataInfo) == 0, dataInfo.st_mode & 0o001 == 0 {
            chmod(path, dataInfo.st_mode & 0o7777 | 0o001)
        }
    }

    func writeFile(_ path: String, contents: String) throws {
        try contents.write(toFile: path, atomically: false, encoding: .utf8)
        if isRoot { chown(path, uid, gid) }
    }

    func writeFile(_ path: String, appending text: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(text.utf8))
    }

    /// Runs a PostgreSQL program as the cluster's owner and returns its exit status and output.
    func run(_ program: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        var argv: [String]
        if isRoot {
            let runuser = FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser") ? "/usr/sbin/runuser" : "/sbin/runuser"
            argv = [runuser, "-u", "postgres", "--", program] + arguments
        } else {
            argv = [program] + arguments
        }
        return try spawnAndWait(argv)
    }
}

/// posix_spawn + waitpid. Foundation's Process can miss the child's exit when called
/// from Swift concurrency on Linux; this cannot. The output goes to a file, not a pipe,
/// because pg_ctl's server keeps inheriting descriptors long after pg_ctl exits.
func spawnAndWait(_ command: [String]) throws -> (status: Int32, output: String) {
    // Start from "/": the postgres user may not be able to enter our working directory.
    let argv = ["/bin/sh", "-c", "cd / && exec \"$@\"", "sh"] + command
    let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("palletflow-\(UUID().uuidString).out").path
    defer { unlink(outputPath) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    var cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    defer { cArguments.forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, argv[0], &actions, nil, &cArguments, environ)
    guard spawned == 0 else {
        throw EmbeddedPostgresError("cannot run \(argv[0]): \(String(cString: strerror(spawned)))")
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
        if errno != EINTR { throw EmbeddedPostgresError("waiting for \(argv[0]) failed: \(String(cString: strerror(errno)))") }
    }
    let exitStatus: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    return (exitStatus, output.trimmingCharacters(in: .whitespacesAndNewlines))
}

/// An advisory `flock` on a file: released by the kernel when the process dies, so a
/// killed daemon never leaves a stale lock behind.
public final class FileLock: @unchecked Sendable {
    public let path: String
    private let mutex = NSLock()
    private var descriptor: Int32 = -1

    public init(path: String) { self.path = path }

    /// Returns normally when the lock is held; throws `wouldBlock` when `wait` is false
    /// and another process holds a conflicting lock.
    public func lock(exclusive: Bool, wait: Bool) throws {
        mutex.lock()
        defer { mutex.unlock() }
        if descriptor < 0 {
            descriptor = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
            guard descriptor >= 0 else {
                throw EmbeddedPostgresError("cannot open lock file \(path): \(String(cString: strerror(errno)))")
            }
        }
        var operation = exclusive ? LOCK_EX : LOCK_SH
        if !wait { operation |= LOCK_NB }
        while flock(descriptor, operation) != 0 {
            if errno == EINTR { continue }
            if errno == EWOULDBLOCK { throw FileLockBusy(path: path) }
            throw EmbeddedPostgresError("cannot lock \(path): \(String(cString: strerror(errno)))")
        }
    }

    public func unlock() {
        mutex.lock()
        defer { mutex.unlock() }
        guard descriptor >= 0 else { return }
        flock(descriptor, LOCK_UN)
        close(descriptor)
        descriptor = -1
    }

    /// Writes a line into the lock file (the holder's pid), for the error others see.
    public func writeHolder(_ text: String) {
        mutex.lock()
        defer { mutex.unlock() }
        guard descriptor >= 0 else { return }
        ftruncate(descriptor, 0)
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
    }
}

public struct FileLockBusy: Error, Sendable {
    public var path: String
}

extension EmbeddedPostgres {
    /// Runs a PostgreSQL program (pg_basebackup, pg_ctl...) as the user that owns clusters
    /// here: the `postgres` system user when running as root, else the current user.
    /// For tools and tests that build a standby beside the embedded cluster.
    public static func runAsClusterOwner(_ program: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        try ClusterOwner.current().run(program, arguments)
    }
}
