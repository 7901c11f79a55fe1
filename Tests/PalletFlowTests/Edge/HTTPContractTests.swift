import Foundation
import HTTPTypes
import PalletFlowContract
import PalletFlowStore
import Testing

@Suite("HTTP contract: problem+json, limits, routes, operations endpoints")
struct HTTPContractTests {
    @Test("validation lists every invalid field and writes nothing")
    func everyFieldListed() async throws {
        try await withAPI { api, fixture, store in
            let response = try await api.post("\(fixture.base)/pallet-types", token: fixture.shipper.token, json: [
                "code": "bad code!", "name": " ", "lengthMm": 0, "widthMm": 99999,
                "unitValue": ["amountMinor": -5, "currency": "euro", "validFrom": "yesterday"],
            ])
            #expect(response.status == .unprocessableContent)
            #expect(response.headers[.contentType] == "application/problem+json")
            #expect(response.problemType == "https://palletflow.dev/problems/validation")
            #expect(Set(response.fieldErrors) == ["code", "name", "lengthMm", "widthMm", "unitValue.amountMinor",
                                                  "unitValue.currency", "unitValue.validFrom"])
            #expect(response.json["status"] as? Int == 422)
            #expect((response.json["title"] as? String)?.isEmpty == false)
            #expect(try await store.palletTypes(ecosystem: fixture.ecosystem).count == 2)
        }
    }

    @Test("a write whose Accept header excludes JSON gets 406 and is not made; a body of another type gets 415")
    func acceptAndMediaType() async throws {
        try await withAPI { api, fixture, store in
            let members = try await store.members(ecosystem: fixture.ecosystem).count
            let body = #"{"name": "Late Carrier", "role": "carrier"}"#
            let refused = try await api.request(.post, "\(fixture.base)/members", token: fixture.shipper.token, body: body,
                                                headers: ["Accept": "text/html, text/csv;q=0.9"])
            #expect(refused.status == .notAcceptable, "\(refused.text)")
            #expect(refused.problemType == "https://palletflow.dev/problems/not-acceptable")
            #expect(try await store.members(ecosystem: fixture.ecosystem).count == members)
            let form = try await api.request(.post, "\(fixture.base)/members", token: fixture.shipper.token, body: "name=x",
                                             contentType: "application/x-www-form-urlencoded")
            #expect(form.status == .unsupportedMediaType, "\(form.text)")
            #expect(form.problemType == "https://palletflow.dev/problems/unsupported-media-type")
            #expect(try await store.members(ecosystem: fixture.ecosystem).count == members)
            // Wildcards and JSON with parameters are fine.
            let made = try await api.request(.post, "\(fixture.base)/members", token: fixture.shipper.token, body: body,
                                             headers: ["Accept": "text/html, application/*;q=0.5"])
            #expect(made.status == .created, "\(made.text)")
            #expect(try await store.members(ecosystem: fixture.ecosystem).count == members + 1)
        }
    }

    @Test("malformed JSON is a 400 problem; a missing required field is named")
    func malformedJSON() async throws {
        try await withAPI { api, fixture, _ in
            let broken = try await api.request(.post, "\(fixture.base)/members", token: fixture.shipper.token,
                                               body: "{\"name\": ", contentType: "application/json")
            #expect(broken.status == .badRequest || broken.status == .unprocessableContent)
            #expect(broken.headers[.contentType] == "application/problem+json")
            let missing = try await api.post("\(fixture.base)/members", token: fixture.shipper.token, json: ["name": "No role"])
            #expect(missing.status == .unprocessableContent || missing.status == .badRequest)
            #expect(missing.text.contains("role"))
        }
    }

    @Test("null in a field the contract does not declare nullable is a 400 naming each such field; nothing is written")
    func nullFieldsRefused() async throws {
        try await withAPI { api, fixture, store in
            let shipper = fixture.shipper.token
            // Optional fields of a pallet type sent as null (the generated decoder read them as absent).
            let palletType = try await api.post("\(fixture.base)/pallet-types", token: shipper, json: [
                "code": "HALF", "name": "Half pallet", "graiClass": NSNull(), "lengthMm": NSNull(), "widthMm": 600,
            ])
            #expect(palletType.status == .badRequest)
            #expect(palletType.headers[.contentType] == "application/problem+json")
            #expect(palletType.problemType == "https://palletflow.dev/problems/malformed-request")
            #expect(palletType.fieldErrors == ["graiClass", "lengthMm"])
            #expect(try await store.palletTypes(ecosystem: fixture.ecosystem).count == 2)

            let sitesBefore = try await store.sites(ecosystem: fixture.ecosystem).count
            let site = try await api.post("\(fixture.base)/sites", token: shipper, json: [
                "memberId": fixture.carrier.id.lower, "name": "Depot", "sgln": NSNull(), "address": NSNull(),
            ])
            #expect(site.status == .badRequest)
            #expect(site.fieldErrors == ["address", "sgln"])
            #expect(try await store.sites(ecosystem: fixture.ecosystem).count == sitesBefore)

            // Nested: a line's and a reference's null, in a single declaration and in a batch.
            var movement = LedgerAPITests.pickup(fixture, quantity: 10, exchanged: 4)
            movement["lines"] = [["palletType": "EPAL1", "quality": "A", "quantity": 10, "exchangedQuantity": NSNull()]]
            movement["references"] = ["cmr": NSNull()]
            let single = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: movement, key: "null-1")
            #expect(single.status == .badRequest)
            #expect(single.fieldErrors == ["lines[0].exchangedQuantity", "references.cmr"])
            var clean = LedgerAPITests.pickup(fixture, quantity: 3, exchanged: 0)
            clean["note"] = "null"  // the word inside a string is text, not null
            var nullNote = LedgerAPITests.pickup(fixture, quantity: 2, exchanged: 0)
            nullNote["note"] = NSNull()
            let batch = try await api.post("\(fixture.base)/movements/batch", token: fixture.carrier.token,
                                           json: ["movements": [clean, nullNote]], key: "null-2")
            #expect(batch.status == .badRequest)
            #expect(batch.fieldErrors == ["movements[1].note"])
            #expect(try await store.movements(ecosystem: fixture.ecosystem, MovementFilter()).isEmpty)

            // The same declarations without the nulls are accepted, "null" as text included.
            let accepted = try await api.post("\(fixture.base)/movements/batch", token: fixture.carrier.token,
                                              json: ["movements": [clean]], key: "null-3")
            #expect(accepted.status == .created)
            #expect(try await store.movements(ecosystem: fixture.ecosystem, MovementFilter()).count == 1)
        }
    }

    @Test("maxLength counts code points, as JSON Schema does, not the characters a reader sees")
    func maxLengthInCodePoints() async throws {
        try await withAPI { api, fixture, store in
            let before = try await store.members(ecosystem: fixture.ecosystem).count
            // 150 letters with a combining accent each: 150 characters, 300 code points (limit 200).
            let accented = String(repeating: "e\u{301}", count: 150)
            #expect(accented.count == 150 && accented.unicodeScalars.count == 300)
            let refused = try await api.post("\(fixture.base)/members", token: fixture.shipper.token,
                                             json: ["name": accented, "role": "carrier"])
            #expect(refused.status == .unprocessableContent)
            #expect(refused.fieldErrors == ["name"])
            #expect(try await store.members(ecosystem: fixture.ecosystem).count == before)
            let fits = try await api.post("\(fixture.base)/members", token: fixture.shipper.token,
                                          json: ["name": String(repeating: "e\u{301}", count: 100), "role": "carrier"])
            #expect(fits.status == .created)
            // Schemathesis' case: "\r\n" is one character, two code points (token names: 100).
            let token = try await api.post("\(fixture.base)/members/\(fixture.carrier.id.lower)/tokens", token: fixture.shipper.token,
                                           json: ["name": String(repeating: "\r\n", count: 60)])
            #expect(token.status == .unprocessableContent)
            #expect(token.fieldErrors == ["name"])
        }
    }

    @Test("a body over the limit gets 413; unknown routes 404; wrong methods 405 with Allow")
    func limitsAndRoutes() async throws {
        try await withAPI(bodyLimitBytes: 1_000) { api, fixture, _ in
            let big = try await api.post("\(fixture.base)/members", token: fixture.shipper.token,
                                         json: ["name": String(repeating: "x", count: 5_000), "role": "carrier"])
            #expect(big.status == .contentTooLarge)
            #expect(big.headers[.contentType] == "application/problem+json")
            let unknown = try await api.get("/v1/nothing-here", token: fixture.shipper.token)
            #expect(unknown.status == .notFound)
            #expect(unknown.headers[.contentType] == "application/problem+json")
            let wrong = try await api.request(.put, "\(fixture.base)/members", token: fixture.shipper.token)
            #expect(wrong.status == .methodNotAllowed)
            #expect(wrong.headers[.allow]?.contains("GET") == true)
            #expect(wrong.headers[.allow]?.contains("POST") == true)
            // A literal segment is not a parameter: /movements/batch only takes POST.
            let batch = try await api.request(.get, "\(fixture.base)/movements/batch", token: fixture.shipper.token)
            #expect(batch.status == .methodNotAllowed)
            #expect(batch.headers[.allow] == "POST")
        }
    }

    @Test("healthz, readyz, metrics and the OpenAPI document")
    func operationsEndpoints() async throws {
        try await withAPI { api, fixture, _ in
            #expect(try await api.get("/healthz", token: nil).status == .ok)
            let ready = try await api.get("/readyz", token: nil)
            #expect(ready.status == .ok)
            #expect(ready.json["status"] as? String == "ok")
            _ = try await api.get("/v1/me", token: fixture.shipper.token)
            // A 404 answered as problem+json is counted as a 404, not as a server error.
            _ = try await api.get("/v1/no-such-route", token: nil)
            let metrics = try await api.get("/metrics", token: nil)
            #expect(metrics.text.contains("hb_requests{http_route=\"NotFound\",http_request_method=\"GET\",http_response_status_code=\"404\"}"))
            // No request of any test was counted as a 500: errors answered as problem+json keep their status.
            #expect(!metrics.text.contains("status_code=\"500\""), "\(metrics.text)")
            #expect(metrics.status == .ok)
            #expect(metrics.text.contains("http_server_request_duration"))
            #expect(metrics.text.contains("hb_requests"))
            #expect(metrics.text.contains("palletflow_db_pool_max_connections 20"))
            #expect(metrics.text.contains("palletflow_db_up 1"))
            let document = try await api.get("/openapi.yaml", token: nil)
            #expect(document.status == .ok)
            #expect(document.text == Contract.document)
            let repositoryCopy = try String(contentsOfFile: #filePath.components(separatedBy: "/Tests/")[0]
                + "/Sources/PalletFlowContract/openapi.yaml", encoding: .utf8)
            #expect(document.text == repositoryCopy)
            #expect(document.text.hasPrefix("openapi: 3.1"))
        }
    }

    @Test("every response carries a request id, echoed in problem instances")
    func requestID() async throws {
        try await withAPI { api, _, _ in
            let response = try await api.get("/v1/me", token: nil)
            let id = try #require(response.headers[HTTPField.Name("X-Request-Id")!])
            #expect((response.json["instance"] as? String)?.hasSuffix(id) == true)
        }
    }
}
