import PalletFlowContract
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOSSL
import Metrics
import OpenAPIHummingbird
import OpenAPIRuntime
import PalletFlowCore
import PalletFlowStore
import Prometheus
import ServiceLifecycle

/// How the HTTP server listens and what it accepts.
public struct ServerSettings: Sendable {
    public var host: String
    public var port: Int
    /// Request bodies above this get 413 before any handler runs.
    public var bodyLimitBytes: Int
    /// The database pool's size, reported in /metrics.
    public var databaseConnections: Int
    /// PEM files of the certificate chain and its private key: HTTPS when given.
    public var tls: (certificateChain: String, privateKey: String)?
    /// Requests per second allowed per API token (bursts of twice that); 0 disables the limit.
    public var rateLimitPerToken: Double
    /// Which addresses a registered webhook may reach (private ones only when allowed).
    public var webhookRule: WebhookAddressRule

    public static let defaultRateLimitPerToken: Double = 500

    public init(host: String = "127.0.0.1", port: Int = 8080, bodyLimitBytes: Int = 16 * 1024 * 1024,
                databaseConnections: Int = 20, tls: (certificateChain: String, privateKey: String)? = nil,
                rateLimitPerToken: Double = ServerSettings.defaultRateLimitPerToken,
                webhookRule: WebhookAddressRule = .init()) {
        self.host = host
        self.port = port
        self.bodyLimitBytes = bodyLimitBytes
        self.databaseConnections = databaseConnections
        self.tls = tls
        self.rateLimitPerToken = rateLimitPerToken
        self.webhookRule = webhookRule
    }

    public var scheme: String { tls == nil ? "http" : "https" }
}

/// One Prometheus registry per process, bootstrapped into swift-metrics on first use.
public enum PalletFlowMetrics {
    public static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }()
}

public typealias AppRequestContext = BasicRequestContext

/// Wires the router: metrics outermost, then problem+json, request log, body limit,
/// authentication, the per-token rate limit, the Idempotency-Key of writes, a write's
/// Accept header, refused nulls, then the handlers generated from openapi.yaml.
public func buildRouter(store: Store, readStore: Store? = nil, settings: ServerSettings, logger: Logger) throws
    -> Router<AppRequestContext>
{
    let router = Router(context: AppRequestContext.self)
    let routes = RouteTable()
    // Metrics outermost, so they count the status the client gets (a 404 or 422 answered
    // as problem+json), not the error a handler threw.
    router.middlewares.add(MetricsMiddleware())
    router.middlewares.add(ProblemMiddleware(routes: routes))
    router.middlewares.add(LogRequestsMiddleware(.info))
    router.middlewares.add(BodyLimitMiddleware(maximumBytes: settings.bodyLimitBytes))
    router.middlewares.add(AuthMiddleware(store: store))
    router.middlewares.add(RateLimitMiddleware(limiter: RateLimiter(perSecond: settings.rateLimitPerToken)))
    router.middlewares.add(IdempotencyMiddleware(store: store))
    router.middlewares.add(WriteAcceptMiddleware())
    router.middlewares.add(NullFieldsMiddleware(maximumBytes: settings.bodyLimitBytes))
    let api = APIImplementation(store: store, readStore: readStore ?? store, metrics: PalletFlowMetrics.registry, logger: logger,
                                databaseConnections: settings.databaseConnections, webhookRule: settings.webhookRule)
    try api.registerHandlers(on: RecordingTransport(router: router, table: routes, declarations: DeclarationRoute(api: api)))
    EPCISInterface(api: api, bodyLimitBytes: settings.bodyLimitBytes).register(on: router, table: routes)
    WebApp(api: api, servesTLS: settings.tls != nil).register(on: router, table: routes)
    return router
}

/// The daemon's application: the router plus the services that live and die with it
/// (the PostgreSQL client pool, and the in-process worker when asked for).
public func buildApplication(store: Store, readStore: Store? = nil, settings: ServerSettings, services: [any Service],
                             logger: Logger,
                             beforeServerStarts: @escaping @Sendable () async throws -> Void = {}) throws
    -> some ApplicationProtocol
{
    let router = try buildRouter(store: store, readStore: readStore, settings: settings, logger: logger)
    var server: HTTPServerBuilder = .http1()
    if let tls = settings.tls {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(tls.certificateChain)
            key = try NIOSSLPrivateKey(file: tls.privateKey, format: .pem)
        } catch {
            throw TLSSetupError(detail: "cannot read the TLS certificate \(tls.certificateChain) or key \(tls.privateKey): \(error). Give PEM files readable by this process.")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                     privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        server = try .tls(tlsConfiguration: configuration)
    }
    var app = Application(
        router: router,
        server: server,
        configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "palletflowd"),
        logger: logger)
    for service in services { app.addServices(service) }
    app.beforeServerStarts(perform: beforeServerStarts)
    return app
}

/// The daemon was asked for HTTPS but cannot load what it needs.
public struct TLSSetupError: Error, CustomStringConvertible {
    public var detail: String
    public var description: String { detail }
}
