import Foundation
import PalletFlowCore
import PalletFlowStore
import Prometheus

/// What the worker counts, named by Prometheus' conventions (`_total` on counters, durations
/// and ages in seconds). Served by `palletflow-worker --metrics-port`
/// (`WorkerMetricsEndpoint`); a worker inside palletflowd (`--with-worker`) counts into the
/// daemon's registry instead, on the daemon's `/metrics`.
public final class WorkerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    /// How a claimed job ended: its handler returned and the job was marked done; it threw
    /// (retried with backoff, or given up after the last attempt); or it returned after its
    /// lease had passed to another worker, which runs it again.
    enum JobOutcome: String {
        case succeeded, failed
        case leaseLost = "lease_lost"
    }

    /// A metric's whole name, as scraped, and its help text.
    struct Name: Sendable {
        var name: String
        var help: String
        var descriptor: MetricNameDescriptor { MetricNameDescriptor(metricName: name, unitName: "", helpText: help) }
    }

    static let jobs = Name(name: "palletflow_worker_jobs_total",
                           help: "Jobs run by this worker, by kind and outcome (succeeded, failed, lease_lost).")
    static let jobDuration = Name(name: "palletflow_worker_job_duration_seconds", help: "Time a job's handler ran, by kind.")
    static let indicatorsLag = Name(name: "palletflow_worker_indicators_lag_seconds",
                                    help: "Age of the oldest movement not yet counted into the indicators, across ecosystems; 0 when none waits.")
    static let webhookDeliveries = Name(name: "palletflow_worker_webhook_deliveries_total",
                                        help: "Webhook delivery attempts recorded, by outcome (delivered, http_error, refused, timeout).")

    /// From a webhook delivery (milliseconds) to a full recompute of a large ecosystem (minutes).
    static let jobDurationBuckets: [Duration] =
        ([10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 600_000] as [Int64]).map { .milliseconds($0) }

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
    }

    func jobRan(kind: String, outcome: JobOutcome, duration: Duration) {
        registry.makeCounter(descriptor: Self.jobs.descriptor, labels: [("kind", kind), ("outcome", outcome.rawValue)]).increment()
        registry.makeDurationHistogram(descriptor: Self.jobDuration.descriptor, labels: [("kind", kind)],
                                       buckets: Self.jobDurationBuckets)
            .record(duration)
    }

    /// One delivery attempt, once recorded in `webhook_deliveries`.
    func webhookDelivered(_ outcome: WebhookOutcome) {
        let label = switch outcome {
        case .answered: outcome.delivered ? "delivered" : "http_error"
        case .refused: "refused"
        case .timeout: "timeout"
        }
        registry.makeCounter(descriptor: Self.webhookDeliveries.descriptor, labels: [("outcome", label)]).increment()
    }

    /// Reads the indicators' lag from the database (at scrape time); left as it was when the
    /// database does not answer.
    public func refreshIndicatorsLag(_ store: Store) async {
        let oldest: Date?
        do {
            oldest = try await store.oldestMovementBehindIndicators()
        } catch {
            return
        }
        let seconds = oldest.map { max(0, store.now.date.timeIntervalSince($0)) } ?? 0
        registry.makeGauge(descriptor: Self.indicatorsLag.descriptor).set(seconds)
    }
}
