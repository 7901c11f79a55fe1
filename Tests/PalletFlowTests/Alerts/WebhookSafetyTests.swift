import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOPosix
import PalletFlowCore
import PalletFlowStore
@testable import PalletFlowWorker
import Synchronization
import Testing

/// What a live receiver got: each request's path, Host header and body.
final class Inbox: Sendable {
    struct Request: Sendable {
        var path: String
        var host: String?
        var body: [UInt8]
    }

    private let requests = Mutex<[Request]>([])
    func add(_ request: Request) { requests.withLock { $0.append(request) } }
    var all: [Request] { requests.withLock { $0 } }
    func count(_ path: String) -> Int { all.filter { $0.path == path }.count }
}

/// A real HTTP server on 127.0.0.1, on a free port, for the length of `body`: `/ok` answers
/// 200, `/moved` a 302 to `/target` (which answers 200), `/fails` a 500 whose body says
/// what must never be kept.
func withReceiver(_ body: @escaping @Sendable (Int, Inbox) async throws -> Void) async throws {
    let inbox = Inbox()
    let router = Router()
    @Sendable func record(_ request: Request) async throws {
        let bytes = try await request.body.collect(upTo: 1_000_000)
        inbox.add(.init(path: request.uri.path, host: request.head.authority, body: Array(buffer: bytes)))
    }
    router.post("/ok") { request, _ -> HTTPResponse.Status in
        try await record(request)
        return .ok
    }
    router.post("/moved") { request, _ -> Response in
        try await record(request)
        return Response(status: .found, headers: [.location: "/target"])
    }
    router.on("/target", method: .post) { request, _ -> HTTPResponse.Status in
        try await record(request)
        return .ok
    }
    router.get("/target") { request, _ -> HTTPResponse.Status in
        try await record(request)
        return .ok
    }
    router.post("/fails") { request, _ -> Response in
        try await record(request)
        return Response(status: .internalServerError,
                        body: .init(byteBuffer: ByteBuffer(string: WebhookSafetyTests.remoteText)))
    }
    let receiver = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                               logger: TestDatabase.logger)
    try await receiver.test(.live) { client in
        try await body(try #require(client.port), inbox)
    }
}

@Suite("Webhooks cannot reach inside")
struct WebhookSafetyTests {
    static let remoteText = "stack trace: password=hunter2 at db.internal:5432"
    static let allowPrivate = WebhookAddressRule(allowPrivateAddresses: true)

    /// One alert for the fixture's carrier; raising it queues a delivery per active webhook.
    static func raiseAlert(_ store: Store, _ fixture: Fixture, key: String = "balance_above:test") async throws -> UUID {
        let created = try await store.raiseAlerts(ecosystem: fixture.ecosystem, [AlertCandidate(
            kind: "balance_above", partner: fixture.carrier.id, palletType: fixture.epal,
            dedupeKey: key, message: "Outstanding balance 2 pallets, above 1", value: 2, threshold: 1)])
        return try #require(created.first)
    }

    /// The kept attempts, oldest first: status and error as stored.
    static func deliveries(_ store: Store, _ ecosystem: UUID) async throws -> [(status: Int32?, error: String?)] {
        var rows: [(status: Int32?, error: String?)] = []
        for try await (status, error) in try await store.client.query("""
            SELECT status, error FROM webhook_deliveries WHERE ecosystem_id = \(ecosystem) ORDER BY id
            """).decode((Int32?, String?).self) { rows.append((status, error)) }
        return rows
    }

    /// Registers `url` straight in the store (the registration's own check is tested apart),
    /// raises an alert and delivers it once with `sender`.
    static func deliver(to url: String, _ sender: WebhookSender, _ store: Store, _ fixture: Fixture) async throws -> UUID {
        let webhook = try await store.addWebhook(ecosystem: fixture.ecosystem, url: try WebhookURL(parsing: url),
                                                 by: fixture.shipper.id)
        let alert = try await raiseAlert(store, fixture, key: url)
        await #expect(throws: WebhookSender.DeliveryFailed.self) {
            try await sender.deliver(ecosystem: fixture.ecosystem, webhook: webhook.id, alert: alert, attempt: 1)
        }
        return webhook.id
    }

    @Test("registering a URL that is or resolves inside, or that is written oddly, answers 422 naming url and stores nothing")
    func registrationRefused() async throws {
        try await withAPI { api, fixture, store in
            let refused = [
                "http://127.0.0.1/hook", "http://127.255.0.9:8080/hook", "http://localhost:8080/hook",
                "http://10.0.0.5/hook", "http://172.16.0.1/hook", "http://172.31.9.9/hook", "http://192.168.1.10/hook",
                "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/hook", "http://100.127.255.254/hook",
                "http://0.0.0.0:8080/hook", "http://0.1.2.3/hook", "http://224.0.0.1/hook", "http://239.255.255.250/hook",
                "http://255.255.255.255/hook",
                "http://[::1]/hook", "http://[::]/hook", "http://[fc00::1]/hook", "http://[fd12:3456::1]/hook",
                "http://[fe80::1]/hook", "http://[ff02::1]/hook",
                "http://[::ffff:127.0.0.1]/hook", "http://[::ffff:7f00:1]/hook", "http://[::ffff:10.0.0.1]/hook",
                "http://[::ffff:192.168.0.1]/hook", "http://[::ffff:169.254.169.254]/hook", "http://[::ffff:100.64.0.1]/hook",
                "http://[::ffff:0.0.0.0]/hook",
                "http://2130706433/hook", "http://0x7f000001/hook", "http://0x7f.1/hook", "http://0177.0.0.1/hook",
                "http://127.1/hook", "http://017700000001/hook",
                "ftp://93.184.216.34/hook", "file:///etc/passwd", "http://user:secret@93.184.216.34/hook",
                "http://93.184.216.34@127.0.0.1/hook",
            ]
            for url in refused {
                let response = try await api.post("\(fixture.base)/webhooks", token: fixture.shipper.token, json: ["url": url])
                #expect(response.status == .unprocessableContent, "\(url): \(response.text)")
                #expect(response.headers[.contentType] == "application/problem+json", "\(url)")
                #expect(response.fieldErrors == ["url"], "\(url): \(response.text)")
            }
            #expect(try await store.webhooks(ecosystem: fixture.ecosystem).isEmpty)
            let listed = try await api.get("\(fixture.base)/webhooks", token: fixture.shipper.token)
            #expect(listed.items.isEmpty)

            let loopback = try await api.post("\(fixture.base)/webhooks", token: fixture.shipper.token,
                                              json: ["url": "http://127.0.0.1/hook"])
            #expect((loopback.json["errors"] as? [[String: Any]])?.first?["message"] as? String
                == "must not reach inside: 127.0.0.1 is a loopback address")
            let mapped = try await api.post("\(fixture.base)/webhooks", token: fixture.shipper.token,
                                            json: ["url": "http://[::ffff:10.0.0.1]/hook"])
            #expect((mapped.json["errors"] as? [[String: Any]])?.first?["message"] as? String
                == "must not reach inside: ::ffff:a00:1 is a private address")
            let named = try await api.post("\(fixture.base)/webhooks", token: fixture.shipper.token,
                                           json: ["url": "http://localhost:8080/hook"])
            #expect(((named.json["errors"] as? [[String: Any]])?.first?["message"] as? String)?
                .hasPrefix("must not reach inside: localhost resolves to ") == true, "\(named.text)")

            // A public address is accepted, as written.
            let accepted = try await api.post("\(fixture.base)/webhooks", token: fixture.shipper.token,
                                              json: ["url": "https://93.184.216.34:8443/palletflow?source=pf"])
            #expect(accepted.status == .created, "\(accepted.text)")
            #expect(accepted.json["url"] as? String == "https://93.184.216.34:8443/palletflow?source=pf")
            #expect(try await store.webhooks(ecosystem: fixture.ecosystem).count == 1)
        }
    }

    @Test("allowing private addresses refuses multicast, broadcast and 0.0.0.0/8 all the same")
    func allowStillRefuses() async throws {
        try await withAPI(webhookRule: Self.allowPrivate) { api, fixture, store in
            for url in ["http://0.0.0.0/hook", "http://0.1.2.3/hook", "http://224.0.0.1/hook", "http://[ff02::1]/hook",
                        "http://[::]/hook", "http://255.255.255.255/hook", "http://2130706433/hook"] {
                let response = try await api.post("\(fixture.base)/webhooks", token: fixture.shipper.token, json: ["url": url])
                #expect(response.status == .unprocessableContent, "\(url): \(response.text)")
                #expect(response.fieldErrors == ["url"], "\(url)")
            }
            #expect(try await store.webhooks(ecosystem: fixture.ecosystem).isEmpty)
        }
    }

    @Test("with private addresses allowed, a loopback webhook is accepted and delivered; the host name stays in the Host header")
    func allowedLoopbackDelivered() async throws {
        try await withReceiver { port, inbox in
            try await withAPI(webhookRule: Self.allowPrivate) { api, fixture, store in
                for url in ["http://127.0.0.1:\(port)/ok", "http://localhost:\(port)/ok"] {
                    let created = try await api.post("\(fixture.base)/webhooks", token: fixture.shipper.token, json: ["url": url])
                    #expect(created.status == .created, "\(url): \(created.text)")
                }
                _ = try await Self.raiseAlert(store, fixture)
                let worker = WorkerService(store: store, name: "hooks", schedules: false, webhookRule: Self.allowPrivate)
                #expect(try await worker.runOne())
                #expect(try await worker.runOne())
                #expect(inbox.count("/ok") == 2)
                #expect(Set(inbox.all.compactMap(\.host)) == ["127.0.0.1:\(port)", "localhost:\(port)"])
                let rows = try await Self.deliveries(store, fixture.ecosystem)
                #expect(rows.map(\.status) == [200, 200])
                #expect(rows.map(\.error) == [nil, nil])
            }
        }
    }

    @Test("a stored webhook whose host resolves to loopback is refused at delivery when private addresses are not allowed")
    func refusedAtDelivery() async throws {
        try await withReceiver { port, inbox in
            // Registered while private addresses were allowed; the worker now runs without.
            try await withAPI(webhookRule: Self.allowPrivate) { api, fixture, store in
                for url in ["http://localhost:\(port)/ok", "http://127.0.0.1:\(port)/ok"] {
                    let created = try await api.post("\(fixture.base)/webhooks", token: fixture.shipper.token, json: ["url": url])
                    #expect(created.status == .created, "\(url): \(created.text)")
                }
                _ = try await Self.raiseAlert(store, fixture)
                let worker = WorkerService(store: store, name: "strict", schedules: false)
                #expect(try await worker.runOne())
                #expect(try await worker.runOne())
                #expect(inbox.all.isEmpty, "nothing reaches the receiver")
                let rows = try await Self.deliveries(store, fixture.ecosystem)
                #expect(rows.map(\.status) == [nil, nil])
                #expect(rows.map(\.error) == ["refused", "refused"])
                let jobs = try await store.jobs(ecosystem: fixture.ecosystem, state: nil).filter { $0.kind == "webhook.deliver" }
                #expect(jobs.map(\.lastError) == ["webhook delivery: refused", "webhook delivery: refused"])
            }
        }
    }

    @Test("the resolved addresses of a name are all checked: localhost is refused, or allowed and pinned to 127.0.0.1")
    func resolution() async throws {
        let localhost = try WebhookURL(parsing: "http://localhost:8080/hook")
        let loopback = try #require(IPAddress("127.0.0.1"))
        let loopback6 = try #require(IPAddress("::1"))
        let strict = await WebhookDestination.resolve(localhost, rule: .init())
        #expect(strict == .refused(loopback, .loopback) || strict == .refused(loopback6, .loopback))
        let open = await WebhookDestination.resolve(localhost, rule: Self.allowPrivate)
        #expect(open == .allowed(loopback) || open == .allowed(loopback6))
        let literal = try WebhookURL(parsing: "http://[::ffff:127.0.0.1]:8080/hook")
        let mappedLoopback = try #require(IPAddress("::ffff:7f00:1"))
        #expect(await WebhookDestination.resolve(literal, rule: .init()) == .refused(mappedLoopback, .loopback))
        let nowhere = try WebhookURL(parsing: "http://nowhere.invalid/hook")
        #expect(await WebhookDestination.resolve(nowhere, rule: .init()) == .unresolved)
    }

    @Test("the request goes to the checked address without resolving the name again; the name stays in the Host header")
    func pinnedToCheckedAddress() async throws {
        try await withReceiver { port, inbox in
            try await withFreshStore { store in
                // `.invalid` never resolves (RFC 6761): only the pinned address can reach the receiver.
                let url = try WebhookURL(parsing: "http://receiver.invalid:\(port)/ok")
                let sender = WebhookSender(store: store, rule: Self.allowPrivate)
                #expect(await sender.post("http://receiver.invalid:\(port)/ok", body: [], headers: []) == .refused)
                #expect(inbox.all.isEmpty)
                let outcome = await sender.post(url, connectingTo: try #require(IPAddress("127.0.0.1")), body: Array("{}".utf8),
                                                headers: [("Content-Type", "application/json")])
                #expect(outcome == .answered(status: 200))
                #expect(inbox.all.map(\.host) == ["receiver.invalid:\(port)"])
                #expect(inbox.all.map(\.body) == [Array("{}".utf8)])
            }
        }
    }

    @Test("a redirect is not followed: the target gets nothing and the attempt keeps HTTP 302")
    func redirectNotFollowed() async throws {
        try await withReceiver { port, inbox in
            try await withFreshStore { store in
                let fixture = try await Fixture.make(store)
                let sender = WebhookSender(store: store, rule: Self.allowPrivate)
                _ = try await Self.deliver(to: "http://127.0.0.1:\(port)/moved", sender, store, fixture)
                #expect(inbox.count("/moved") == 1)
                #expect(inbox.count("/target") == 0)
                let rows = try await Self.deliveries(store, fixture.ecosystem)
                #expect(rows.map(\.status) == [302])
                #expect(rows.map(\.error) == ["HTTP 302"])
            }
        }
    }

    @Test("a 500 with a body keeps HTTP 500 and none of the body")
    func serverErrorBodyNotKept() async throws {
        try await withReceiver { port, inbox in
            try await withFreshStore { store in
                let fixture = try await Fixture.make(store)
                let worker = WorkerService(store: store, name: "hooks", schedules: false, webhookRule: Self.allowPrivate)
                _ = try await store.addWebhook(ecosystem: fixture.ecosystem,
                                               url: try WebhookURL(parsing: "http://127.0.0.1:\(port)/fails"), by: fixture.shipper.id)
                _ = try await Self.raiseAlert(store, fixture)
                #expect(try await worker.runOne())
                #expect(inbox.count("/fails") == 1)
                let rows = try await Self.deliveries(store, fixture.ecosystem)
                #expect(rows.map(\.status) == [500])
                #expect(rows.map(\.error) == ["HTTP 500"])
                let job = try #require(try await store.jobs(ecosystem: fixture.ecosystem, state: nil).first { $0.kind == "webhook.deliver" })
                #expect(job.lastError == "webhook delivery: HTTP 500")
                var kept = ""
                for try await text in try await store.client.query("""
                    SELECT coalesce(string_agg(error, ' '), '') FROM webhook_deliveries WHERE ecosystem_id = \(fixture.ecosystem)
                    """).decode(String.self) { kept += text }
                #expect(!kept.contains("hunter2"))
                #expect(!(job.lastError ?? "").contains("hunter2"))
            }
        }
    }

    @Test("a receiver that never answers gives timeout; a closed port gives refused")
    func timeoutAndConnectionRefused() async throws {
        // Accepts connections and reads, never answers.
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in channel.eventLoop.makeSucceededVoidFuture() }
            .bind(host: "127.0.0.1", port: 0).get()
        // A port that was just free, now closed: the connection is refused.
        let closed = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let silentPort = try #require(silent.localAddress?.port)
        let closedPort = try #require(closed.localAddress?.port)
        try await closed.close()
        do {
            try await withFreshStore { store in
                let fixture = try await Fixture.make(store)
                let sender = WebhookSender(store: store, rule: Self.allowPrivate, timeout: .seconds(1))
                _ = try await Self.deliver(to: "http://127.0.0.1:\(silentPort)/hook", sender, store, fixture)
                var rows = try await Self.deliveries(store, fixture.ecosystem)
                #expect(rows.map(\.status) == [nil])
                #expect(rows.map(\.error) == ["timeout"])

                _ = try await Self.deliver(to: "http://127.0.0.1:\(closedPort)/hook", sender, store, fixture)
                rows = try await Self.deliveries(store, fixture.ecosystem)
                #expect(rows.map(\.error) == ["timeout", "refused"])
            }
        } catch {
            try await silent.close()
            throw error
        }
        try await silent.close()
    }
}
