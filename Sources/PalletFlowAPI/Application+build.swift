import PalletFlowContract
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
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
    /// Live API tokens a member may hold at once; one more is refused until one is revoked.
    public var maxTokensPerMember: Int
    /// Attempts per second per client address (bursts of 20 times that) at what has no token
    /// yet: signing in, accepting an invitation, and requests whose token is unknown.
    /// 0 disables the limit.
    public var rateLimitPerAddress: Double
    /// Expensive reads of one ecosystem (ledger check, reports, exports, EPCIS queries,
    /// indicator lists) that may run at once; more wait their turn (`HeavyReadGate`).
    public var heavyReadsPerEcosystem: Int
    /// The statement limit of expensive reads (the ledger check lifts the request limit to it).
    public var heavyReadTimeoutSeconds: Double

    public static let defaultRateLimitPerToken: Double = 500
    public static let defaultMaxTokensPerMember = 20
    public static let defaultRateLimitPerAddress: Double = 1
    /// Half the processors, at least 1: one ecosystem's ledger checks and reports, each on
    /// one core (the expensive reads' sessions run without parallel workers), leave the other
    /// half of the machine to everyone's declarations.
    public static let defaultHeavyReadsPerEcosystem = max(1, ProcessInfo.processInfo.activeProcessorCount / 2)
    public static let defaultHeavyReadTimeoutSeconds: Double = 300
    /// The largest body read from a request without a valid token (a sign-in form, an
    /// invitation code): the body limit is for authenticated writes.
    public static let anonymousBodyLimitBytes = 64 * 1024

    public init(host: String = "127.0.0.1", port: Int = 8080, bodyLimitBytes: Int = 16 * 1024 * 1024,
                databaseConnections: Int = 20, tls: (certificateChain: String, privateKey: String)? = nil,
                rateLimitPerToken: Double = ServerSettings.defaultRateLimitPerToken,
                webhookRule: WebhookAddressRule = .init(),
                maxTokensPerMember: Int = ServerSettings.defaultMaxTokensPerMember,
                rateLimitPerAddress: Double = ServerSettings.defaultRateLimitPerAddress,
                heavyReadsPerEcosystem: Int = ServerSettings.defaultHeavyReadsPerEcosystem,
                heavyReadTimeoutSeconds: Double = ServerSettings.defaultHeavyReadTimeoutSeconds) {
        self.host = host
        self.port = port
        self.bodyLimitBytes = bodyLimitBytes
        self.databaseConnections = databaseConnections
        self.tls = tls
        self.rateLimitPerToken = rateLimitPerToken
        self.webhookRule = webhookRule
        self.maxTokensPerMember = maxTokensPerMember
        self.rateLimitPerAddress = rateLimitPerAddress
        self.heavyReadsPerEcosystem = heavyReadsPerEcosystem
        self.heavyReadTimeoutSeconds = heavyReadTimeoutSeconds
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

/// Each request's context: Hummingbird's, plus the client's address for the rate limits
/// at the public doors.
public struct AppRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}

/// Wires the router: metrics outermost, then problem+json, request log, the declared body
/// length, the per-address limit at the public doors, authentication, the per-token rate
/// limit, the body buffered (small without a token), the Idempotency-Key of writes, the
/// per-ecosystem share of expensive reads, a write's Accept header, refused nulls, then the
/// handlers generated from openapi.yaml.
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
    router.middlewares.add(ContentLengthMiddleware(maximumBytes: settings.bodyLimitBytes))
    let addresses = AddressLimiter(perSecond: settings.rateLimitPerAddress)
    router.middlewares.add(PublicDoorLimitMiddleware(limiter: addresses))
    router.middlewares.add(AuthMiddleware(store: store, failures: addresses))
    router.middlewares.add(RateLimitMiddleware(limiter: RateLimiter<UUID>(perSecond: settings.rateLimitPerToken)))
    router.middlewares.add(BodyBufferMiddleware(maximumBytes: settings.bodyLimitBytes,
                                                anonymousMaximumBytes: ServerSettings.anonymousBodyLimitBytes))
    router.middlewares.add(IdempotencyMiddleware(store: store, routes: routes))
    let heavyReads = HeavyReadGate(perEcosystem: settings.heavyReadsPerEcosystem)
    router.middlewares.add(HeavyReadMiddleware(gate: heavyReads))
    router.middlewares.add(WriteAcceptMiddleware())
    router.middlewares.add(NullFieldsMiddleware(maximumBytes: settings.bodyLimitBytes))
    let api = APIImplementation(store: store, readStore: readStore ?? store, metrics: PalletFlowMetrics.registry, logger: logger,
                                settings: settings, heavyReads: heavyReads)
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
