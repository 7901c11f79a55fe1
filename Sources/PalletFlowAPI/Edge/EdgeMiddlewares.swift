import PalletFlowContract
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import OpenAPIRuntime
import PalletFlowCore
import PalletFlowStore
import PostgresNIO

extension HTTPField.Name {
    static let idempotencyKey = Self("Idempotency-Key")!
    static let idempotentReplayed = Self("Idempotent-Replayed")!
    static let requestID = Self("X-Request-Id")!
}

let noRoute = "No such route. The API is described at /openapi.yaml."

let idempotencyKeyRequired = Problem(
    .badRequest, "idempotency-key-required", "Idempotency-Key required",
    detail: "Declarations must carry an Idempotency-Key header (a unique value per logical write, e.g. a UUID) so retries are safe.",
    errors: [FieldError("Idempotency-Key", "header is required")])

/// Outermost: gives each request an id and turns every error into problem+json.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    let routes: RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let requestID = request.headers[.requestID].flatMap { $0.count <= 64 ? $0 : nil } ?? newID().uuidString.lowercased()
        var context = context
        context.logger[metadataKey: "request_id"] = .string(requestID)
        var scope = RequestScope.current
        scope.requestID = requestID
        // A fresh box per request: the task-local default's box is shared by every task.
        scope.responseHeaders = ResponseHeaders()
        var response: Response
        do {
            response = try await RequestScope.$current.withValue(scope) {
                try await next(request, context)
            }
        } catch {
            var problem = Self.problem(for: error, logger: context.logger)
            if problem.status == .notFound, problem.slug == "not-found", problem.detail == noRoute {
                let allowed = routes.methods(at: request.uri.path)
                if !allowed.isEmpty {
                    problem = Problem(.methodNotAllowed, "method-not-allowed", "Method not allowed",
                                      detail: "\(request.method.rawValue) is not served here; use \(allowed.map(\.rawValue).joined(separator: ", ")).")
                    problem.headers[.allow] = allowed.map(\.rawValue).joined(separator: ", ")
                }
            }
            response = problem.response(instance: "urn:palletflow:request:\(requestID)")
        }
        response.headers[.requestID] = requestID
        for (name, value) in scope.responseHeaders.all {
            if let field = HTTPField.Name(name) { response.headers[field] = value }
        }
        return response
    }

    static func problem(for error: any Error, logger: Logger) -> Problem {
        var error = error
        if let serverError = error as? ServerError {
            error = serverError.underlyingError
        }
        switch error {
        case let problem as Problem:
            return problem
        case let failure as ValidationFailure:
            return .validation(failure.errors)
        case let storeError as StoreError:
            switch storeError {
            case .notFound(let what): return .notFound(what)
            case .conflict(let detail): return .conflict(detail)
            case .invalid(let errors): return .validation(errors)
            case .forbidden(let detail): return .forbidden(detail)
            }
        case let decoding as DecodingError:
            return decodingProblem(decoding)
        case let httpError as HTTPError:
            switch httpError.status {
            case .contentTooLarge:
                return Problem(.contentTooLarge, "too-large", "Request body too large",
                               detail: httpError.body ?? "The request body exceeds the server's limit.")
            case .notFound:
                return Problem(.notFound, "not-found", "Not found", detail: noRoute)
            default:
                return Problem(httpError.status, "http-\(httpError.status.code)", httpError.status.reasonPhrase,
                               detail: httpError.body)
            }
        case is PSQLError, is PostgresDecodingError:
            if let psql = error as? PSQLError {
                // No server answer (connection lost), or the server going away: connection
                // exceptions (08), operator intervention such as a shutdown (57), out of
                // resources (53).
                let sqlClass = psql.serverInfo?[.sqlState].map { String($0.prefix(2)) }
                // query_canceled: the statement ran past the daemon's limit (or an operator
                // cancelled it). The transaction was rolled back: nothing was written.
                if psql.serverInfo?[.sqlState] == "57014" {
                    logger.warning("query cancelled", metadata: ["error": "\(String(reflecting: error))"])
                    return .queryTimeout
                }
                if sqlClass == nil || sqlClass == "08" || sqlClass == "57" || sqlClass == "53" {
                    logger.error("database unreachable", metadata: ["error": "\(String(reflecting: error))"])
                    return .unavailable
                }
                // Data exceptions (22): a value the database cannot take, such as a NUL
                // character in a text or a number out of range. The client's to fix.
                if sqlClass == "22" {
                    logger.notice("value refused by the database", metadata: ["error": "\(String(reflecting: error))"])
                    let message = psql.serverInfo?[.message] ?? "invalid value"
                    // 22021: a byte sequence PostgreSQL cannot store in text, in practice a NUL.
                    let hint = psql.serverInfo?[.sqlState] == "22021" ? " (text must not contain NUL characters)" : ""
                    return .validation([FieldError("body", "holds a value that cannot be stored: \(message)\(hint)")])
                }
            }
            logger.error("database error", metadata: ["error": "\(String(reflecting: error))"])
            return .internalError
        case is DatabaseUnavailable:
            // No connection within the lease deadline (PalletFlowStore.DatabaseClient).
            logger.warning("database unreachable", metadata: ["error": "\(error)"])
            return .unavailable
        case is NIOTooManyBytesError:
            return Problem(.contentTooLarge, "too-large", "Request body too large",
                           detail: "The request body exceeds the server's limit.")
        default:
            // The connection pool gives up waiting for a connection while the database
            // cannot be reached (its circuit breaker): the database is unavailable.
            if String(describing: type(of: error)).contains("ConnectionPoolError") {
                logger.error("database unreachable", metadata: ["error": "\(String(reflecting: error))"])
                return .unavailable
            }
            if String(describing: type(of: error)).contains("RuntimeError") {
                let text = String(describing: error)
                if text.contains("Idempotency-Key") { return idempotencyKeyRequired }
                // The generated layer's own statuses for a body of the wrong type and for an
                // Accept header this operation cannot satisfy.
                switch (error as? any HTTPResponseConvertible)?.httpStatus {
                case .unsupportedMediaType?:
                    return Problem(.unsupportedMediaType, "unsupported-media-type", "Unsupported media type",
                                   detail: "\(text). Send the body with the Content-Type the API describes at /openapi.yaml.")
                case .notAcceptable?:
                    return Problem(.notAcceptable, "not-acceptable", "Not acceptable",
                                   detail: "\(text). Accept the media type the API describes at /openapi.yaml, or send no Accept header.")
                default:
                    return .badRequest("The request could not be read: \(text)")
                }
            }
            logger.error("unhandled error", metadata: ["error": "\(String(reflecting: error))"])
            return .internalError
        }
    }

    static func decodingProblem(_ error: DecodingError) -> Problem {
        func path(_ codingPath: [any CodingKey]) -> String {
            var text = ""
            for key in codingPath {
                if let index = key.intValue {
                    text += "[\(index)]"
                } else {
                    text += text.isEmpty ? key.stringValue : "." + key.stringValue
                }
            }
            return text.isEmpty ? "body" : text
        }
        switch error {
        case .keyNotFound(let key, let context):
            return .validation([FieldError(path(context.codingPath + [key]), "is required")])
        case .typeMismatch(let type, let context):
            return .validation([FieldError(path(context.codingPath), "must be of type \(type)")])
        case .valueNotFound(let type, let context):
            return .validation([FieldError(path(context.codingPath), "must be a \(type), not null")])
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty {
                return .badRequest("The body is not valid JSON: \(context.debugDescription)")
            }
            return .validation([FieldError(path(context.codingPath), context.debugDescription)])
        @unknown default:
            return .badRequest("The body could not be decoded.")
        }
    }
}

/// Refuses a body declared over the limit with 413 before anything else is done with the
/// request, from its Content-Length alone.
struct ContentLengthMiddleware<Context: RequestContext>: RouterMiddleware {
    let maximumBytes: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maximumBytes {
            // The body is not read: close the connection after answering, so a client still
            // sending it gets an error at once instead of waiting on a full socket.
            var problem = Problem(.contentTooLarge, "too-large", "Request body too large",
                                  detail: "The body has \(length) bytes; this server accepts at most \(maximumBytes).")
            problem.headers[.connection] = "close"
            throw problem
        }
        return try await next(request, context)
    }
}

/// Buffers a write's body, after authentication: a caller with a valid token up to the body
/// limit, one without up to `anonymousMaximumBytes` (a sign-in form, an invitation code),
/// so that nobody makes the daemon hold 16 MiB without a token. Then it hashes the body
/// for the Idempotency-Key, and sends the answer a declaration stored with its key.
struct BodyBufferMiddleware<Context: RequestContext>: RouterMiddleware {
    let maximumBytes: Int
    let anonymousMaximumBytes: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.method == .post || request.method == .put || request.method == .patch else {
            return try await next(request, context)
        }
        let maximumBytes = RequestScope.current.caller == nil ? min(self.maximumBytes, anonymousMaximumBytes) : self.maximumBytes
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maximumBytes {
            var problem = Problem(.contentTooLarge, "too-large", "Request body too large",
                                  detail: "The body has \(length) bytes; without a valid token this server reads at most \(maximumBytes).")
            problem.headers[.connection] = "close"
            throw problem
        }
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maximumBytes)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw Problem(.contentTooLarge, "too-large", "Request body too large",
                          detail: "The body exceeds this server's limit of \(maximumBytes) bytes.")
        } catch is NIOTooManyBytesError {
            // A body without Content-Length (chunked) that grows past the limit.
            var problem = Problem(.contentTooLarge, "too-large", "Request body too large",
                                  detail: "The body exceeds this server's limit of \(maximumBytes) bytes.")
            problem.headers[.connection] = "close"
            throw problem
        }
        request.body = .init(buffer: buffer)
        guard let key = request.headers[.idempotencyKey] else {
            return try await next(request, context)
        }
        guard !key.isEmpty, key.utf8.count <= 255 else {
            throw Problem.validation([FieldError("Idempotency-Key", "must be 1 to 255 characters")])
        }
        var digest = SHA256()
        digest.update(data: Data(request.method.rawValue.utf8))
        digest.update(data: Data(request.uri.path.utf8))
        digest.update(data: Data([0]))
        digest.update(data: Data(buffer.readableBytesView))
        let idempotency = IdempotencyContext(key: key, requestHash: Array(digest.finalize()))
        var scope = RequestScope.current
        scope.idempotency = idempotency
        var response = try await RequestScope.$current.withValue(scope) {
            try await next(request, context)
        }
        if let stored = idempotency.response {
            let status = HTTPResponse.Status(code: stored.status)
            var headers = response.headers
            headers[.contentLength] = nil
            headers[.contentType] = "application/json; charset=utf-8"
            headers[.idempotentReplayed] = idempotency.replayed ? "true" : nil
            response = Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: stored.body)))
        }
        return response
    }
}

/// Resolves `Authorization: Bearer` to the caller. A missing header leaves the caller
/// empty (public operations still work); a bad token is refused at once, and counted
/// against its client address (`AddressLimiter`). A valid token is never held back.
struct AuthMiddleware<Context: RemoteAddressRequestContext>: RouterMiddleware {
    let store: Store
    let failures: AddressLimiter

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization] else {
            return try await next(request, context)
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw Problem(.unauthorized, "unauthenticated", "Authentication required",
                          detail: "Use the Bearer scheme: `Authorization: Bearer <token>`.")
        }
        let secret = TokenSecret(text: String(parts[1]).trimmingCharacters(in: .whitespaces))
        guard let caller = try await store.authenticate(secret) else {
            // Guessing tokens is slow: past its address's budget, 429 instead of 401.
            try failures.attempt(clientAddress(context))
            throw Problem.invalidToken
        }
        var context = context
        context.logger[metadataKey: "member"] = .string(caller.membership.uuidString.lowercased())
        var scope = RequestScope.current
        scope.caller = caller
        return try await RequestScope.$current.withValue(scope) {
            try await next(request, context)
        }
    }
}

/// Refuses a write whose `Accept` header excludes JSON before it runs. Every write of the API
/// answers JSON (or problem+json); the generated server would check `Accept` only when
/// encoding the answer, after the write, and answer an error for a write it made.
struct WriteAcceptMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.method == .post || request.method == .put || request.method == .patch,
           request.headers[.accept] != nil, request.uri.path.hasPrefix("/v1/"), !request.uri.path.contains("/epcis/") {
            try MediaTypes.requireAccepts(request.headers, "application/json")
        }
        return try await next(request, context)
    }
}

/// Refuses JSON bodies holding `null` (after authentication: a caller without a valid token
/// learns nothing about its body). The body is already collected by `BodyLimitMiddleware`.
struct NullFieldsMiddleware<Context: RequestContext>: RouterMiddleware {
    let maximumBytes: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.method == .post || request.method == .put || request.method == .patch,
              JSONNulls.applies(to: request) else {
            return try await next(request, context)
        }
        var request = request
        let buffer = try await request.collectBody(upTo: maximumBytes)
        let nulls = JSONNulls.paths(in: buffer)
        guard nulls.isEmpty else {
            throw Problem.badRequest(
                "\(nulls.count) field(s) are null; no field of this API is nullable: leave an optional field out. Nothing was written.",
                errors: nulls.map { FieldError($0, "must not be null (leave the field out)") })
        }
        return try await next(request, context)
    }
}

/// JSON `null` in request bodies. The contract declares no field nullable, while the
/// generated decoders read `null` as an absent optional field: refused before decoding.
enum JSONNulls {
    /// JSON bodies of the API, except EPCIS documents (open JSON-LD, read by their own rules).
    static func applies(to request: Request) -> Bool {
        guard let type = request.headers[.contentType]?.lowercased() else { return false }
        let media = type.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard media == "application/json" || (media.hasSuffix("+json") && media != "application/ld+json") else { return false }
        return request.uri.path.hasPrefix("/v1/") && !request.uri.path.contains("/epcis/")
    }

    /// The paths (`movements[2].lines[0].serial`) of every `null` in the body; empty when
    /// it has none or is not valid JSON (the decoder then says what is wrong).
    static func paths(in buffer: ByteBuffer) -> [String] {
        guard containsNullLiteral(buffer.readableBytesView) else { return [] }
        guard let value = try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView), options: [.fragmentsAllowed])
        else { return [] }
        var paths: [String] = []
        collect(value, path: "", into: &paths)
        return paths
    }

    /// A quick scan for a `null` literal outside strings, so that bodies without one (nearly
    /// all) are not parsed twice.
    static func containsNullLiteral(_ bytes: ByteBufferView) -> Bool {
        var inString = false
        var escaped = false
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
            } else if byte == UInt8(ascii: "\"") {
                inString = true
            } else if byte == UInt8(ascii: "n"), bytes.distance(from: index, to: bytes.endIndex) >= 4,
                      bytes[bytes.index(index, offsetBy: 1)] == UInt8(ascii: "u"),
                      bytes[bytes.index(index, offsetBy: 2)] == UInt8(ascii: "l"),
                      bytes[bytes.index(index, offsetBy: 3)] == UInt8(ascii: "l") {
                return true
            }
            index = bytes.index(after: index)
        }
        return false
    }

    private static func collect(_ value: Any, path: String, into paths: inout [String]) {
        switch value {
        case is NSNull:
            paths.append(path.isEmpty ? "body" : path)
        case let object as [String: Any]:
            for key in object.keys.sorted() {
                collect(object[key]!, path: path.isEmpty ? key : path + "." + key, into: &paths)
            }
        case let array as [Any]:
            for (index, element) in array.enumerated() {
                collect(element, path: path + "[\(index)]", into: &paths)
            }
        default:
            break
        }
    }
}
