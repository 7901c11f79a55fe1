import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import PalletFlowCore
import PalletFlowStore
import PalletFlowWorker
import Testing

@Suite("Worker metrics endpoint")
struct WorkerMetricsTests {
    struct Refused: Error {}

    @Test("jobs by kind and outcome, their durations, the indicators' lag, webhook deliveries: scraped from a live port")
    func workerCounts() async throws {
        try await withAPI { api, fixture, store in
            let declared = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token,
                                              json: MetricsTests.movement(fixture, "pickup", quantity: 10), key: "w-1")
            #expect(declared.status == .created, "\(declared.text)")
            let metrics = WorkerMetrics()
            var handlers = WorkerService.standardHandlers(store: store, webhookRule: WebhookSafetyTests.allowPrivate, metrics: metrics)
            handlers["test.refused"] = { _, _ in throw Refused() }
            let worker = WorkerService(store: store, handlers: handlers, schedules: false, metrics: metrics)
            let endpoint = Application(router: WorkerMetricsEndpoint.router(metrics: metrics, store: store),
                                       configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: TestDatabase.logger)
            try await endpoint.test(.live) { client in
                func scrape() async throws -> Scrape {
                    try await client.execute(uri: "/metrics", method: .get) { response in
                        #expect(response.status == .ok)
                        #expect(response.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
                        return Scrape(String(buffer: response.body))
                    }
                }
                let lag = "palletflow_worker_indicators_lag_seconds"
                // The pickup is not counted into the indicators yet: the lag is its age.
                var metrics = try await scrape()
                #expect((metrics[lag] ?? 0) > 0)
                #expect(metrics.types[lag] == "gauge")

                try await store.enqueue(kind: "indicators.update", ecosystem: fixture.ecosystem)
                #expect(try await worker.runOne())
                try await withReceiver { port, inbox in
                    let webhook = try await store.addWebhook(ecosystem: fixture.ecosystem,
                                                             url: try WebhookURL(parsing: "http://127.0.0.1:\(port)/ok"),
                                                             by: fixture.shipper.id)
                    #expect(webhook.active)
                    // Raising the alert queues its delivery.
                    _ = try await WebhookSafetyTests.raiseAlert(store, fixture)
                    #expect(try await worker.runOne())
                    #expect(inbox.count("/ok") == 1)
                }
                try await store.enqueue(kind: "test.refused", ecosystem: fixture.ecosystem)
                #expect(try await worker.runOne())
                // Nothing else is due (the refused job waits for its backoff).
                #expect(try await !worker.runOne())

                metrics = try await scrape()
                let jobs = "palletflow_worker_jobs_total"
                #expect(metrics["\(jobs){kind=\"indicators.update\",outcome=\"succeeded\"}"] == 1)
                #expect(metrics["\(jobs){kind=\"webhook.deliver\",outcome=\"succeeded\"}"] == 1)
                #expect(metrics["\(jobs){kind=\"test.refused\",outcome=\"failed\"}"] == 1)
                #expect(metrics.samples.keys.filter { $0.hasPrefix(jobs) }.count == 3)
                let duration = "palletflow_worker_job_duration_seconds"
                #expect(metrics.types[duration] == "histogram")
                #expect(metrics["\(duration)_count{kind=\"indicators.update\"}"] == 1)
                #expect(metrics["\(duration)_count{kind=\"test.refused\"}"] == 1)
                #expect(metrics["palletflow_worker_webhook_deliveries_total{outcome=\"delivered\"}"] == 1)
                // Every movement is counted now.
                #expect(metrics[lag] == 0)
                metrics.expectConventionalNames()
                #expect(metrics.samples.keys.allSatisfy { $0.hasPrefix("palletflow_worker_") })

                // Any other path: 404.
                try await client.execute(uri: "/healthz", method: .get) { response in
                    #expect(response.status == .notFound)
                }
            }
        }
    }

    @Test("a delivery refused by the address rule, and one answered 500, are counted by outcome")
    func webhookOutcomes() async throws {
        try await withAPI { _, fixture, store in
            let metrics = WorkerMetrics()
            try await withReceiver { port, _ in
                let strict = WebhookSender(store: store, metrics: metrics)
                _ = try await WebhookSafetyTests.deliver(to: "http://127.0.0.1:\(port)/ok", strict, store, fixture)
                let open = WebhookSender(store: store, rule: WebhookSafetyTests.allowPrivate, metrics: metrics)
                _ = try await WebhookSafetyTests.deliver(to: "http://127.0.0.1:\(port)/fails", open, store, fixture)
            }
            let scrape = Scrape(metrics.registry.emitToString())
            #expect(scrape["palletflow_worker_webhook_deliveries_total{outcome=\"refused\"}"] == 1)
            #expect(scrape["palletflow_worker_webhook_deliveries_total{outcome=\"http_error\"}"] == 1)
            #expect(scrape["palletflow_worker_webhook_deliveries_total{outcome=\"delivered\"}"] == nil)
        }
    }
}
