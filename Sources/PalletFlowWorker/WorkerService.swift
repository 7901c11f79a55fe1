import Foundation
import Logging
import PalletFlowCore
import PalletFlowStore
import PostgresNIO
import ServiceLifecycle

/// Runs jobs from the PostgreSQL queue: claims one at a time (SKIP LOCKED, so several
/// workers share the queue without doing the same work twice), extends its lease while it
/// works, retries failures with backoff. On SIGTERM it finishes the job in hand, then stops.
/// It also schedules: indicators whenever the ledger moved past their watermark, and the
/// daily alert check.
public struct WorkerService: Service {
    let store: Store
    let pollInterval: Duration
    let lease: Duration
    let name: String
    let handlers: [String: @Sendable (Job, JobContext) async throws -> Void]
    let schedules: Bool
    /// How long to wait for the schema at start: the daemon migrates while its in-process
    /// worker starts; a worker of its own fails at once with a clear message.
    let schemaWait: Duration
    /// Warn when the worker's role could rewrite history (a worker of its own; the daemon
    /// checks its own role).
    let roleCheck: Bool

    public init(store: Store, pollInterval: Duration = .seconds(2), lease: Duration = .seconds(60),
                name: String = "worker-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))",
                handlers: [String: @Sendable (Job, JobContext) async throws -> Void]? = nil, schedules: Bool = true,
                schemaWait: Duration = .zero, webhookRule: WebhookAddressRule = .init(), roleCheck: Bool = false) {
        self.schemaWait = schemaWait
        self.roleCheck = roleCheck
        self.store = store
        self.pollInterval = pollInterval
        self.lease = lease
        self.name = name
        self.handlers = handlers ?? Self.standardHandlers(store: store, webhookRule: webhookRule)
        self.schedules = schedules
    }

    /// What a job handler may use: progress that also extends the lease.
    public struct JobContext: Sendable {
        let store: Store
        let worker: String
        let lease: Duration
        let job: Int64

        public func progress(_ text: String) async {
            try? await store.heartbeat(job, worker: worker, lease: lease, progress: text)
        }
    }

    /// `webhookRule`: which addresses webhook deliveries may reach (private ones only when
    /// the deployment allows them).
    public static func standardHandlers(store: Store, webhookRule: WebhookAddressRule = .init())
        -> [String: @Sendable (Job, JobContext) async throws -> Void]
    {
        let engine = IndicatorEngine(store: store)
        let alerts = AlertEvaluator(store: store)
        let webhooks = WebhookSender(store: store, rule: webhookRule)
        return [
            "indicators.update": { job, context in
                guard let ecosystem = job.ecosystem else { return }
                try await engine.update(ecosystem: ecosystem) { done, total in await context.progress("\(done)/\(total) relationships") }
                try await alerts.evaluate(ecosystem: ecosystem)
            },
            "indicators.recompute": { job, context in
                guard let ecosystem = job.ecosystem else { return }
                try await engine.recompute(ecosystem: ecosystem) { done, total in await context.progress("\(done)/\(total) relationships") }
                try await alerts.evaluate(ecosystem: ecosystem)
            },
            "statements.monthly": { job, _ in
                guard let ecosystem = job.ecosystem,
                      let payload = try JSONSerialization.jsonObject(with: Data(job.payload.utf8)) as? [String: String],
                      let month = payload["dedupe"]
                else { return }
                try await MonthlyStatements(store: store).issue(ecosystem: ecosystem, month: month)
            },
            "alerts.daily": { job, context in
                // Ages, presumed losses and overdue notes move with the calendar, not only
                // with new movements: once a day everything is rebuilt, then checked.
                guard let ecosystem = job.ecosystem else { return }
                try await engine.recompute(ecosystem: ecosystem) { done, total in await context.progress("\(done)/\(total) relationships") }
                try await alerts.evaluate(ecosystem: ecosystem)
                // Charter clauses are judged on the last complete month and week.
                let today = store.today
                try await store.evaluateCharter(ecosystem: ecosystem, period: .month,
                                                startDay: PeriodKind.month.start(of: PeriodKind.month.start(of: today) - 1))
                try await store.evaluateCharter(ecosystem: ecosystem, period: .week,
                                                startDay: PeriodKind.week.start(of: today) - 7)
            },
            "webhook.deliver": { job, _ in
                guard let ecosystem = job.ecosystem,
                      let payload = try JSONSerialization.jsonObject(with: Data(job.payload.utf8)) as? [String: String],
                      let alert = payload["alert"].flatMap(UUID.init(uuidString:)),
                      let webhook = payload["webhook"].flatMap(UUID.init(uuidString:))
                else { return }
                try await webhooks.deliver(ecosystem: ecosystem, webhook: webhook, alert: alert, attempt: job.attempts)
            },
        ]
    }

    public func run() async throws {
        let logger = store.logger
        let deadline = ContinuousClock.now + schemaWait
        while ContinuousClock.now < deadline, !Task.isShuttingDownGracefully, !Task.isCancelled,
              !((try? await Migrator().isUpToDate(store.client, logger: logger)) ?? false) {
            try await Task.sleep(for: .milliseconds(250))
        }
        guard try await Migrator().isUpToDate(store.client, logger: logger) else {
            logger.error("the database schema is not up to date; run `palletflow migrate` or start palletflowd first")
            throw WorkerError.schemaNotReady
        }
        logger.info("worker ready", metadata: ["worker": "\(name)"])
        if roleCheck { await DatabaseRoles.warnIfCanRewriteHistory(store.client, logger: logger) }
        var lastSchedule = ContinuousClock.now - .seconds(3600)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if schedules, ContinuousClock.now - lastSchedule >= pollInterval {
                lastSchedule = .now
                do { try await schedule() } catch { logger.warning("scheduling failed", metadata: ["error": "\(error)"]) }
            }
            let worked = try await runOne()
            if !worked { try await Task.sleep(for: pollInterval) }
        }
        logger.info("worker stopping", metadata: ["worker": "\(name)"])
    }

    /// Claims and runs one job; false when none was due.
    @discardableResult
    public func runOne() async throws -> Bool {
        let logger = store.logger
        guard let job = try await store.claimJob(worker: name, lease: lease, kinds: Array(handlers.keys)) else { return false }
        guard let handler = handlers[job.kind] else { return true }
        let context = JobContext(store: store, worker: name, lease: lease, job: job.id)
        do {
            try await handler(job, context)
            if try await !store.completeJob(job.id, worker: name) {
                logger.warning("job lease lost before completion; another worker took it", metadata: ["job": "\(job.id)"])
            }
        } catch {
            logger.error("job failed", metadata: ["job": "\(job.id)", "kind": "\(job.kind)", "error": "\(error)"])
            try await store.failJob(job.id, worker: name, error: String(describing: error))
        }
        return true
    }

    func schedule() async throws {
        // Months of ledger partitions ahead of time (cheap when they exist already).
        do {
            try await store.ensureLedgerPartitions()
        } catch {
            store.logger.warning("could not create the coming months' ledger partitions; retrying at the next round",
                                 metadata: ["error": "\(String(reflecting: error))"])
        }
        for ecosystem in try await store.ecosystemsBehindWatermark() {
            try await store.enqueue(kind: "indicators.update", ecosystem: ecosystem)
        }
        let today = store.today
        // The month that ended last: its statements go out once.
        let lastMonth = String(Instant.date(ofDay: PeriodKind.month.start(of: PeriodKind.month.start(of: today) - 1)).prefix(7))
        for ecosystem in try await store.allEcosystems() {
            try await store.enqueueOnce(kind: "alerts.daily", ecosystem: ecosystem, dedupe: Instant.date(ofDay: today))
            try await store.enqueueOnce(kind: "statements.monthly", ecosystem: ecosystem, dedupe: lastMonth)
        }
    }
}

public enum WorkerError: Error, CustomStringConvertible {
    case schemaNotReady

    public var description: String {
        switch self {
        case .schemaNotReady: "the database schema is not up to date; run `palletflow migrate` first"
        }
    }
}
