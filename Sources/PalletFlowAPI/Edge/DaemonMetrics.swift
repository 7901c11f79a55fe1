import PalletFlowCore
import Prometheus
import Synchronization

/// What the daemon counts, named by Prometheus' conventions: every name starts with
/// `palletflow_`, counters end in `_total`, durations are in seconds (`_seconds`).
/// One per application, over the registry `/metrics` emits (a test builds its own, so the
/// counts it reads are its requests' alone).
public final class DaemonMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    /// Where a declared movement came from: the single and batch endpoints, a CSV import,
    /// or an EPCIS capture.
    enum DeclarationSource: String {
        case api, batch, csv, epcis
    }

    /// A capture recorded with every event accepted, or with some refused (its
    /// `errorBehaviour` was `proceed`). A capture refused whole records nothing and is not
    /// counted here (its 4xx is in `palletflow_http_requests_total`).
    enum CaptureOutcome: String {
        case success, partial
    }

    /// A metric's whole name, as scraped, and its help text.
    struct Name: Sendable {
        var name: String
        var help: String
        var descriptor: MetricNameDescriptor { MetricNameDescriptor(metricName: name, unitName: "", helpText: help) }
    }

    static let requests = Name(name: "palletflow_http_requests_total",
                               help: "HTTP requests answered, by method, route template and the status sent.")
    static let requestDuration = Name(name: "palletflow_http_request_duration_seconds",
                                      help: "Time from a request's arrival to the end of its answer's body, by method and route template.")
    static let declarations = Name(name: "palletflow_movements_declared_total",
                                   help: "Movements posted to the ledger from declarations, by kind and source (api, batch, csv, epcis).")
    static let contests = Name(name: "palletflow_movement_contests_total", help: "Movements contested by their counterparty.")
    static let captures = Name(name: "palletflow_epcis_captures_total",
                               help: "EPCIS captures recorded, by outcome (success: every event accepted; partial: some refused).")
    static let poolMaxConnections = Name(name: "palletflow_db_pool_max_connections",
                                         help: "Size of the daemon's database connection pool.")
    static let databaseConnections = Name(name: "palletflow_db_connections",
                                          help: "Client connections to the database by state, as PostgreSQL sees them (database-wide).")
    static let databaseUp = Name(name: "palletflow_db_up", help: "1 when the database answered the last scrape, else 0.")

    /// From a cached read (a few milliseconds) to a ledger check or an export (minutes).
    static let durationBuckets: [Duration] =
        ([5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000] as [Int64]).map { .milliseconds($0) }

    private struct RequestKey: Hashable {
        var method: String
        var route: String
        var status: Int
    }

    /// The series of each method, route and status, so that a request looks its counter up
    /// in one dictionary instead of the registry's validation of names and labels.
    private let requestSeries = Mutex<[RequestKey: (Counter, DurationHistogram)]>([:])

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        // A counter without labels is there from the start, at 0, so that its rate has a
        // first sample before the first contest.
        _ = registry.makeCounter(descriptor: Self.contests.descriptor)
    }

    /// One answered request. `route` is the route template (never the path with its ids).
    func answered(method: String, route: String, status: Int, duration: Duration) {
        let key = RequestKey(method: method, route: route, status: status)
        let (counter, histogram) = requestSeries.withLock { series in
            if let known = series[key] { return known }
            let made = (
                registry.makeCounter(descriptor: Self.requests.descriptor,
                                     labels: [("method", method), ("route", route), ("status", String(status))]),
                registry.makeDurationHistogram(descriptor: Self.requestDuration.descriptor,
                                               labels: [("method", method), ("route", route)], buckets: Self.durationBuckets))
            series[key] = made
            return made
        }
        counter.increment()
        histogram.record(duration)
    }

    /// Movements posted by one declaration, once its transaction has committed (never for
    /// an idempotent replay, which posts nothing).
    func declared(_ kinds: [MovementKind], source: DeclarationSource) {
        var counts: [MovementKind: Int64] = [:]
        for kind in kinds { counts[kind, default: 0] += 1 }
        for (kind, count) in counts {
            registry.makeCounter(descriptor: Self.declarations.descriptor,
                                 labels: [("kind", kind.rawValue), ("source", source.rawValue)])
                .increment(by: count)
        }
    }

    /// One contest, once recorded.
    func contested() {
        registry.makeCounter(descriptor: Self.contests.descriptor).increment()
    }

    /// The database gauges, read at scrape time: the pool's size, and the connections by
    /// state (nil when the database does not answer).
    func database(poolSize: Int, connections: [String: Int64]?) {
        registry.makeGauge(descriptor: Self.poolMaxConnections.descriptor).set(Double(poolSize))
        if let connections {
            for state in ["active", "idle", "idle in transaction"] {
                registry.makeGauge(descriptor: Self.databaseConnections.descriptor, labels: [("state", state)])
                    .set(Double(connections[state] ?? 0))
            }
        }
        registry.makeGauge(descriptor: Self.databaseUp.descriptor).set(Double(connections == nil ? 0 : 1))
    }

    /// One EPCIS capture, once recorded.
    func captured(_ outcome: CaptureOutcome) {
        registry.makeCounter(descriptor: Self.captures.descriptor, labels: [("outcome", outcome.rawValue)]).increment()
    }
}
