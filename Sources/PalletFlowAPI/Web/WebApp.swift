import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PalletFlowContract
import PalletFlowCore
import PalletFlowStore

/// The dashboard: server-rendered pages under `/app`, for people rather than programs.
/// A page reads its figures by calling the same operations as the API, as the signed-in
/// member, so it obeys exactly the API's role and tenant rules and shows the API's numbers.
struct WebApp: Sendable {
    let api: APIImplementation
    /// The daemon itself serves HTTPS: cookies are always Secure.
    var servesTLS = false
    static let sessionCookie = "pf_session"
    static let signInCookie = "pf_signin"
    static let languageCookie = "pf_lang"
    static let sessionLifetime: Duration = .seconds(8 * 3600)

    func register(on router: Router<AppRequestContext>, table: RouteTable) {
        func add(_ method: HTTPRequest.Method, _ path: String,
                 _ handler: @escaping @Sendable (Request, AppRequestContext) async throws -> Response) {
            table.add(path: path, method: method)
            router.on(RouterPath(path), method: method, use: handler)
        }
        add(.get, "/") { _, _ in Self.redirect("/app") }
        add(.get, "/app/sign-in") { request, _ in signInForm(request, error: nil) }
        add(.post, "/app/sign-in") { request, context in try await signIn(request, context) }
        add(.post, "/app/sign-out") { request, context in try await page(request, context, form: true) { page, session, _ in
            try await api.store.endWebSession(session)
            _ = page
            var response = Self.redirect("/app/sign-in")
            response.headers.append(HTTPField(name: .setCookie, value: Self.cookie(Self.sessionCookie, "", maxAge: 0, request: request, secure: servesTLS)))
            return response
        } }
        add(.get, "/app/language/{language}") { request, context in
            let language = Language(rawValue: context.parameters.get("language") ?? "") ?? .en
            var back = request.uri.queryParameters["back"].map(String.init) ?? "/app"
            if !back.hasPrefix("/app") || back.contains("//") { back = "/app" }
            var response = Self.redirect(back)
            response.headers.append(HTTPField(name: .setCookie, value: Self.cookie(
                Self.languageCookie, language.rawValue, maxAge: 365 * 86_400, request: request, httpOnly: false, secure: servesTLS)))
            return response
        }
        add(.get, "/app") { request, context in try await page(request, context) { page, _, _ in try await overview(page) } }
        add(.get, "/app/me") { request, context in try await page(request, context) { page, _, _ in try await myAccount(page) } }
        add(.post, "/app/movements/{movementId}/confirm") { request, context in
            try await page(request, context, form: true) { page, _, _ in try await confirm(page, context.parameters.get("movementId") ?? "") }
        }
        add(.get, "/app/partners/{memberId}") { request, context in
            try await page(request, context) { page, _, _ in
                try await partner(page, context.parameters.get("memberId") ?? "", query: Self.query(request))
            }
        }
        add(.get, "/app/sessions") { request, context in try await page(request, context) { page, _, _ in try await sessions(page) } }
        add(.get, "/app/sessions/{sessionId}") { request, context in
            try await page(request, context) { page, _, _ in
                try await session(page, context.parameters.get("sessionId") ?? "", saved: request.uri.queryParameters["saved"] != nil)
            }
        }
        add(.get, "/app/sessions/{sessionId}/print") { request, context in
            try await page(request, context) { page, _, _ in try await sessionPrint(page, context.parameters.get("sessionId") ?? "") }
        }
        add(.post, "/app/sessions/{sessionId}") { request, context in
            try await page(request, context, form: true) { page, _, form in
                try await saveSession(page, context.parameters.get("sessionId") ?? "", form)
            }
        }
        add(.post, "/app/sessions/{sessionId}/actions") { request, context in
            try await page(request, context, form: true) { page, _, form in
                try await addAction(page, context.parameters.get("sessionId") ?? "", form)
            }
        }
        add(.post, "/app/sessions/{sessionId}/actions/{actionId}") { request, context in
            try await page(request, context, form: true) { page, _, form in
                try await updateAction(page, context.parameters.get("sessionId") ?? "", context.parameters.get("actionId") ?? "", form)
            }
        }
        add(.post, "/app/sessions/{sessionId}/resolutions") { request, context in
            try await page(request, context, form: true) { page, _, form in
                try await resolve(page, context.parameters.get("sessionId") ?? "", form)
            }
        }
        add(.get, "/app/charters") { request, context in try await page(request, context) { page, _, _ in try await charters(page) } }
        add(.get, "/app/kits") { request, context in try await page(request, context) { page, _, _ in try await kits(page) } }
        add(.get, "/app/indicators") { request, context in
            try await page(request, context) { page, _, _ in try await indicators(page, job: request.uri.queryParameters["job"].map(String.init)) }
        }
        add(.post, "/app/indicators/recompute") { request, context in
            try await page(request, context, form: true) { page, _, _ in try await recompute(page) }
        }
    }

    // MARK: Sessions and forms

    /// Runs a page as the session's member; without a live session, to the sign-in page.
    /// A POST must carry the session's form token (`_csrf`), or nothing happens. Errors of
    /// the operations become a page with the same status and message as the API's.
    func page(_ request: Request, _ context: AppRequestContext, form: Bool = false,
              _ body: @escaping @Sendable (PageContext, WebSession, [String: String]) async throws -> Response) async throws -> Response {
        let cookies = Self.cookies(request)
        let language = Language.choose(cookie: cookies[Self.languageCookie], acceptLanguage: request.headers[.acceptLanguage])
        let strings = Strings(language: language)
        guard let secret = cookies[Self.sessionCookie],
              let session = try await api.store.webSession(TokenSecret(text: secret))
        else {
            if form { return Self.html(.forbidden, Layout.bare(language: language, title: strings("Sign in"), body: "<p class=\"error\">\(esc(strings("The form expired or did not come from this page; reload and try again.")))</p><p><a href=\"/app/sign-in\">\(esc(strings("Sign in")))</a></p>")) }
            return Self.redirect("/app/sign-in")
        }
        var fields: [String: String] = [:]
        if form {
            fields = try await Self.formFields(request)
            guard let sent = fields["_csrf"], Self.constantTimeEqual(sent, session.csrfToken) else {
                return Self.html(.forbidden, Layout.bare(language: language, title: "403", body: "<p class=\"error\">\(esc(strings("The form expired or did not come from this page; reload and try again.")))</p>"))
            }
        }
        var scope = RequestScope.current
        scope.caller = session.caller
        // The operations' own response headers (a job's Location) are not the page's.
        scope.responseHeaders = ResponseHeaders()
        return try await RequestScope.$current.withValue(scope) {
            let (directory, ecosystem) = try await api.directoryCache.get(session.caller.ecosystem, store: api.store)
            let page = PageContext(caller: session.caller, memberName: directory.members[session.caller.membership]?.name ?? "",
                                   strings: strings, csrf: session.csrfToken, path: request.uri.path,
                                   ecosystemName: ecosystem.name, currency: ecosystem.currency)
            do {
                return try await body(page, session, fields)
            } catch {
                let problem = ProblemMiddleware<AppRequestContext>.problem(for: error, logger: context.logger)
                let message: String
                switch problem.status {
                case .notFound: message = strings("This page does not exist, or you may not see it.")
                case .forbidden: message = strings("Not allowed for your role.") + " " + (problem.detail ?? "")
                case .internalServerError: message = strings("Something went wrong; it has been logged.")
                default: message = problem.detail ?? problem.title
                }
                var body = "<h1>\(problem.status.code)</h1><p class=\"error\" role=\"alert\">\(esc(message))</p>"
                if !problem.errors.isEmpty {
                    body += "<ul>" + problem.errors.map { "<li><code>\(esc($0.field))</code>: \(esc($0.message))</li>" }.joined() + "</ul>"
                }
                body += "<p><a href=\"javascript:history.back()\">\(esc(strings("Back")))</a></p>"
                return Self.html(problem.status, Layout.page(page, title: String(problem.status.code), body: body))
            }
        }
    }

    func signInForm(_ request: Request, error: String?, status: HTTPResponse.Status = .ok) -> Response {
        let cookies = Self.cookies(request)
        let language = Language.choose(cookie: cookies[Self.languageCookie], acceptLanguage: request.headers[.acceptLanguage])
        let t = Strings(language: language)
        let nonce = TokenSecret.generate().text
        let other: Language = language == .en ? .fr : .en
        var body = "<h1>\(esc(t("Sign in")))</h1>"
        if let error { body += "<p class=\"error\" role=\"alert\">\(esc(error))</p>" }
        body += """
            <p>\(esc(t("Paste the API token your shipper gave you, or the invitation code you received.")))</p>
            <form method="post" action="/app/sign-in">
            <input type="hidden" name="_csrf" value="\(esc(nonce))">
            <label for="token">\(esc(t("API token")))</label><input type="password" id="token" name="token" autocomplete="off">
            <label for="invitation">\(esc(t("Invitation code")))</label><input type="text" id="invitation" name="invitation" autocomplete="off">
            <button type="submit">\(esc(t("Sign in")))</button></form>
            <p class="meta"><a href="/app/language/\(other.rawValue)?back=/app/sign-in" lang="\(other.rawValue)">\(other.name)</a></p>
            """
        var response = Self.html(status, Layout.bare(language: language, title: t("Sign in"), body: body))
        response.headers.append(HTTPField(name: .setCookie, value: Self.cookie(Self.signInCookie, nonce, maxAge: 3600, request: request, secure: servesTLS)))
        return response
    }

    func signIn(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let cookies = Self.cookies(request)
        let language = Language.choose(cookie: cookies[Self.languageCookie], acceptLanguage: request.headers[.acceptLanguage])
        let t = Strings(language: language)
        let fields = try await Self.formFields(request)
        // Double-submit: the form's nonce must match the cookie set with the form.
        guard let nonce = cookies[Self.signInCookie], let sent = fields["_csrf"], Self.constantTimeEqual(nonce, sent) else {
            return signInForm(request, error: t("The form expired or did not come from this page; reload and try again."), status: .forbidden)
        }
        let token = fields["token"]?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        let code = fields["invitation"]?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        var caller: Caller?
        var newToken: TokenSecret?
        if !token.isEmpty {
            caller = try await api.store.authenticate(TokenSecret(text: token))
        } else if !code.isEmpty {
            if let accepted = try? await api.store.acceptInvitation(code: code) {
                newToken = accepted.token
                caller = try await api.store.authenticate(accepted.token)
            }
        } else {
            return signInForm(request, error: t("Give a token or an invitation code."), status: .unprocessableContent)
        }
        guard let caller else {
            return signInForm(request, error: t("The token or invitation code is not valid (unknown, revoked or already used)."),
                              status: .unauthorized)
        }
        let (_, secret) = try await api.store.openWebSession(caller: caller, lifetime: Self.sessionLifetime)
        let home = caller.role.readsWholeEcosystem ? "/app" : "/app/me"
        var response: Response
        if let newToken {
            response = Self.html(.ok, Layout.bare(language: language, title: t("Sign in"), body: """
                <h1>\(esc(caller.organisationName))</h1><p>\(esc(t("Your API token (shown once, keep it for your systems):")))</p>
                <p class="token">\(esc(newToken.text))</p><p><a class="button" href="\(home)">\(esc(t("Open")))</a></p>
                """))
        } else {
            response = Self.redirect(home)
        }
        response.headers.append(HTTPField(name: .setCookie, value: Self.cookie(
            Self.sessionCookie, secret.text, maxAge: Int(Self.sessionLifetime.components.seconds), request: request,
            secure: servesTLS)))
        response.headers.append(HTTPField(name: .setCookie, value: Self.cookie(Self.signInCookie, "", maxAge: 0, request: request,
                                                                               secure: servesTLS)))
        return response
    }

    // MARK: HTTP helpers

    static func query(_ request: Request) -> [String: String] {
        var result: [String: String] = [:]
        for (key, value) in request.uri.queryParameters where result[String(key)] == nil { result[String(key)] = String(value) }
        return result
    }

    static func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location, .cacheControl: "no-store"])
    }

    static func html(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(status: status, headers: [
            .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
            // No script from anywhere but the page itself, no framing, no form posts elsewhere.
            HTTPField.Name("Content-Security-Policy")!: "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            HTTPField.Name("X-Content-Type-Options")!: "nosniff",
            HTTPField.Name("Referrer-Policy")!: "same-origin",
        ], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// HttpOnly, SameSite=Strict, Secure when the request came over TLS (directly or via a
    /// proxy that says so).
    static func cookie(_ name: String, _ value: String, maxAge: Int, request: Request, httpOnly: Bool = true,
                       secure: Bool) -> String {
        var text = "\(name)=\(value); Path=/; Max-Age=\(maxAge); SameSite=Strict"
        if httpOnly { text += "; HttpOnly" }
        if secure || request.headers[HTTPField.Name("X-Forwarded-Proto")!]?.lowercased() == "https" {
            text += "; Secure"
        }
        return text
    }

    static func cookies(_ request: Request) -> [String: String] {
        var result: [String: String] = [:]
        for header in request.headers[values: .cookie] {
            for part in header.split(separator: ";") {
                let pair = part.split(separator: "=", maxSplits: 1)
                guard pair.count == 2 else { continue }
                let name = pair[0].trimmingCharacters(in: .whitespaces)
                if result[name] == nil { result[name] = pair[1].trimmingCharacters(in: .whitespaces) }
            }
        }
        return result
    }

    static func formFields(_ request: Request) async throws -> [String: String] {
        let buffer = try await request.body.collect(upTo: 1 << 20)
        let text = String(buffer: buffer)
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ part: Substring) -> String {
                String(part).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(part)
            }
            let name = decode(parts[0])
            if fields[name] == nil { fields[name] = parts.count > 1 ? decode(parts[1]) : "" }
        }
        return fields
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for index in x.indices { difference |= x[index] ^ y[index] }
        return difference == 0
    }
}
