import PalletFlowContract
import Foundation
import Logging
import PalletFlowCore
import PalletFlowStore
import Prometheus

/// Handlers of the OpenAPI contract. They translate between generated types and the
/// domain, check the caller's rights, and call the store; no business rule lives here.
struct APIImplementation: APIProtocol {
    let store: Store
    /// Where read-heavy answers (reports, indicators, the EPCIS query, exports) are read:
    /// a streaming replica when READ_DATABASE_URL is set, else the primary. Such answers may
    /// lag the primary by the replica's replay delay.
    let readStore: Store
    let metrics: PrometheusCollectorRegistry
    let logger: Logger
    let settings: ServerSettings
    /// Expensive reads queue per ecosystem, so that one tenant's cannot take every
    /// connection of the read pool from the others.
    let heavyReads: HeavyReadGate
    let directoryCache = DirectoryCache()

    var databaseConnections: Int { settings.databaseConnections }
    var webhookRule: WebhookAddressRule { settings.webhookRule }

    /// The authenticated caller, or 401.
    func caller() throws -> Caller {
        guard let caller = RequestScope.current.caller else { throw Problem.unauthenticated }
        return caller
    }

    /// The caller, if the path's ecosystem is its own; another ecosystem answers 404.
    func caller(in ecosystemID: String) throws -> Caller {
        let caller = try caller()
        guard let id = UUID(parsing: ecosystemID), id == caller.ecosystem else {
            throw Problem.notFound("ecosystem")
        }
        return caller
    }

    func requireShipper(_ caller: Caller, _ action: String) throws {
        guard caller.role.administersEcosystem else {
            throw Problem.forbidden("Only the ecosystem's shipper may \(action); your role is \(caller.role.rawValue).")
        }
    }

    /// The contract's maxLength on optional text fields, counted as JSON Schema counts
    /// (Unicode code points): 422 naming every field that is longer.
    func requireMaxLength(_ fields: [(field: String, value: String?, limit: Int)]) throws {
        let tooLong = fields.compactMap { field, value, limit in
            (value?.unicodeScalars.count ?? 0) > limit ? FieldError(field, "must be at most \(limit) characters") : nil
        }
        if !tooLong.isEmpty { throw Problem.validation(tooLong) }
    }

    func uuid(_ text: String, _ what: String) throws -> UUID {
        guard let id = UUID(parsing: text) else { throw Problem.notFound(what) }
        return id
    }

    // MARK: Operations

    func getHealth(_ input: Operations.GetHealth.Input) async throws -> Operations.GetHealth.Output {
        .ok(.init(body: .json(.init(status: "ok"))))
    }

    func getReadiness(_ input: Operations.GetReadiness.Input) async throws -> Operations.GetReadiness.Output {
        guard await store.isReady() else {
            var problem = Problem(.serviceUnavailable, "not-ready", "Not ready",
                                  detail: "The database is unreachable or its migrations are not all applied.")
            problem.headers[.retryAfter] = "1"
            throw problem
        }
        return .ok(.init(body: .json(.init(status: "ok"))))
    }

    func getMetrics(_ input: Operations.GetMetrics.Input) async throws -> Operations.GetMetrics.Output {
        // Database pool, read at scrape time: configured size and connections by state.
        metrics.makeGauge(descriptor: .init(namespace: "palletflow", subsystem: "db", metricName: "pool_max", unitName: "connections",
                                            helpText: "Size of the daemon's database connection pool."))
            .set(Double(databaseConnections))
        let connections = MetricNameDescriptor(namespace: "palletflow", subsystem: "db", metricName: "connections", unitName: "",
                                               helpText: "Connections to the database by state, as PostgreSQL sees them.")
        let up = MetricNameDescriptor(namespace: "palletflow", subsystem: "db", metricName: "up", unitName: "",
                                      helpText: "1 when the database answered the last scrape.")
        if let states = try? await store.connectionStates() {
            for state in ["active", "idle", "idle in transaction"] {
                metrics.makeGauge(descriptor: connections, labels: [("state", state)]).set(Double(states[state] ?? 0))
            }
            metrics.makeGauge(descriptor: up).set(Double(1))
        } else {
            metrics.makeGauge(descriptor: up).set(Double(0))
        }
        var buffer: [UInt8] = []
        metrics.emit(into: &buffer)
        return .ok(.init(body: .plainText(.init(buffer))))
    }

    func getOpenAPIDocument(_ input: Operations.GetOpenAPIDocument.Input) async throws -> Operations.GetOpenAPIDocument.Output {
        .ok(.init(body: .yaml(.init(Contract.document))))
    }
}
