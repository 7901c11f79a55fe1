import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import PalletFlowCore
import PalletFlowStore
import PalletFlowWorker
import PostgresNIO
import ServiceLifecycle
import Synchronization
import Testing

final class Recorder: Sendable {
    let values = Mutex<[Int64]>([])
    func add(_ value: Int64) { values.withLock { $0.append(value) } }
    var all: [Int64] { values.withLock { $0 } }
}

@Suite("Worker: queue, indicators, alerts, webhooks")
struct WorkerTests {
    @Test("the worker starts on a migrated database and stops cleanly on graceful shutdown")
    func startsAndStops() async throws {
        let settings = try await TestDatabase.shared.freshDatabase()
        let client = DatabaseRuntime(settings: settings, cluster: nil).makeClient(logger: TestDatabase.logger)
        // A lease deadline for a loaded machine, as the other tests have (`withFreshStore`).
        let store = Store(database: DatabaseClient(client, logger: TestDatabase.logger, leaseTimeout: .seconds(20)),
                          logger: TestDatabase.logger, clock: TestClock.clock)
        let worker = WorkerService(store: store, pollInterval: .milliseconds(50))
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: client), .init(service: worker)], logger: TestDatabase.logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await Task.sleep(for: .milliseconds(300))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    @Test("the worker refuses to run on a database that is not migrated")
    func refusesUnmigrated() async throws {
        let settings = try await TestDatabase.shared.emptyDatabase()
        try await DatabaseRuntime(settings: settings, cluster: nil).withClient(logger: TestDatabase.logger) { client in
            let store = Store(database: DatabaseClient(client, logger: TestDatabase.logger, leaseTimeout: .seconds(20)),
                              logger: TestDatabase.logger, clock: TestClock.clock)
            await #expect(throws: WorkerError.self) { try await WorkerService(store: store).run() }
        }
    }

    @Test("two workers on one queue process every job exactly once")
    func twoWorkers() async throws {
        try await withFreshStore { store in
            let ecosystem = try await store.createEcosystem(name: "Q", shipperName: "S", shipperPGLN: nil).ecosystem.id
            var ids: [Int64] = []
            for index in 0..<30 {
                ids.append(try await store.enqueue(kind: "test.record", ecosystem: ecosystem, payload: ["dedupe": "\(index)"]).id)
            }
            let recorder = Recorder()
            func worker(_ name: String) -> WorkerService {
                WorkerService(store: store, name: name, handlers: ["test.record": { job, _ in
                    try await Task.sleep(for: .milliseconds(5))
                    recorder.add(job.id)
                }], schedules: false)
            }
            let (first, second) = (worker("a"), worker("b"))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for runner in [first, second] {
                    group.addTask { while try await runner.runOne() {} }
                }
                try await group.waitForAll()
            }
            #expect(recorder.all.sorted() == ids.sorted())
            let done = try await store.jobs(ecosystem: ecosystem, state: "done")
            #expect(done.count == 30)
            #expect(done.allSatisfy { $0.attempts == 1 })
        }
    }

    @Test("a killed worker's job is taken again after its lease expires and completes once")
    func leaseExpiry() async throws {
        try await withFreshStore { store in
            let ecosystem = try await store.createEcosystem(name: "L", shipperName: "S", shipperPGLN: nil).ecosystem.id
            let job = try await store.enqueue(kind: "test.record", ecosystem: ecosystem)
            // Worker A takes it and dies (never completes, never releases). A lease of 3 s: the
            // survivor's first look must come before it ends, which 1 s did not always give
            // a test among two hundred on two busy cores.
            let taken = try await store.claimJob(worker: "dead", lease: .seconds(3), kinds: ["test.record"])
            #expect(taken?.id == job.id)
            let recorder = Recorder()
            let survivor = WorkerService(store: store, lease: .seconds(30), name: "alive",
                                         handlers: ["test.record": { job, _ in recorder.add(job.id) }], schedules: false)
            #expect(try await survivor.runOne() == false, "the lease still holds")
            try await Task.sleep(for: .milliseconds(3_300))
            #expect(try await survivor.runOne() == true)
            #expect(recorder.all == [job.id])
            #expect(try await store.completeJob(job.id, worker: "dead") == false, "the dead worker lost its lease")
            let finished = try #require(try await store.job(ecosystem: ecosystem, id: job.id))
            #expect(finished.state == "done")
            #expect(finished.attempts == 2)
        }
    }

    @Test("a failing job is retried with backoff, then kept failed with its error")
    func failures() async throws {
        try await withFreshStore { store in
            let ecosystem = try await store.createEcosystem(name: "F", shipperName: "S", shipperPGLN: nil).ecosystem.id
            let job = try await store.enqueue(kind: "test.fail", ecosystem: ecosystem, maxAttempts: 1)
            struct Boom: Error, CustomStringConvertible { var description: String { "boom: the warehouse API is down" } }
            let worker = WorkerService(store: store, name: "w", handlers: ["test.fail": { _, _ in throw Boom() }], schedules: false)
            #expect(try await worker.runOne())
            let failed = try #require(try await store.job(ecosystem: ecosystem, id: job.id))
            #expect(failed.state == "failed")
            #expect(failed.lastError?.contains("warehouse API is down") == true)

            let retried = try await store.enqueue(kind: "test.fail", ecosystem: ecosystem, payload: ["dedupe": "2"], maxAttempts: 3)
            #expect(try await worker.runOne())
            let again = try #require(try await store.job(ecosystem: ecosystem, id: retried.id))
            #expect(again.state == "queued")
            #expect(again.runAt > TestClock.now().date)
        }
    }

    /// A small relationship through the API, figures computed by hand.
    static func scenario(_ api: API, _ fixture: Fixture) async throws {
        func declare(_ token: String, _ body: [String: Any], _ key: String) async throws {
            let response = try await api.post("\(fixture.base)/movements", token: token, json: body, key: key)
            #expect(response.status == .created, "\(response.text)")
        }
        let shipper = ["partyId": fixture.shipper.id.lower]
        let carrier = ["partyId": fixture.carrier.id.lower]
        try await declare(fixture.carrier.token, ["kind": "pickup", "eventTime": hoursAgo(24 * 10), "from": shipper, "to": carrier,
                                                   "lines": [["palletType": "EPAL1", "quantity": 30, "exchangedQuantity": 20]]], "s1")
        try await declare(fixture.carrier.token, ["kind": "return", "eventTime": hoursAgo(24 * 5), "from": carrier, "to": shipper,
                                                   "lines": [["palletType": "EPAL1", "quantity": 6]]], "s2")
        try await declare(fixture.carrier.token, ["kind": "loss", "eventTime": hoursAgo(24 * 3), "from": carrier, "to": shipper,
                                                   "lines": [["palletType": "EPAL1", "quantity": 2]]], "s3")
    }

    @Test("to-date indicators of a hand-made relationship: issued 30, returned 26, lost 2, outstanding 2 worth 30.00")
    func handComputedIndicators() async throws {
        try await withAPI { api, fixture, store in
            try await Self.scenario(api, fixture)
            let outcome = try await IndicatorEngine(store: store).update(ecosystem: fixture.ecosystem)
            #expect(outcome.watermark == 3)
            let response = try await api.get("\(fixture.base)/indicators?period=to_date&partner=\(fixture.carrier.id.lower)",
                                             token: fixture.shipper.token)
            #expect(response.status == .ok, "\(response.text)")
            let row = try #require(response.items.first { $0["palletTypeCode"] as? String == "EPAL1" })
            #expect(row["issued"] as? Int == 30)
            #expect(row["spotReturned"] as? Int == 20)
            #expect(row["laterReturned"] as? Int == 6)
            #expect(row["declaredLosses"] as? Int == 2)
            #expect(row["outstanding"] as? Int == 2)
            #expect(row["outstandingValueMinor"] as? Int == 3_000)
            // 20 came back the same day (0 days), 6 after 5 days: (20 x 0 + 6 x 5) / 26.
            let rotation = try #require(row["rotationAverageDays"] as? Double)
            #expect(abs(rotation - 30.0 / 26.0) < 1e-9)
            #expect(row["rotationMedianDays"] as? Int == 0)
            #expect(row["rotationP90Days"] as? Int == 5)
            #expect(row["declarations"] as? Int == 3)
            // Cumulative restitution 1 - 2 / 30.
            #expect(abs((row["cumulativeRestitutionRate"] as? Double ?? 0) - 28.0 / 30.0) < 1e-9)
            // Loss rate (2 declared + 0 presumed + 0 scrapped) / 30.
            #expect(abs((row["lossRate"] as? Double ?? 0) - 2.0 / 30.0) < 1e-9)
            // A partner sees only its own rows; another carrier sees none.
            let own = try await api.get("\(fixture.base)/indicators?period=to_date", token: fixture.carrier.token)
            #expect(!own.items.isEmpty && own.items.allSatisfy { $0["partnerId"] as? String == fixture.carrier.id.lower })
            let other = try await api.get("\(fixture.base)/indicators?period=to_date", token: fixture.otherCarrier.token)
            #expect(other.items.isEmpty)
            let csv = try await api.request(.get, "\(fixture.base)/indicators?period=to_date", token: fixture.shipper.token,
                                            headers: ["Accept": "text/csv"])
            #expect(csv.text.hasPrefix("partner_id,pallet_type,period"))
        }
    }

    @Test("incremental updates give exactly what a full recompute gives, reversals and back-dated movements included")
    func incrementalEqualsFull() async throws {
        try await withAPI { api, fixture, store in
            let engine = IndicatorEngine(store: store)
            let today = TestClock.now().day
            try await Self.scenario(api, fixture)
            try await engine.update(ecosystem: fixture.ecosystem, today: today)
            // A second batch: a back-dated pickup 60 days ago, and a pickup by another carrier.
            let batch = try await api.post("\(fixture.base)/movements/batch", token: fixture.shipper.token, json: ["movements": [
                ["kind": "pickup", "eventTime": hoursAgo(24 * 60), "from": ["partyId": fixture.shipper.id.lower],
                 "to": ["partyId": fixture.carrier.id.lower], "lines": [["palletType": "EPAL1", "quantity": 12]]],
                ["kind": "pickup", "eventTime": hoursAgo(24 * 2), "from": ["partyId": fixture.shipper.id.lower],
                 "to": ["partyId": fixture.otherCarrier.id.lower], "lines": [["palletType": "EPAL1", "quantity": 9, "exchangedQuantity": 4]]],
            ]], key: "batch-2")
            #expect(batch.status == .created, "\(batch.text)")
            try await engine.update(ecosystem: fixture.ecosystem, today: today)
            // A reversal of the back-dated pickup, and a return.
            let backDated = try #require((batch.json["items"] as? [[String: Any]])?.first?["id"] as? String)
            let reversal = try await api.post("\(fixture.base)/movements/\(backDated)/reversal", token: fixture.shipper.token,
                                              json: ["reason": "wrong carrier"])
            #expect(reversal.status == .created)
            _ = try await api.post("\(fixture.base)/movements", token: fixture.otherCarrier.token, json: [
                "kind": "return", "eventTime": hoursAgo(5), "from": ["partyId": fixture.otherCarrier.id.lower],
                "to": ["partyId": fixture.shipper.id.lower], "lines": [["palletType": "EPAL1", "quantity": 3]],
            ], key: "r-3")
            try await engine.update(ecosystem: fixture.ecosystem, today: today)

            func snapshot() async throws -> Set<String> {
                var rows = Set<String>()
                for period in ["day", "week", "month", "to_date"] {
                    for row in try await store.indicators(ecosystem: fixture.ecosystem, partner: nil, palletType: nil,
                                                          period: period, fromDay: nil, untilDay: nil) {
                        rows.insert("\(row.key.partner) \(row.key.palletType) \(row.period) \(row.startDay) \(row.endDay) \(row.figures) \(row.outstandingValueMinor as Any) \(row.declarations) \(row.contested) \(row.latenessMedianSeconds as Any) \(row.overdueNotesQuantity)")
                    }
                }
                return rows
            }
            let incremental = try await snapshot()
            try await engine.recompute(ecosystem: fixture.ecosystem, today: today)
            let full = try await snapshot()
            #expect(!full.isEmpty)
            #expect(incremental == full)
            // The reversed back-dated pickup no longer counts: the carrier's to-date issued is 30 again.
            let toDate = try await store.indicators(ecosystem: fixture.ecosystem, partner: fixture.carrier.id, palletType: fixture.epal,
                                                    period: "to_date", fromDay: nil, untilDay: nil)
            #expect(toDate.first?.figures.issued == 30)
        }
    }

    @Test("incremental updates from the running state equal a full recompute: many declarations, contests, reversals of counted movements, a recompute in between",
          arguments: [0, -3])
    func incrementalStateEqualsFull(todayOffset: Int) async throws {
        try await withAPI { api, fixture, store in
            let engine = IndicatorEngine(store: store)
            // With an offset, some declarations fall after `today`: the whole history is read for them.
            let today = TestClock.now().day + todayOffset
            let shipper = ["partyId": fixture.shipper.id.lower]
            let carrier = ["partyId": fixture.carrier.id.lower]
            let other = ["partyId": fixture.otherCarrier.id.lower]
            let customer = ["partyId": fixture.customer.id.lower]
            func batch(_ token: String, _ key: String, _ items: [[String: Any]]) async throws -> [String] {
                let response = try await api.post("\(fixture.base)/movements/batch", token: token, json: ["movements": items], key: key)
                #expect(response.status == .created, "\(response.text)")
                return ((response.json["items"] as? [[String: Any]]) ?? []).compactMap { $0["id"] as? String }
            }
            // Lateness spread over seconds, minutes, hours and days; several declarations share a minute.
            func items(_ count: Int, _ salt: Int, _ party: [String: String]) -> [[String: Any]] {
                (0..<count).map { k in
                    let hours = Double((k * 37 + salt * 11) % 300) + Double(k % 3) / 120
                    let type = k % 4 == 0 ? "CHEP" : "EPAL1"
                    switch k % 3 {
                    case 0: return ["kind": "pickup", "eventTime": hoursAgo(hours), "from": shipper, "to": party,
                                    "lines": [["palletType": type, "quantity": 10 + k % 7, "exchangedQuantity": type == "CHEP" ? 0 : k % 5]]]
                    case 1: return ["kind": "delivery", "eventTime": hoursAgo(hours), "from": party, "to": customer,
                                    "lines": [["palletType": type, "quantity": 8 + k % 4, "exchangedQuantity": type == "CHEP" ? 0 : 6]]]
                    default: return ["kind": "return", "eventTime": hoursAgo(hours), "from": party, "to": shipper,
                                     "lines": [["palletType": type, "quantity": 1 + k % 6]]]
                    }
                }
            }
            func snapshot() async throws -> Set<String> {
                var rows = Set<String>()
                for period in ["day", "week", "month", "to_date"] {
                    for row in try await store.indicators(ecosystem: fixture.ecosystem, partner: nil, palletType: nil,
                                                          period: period, fromDay: nil, untilDay: nil) {
                        rows.insert("\(row)")
                    }
                }
                return rows
            }
            let first = try await batch(fixture.carrier.token, "b1", items(45, 1, carrier))
            _ = try await batch(fixture.otherCarrier.token, "b2", items(20, 2, other))
            // Pallet notes the carrier issued, due around `today`: each period end counts
            // those due before its last day (one due the day before, one on it, one after).
            for (k, dueAgo) in [12, 5, 2, 1, 0, -3].enumerated() {
                let note = try await api.post("\(fixture.base)/pallet-notes", token: fixture.shipper.token, json: [
                    "issuerId": fixture.carrier.id.lower, "holderId": fixture.shipper.id.lower, "palletType": "EPAL1",
                    "quantity": 2 + k, "issueDate": Instant.date(ofDay: today - 20), "dueDate": Instant.date(ofDay: today - dueAgo),
                ])
                #expect(note.status == .created, "\(note.text)")
            }
            // The first update builds the state, then analyses its tables through the owner's
            // function (sql/0020). Only the owner may VACUUM them (their pages marked all-visible
            // for the next updates' index-only look-ups): the worker, as the application role,
            // leaves that to autovacuum; `palletflow indicators recompute` (the owner) does it.
            func stateTables(_ column: String) async throws -> Int64 {
                var count: Int64 = -1
                for try await n in try await store.client.query(PostgresQuery(unsafeSQL: """
                    SELECT count(*) FROM pg_stat_user_tables
                    WHERE relname IN ('indicator_facts', 'indicator_activity', 'indicator_lateness', 'indicator_lateness_buckets',
                                      'indicator_period_lateness_buckets', 'indicator_contested')
                      AND \(column) IS NOT NULL
                    """)).decode(Int64.self) { count = n }
                return count
            }
            #expect(try await stateTables("last_analyze") == 0)
            try await engine.update(ecosystem: fixture.ecosystem, today: today)
            #expect(try await stateTables("last_analyze") == 6)
            #expect(try await stateTables("last_vacuum") == 0)
            // A contest of a counted delivery, a reversal of a counted pickup, and more declarations.
            let delivery = try #require(first.dropFirst().first)
            let contest = try await api.post("\(fixture.base)/movements/\(delivery)/contest", token: fixture.customer.token, json: [
                "lines": [["lineNo": 0, "quantity": 8, "exchangedQuantity": 5]], "note": "5 empties",
            ])
            #expect(contest.status == .created, "\(contest.text)")
            let reversal = try await api.post("\(fixture.base)/movements/\(first[3])/reversal", token: fixture.shipper.token,
                                              json: ["reason": "typo"])
            #expect(reversal.status == .created, "\(reversal.text)")
            _ = try await batch(fixture.carrier.token, "b3", items(30, 3, carrier))
            try await engine.update(ecosystem: fixture.ecosystem, today: today)
            let incremental = try await snapshot()
            try await engine.recompute(ecosystem: fixture.ecosystem, today: today)
            let full = try await snapshot()
            #expect(full.count > 50)
            #expect(incremental == full)
            // After a recompute, the state it rebuilt carries the next updates.
            let later = try await batch(fixture.otherCarrier.token, "b4", items(25, 4, other))
            let reversal2 = try await api.post("\(fixture.base)/movements/\(later[0])/reversal", token: fixture.shipper.token,
                                               json: ["reason": "typo"])
            #expect(reversal2.status == .created, "\(reversal2.text)")
            try await engine.update(ecosystem: fixture.ecosystem, today: today)
            let incremental2 = try await snapshot()
            try await engine.recompute(ecosystem: fixture.ecosystem, today: today)
            #expect(incremental2 == (try await snapshot()))
            #expect(incremental2 != full)
        }
    }

    @Test("an alert is raised once per condition and period, however often the rules run")
    func alertDedupe() async throws {
        try await withAPI { api, fixture, store in
            try await Self.scenario(api, fixture)
            let rule = try await api.request(.put, "\(fixture.base)/alert-rules", token: fixture.shipper.token,
                                             json: ["kind": "balance_above", "threshold": 1])
            #expect(rule.status == .ok, "\(rule.text)")
            let refused = try await api.request(.put, "\(fixture.base)/alert-rules", token: fixture.carrier.token,
                                                json: ["kind": "balance_above", "threshold": 1])
            #expect(refused.status == .forbidden)
            try await IndicatorEngine(store: store).update(ecosystem: fixture.ecosystem)
            let evaluator = AlertEvaluator(store: store)
            #expect(try await evaluator.evaluate(ecosystem: fixture.ecosystem).count == 1)
            #expect(try await evaluator.evaluate(ecosystem: fixture.ecosystem).isEmpty)
            let alerts = try await api.get("\(fixture.base)/alerts", token: fixture.shipper.token)
            #expect(alerts.items.count == 1)
            #expect(alerts.items.first?["kind"] as? String == "balance_above")
            #expect(alerts.items.first?["value"] as? Double == 2)
            #expect(try await api.get("\(fixture.base)/alerts", token: fixture.carrier.token).items.count == 1)
            #expect(try await api.get("\(fixture.base)/alerts", token: fixture.otherCarrier.token).items.isEmpty)
        }
    }

    @Test("alerts reach registered webhooks with a valid HMAC-SHA256 signature")
    func webhookSignature() async throws {
        let received = Mutex<[(HTTPFields, [UInt8])]>([])
        let router = Router()
        router.post("/hook") { request, _ -> HTTPResponse.Status in
            let body = try await request.body.collect(upTo: 1_000_000)
            received.withLock { $0.append((request.headers, Array(buffer: body))) }
            return .ok
        }
        let receiver = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                                   logger: TestDatabase.logger)
        try await receiver.test(.live) { client in
            let port = try #require(client.port)
            // The receiver is on loopback: a deployment that allows private addresses.
            let rule = WebhookAddressRule(allowPrivateAddresses: true)
            try await withAPI(webhookRule: rule) { api, fixture, store in
                let created = try await api.post("\(fixture.base)/webhooks", token: fixture.shipper.token,
                                                 json: ["url": "http://127.0.0.1:\(port)/hook"])
                #expect(created.status == .created, "\(created.text)")
                let secret = try #require(created.json["secret"] as? String)
                let listed = try await api.get("\(fixture.base)/webhooks", token: fixture.shipper.token)
                #expect(listed.items.first?["secret"] == nil, "secrets are shown once")

                try await Self.scenario(api, fixture)
                try await store.setAlertRule(ecosystem: fixture.ecosystem, kind: "balance_above", threshold: 1, active: true,
                                             by: fixture.shipper.id)
                try await IndicatorEngine(store: store).update(ecosystem: fixture.ecosystem)
                #expect(try await AlertEvaluator(store: store).evaluate(ecosystem: fixture.ecosystem).count == 1)
                let worker = WorkerService(store: store, name: "hooks", schedules: false, webhookRule: rule)
                #expect(try await worker.runOne())
                let deliveries = received.withLock { $0 }
                #expect(deliveries.count == 1)
                let (headers, body) = try #require(deliveries.first)
                let timestamp = try #require(headers[HTTPField.Name("X-PalletFlow-Timestamp")!])
                let signature = try #require(headers[HTTPField.Name("X-PalletFlow-Signature")!])
                #expect(WebhookSignature.verify(secret: secret, timestamp: timestamp, body: body, signature: signature))
                #expect(!WebhookSignature.verify(secret: secret + "x", timestamp: timestamp, body: body, signature: signature))
                var tampered = body
                tampered[tampered.count / 2] ^= 1
                #expect(!WebhookSignature.verify(secret: secret, timestamp: timestamp, body: tampered, signature: signature))
                let json = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]
                #expect((json?["alert"] as? [String: Any])?["kind"] as? String == "balance_above")
            }
        }
    }

    @Test("recompute is queued through the API and followed as a job; partners cannot trigger it")
    func recomputeThroughAPI() async throws {
        try await withAPI { api, fixture, store in
            try await Self.scenario(api, fixture)
            let refused = try await api.post("\(fixture.base)/indicators/recompute", token: fixture.carrier.token, json: [:] as [String: Any])
            #expect(refused.status == .forbidden)
            let queued = try await api.post("\(fixture.base)/indicators/recompute", token: fixture.coordinator.token, json: [:] as [String: Any])
            #expect(queued.status == .accepted, "\(queued.text)")
            let location = try #require(queued.headers[.location])
            let worker = WorkerService(store: store, name: "api", schedules: false)
            #expect(try await worker.runOne())
            let job = try await api.get(location, token: fixture.shipper.token)
            #expect(job.json["state"] as? String == "done", "\(location) \(job.text)")
            #expect((job.json["progress"] as? String)?.contains("relationships") == true)
            let rows = try await api.get("\(fixture.base)/indicators?period=to_date", token: fixture.shipper.token)
            #expect(!rows.items.isEmpty)
            #expect(try await api.get(location, token: fixture.carrier.token).status == .forbidden)
        }
    }
}
