import Hummingbird
import Logging
import NIOCore
import PalletFlowStore

/// `palletflow-worker --metrics-port`: a small HTTP server answering `GET /metrics` in the
/// Prometheus text format; every other path is 404. No token: keep the port off the
/// public network, as the daemon's `/metrics`.
public enum WorkerMetricsEndpoint {
    public static func application(metrics: WorkerMetrics, store: Store, host: String, port: Int, logger: Logger)
        -> some ApplicationProtocol
    {
        Application(router: router(metrics: metrics, store: store),
                    configuration: .init(address: .hostname(host, port: port), serverName: "palletflow-worker"),
                    logger: logger)
    }

    public static func router(metrics: WorkerMetrics, store: Store) -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/metrics") { _, _ -> Response in
            await metrics.refreshIndicatorsLag(store)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(bytes: metrics.registry.emitToBuffer())))
        }
        return router
    }
}
