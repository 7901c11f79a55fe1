import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PalletFlowCore
import PalletFlowEPCIS
import PalletFlowStore

/// The GS1 EPCIS 2.0 REST binding under `/v1/ecosystems/{ecosystemId}/epcis`: capture of
/// documents and single events, capture jobs, and the event query. Written by hand
/// rather than generated, because EPCIS bodies are open JSON-LD whose extension fields
/// must be read as sent; openapi.yaml still describes every route.
struct EPCISInterface: Sendable {
    let api: APIImplementation
    let bodyLimitBytes: Int

    static let base = "/v1/ecosystems/{ecosystemId}/epcis"

    func register(on router: Router<AppRequestContext>, table: RouteTable) {
        func add(_ method: HTTPRequest.Method, _ path: String,
                 _ handler: @escaping @Sendable (Request, AppRequestContext) async throws -> Response) {
            table.add(path: Self.base + path, method: method)
            router.on(RouterPath(Self.base + path), method: method) { request, context in
                Self.announceVersions()
                return try await handler(request, context)
            }
        }
        add(.options, "/capture") { request, context in try await options(request, context) }
        add(.post, "/capture") { request, context in try await captureDocument(request, context) }
        add(.get, "/capture/{captureId}") { request, context in try await captureJob(request, context) }
        add(.options, "/events") { request, context in try await options(request, context) }
        add(.post, "/events") { request, context in try await captureEvent(request, context) }
        add(.get, "/events") { request, context in try await queryEvents(request, context) }
        add(.get, "/events/{eventId}") { request, context in try await event(request, context) }
    }

    static func announceVersions() {
        RequestScope.current.responseHeaders.set("GS1-EPCIS-Version", "2.0.0")
        RequestScope.current.responseHeaders.set("GS1-CBV-Version", "2.0.0")
    }

    // MARK: Errors

    static func exception(_ status: HTTPResponse.Status, _ name: String, _ title: String, detail: String,
                          errors: [FieldError] = []) -> Problem {
        var problem = Problem(status, "epcis-" + name, title, detail: detail, errors: errors)
        problem.standardType = "epcisException:" + name
        return problem
    }

    static func validation(_ errors: [FieldError], detail: String? = nil) -> Problem {
        exception(.badRequest, "ValidationException", "Invalid EPCIS document",
                  detail: detail ?? "\(errors.count) field(s) are invalid; nothing of this capture was stored or posted.",
                  errors: errors)
    }

    // MARK: Handlers

    func caller(_ context: AppRequestContext) throws -> Caller {
        guard let caller = RequestScope.current.caller else {
            throw Self.exception(.unauthorized, "SecurityException", "Authentication required",
                                 detail: "Send `Authorization: Bearer <token>` with a live API token.")
        }
        guard let id = context.parameters.get("ecosystemId").flatMap(UUID.init(uuidString:)), id == caller.ecosystem else {
            throw Problem.notFound("ecosystem")
        }
        return caller
    }

    func options(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        _ = try caller(context)
        var headers = HTTPFields()
        headers[HTTPField.Name("GS1-EPCIS-Capture-Limit")!] = String(EPCISReader.captureLimit)
        headers[HTTPField.Name("GS1-EPCIS-Capture-File-Size-Limit")!] = String(bodyLimitBytes)
        headers[HTTPField.Name("GS1-Capture-Error-Behaviour")!] = "rollback, proceed, all"
        headers[.allow] = request.uri.path.hasSuffix("/capture") ? "OPTIONS, POST" : "OPTIONS, GET, POST"
        return Response(status: .noContent, headers: headers)
    }

    func body(_ request: Request) async throws -> JSONValue {
        let type = request.headers[.contentType]?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard type == "application/json" || type == "application/ld+json" else {
            throw Problem(.unsupportedMediaType, "unsupported-media-type", "Unsupported media type",
                          detail: "Send EPCIS documents as application/json or application/ld+json.")
        }
        let buffer = try await request.body.collect(upTo: bodyLimitBytes)
        do {
            return try JSONValue.parse(Data(buffer.readableBytesView))
        } catch let error as JSONParseError {
            throw Self.validation([FieldError("body", error.description)], detail: "The body is not valid JSON; nothing was stored.")
        }
    }

    func behaviour(_ request: Request) throws -> CaptureBehaviour {
        guard let text = request.headers[HTTPField.Name("GS1-Capture-Error-Behaviour")!] else { return .rollback }
        guard let behaviour = CaptureBehaviour(rawValue: text.trimmingCharacters(in: .whitespaces).lowercased()) else {
            throw Self.validation([FieldError("GS1-Capture-Error-Behaviour", "must be rollback, proceed or all")])
        }
        return behaviour
    }

    func captureDocument(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let caller = try caller(context)
        let behaviour = try behaviour(request)
        let document = try await body(request)
        let reading = EPCISReader.readDocument(document)
        if let documentErrors = reading.errors.first(where: { $0.index == nil }) {
            if reading.eventCount > EPCISReader.captureLimit {
                throw Self.exception(.contentTooLarge, "CaptureLimitExceededException", "Too many events",
                                     detail: "A capture holds at most \(EPCISReader.captureLimit) events; split the document.",
                                     errors: documentErrors.errors)
            }
            throw Self.validation(documentErrors.errors)
        }
        let job = try await EPCISCapture(api: api, caller: caller).run(reading, behaviour: behaviour)
        let location = "/v1/ecosystems/\(caller.ecosystem.uuidString.lowercased())/epcis/capture/\(job.id.uuidString.lowercased())"
        var headers = HTTPFields()
        headers[.location] = location
        return try json(.accepted, Self.jobJSON(job), headers: headers)
    }

    func captureEvent(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let caller = try caller(context)
        let reading = EPCISReader.readSingleEvent(try await body(request))
        let job = try await EPCISCapture(api: api, caller: caller).run(reading, behaviour: .rollback)
        let outcomes = (try? JSONValue.parse(Data(job.outcomes.utf8)).array) ?? []
        let outcome = outcomes.first ?? .object([:])
        let eventID = outcome["eventID"]?.string ?? ""
        var headers = HTTPFields()
        headers[.location] = "/v1/ecosystems/\(caller.ecosystem.uuidString.lowercased())/epcis/events/"
            + (eventID.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "-._~"))) ?? eventID)
        var body = outcome.object ?? [:]
        body["captureID"] = .string(job.id.uuidString.lowercased())
        return try json(.created, .object(body), headers: headers)
    }

    func captureJob(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let caller = try caller(context)
        guard let id = context.parameters.get("captureId").flatMap(UUID.init(uuidString:)),
              let job = try await api.store.epcisCaptureJob(ecosystem: caller.ecosystem, id: id),
              caller.role.readsWholeEcosystem || job.member == caller.membership
        else { throw Problem.notFound("capture job") }
        return try json(.ok, Self.jobJSON(job))
    }

    static func jobJSON(_ job: EPCISCaptureJob) -> JSONValue {
        .object([
            "captureID": .string(job.id.uuidString.lowercased()),
            "createdAt": .string(job.createdAt.rfc3339(keepingOffset: false)),
            "finishedAt": .string(job.finishedAt.rfc3339(keepingOffset: false)),
            "running": .bool(false),
            "success": .bool(job.success),
            "captureErrorBehaviour": .string(job.errorBehaviour),
            "eventCount": .number(Double(job.eventCount)),
            "errors": (try? JSONValue.parse(Data(job.errors.utf8))) ?? .array([]),
            "events": (try? JSONValue.parse(Data(job.outcomes.utf8))) ?? .array([]),
        ])
    }

    func json(_ status: HTTPResponse.Status, _ value: JSONValue, headers: HTTPFields = [:]) throws -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: value.canonicalText())))
    }

    // MARK: Query

    static let queryParameters: Set<String> = [
        "EQ_bizStep", "GE_eventTime", "LT_eventTime", "MATCH_epcClass", "EQ_source_owning_party",
        "EQ_destination_owning_party", "EQ_destination_possessing_party", "EQ_readPoint", "perPage", "nextPageToken",
    ]

    static func queryException(_ field: String, _ message: String) -> Problem {
        exception(.badRequest, "QueryParameterException", "Invalid query parameter",
                  detail: "\(field): \(message)", errors: [FieldError(field, message)])
    }

    func queryEvents(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let caller = try caller(context)
        let parameters = request.uri.queryParameters
        for (key, _) in parameters where !Self.queryParameters.contains(String(key)) {
            throw Self.queryException(String(key), "is not a supported query parameter; use \(Self.queryParameters.sorted().joined(separator: ", "))")
        }
        let (directory, _) = try await api.directoryCache.get(caller.ecosystem, store: api.store)
        let pallets = PalletDirectory(directory)
        func values(_ name: String) -> [String]? {
            let all = parameters[values: Substring(name)].flatMap { $0.split(separator: "|") }.map(String.init).filter { !$0.isEmpty }
            return all.isEmpty ? nil : all
        }
        var filter = EPCISEventFilter()
        if let steps = values("EQ_bizStep") {
            var words: [String] = []
            for step in steps {
                guard let term = CBV.term(step, in: .bizStep) else {
                    throw Self.queryException("EQ_bizStep", "\(step) is neither a CBV bizStep nor a URI")
                }
                words.append(term.text)
            }
            filter.bizSteps = words
            filter.ledgerKinds = MovementKind.allCases.filter { words.contains(LedgerEvents.bizStep($0)) }
        }
        for (name, keyPath) in [("GE_eventTime", \EPCISEventFilter.from), ("LT_eventTime", \EPCISEventFilter.until)] {
            if let text = parameters[Substring(name)].map(String.init) {
                guard let instant = Instant.parse(text) else {
                    throw Self.queryException(name, "must be an RFC 3339 date-time with offset")
                }
                filter[keyPath: keyPath] = instant
            }
        }
        if let classes = values("MATCH_epcClass") {
            filter.epcClasses = classes.map(PalletDirectory.canonical)
            filter.palletTypes = classes.compactMap { pallets.palletType(forClass: $0)?.id }
        }
        // Canonical keys match captured events; member ids match movements of the plain API.
        func parties(_ name: String) -> (keys: [String], members: [UUID])? {
            values(name).map { ($0.map(PalletDirectory.canonical), $0.compactMap { pallets.member($0)?.id }) }
        }
        if let (keys, members) = parties("EQ_source_owning_party") {
            filter.sourceOwning = keys
            filter.sourceOwningIDs = members
        }
        if let (keys, members) = parties("EQ_destination_owning_party") {
            filter.destinationOwning = keys
            filter.destinationOwningIDs = members
        }
        if let (keys, members) = parties("EQ_destination_possessing_party") {
            filter.destinationPossessing = keys
            filter.destinationPossessingIDs = members
        }
        if let points = values("EQ_readPoint") {
            filter.readPoints = points.map(PalletDirectory.canonical)
            filter.readPointSites = points.compactMap { pallets.site($0)?.id }
        }
        var perPage = 100
        if let text = parameters["perPage"] {
            guard let value = Int(text), (1...1000).contains(value) else {
                throw Self.queryException("perPage", "must be a whole number from 1 to 1000")
            }
            perPage = value
        }
        if let token = parameters["nextPageToken"] {
            guard let after = Self.decodePageToken(String(token)) else {
                throw Self.queryException("nextPageToken", "is not a token this server gave; start again without it")
            }
            filter.after = after
        }
        filter.limit = perPage + 1
        filter.visibleTo = caller.role.readsWholeEcosystem ? nil : caller.membership
        var rows = try await api.readStore.epcisEvents(ecosystem: caller.ecosystem, filter)
        var headers = HTTPFields()
        if rows.count > perPage {
            rows.removeLast(rows.count - perPage)
            let token = Self.encodePageToken(time: rows.last!.sortTime, key: rows.last!.sortKey)
            var query = (request.uri.query ?? "").split(separator: "&").filter { !$0.hasPrefix("nextPageToken=") }.map(String.init)
            query.append("nextPageToken=" + token)
            headers[HTTPField.Name("Link")!] = "<\(request.uri.path)?\(query.joined(separator: "&"))>; rel=\"next\""
            headers[HTTPField.Name("GS1-Next-Page-Token")!] = token
        }
        return try json(.ok, Self.queryDocument(rows, pallets: pallets, createdAt: api.store.now), headers: headers)
    }

    func event(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let caller = try caller(context)
        guard let id = context.parameters.get("eventId").map({ $0.removingPercentEncoding ?? $0 }) else {
            throw Problem.notFound("event")
        }
        let (directory, _) = try await api.directoryCache.get(caller.ecosystem, store: api.store)
        var filter = EPCISEventFilter()
        filter.eventIDs = [id]
        filter.visibleTo = caller.role.readsWholeEcosystem ? nil : caller.membership
        let rows = try await api.readStore.epcisEvents(ecosystem: caller.ecosystem, filter)
        guard !rows.isEmpty else { throw Problem.notFound("event") }
        return try json(.ok, Self.queryDocument(rows, pallets: PalletDirectory(directory), createdAt: api.store.now))
    }

    static func queryDocument(_ rows: [EPCISQueryRow], pallets: PalletDirectory, createdAt: Instant) -> JSONValue {
        var prefixes: [String: JSONValue] = [
            "b4l": .string(PalletEventMapping.b4lNamespace), "palletflow": .string(LedgerEvents.palletflowNamespace),
        ]
        var events: [JSONValue] = []
        for row in rows {
            switch row {
            case .captured(_, _, let document, let recordTime, let context):
                guard var event = (try? JSONValue.parse(Data(document.utf8)))?.object else { continue }
                event["recordTime"] = .string(recordTime.rfc3339(keepingOffset: false))
                for (prefix, namespace) in (try? JSONValue.parse(Data(context.utf8)))?.object ?? [:] where prefixes[prefix] == nil {
                    prefixes[prefix] = namespace
                }
                events.append(.object(event))
            case .ledger(_, _, let movement, let correction):
                let facts = LedgerEventFacts(movementID: movement.id, declaration: movement.declaration,
                                             recordTime: movement.recordTime, retracts: movement.reverses, correction: correction)
                events.append(.object(LedgerEvents.render(facts, directory: pallets)))
            }
        }
        return .object([
            "@context": .array([.string("https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"), .object(prefixes)]),
            "type": .string("EPCISQueryDocument"),
            "schemaVersion": .string("2.0"),
            "creationDate": .string(createdAt.rfc3339(keepingOffset: false)),
            "epcisBody": .object(["queryResults": .object([
                "queryName": .string("SimpleEventQuery"),
                "resultsBody": .object(["eventList": .array(events)]),
            ])]),
        ])
    }

    static func encodePageToken(time: Instant, key: String) -> String {
        Data("\(time.microsecondsSinceEpoch)|\(key)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func decodePageToken(_ token: String) -> (time: Instant, key: String)? {
        var base64 = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard token.count <= 1200, let data = Data(base64Encoded: base64), let text = String(data: data, encoding: .utf8),
              let bar = text.firstIndex(of: "|"), let micros = Int64(text[..<bar])
        else { return nil }
        return (Instant(microsecondsSinceEpoch: micros), String(text[text.index(after: bar)...]))
    }
}

enum CaptureBehaviour: String, Sendable {
    /// All or nothing: the first invalid event rejects the capture.
    case rollback
    /// Valid events are captured; invalid ones are reported in the job.
    case proceed
    /// All or nothing, reporting every invalid event rather than the first.
    case all
}
