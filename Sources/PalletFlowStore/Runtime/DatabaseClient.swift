import Foundation
import Logging
import NIOPosix
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// No database connection could be had in time: the database is down or unreachable.
/// The API answers it with 503 `database-unavailable` and `Retry-After`.
public struct DatabaseUnavailable: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// PalletFlow's connection pool: postgres-nio's `PostgresClient`, with two things it
/// lacks during a database outage.
///
/// - A lease waits at most `leaseTimeout` (2 s) for a connection while the pool leases
///   nothing, then throws `DatabaseUnavailable`; postgres-nio would queue the request
///   until its circuit breaker trips (15 s). A pool that keeps leasing is busy, not
///   failing: its requests wait their turn (up to 30 s). A lease is cancelled only while
///   it waits: once a connection is leased, the work runs to its end.
/// - Supervised (the daemon runs it as a service), it watches for trouble (a lease
///   that timed out, a lost connection): it then probes the database on a connection of
///   its own every 250 ms, fails leases at once while the probe cannot connect, and when
///   the database answers again but the pool still cannot lease (postgres-nio backs off
///   exponentially between reconnection attempts, up to a minute), it replaces the pool
///   with a fresh one, which connects at once. The old pool is shut down when the work
///   it carries has ended.
public final class DatabaseClient: Sendable {
    public let leaseTimeout: Duration
    /// The longest wait for a connection of a pool that is busy, not failing.
    public let busyLimit: Duration = .seconds(30)
    private let configuration: PostgresClient.Configuration?
    private let probeConfiguration: PostgresConnection.Configuration?
    private let logger: Logger
    private let state: Mutex<State>
    private let spawn: (stream: AsyncStream<Pool>, continuation: AsyncStream<Pool>.Continuation)
    private let watched = Mutex(WatchedLeases())

    final class Pool: Sendable {
        let client: PostgresClient
        let generation: Int
        /// Leases holding one of its connections, through this wrapper.
        let inFlight = Atomic<Int>(0)
        let retire = AsyncStream<Void>.makeStream()
        /// Its `run()` has been called (a pool the caller runs counts as started).
        let started: Atomic<Bool>
        init(_ client: PostgresClient, generation: Int, started: Bool = false) {
            self.client = client
            self.generation = generation
            self.started = Atomic(started)
        }

        /// Leases wait for the pool's `run()` (the daemon's startup work races its
        /// services' start; postgres-nio would warn), at most a second.
        func untilStarted() async {
            var waited = 0
            while !started.load(ordering: .acquiring), waited < 1_000 {
                try? await Task.sleep(for: .milliseconds(1))
                waited += 1
            }
        }
    }

    struct State {
        var pool: Pool
        var retired: [Pool] = []
        /// Something went wrong since the last look: the monitor probes.
        var troubled = false
        /// The monitor's own connection attempt failed: fail leases at once.
        var down = false
        var lastLease = ContinuousClock.now
    }

    /// A pool this wrapper does not run or replace (the CLI, tests: the caller runs it).
    public init(_ client: PostgresClient, logger: Logger, leaseTimeout: Duration = .seconds(2)) {
        self.leaseTimeout = leaseTimeout
        self.configuration = nil
        self.probeConfiguration = nil
        self.logger = logger
        self.state = Mutex(State(pool: Pool(client, generation: 0, started: true)))
        self.spawn = AsyncStream<Pool>.makeStream()
        spawn.continuation.finish()
    }

    /// A supervised pool: run it with `run()` (it is a `Service`). `probe` reaches the
    /// same database as `configuration`, on a connection of its own.
    public init(configuration: PostgresClient.Configuration, probe: PostgresConnection.Configuration, logger: Logger,
                leaseTimeout: Duration = .seconds(2)) {
        self.leaseTimeout = leaseTimeout
        self.configuration = configuration
        self.probeConfiguration = probe
        self.logger = logger
        let pool = Pool(PostgresClient(configuration: configuration, backgroundLogger: logger), generation: 0)
        self.state = Mutex(State(pool: pool))
        self.spawn = AsyncStream<Pool>.makeStream()
        spawn.continuation.yield(pool)
    }

    /// The pool in use now.
    public var current: PostgresClient { state.withLock { $0.pool.client } }

    // MARK: Leasing

    /// Runs `body` on a leased connection, waiting at most `leaseTimeout` for it.
    public func withConnection<Result: Sendable>(
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        let pool = try currentPool()
        await pool.untilStarted()
        return try await withoutActuallyEscaping(body) { body in
            let body = UncheckedBox(body)
            // waiting -> leased (the body runs to its end) or timedOut (the body never runs).
            let phase = PhaseBox()
            do {
                // The lease waits in a child task: the watch cancels that wait alone.
                return try await withThrowingTaskGroup(of: Result.self) { group in
                    group.addTask {
                        let waiter = self.watch { phase.value.withLock { phase in
                            guard phase == .waiting else { return false }
                            phase = .timedOut
                            return true
                        } }
                        defer { self.unwatch(waiter) }
                        return try await pool.client.withConnection { connection in
                            let proceed = phase.value.withLock { phase in
                                guard phase == .waiting else { return false }
                                phase = .leased
                                return true
                            }
                            guard proceed else { throw DatabaseUnavailable("no database connection within the lease deadline") }
                            self.unwatch(waiter)
                            self.leased(pool)
                            pool.inFlight.add(1, ordering: .relaxed)
                            defer { pool.inFlight.subtract(1, ordering: .relaxed) }
                            do {
                                return try await body.value(connection)
                            } catch where Self.isCancelledStatement(error) {
                                // postgres-nio keeps a prepared statement whose preparation
                                // failed as failed for the connection's life: a statement
                                // cancelled while preparing (waiting for a lock past the
                                // statement limit) would fail at once on this connection
                                // from then on. Closing it makes the pool open a fresh one.
                                self.logger.notice("statement cancelled; its connection is replaced")
                                try? await connection.close()
                                throw error
                            }
                        }
                    }
                    guard let result = try await group.next() else { throw DatabaseUnavailable("the lease ended without a result") }
                    return result
                }
            } catch {
                throw translated(error, timedOut: phase.value.withLock { $0 == .timedOut })
            }
        }
    }

    /// A transaction on a connection leased within the deadline; postgres-nio's
    /// `PostgresTransactionError` comes out as is.
    public func withTransaction<Result: Sendable>(
        logger: Logger, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await withConnection { connection in
            try await connection.withTransaction(logger: logger) { connection in
                try await body(connection)
            }
        }
    }

    /// One statement on a connection leased within the deadline. A statement that writes
    /// returns its rows once PostgreSQL has committed it (`committed(on:)`): in the extended
    /// query protocol PostgreSQL sends CommandComplete before it commits an implicit
    /// transaction (at Sync), so a crash in between would lose a write already answered 2xx.
    /// A read's rows stream after it returns (the connection goes back to the pool when they
    /// are read).
    @discardableResult
    public func query(_ query: PostgresQuery, logger: Logger? = nil,
                      file: String = #fileID, line: Int = #line) async throws -> DatabaseRows {
        if Self.writes(query.sql) {
            let logger = logger ?? self.logger
            let rows = try await withConnection { connection in
                let rows = try await connection.query(query, logger: logger, file: file, line: line).collect()
                try await Self.committed(on: connection, logger: logger)
                return rows
            }
            return DatabaseRows(rows)
        }
        return DatabaseRows(try await bounded { client in try await client.query(query, logger: logger, file: file, line: line) })
    }

    /// Returns once PostgreSQL has committed the implicit transaction of the statement run
    /// before on `connection`, and throws if it cannot say so.
    ///
    /// postgres-nio completes a statement at CommandComplete; PostgreSQL commits the
    /// statement's implicit transaction afterwards, at Sync, and sends ReadyForQuery once
    /// the commit is durable (`synchronous_commit = on`). postgres-nio sends a connection's
    /// next statement only after that ReadyForQuery, so the answer to this one is the proof
    /// of the commit. A commit that fails (a crash: PostgreSQL flushes the pending
    /// CommandComplete as it dies; an error at commit) closes the connection, and this
    /// throws. One round trip after the statement, where BEGIN and COMMIT around it took
    /// two (docs/performance.md, 'What limits each figure', B1).
    public static func committed(on connection: PostgresConnection, logger: Logger) async throws {
        let proof: EventLoopFuture<PostgresQueryResult> = connection.query("SELECT 1", logger: logger)
        // postgres-nio 1.33 drops a statement written to a connection whose channel has
        // already closed, and never answers it. The write above is queued on the
        // connection's event loop, so this check runs after it: if the connection is closed
        // by then, the statement may never be answered, and the commit is unconfirmed.
        let answered = connection.eventLoop.makePromise(of: Void.self)
        proof.whenComplete { answered.completeWith($0.map { _ in () }) }
        connection.eventLoop.execute {
            if connection.isClosed {
                answered.fail(DatabaseUnavailable("the connection closed before PostgreSQL confirmed the commit"))
            }
        }
        try await answered.futureResult.get()
    }

    /// True when the SQL may write (INSERT, UPDATE, DELETE, MERGE, TRUNCATE, also inside
    /// a WITH, and SELECT ... FOR UPDATE, which is harmless in a transaction).
    static func writes(_ sql: String) -> Bool {
        sql.range(of: #"\b(INSERT|UPDATE|DELETE|MERGE|TRUNCATE)\b"#, options: [.regularExpression, .caseInsensitive]) != nil
    }

    /// A prepared statement on a connection leased within the deadline; its rows, read.
    public func execute<Statement: PostgresPreparedStatement, Row>(
        _ statement: Statement, logger: Logger? = nil, file: String = #fileID, line: Int = #line
    ) async throws -> [Row] where Row == Statement.Row {
        let box = try await withConnection { connection in
            var rows: [Row] = []
            for try await row in try await connection.execute(statement, logger: logger ?? self.logger, file: file, line: line) {
                rows.append(row)
            }
            return UncheckedBox(rows)
        }
        return box.value
    }

    /// A statement cancelled by PostgreSQL (SQLSTATE 57014: the statement limit, or an
    /// operator's pg_cancel_backend), as thrown or wrapped by a transaction.
    static func isCancelledStatement(_ error: any Error) -> Bool {
        if let transaction = error as? PostgresTransactionError {
            return [transaction.closureError, transaction.beginError, transaction.commitError]
                .contains { $0.map(isCancelledStatement) ?? false }
        }
        return (error as? PSQLError)?.serverInfo?[.sqlState] == "57014"
    }

    /// `operation` (a lease inside postgres-nio, then one statement) bounded by the
    /// deadline. On expiry the operation is cancelled, then awaited: cancellation only
    /// interrupts the wait for a connection (a statement already sent is not cancelled),
    /// so its own outcome, success included, is what the caller gets.
    private func bounded<Value: Sendable>(_ operation: @escaping @Sendable (PostgresClient) async throws -> Value) async throws -> Value {
        let pool = try currentPool()
        await pool.untilStarted()
        let expired = FlagBox()
        do {
            let value = try await withThrowingTaskGroup(of: Value.self) { group in
                group.addTask {
                    let waiter = self.watch { !expired.value.exchange(true, ordering: .relaxed) }
                    defer { self.unwatch(waiter) }
                    return try await operation(pool.client)
                }
                guard let value = try await group.next() else { throw DatabaseUnavailable("the statement ended without a result") }
                return value
            }
            leased(pool)
            return value
        } catch {
            throw translated(error, timedOut: expired.value.load(ordering: .relaxed))
        }
    }

    // MARK: The lease deadline

    /// Watches the calling task, a lease waiting since now: once it should be given up
    /// (`expired`), `expire` is called and, when it returns true, the task is cancelled.
    /// Called from the task that waits, which must `unwatch` before it ends.
    ///
    /// One timer checks every waiting lease every 50 ms and runs only while some wait. A
    /// timer per lease (a second child task sleeping beside each one) cost the daemon about a
    /// tenth of its CPU during B1, as every `Task.sleep` goes through libdispatch's timer
    /// thread and fires once more after the lease (docs/performance.md, 'What limits each figure', B1).
    private func watch(expire: @escaping @Sendable () -> Bool) -> UInt64 {
        let task = withUnsafeCurrentTask { $0 }
        let (id, startTimer) = watched.withLock { watched -> (UInt64, Bool) in
            watched.next &+= 1
            watched.waiters[watched.next] = Waiter(since: .now, task: task, expire: expire)
            defer { watched.timing = true }
            return (watched.next, !watched.timing)
        }
        if startTimer {
            Task { await self.checkWaiters() }
        }
        return id
    }

    private func unwatch(_ id: UInt64) {
        _ = watched.withLock { $0.waiters.removeValue(forKey: id) }
    }

    /// Gives up the leases that have waited too long (see `expired`), every 50 ms, until
    /// none waits.
    private func checkWaiters() async {
        while true {
            try? await Task.sleep(for: .milliseconds(50))
            let (down, lastLease) = state.withLock { ($0.down, $0.lastLease) }
            let now = ContinuousClock.now
            let more = watched.withLock { watched -> Bool in
                for (id, waiter) in watched.waiters
                where expired(since: waiter.since, now: now, down: down, lastLease: lastLease) {
                    watched.waiters[id] = nil
                    // Under the lock: the task unwatches (under it too) before it ends,
                    // so it is still alive here.
                    if waiter.expire() { waiter.task?.cancel() }
                }
                if watched.waiters.isEmpty { watched.timing = false }
                return watched.timing
            }
            if !more { return }
        }
    }

    /// A lease waiting since `since` is given up at once when the database is known down;
    /// after `leaseTimeout` when the pool has leased nothing for that long (a pool that
    /// leases is only busy: its requests wait their turn, up to `busyLimit`).
    private func expired(since: ContinuousClock.Instant, now: ContinuousClock.Instant, down: Bool,
                         lastLease: ContinuousClock.Instant) -> Bool {
        if down { return true }
        return since.duration(to: now) >= leaseTimeout
            && (lastLease.duration(to: now) >= leaseTimeout || since.duration(to: now) >= busyLimit)
    }

    private func currentPool() throws -> Pool {
        try state.withLock { state in
            if state.down {
                throw DatabaseUnavailable("the database cannot be reached")
            }
            return state.pool
        }
    }

    private func leased(_ pool: Pool) {
        state.withLock { state in
            if state.pool === pool { state.lastLease = .now }
        }
    }

    /// A wait cut short by the deadline is `DatabaseUnavailable`; a lost or refused
    /// connection makes the monitor look.
    private func translated(_ error: any Error, timedOut: Bool) -> any Error {
        if timedOut, error is CancellationError || error is DatabaseUnavailable || isPoolError(error) {
            markTroubled()
            return DatabaseUnavailable("no database connection within \(leaseTimeout)")
        }
        if error is DatabaseUnavailable || isPoolError(error) {
            markTroubled()
        } else if let psql = error as? PSQLError, psql.serverInfo?[.sqlState] == nil
                    || ["08", "57"].contains(psql.serverInfo?[.sqlState].map { String($0.prefix(2)) }) {
            markTroubled()
        }
        return error
    }

    /// postgres-nio's pool errors (its type is not public).
    private func isPoolError(_ error: any Error) -> Bool {
        String(describing: type(of: error)).contains("ConnectionPoolError")
    }

    private func markTroubled() {
        state.withLock { $0.troubled = true }
    }

    // MARK: Supervision

    /// Runs the pools and the monitor until cancelled or gracefully shut down.
    public func run() async {
        guard let configuration, let probeConfiguration else { return }
        await withDiscardingTaskGroup { group in
            group.addTask {
                await withDiscardingTaskGroup { pools in
                    for await pool in self.spawn.stream {
                        pools.addTask {
                            await withDiscardingTaskGroup { inner in
                                inner.addTask {
                                    pool.started.store(true, ordering: .releasing)
                                    await pool.client.run()
                                }
                                for await _ in pool.retire.stream {}
                                inner.cancelAll()
                            }
                        }
                    }
                    pools.cancelAll()
                }
            }
            group.addTask {
                await self.monitor(configuration, probe: probeConfiguration)
            }
            // Until the service group shuts down (gracefully or not).
            try? await gracefulShutdown()
            self.spawn.continuation.finish()
            group.cancelAll()
        }
    }

    private func monitor(_ configuration: PostgresClient.Configuration, probe probeConfiguration: PostgresConnection.Configuration) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(250))
            retireIdlePools()
            guard state.withLock({ $0.troubled }) else { continue }
            let reachable = await probe(probeConfiguration)
            let wasDown = state.withLock { state in
                let wasDown = state.down
                state.down = !reachable
                return wasDown
            }
            guard reachable else {
                if !wasDown { logger.warning("database unreachable: new requests get 503 until it answers") }
                continue
            }
            // The database answers. Does the pool lease? (A lease that succeeded lately
            // means it is only busy.)
            let pool = state.withLock { $0.pool }
            let healthy: Bool
            do {
                _ = try await bounded { client in try await client.query("SELECT 1", logger: self.logger).collect() }
                healthy = true
            } catch {
                healthy = state.withLock { $0.lastLease.duration(to: .now) < .seconds(2) }
            }
            if healthy {
                state.withLock { $0.troubled = false }
                if wasDown { logger.notice("database reachable again") }
                continue
            }
            let fresh = Pool(PostgresClient(configuration: configuration, backgroundLogger: logger),
                             generation: pool.generation + 1)
            spawn.continuation.yield(fresh)
            try? await Task.sleep(for: .milliseconds(20))
            state.withLock { state in
                state.retired.append(state.pool)
                state.pool = fresh
                state.lastLease = .now
            }
            logger.notice("database reachable again: connection pool replaced",
                          metadata: ["generation": "\(fresh.generation)"])
        }
    }

    /// Shuts down replaced pools once no lease of ours holds one of their connections.
    private func retireIdlePools() {
        let idle = state.withLock { state in
            let idle = state.retired.filter { $0.inFlight.load(ordering: .relaxed) == 0 }
            state.retired.removeAll { $0.inFlight.load(ordering: .relaxed) == 0 }
            return idle
        }
        for pool in idle { pool.retire.continuation.finish() }
    }

    /// A connection of the monitor's own (1 s to connect), `SELECT 1`, closed.
    private func probe(_ configuration: PostgresConnection.Configuration) async -> Bool {
        var configuration = configuration
        configuration.options.connectTimeout = .seconds(1)
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration, id: 0,
                logger: Logger(label: "palletflow.db-probe", factory: { _ in SwiftLogNoOpLogHandler() }))
        } catch {
            return false
        }
        let answered = (try? await connection.query("SELECT 1", logger: logger).collect()) != nil
        try? await connection.close()
        return answered
    }
}

extension DatabaseClient: Service {}

private enum LeasePhase: Sendable, Equatable {
    case waiting, leased, timedOut
}

private final class PhaseBox: Sendable {
    let value = Mutex<LeasePhase>(.waiting)
}

/// A lease waiting for a connection, as the lease watch sees it.
private struct Waiter: @unchecked Sendable {
    let since: ContinuousClock.Instant
    /// Used only while the lease is watched: the task unwatches itself before it ends.
    let task: UnsafeCurrentTask?
    let expire: @Sendable () -> Bool
}

private struct WatchedLeases: Sendable {
    var waiters: [UInt64: Waiter] = [:]
    var next: UInt64 = 0
    /// The timer runs (`checkWaiters`).
    var timing = false
}

private final class FlagBox: Sendable {
    let value = Atomic<Bool>(false)
}

/// The rows of `DatabaseClient.query`: streamed for a read, already read for a write.
/// postgres-nio's `decode` works on it as on its own row sequence.
public struct DatabaseRows: AsyncSequence, Sendable {
    public typealias Element = PostgresRow
    enum Source: Sendable {
        case stream(PostgresRowSequence)
        case buffered([PostgresRow])
    }
    let source: Source

    public init(_ stream: PostgresRowSequence) { source = .stream(stream) }
    public init(_ rows: [PostgresRow]) { source = .buffered(rows) }

    public struct AsyncIterator: AsyncIteratorProtocol {
        enum Base {
            case stream(PostgresRowSequence.AsyncIterator)
            case buffered(IndexingIterator<[PostgresRow]>)
        }
        var base: Base

        public mutating func next() async throws -> PostgresRow? {
            switch base {
            case .stream(var iterator):
                let row = try await iterator.next()
                base = .stream(iterator)
                return row
            case .buffered(var iterator):
                let row = iterator.next()
                base = .buffered(iterator)
                return row
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        switch source {
        case .stream(let stream): AsyncIterator(base: .stream(stream.makeAsyncIterator()))
        case .buffered(let rows): AsyncIterator(base: .buffered(rows.makeIterator()))
        }
    }

    public func collect() async throws -> [PostgresRow] {
        switch source {
        case .stream(let stream): try await stream.collect()
        case .buffered(let rows): rows
        }
    }
}

/// Carries a value the compiler cannot prove sendable across one task boundary, where it
/// is used by one task at a time (the lease's child task, while its parent waits).
private struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
