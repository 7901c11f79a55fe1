import Foundation
import Logging
import PalletFlowCore
import PostgresNIO

/// A job of the PostgreSQL-backed queue.
public struct Job: Sendable, Hashable {
    /// The queue's own key; never shown outside (it counts every ecosystem's jobs).
    public var id: Int64
    /// The id the API shows (random, sql/0018).
    public var publicID: UUID
    public var ecosystem: UUID?
    public var kind: String
    public var payload: String
    public var state: String
    public var attempts: Int
    public var maxAttempts: Int
    public var runAt: Date
    public var lastError: String?
    public var progress: String?
    public var createdAt: Date
    public var finishedAt: Date?
}

extension Store {
    static let jobColumns = """
        id, ecosystem_id, kind, payload::text, state::text, attempts, max_attempts, run_at, last_error, progress, created_at, finished_at,
        public_id
        """

    func jobs(_ query: PostgresQuery, on connection: PostgresConnection? = nil) async throws -> [Job] {
        var result: [Job] = []
        for try await row in try await run(query, on: connection) {
            let (id, ecosystem, kind, payload, state, attempts, maxAttempts, runAt, error, progress, created, finished, publicID) =
                try row.decode((Int64, UUID?, String, String, String, Int, Int, Date, String?, String?, Date, Date?, UUID).self)
            result.append(Job(id: id, publicID: publicID, ecosystem: ecosystem, kind: kind, payload: payload, state: state, attempts: attempts,
                              maxAttempts: maxAttempts, runAt: runAt, lastError: error, progress: progress,
                              createdAt: created, finishedAt: finished))
        }
        return result
    }

    /// Queues a job unless the same kind (and `dedupe` key) is already queued for the
    /// ecosystem; returns the queued job either way. Pass `connection` to enqueue inside
    /// the transaction of the change that needs the job.
    @discardableResult
    public func enqueue(kind: String, ecosystem: UUID?, payload: [String: String] = [:], runAt: Date? = nil,
                        maxAttempts: Int = 5, on connection: PostgresConnection? = nil) async throws -> Job {
        let json = String(decoding: try JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys]), as: UTF8.self)
        let inserted = try await jobs("""
            INSERT INTO jobs (ecosystem_id, kind, payload, run_at, max_attempts, created_at)
            VALUES (\(ecosystem), \(kind), \(json)::jsonb, \(runAt ?? nowDate), \(maxAttempts), \(nowDate))
            ON CONFLICT (coalesce(ecosystem_id, '00000000-0000-0000-0000-000000000000'), kind, coalesce(payload->>'dedupe', ''))
                WHERE state = 'queued' DO NOTHING
            RETURNING \(unescaped: Self.jobColumns)
            """, on: connection)
        if let job = inserted.first { return job }
        let none = noneID
        guard let existing = try await jobs("""
            SELECT \(unescaped: Self.jobColumns) FROM jobs
            WHERE coalesce(ecosystem_id, \(none)) = \(ecosystem ?? none) AND kind = \(kind) AND state = 'queued'
              AND coalesce(payload->>'dedupe', '') = \(payload["dedupe"] ?? "")
            """, on: connection).first else { throw StoreError.conflict("the job was taken while queueing it; retry") }
        return existing
    }

    /// Takes the oldest due job, or a running one whose lease expired (its worker died),
    /// without waiting on jobs other workers hold (SKIP LOCKED).
    public func claimJob(worker: String, lease: Duration, kinds: [String]) async throws -> Job? {
        let leaseSeconds = Double(lease.components.seconds) + Double(lease.components.attoseconds) / 1e18
        return try await jobs("""
            UPDATE jobs SET state = 'running', locked_by = \(worker),
                   locked_until = \(nowDate) + \(leaseSeconds) * interval '1 second', attempts = attempts + 1
            WHERE id = (
                SELECT id FROM jobs
                WHERE ((state = 'queued' AND run_at <= \(nowDate)) OR (state = 'running' AND locked_until < \(nowDate)))
                  AND kind = ANY(\(kinds)::text[])
                ORDER BY run_at, id
                LIMIT 1
                FOR UPDATE SKIP LOCKED)
            RETURNING \(unescaped: Self.jobColumns)
            """).first
    }

    /// Marks the job done, if this worker still holds it. False when the lease was lost.
    @discardableResult
    public func completeJob(_ id: Int64, worker: String, on connection: PostgresConnection? = nil) async throws -> Bool {
        var done = false
        for try await _ in try await run("""
            UPDATE jobs SET state = 'done', finished_at = \(nowDate), locked_until = NULL, last_error = NULL
            WHERE id = \(id) AND state = 'running' AND locked_by = \(worker) RETURNING id
            """, on: connection) { done = true }
        return done
    }

    /// Retries with exponential backoff, or keeps the job failed and visible with its error.
    public func failJob(_ id: Int64, worker: String, error: String) async throws {
        try await client.query("""
            UPDATE jobs SET
                state = CASE WHEN attempts >= max_attempts THEN 'failed'::job_state ELSE 'queued'::job_state END,
                run_at = \(nowDate) + least(3600, power(2, attempts)) * interval '1 second',
                finished_at = CASE WHEN attempts >= max_attempts THEN \(nowDate) END,
                locked_until = NULL, last_error = \(String(error.prefix(2000)))
            WHERE id = \(id) AND state = 'running' AND locked_by = \(worker)
            """, logger: logger)
    }

    /// Gives a job back (graceful shutdown): it runs again soon, without counting an attempt.
    public func releaseJob(_ id: Int64, worker: String) async throws {
        try await client.query("""
            UPDATE jobs SET state = 'queued', locked_until = NULL, attempts = greatest(0, attempts - 1)
            WHERE id = \(id) AND state = 'running' AND locked_by = \(worker)
            """, logger: logger)
    }

    /// Extends the lease of a long job and records its progress for the API.
    public func heartbeat(_ id: Int64, worker: String, lease: Duration, progress: String?) async throws {
        let leaseSeconds = Double(lease.components.seconds)
        try await client.query("""
            UPDATE jobs SET locked_until = \(nowDate) + \(leaseSeconds) * interval '1 second', progress = coalesce(\(progress), progress)
            WHERE id = \(id) AND state = 'running' AND locked_by = \(worker)
            """, logger: logger)
    }

    public func job(ecosystem: UUID, id: Int64) async throws -> Job? {
        try await jobs("SELECT \(unescaped: Self.jobColumns) FROM jobs WHERE ecosystem_id = \(ecosystem) AND id = \(id)").first
    }

    /// A job by the id the API shows.
    public func job(ecosystem: UUID, publicID: UUID) async throws -> Job? {
        try await jobs("""
            SELECT \(unescaped: Self.jobColumns) FROM jobs WHERE ecosystem_id = \(ecosystem) AND public_id = \(publicID)
            """).first
    }

    public func jobs(ecosystem: UUID, state: String?, limit: Int = 100) async throws -> [Job] {
        try await jobs("""
            SELECT \(unescaped: Self.jobColumns) FROM jobs
            WHERE ecosystem_id = \(ecosystem) AND (\(state ?? "") = '' OR state::text = \(state ?? ""))
            ORDER BY id DESC LIMIT \(limit)
            """)
    }

    /// Ecosystems whose ledger moved past the indicators' watermark.
    public func ecosystemsBehindWatermark() async throws -> [UUID] {
        var result: [UUID] = []
        for try await id in try await client.query("""
            SELECT e.id FROM ecosystems e
            LEFT JOIN indicator_watermarks w ON w.ecosystem_id = e.id
            WHERE EXISTS (SELECT 1 FROM movements m WHERE m.ecosystem_id = e.id AND m.seq > coalesce(w.last_seq, 0))
            """, logger: logger).decode(UUID.self) { result.append(id) }
        return result
    }

    public func allEcosystems() async throws -> [UUID] {
        var result: [UUID] = []
        for try await id in try await client.query("SELECT id FROM ecosystems ORDER BY created_at", logger: logger).decode(UUID.self) {
            result.append(id)
        }
        return result
    }
}

extension Store {
    /// Queues a job once per `dedupe` key, whatever the state of earlier ones (daily jobs).
    @discardableResult
    public func enqueueOnce(kind: String, ecosystem: UUID, dedupe: String) async throws -> Bool {
        let payload = String(decoding: try JSONSerialization.data(withJSONObject: ["dedupe": dedupe]), as: UTF8.self)
        var inserted = false
        for try await _ in try await client.query("""
            INSERT INTO jobs (ecosystem_id, kind, payload, run_at, created_at)
            SELECT \(ecosystem), \(kind), \(payload)::jsonb, \(nowDate), \(nowDate)
            WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE ecosystem_id = \(ecosystem) AND kind = \(kind) AND payload->>'dedupe' = \(dedupe))
            ON CONFLICT DO NOTHING
            RETURNING id
            """, logger: logger) { inserted = true }
        return inserted
    }
}
