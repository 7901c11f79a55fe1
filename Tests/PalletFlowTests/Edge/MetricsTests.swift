import Foundation
import HTTPTypes
import PalletFlowAPI
import PalletFlowCore
import PalletFlowStore
import Testing

/// A Prometheus text exposition read back: each sample by its series (`name{labels}`), and
/// each metric's declared type.
struct Scrape {
    var samples: [String: Double] = [:]
    var types: [String: String] = [:]

    init(_ text: String) {
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                types[String(parts[2])] = String(parts[3])
            } else if !line.hasPrefix("#"), let space = line.lastIndex(of: " ") {
                samples[String(line[..<space])] = Double(line[line.index(after: space)...])
            }
        }
    }

    subscript(_ series: String) -> Double? { samples[series] }

    /// Prometheus' conventions: counters end in `_total`, and nothing else does; no metric of
    /// Hummingbird's own middleware is left.
    func expectConventionalNames(sourceLocation: SourceLocation = #_sourceLocation) {
        for (name, type) in types {
            #expect(name.hasPrefix("palletflow_"), "\(name)", sourceLocation: sourceLocation)
            #expect((type == "counter") == name.hasSuffix("_total"), "\(name) is a \(type)", sourceLocation: sourceLocation)
        }
        #expect(!samples.keys.contains { $0.hasPrefix("hb_") || $0.hasPrefix("http_server_") }, sourceLocation: sourceLocation)
    }
}

extension API {
    func scrape(sourceLocation: SourceLocation = #_sourceLocation) async throws -> Scrape {
        let response = try await get("/metrics", token: nil)
        #expect(response.status == .ok, sourceLocation: sourceLocation)
        return Scrape(response.text)
    }
}

@Suite("Daemon metrics: names, labels and counts")
struct MetricsTests {
    static let movements = "/v1/ecosystems/{ecosystemId}/movements"

    static func movement(_ fixture: Fixture, _ kind: String, quantity: Int) -> [String: Any] {
        let shipper: [String: Any] = ["partyId": fixture.shipper.id.lower, "siteId": fixture.shipper.site!.lower]
        let carrier: [String: Any] = ["partyId": fixture.carrier.id.lower]
        return [
            "kind": kind, "eventTime": hoursAgo(3),
            "from": kind == "return" ? carrier : shipper, "to": kind == "return" ? shipper : carrier,
            "lines": [["palletType": "EPAL1", "quality": "A", "quantity": quantity]],
        ]
    }

    @Test("requests by route template and status; declarations by kind and source; contests: counts by hand")
    func daemonCounts() async throws {
        try await withAPI { api, fixture, _ in
            let path = "\(fixture.base)/movements"
            // Two single declarations, and the first one retried: a replay posts nothing.
            let pickup = Self.movement(fixture, "pickup", quantity: 10)
            let first = try await api.post(path, token: fixture.carrier.token, json: pickup, key: "m-1")
            #expect(first.status == .created, "\(first.text)")
            let replay = try await api.post(path, token: fixture.carrier.token, json: pickup, key: "m-1")
            #expect(replay.headers[HTTPField.Name("Idempotent-Replayed")!] == "true", "\(replay.text)")
            #expect(try await api.post(path, token: fixture.carrier.token, json: Self.movement(fixture, "return", quantity: 4), key: "m-2")
                .status == .created)
            // A batch of 3: 2 pickups and a return.
            let batch = try await api.post("\(path)/batch", token: fixture.carrier.token, json: ["movements": [
                Self.movement(fixture, "pickup", quantity: 1), Self.movement(fixture, "pickup", quantity: 2),
                Self.movement(fixture, "return", quantity: 3),
            ]], key: "b-1")
            #expect(batch.status == .created, "\(batch.text)")
            // A CSV of 2 rows: 2 pickups.
            let csv = """
                kind,event_time,from_party,from_site,to_party,pallet_type,quantity
                pickup,\(hoursAgo(2)),\(fixture.shipper.id.lower),\(fixture.shipper.site!.lower),\(fixture.carrier.id.lower),EPAL1,5
                pickup,\(hoursAgo(1)),\(fixture.shipper.id.lower),\(fixture.shipper.site!.lower),\(fixture.carrier.id.lower),EPAL1,6

                """
            let imported = try await api.request(.post, "\(path)/import", token: fixture.carrier.token, body: csv,
                                                 contentType: "text/csv", headers: ["Idempotency-Key": "csv-1"])
            #expect(imported.status == .created, "\(imported.text)")
            // A refused declaration (a coordinator does not declare) posts nothing.
            #expect(try await api.post(path, token: fixture.coordinator.token, json: Self.movement(fixture, "pickup", quantity: 1),
                                       key: "m-3").status == .forbidden)
            // The shipper contests the first pickup.
            let id = try #require(first.json["id"] as? String)
            let contest = try await api.post("\(path)/\(id)/contest", token: fixture.shipper.token,
                                             json: ["lines": [["lineNo": 0, "quantity": 8]]])
            #expect(contest.status == .created, "\(contest.text)")
            // A movement that does not exist, and a path that is no route.
            #expect(try await api.get("\(path)/\(UUID().lower)", token: fixture.carrier.token).status == .notFound)
            #expect(try await api.get("/v1/no-such-route/\(fixture.ecosystem.lower)", token: nil).status == .notFound)

            let metrics = try await api.scrape()
            let declared = "palletflow_movements_declared_total"
            #expect(metrics["\(declared){kind=\"pickup\",source=\"api\"}"] == 1)
            #expect(metrics["\(declared){kind=\"return\",source=\"api\"}"] == 1)
            #expect(metrics["\(declared){kind=\"pickup\",source=\"batch\"}"] == 2)
            #expect(metrics["\(declared){kind=\"return\",source=\"batch\"}"] == 1)
            #expect(metrics["\(declared){kind=\"pickup\",source=\"csv\"}"] == 2)
            #expect(metrics.samples.keys.filter { $0.hasPrefix(declared) }.count == 5)
            #expect(metrics["palletflow_movement_contests_total"] == 1)
            #expect(metrics.types[declared] == "counter")

            let requests = "palletflow_http_requests_total"
            // The first declaration, its replay (answered 201 again) and the return.
            #expect(metrics["\(requests){method=\"POST\",route=\"\(Self.movements)\",status=\"201\"}"] == 3)
            #expect(metrics["\(requests){method=\"POST\",route=\"\(Self.movements)\",status=\"403\"}"] == 1)
            #expect(metrics["\(requests){method=\"POST\",route=\"\(Self.movements)/batch\",status=\"201\"}"] == 1)
            #expect(metrics["\(requests){method=\"POST\",route=\"\(Self.movements)/import\",status=\"201\"}"] == 1)
            #expect(metrics["\(requests){method=\"POST\",route=\"\(Self.movements)/{movementId}/contest\",status=\"201\"}"] == 1)
            #expect(metrics["\(requests){method=\"GET\",route=\"\(Self.movements)/{movementId}\",status=\"404\"}"] == 1)
            #expect(metrics["\(requests){method=\"GET\",route=\"unmatched\",status=\"404\"}"] == 1)
            // The scrape itself is counted once it is answered: not yet in its own answer.
            #expect(metrics["\(requests){method=\"GET\",route=\"/metrics\",status=\"200\"}"] == nil)
            #expect(metrics.samples.keys.filter { $0.hasPrefix(requests) }.map { metrics[$0]! }.reduce(0, +) == 9)
            #expect(metrics.types[requests] == "counter")

            let duration = "palletflow_http_request_duration_seconds"
            #expect(metrics.types[duration] == "histogram")
            #expect(metrics["\(duration)_count{method=\"POST\",route=\"\(Self.movements)\"}"] == 4)
            #expect(metrics["\(duration)_bucket{method=\"POST\",route=\"\(Self.movements)\",le=\"+Inf\"}"] == 4)
            #expect((metrics["\(duration)_sum{method=\"POST\",route=\"\(Self.movements)\"}"] ?? 0) > 0)
            #expect(metrics["\(duration)_count{method=\"GET\",route=\"unmatched\"}"] == 1)
            // Ids never become labels.
            #expect(!metrics.samples.keys.contains { $0.contains(fixture.ecosystem.lower) || $0.contains(id) })

            #expect(metrics["palletflow_db_pool_max_connections"] == 20)
            #expect(metrics["palletflow_db_up"] == 1)
            #expect(metrics.types["palletflow_db_connections"] == "gauge")
            metrics.expectConventionalNames()

            // The next scrape counts the first one.
            #expect(try await api.scrape()["\(requests){method=\"GET\",route=\"/metrics\",status=\"200\"}"] == 1)
        }
    }

    @Test("EPCIS captures by outcome; the movements they post count as declarations from epcis")
    func epcisCounts() async throws {
        try await withEPCIS { api, world, _ in
            let w = EPCISWorld.self
            func departing(_ id: Int, quantity: Int) -> [String: Any] {
                palletEvent("urn:uuid:00000000-0000-4000-8000-0000000001\(String(format: "%02d", id))", "departing", hours: 3,
                            sources: [("owning_party", w.shipperPGLN)], destinations: [("possessing_party", w.carrierPGLN)],
                            readPoint: w.shipperSite, quantity: quantity)
            }
            // One event posted.
            let once = departing(1, quantity: 7)
            var response = try await api.capture(world, token: world.carrier.token, epcisDocument([once]))
            #expect(api.outcomes(response) == ["posted"], "\(response.text)")
            // The same event again and a new one: one duplicate, one posted.
            response = try await api.capture(world, token: world.carrier.token, epcisDocument([once, departing(2, quantity: 3)]))
            #expect(api.outcomes(response) == ["duplicate", "posted"], "\(response.text)")
            // Under proceed, a good event and a bad one: recorded, partly.
            var bad = departing(4, quantity: 2)
            bad["action"] = "MOVE"
            response = try await api.capture(world, token: world.carrier.token, epcisDocument([departing(3, quantity: 2), bad]),
                                             behaviour: "proceed")
            #expect(api.outcomes(response) == ["posted", "rejected"], "\(response.text)")
            // Under rollback the same document is refused whole: nothing recorded, not counted.
            response = try await api.capture(world, token: world.carrier.token, epcisDocument([departing(5, quantity: 2), bad]))
            #expect(response.status == .badRequest, "\(response.text)")

            let metrics = try await api.scrape()
            #expect(metrics["palletflow_epcis_captures_total{outcome=\"success\"}"] == 2)
            #expect(metrics["palletflow_epcis_captures_total{outcome=\"partial\"}"] == 1)
            #expect(metrics.samples.keys.filter { $0.hasPrefix("palletflow_epcis_captures_total") }.count == 2)
            #expect(metrics["palletflow_movements_declared_total{kind=\"pickup\",source=\"epcis\"}"] == 3)
            #expect(metrics.samples.keys.filter { $0.hasPrefix("palletflow_movements_declared_total") }.count == 1)
            #expect(metrics["palletflow_movement_contests_total"] == 0)
            let capture = "/v1/ecosystems/{ecosystemId}/epcis/capture"
            #expect(metrics["palletflow_http_requests_total{method=\"POST\",route=\"\(capture)\",status=\"202\"}"] == 3)
            #expect(metrics["palletflow_http_requests_total{method=\"POST\",route=\"\(capture)\",status=\"400\"}"] == 1)
            metrics.expectConventionalNames()
        }
    }
}
