import Foundation
import HTTPTypes
import PalletFlowCore
import PalletFlowStore
import Testing

/// A browser's side of the dashboard: cookies kept by hand, forms sent url-encoded.
struct Browser: Sendable {
    let api: API
    var cookies: [String: String] = [:]

    var cookieHeader: String { cookies.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: "; ") }

    mutating func keep(_ response: TestResponse) {
        for field in response.headers where field.name == .setCookie {
            let pair = field.value.split(separator: ";")[0].split(separator: "=", maxSplits: 1)
            guard pair.count == 2 else { continue }
            if pair[1].isEmpty { cookies.removeValue(forKey: String(pair[0])) } else { cookies[String(pair[0])] = String(pair[1]) }
        }
    }

    mutating func get(_ path: String, headers: [String: String] = [:]) async throws -> TestResponse {
        var extra = headers
        if !cookies.isEmpty { extra["Cookie"] = cookieHeader }
        let response = try await api.request(.get, path, headers: extra)
        keep(response)
        return response
    }

    mutating func post(_ path: String, form: [String: String], headers: [String: String] = [:]) async throws -> TestResponse {
        var extra = headers
        if !cookies.isEmpty { extra["Cookie"] = cookieHeader }
        let body = form.map { key, value in
            "\(key)=\(value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? value)"
        }.joined(separator: "&")
        let response = try await api.request(.post, path, body: body, contentType: "application/x-www-form-urlencoded", headers: extra)
        keep(response)
        return response
    }

    /// The form token a page carries.
    static func csrf(_ page: TestResponse) -> String? {
        guard let range = page.text.range(of: "name=\"_csrf\" value=\"") else { return nil }
        return String(page.text[range.upperBound...].prefix { $0 != "\"" })
    }

    mutating func signIn(token: String, headers: [String: String] = [:]) async throws -> TestResponse {
        let form = try await get("/app/sign-in", headers: headers)
        return try await post("/app/sign-in", form: ["_csrf": Self.csrf(form) ?? "", "token": token], headers: headers)
    }
}

@Suite("Dashboard: sign-in, roles, tenants, forms")
struct DashboardTests {
    @Test("signing in sets an HttpOnly, SameSite=Strict session cookie; Secure behind TLS; sign-out ends it")
    func signInAndOut() async throws {
        try await withAPI { api, fixture, _ in
            var browser = Browser(api: api)
            #expect(try await browser.get("/app").status == .seeOther)
            let signedIn = try await browser.signIn(token: fixture.shipper.token)
            #expect(signedIn.status == .seeOther)
            #expect(signedIn.headers[.location] == "/app")
            let cookie = try #require(signedIn.headers[values: .setCookie].first { $0.hasPrefix("pf_session=") })
            #expect(cookie.contains("HttpOnly"))
            #expect(cookie.contains("SameSite=Strict"))
            #expect(!cookie.contains("Secure"))
            let overview = try await browser.get("/app")
            #expect(overview.status == .ok)
            #expect(overview.text.contains("Balances owed to the shipper"))

            var behindProxy = Browser(api: api)
            let secure = try await behindProxy.signIn(token: fixture.carrier.token, headers: ["X-Forwarded-Proto": "https"])
            #expect(secure.headers[values: .setCookie].contains { $0.hasPrefix("pf_session=") && $0.contains("Secure") })
            // A partner lands on its own page.
            #expect(secure.headers[.location] == "/app/me")

            let page = try await browser.get("/app/me")
            let out = try await browser.post("/app/sign-out", form: ["_csrf": Browser.csrf(page) ?? ""])
            #expect(out.status == .seeOther)
            #expect(try await browser.get("/app").status == .seeOther)
        }
    }

    @Test("a bad token or a sign-in form from elsewhere opens no session")
    func refusedSignIns() async throws {
        try await withAPI { api, fixture, _ in
            var browser = Browser(api: api)
            let wrong = try await browser.signIn(token: "pft_" + String(repeating: "A", count: 43))
            #expect(wrong.status == .unauthorized)
            #expect(!wrong.headers[values: .setCookie].contains { $0.hasPrefix("pf_session=") })
            // A form posted without the nonce cookie set with it (another site's form).
            var stranger = Browser(api: api)
            let forged = try await stranger.post("/app/sign-in", form: ["_csrf": "x", "token": fixture.shipper.token])
            #expect(forged.status == .forbidden)
            #expect(!forged.headers[values: .setCookie].contains { $0.hasPrefix("pf_session=") })
        }
    }

    @Test("a carrier cannot open another carrier's page; the shipper and the carrier itself can")
    func partnerPages() async throws {
        try await withAPI { api, fixture, _ in
            var carrier = Browser(api: api)
            _ = try await carrier.signIn(token: fixture.carrier.token)
            #expect(try await carrier.get("/app/partners/\(fixture.carrier.id.lower)").status == .ok)
            let other = try await carrier.get("/app/partners/\(fixture.otherCarrier.id.lower)")
            #expect(other.status == .notFound)
            #expect(!other.text.contains("Carrier Two"))
            // Another ecosystem's member: 404 as well.
            #expect(try await carrier.get("/app/partners/\(fixture.foreignCarrier.id.lower)").status == .notFound)
            // The overview is for the shipper and the coordinator.
            #expect(try await carrier.get("/app").headers[.location] == "/app/me")

            var shipper = Browser(api: api)
            _ = try await shipper.signIn(token: fixture.shipper.token)
            #expect(try await shipper.get("/app/partners/\(fixture.otherCarrier.id.lower)").status == .ok)
        }
    }

    @Test("forms need the session's token: none, another session's, or another ecosystem's session change nothing")
    func csrfAndTenants() async throws {
        try await withAPI { api, fixture, store in
            // A carrier declares a pickup; the shipper must confirm it.
            let declared = try await api.post("\(fixture.base)/movements", token: fixture.carrier.token, json: [
                "kind": "pickup", "eventTime": hoursAgo(2),
                "from": ["partyId": fixture.shipper.id.lower, "siteId": fixture.shipper.site!.lower],
                "to": ["partyId": fixture.carrier.id.lower],
                "lines": [["palletType": "EPAL1", "quantity": 12]],
            ] as [String: Any], key: "web-1")
            let id = try #require(declared.json["id"] as? String)
            var shipper = Browser(api: api)
            _ = try await shipper.signIn(token: fixture.shipper.token)
            let page = try await shipper.get("/app/me")
            #expect(page.text.contains("/app/movements/\(id)/confirm"))

            #expect(try await shipper.post("/app/movements/\(id)/confirm", form: [:]).status == .forbidden)
            var other = Browser(api: api)
            _ = try await other.signIn(token: fixture.warehouse.token)
            let otherToken = Browser.csrf(try await other.get("/app/me")) ?? ""
            #expect(try await shipper.post("/app/movements/\(id)/confirm", form: ["_csrf": otherToken]).status == .forbidden)
            // The foreign shipper's session, with its own valid form token, on this movement.
            var foreign = Browser(api: api)
            _ = try await foreign.signIn(token: fixture.foreignShipper.token)
            let foreignToken = Browser.csrf(try await foreign.get("/app/me")) ?? ""
            #expect(try await foreign.post("/app/movements/\(id)/confirm", form: ["_csrf": foreignToken]).status == .notFound)
            #expect(try await store.movement(ecosystem: fixture.ecosystem, id: UUID(uuidString: id)!)?.status == "declared")

            let confirmed = try await shipper.post("/app/movements/\(id)/confirm", form: ["_csrf": Browser.csrf(page) ?? ""])
            #expect(confirmed.status == .seeOther)
            #expect(try await store.movement(ecosystem: fixture.ecosystem, id: UUID(uuidString: id)!)?.status == "confirmed")
        }
    }

    @Test("the coordinator records minutes and an action through the session page; the API shows them")
    func mediationForms() async throws {
        try await withAPI { api, fixture, _ in
            let created = try await api.post("\(fixture.base)/sessions", token: fixture.coordinator.token, json: [
                "title": "Last month's mediation", "scheduledAt": hoursAgo(1),
                "periodStart": TestClock.date(TestClock.monthStart(-1) - TestClock.today),
                "periodEnd": TestClock.date(TestClock.monthStart(0) - TestClock.today),
                "participantIds": [fixture.carrier.id.lower],
            ] as [String: Any])
            #expect(created.status == .created, "\(created.text)")
            let session = try #require(created.json["id"] as? String)
            var coordinator = Browser(api: api)
            _ = try await coordinator.signIn(token: fixture.coordinator.token)
            let page = try await coordinator.get("/app/sessions/\(session)")
            #expect(page.status == .ok)
            #expect(page.text.contains("Carrier One"))
            let csrf = Browser.csrf(page) ?? ""
            let saved = try await coordinator.post("/app/sessions/\(session)", form: [
                "_csrf": csrf, "minutes": "We counted together.", "reviewInside": "Faster answers", "reviewRelationship": "Trust",
                "reviewPartner": "Dock staff trained", "state": "held",
            ])
            #expect(saved.status == .seeOther)
            let action = try await coordinator.post("/app/sessions/\(session)/actions", form: [
                "_csrf": csrf, "description": "Count empties before signing the CMR", "ownerId": fixture.carrier.id.lower,
                "dueDate": TestClock.date(20),
            ])
            #expect(action.status == .seeOther)
            let report = try await api.get("\(fixture.base)/sessions/\(session)/report", token: fixture.coordinator.token)
            let actions = (report.json["actions"] as? [[String: Any]]) ?? []
            #expect(actions.map { $0["description"] as? String } == ["Count empties before signing the CMR"])
            let details = report.json["session"] as? [String: Any]
            #expect(details?["minutes"] as? String == "We counted together.")
            #expect(details?["reviewPartner"] as? String == "Dock staff trained")

            // The carrier sees the session but may not write its minutes.
            var carrier = Browser(api: api)
            _ = try await carrier.signIn(token: fixture.carrier.token)
            let carrierPage = try await carrier.get("/app/sessions/\(session)")
            #expect(carrierPage.status == .ok)
            #expect(!carrierPage.text.contains("name=\"minutes\""))
            let refused = try await carrier.post("/app/sessions/\(session)", form: ["_csrf": Browser.csrf(carrierPage) ?? "", "minutes": "x"])
            #expect(refused.status == .forbidden)
            // The other carrier is not a participant: the session does not exist for it.
            var outsider = Browser(api: api)
            _ = try await outsider.signIn(token: fixture.otherCarrier.token)
            #expect(try await outsider.get("/app/sessions/\(session)").status == .notFound)
        }
    }

    @Test("revoking the token ends its dashboard sessions; French is one switch away")
    func revocationAndLanguage() async throws {
        try await withAPI { api, fixture, store in
            var carrier = Browser(api: api)
            _ = try await carrier.signIn(token: fixture.carrier.token)
            let french = try await carrier.get("/app/language/fr?back=/app/me")
            #expect(french.status == .seeOther)
            let page = try await carrier.get("/app/me")
            #expect(page.text.contains("<html lang=\"fr\">"))
            #expect(page.text.contains("Mon compte"))
            let tokens = try await store.tokens(ecosystem: fixture.ecosystem, member: fixture.carrier.id)
            for token in tokens { try await store.revokeToken(ecosystem: fixture.ecosystem, member: fixture.carrier.id, token: token.id, by: fixture.shipper.id) }
            #expect(try await carrier.get("/app/me").status == .seeOther)
        }
    }
}
