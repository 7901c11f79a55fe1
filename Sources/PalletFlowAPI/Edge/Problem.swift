import PalletFlowContract
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PalletFlowCore

/// An error as RFC 9457 problem details. `type` is stable: clients branch on it.
public struct Problem: Error, Sendable, HTTPResponseError {
    public static let typeBase = "https://palletflow.dev/problems/"

    public var status: HTTPResponse.Status
    public var slug: String
    public var title: String
    public var detail: String?
    public var errors: [FieldError]
    public var headers: HTTPFields = [:]
    /// A `type` defined by another standard (EPCIS: `epcisException:ValidationException`).
    public var standardType: String?

    public init(_ status: HTTPResponse.Status, _ slug: String, _ title: String, detail: String? = nil,
                errors: [FieldError] = []) {
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.errors = errors
    }

    public var type: String { standardType ?? Self.typeBase + slug }

    public static let unauthenticated = Problem(
        .unauthorized, "unauthenticated", "Authentication required",
        detail: "Send `Authorization: Bearer <token>` with a live API token; `palletflow token issue` makes one.")
    public static let invalidToken = Problem(
        .unauthorized, "invalid-token", "Invalid token",
        detail: "The bearer token is unknown, revoked or belongs to an inactive member. Ask your shipper for a new one.")

    public static func notFound(_ what: String) -> Problem {
        Problem(.notFound, "not-found", "Not found", detail: "No \(what) with this id is visible to you.")
    }

    public static func forbidden(_ detail: String) -> Problem {
        Problem(.forbidden, "forbidden", "Not allowed for your role", detail: detail)
    }

    public static func validation(_ errors: [FieldError], detail: String? = nil) -> Problem {
        Problem(.unprocessableContent, "validation", "Invalid request",
                detail: detail ?? "\(errors.count) field(s) are invalid; nothing was written.", errors: errors)
    }

    public static func badRequest(_ detail: String, errors: [FieldError] = []) -> Problem {
        Problem(.badRequest, "malformed-request", "Malformed request", detail: detail, errors: errors)
    }

    public static func conflict(_ detail: String) -> Problem {
        Problem(.conflict, "conflict", "Conflict with the current state", detail: detail)
    }

    public static let unavailable: Problem = {
        var problem = Problem(
            .serviceUnavailable, "database-unavailable", "Database unavailable",
            detail: "PalletFlow cannot reach its database right now. Retry shortly, writes with the same Idempotency-Key: one that went through is answered as it was, one that did not is made.")
        problem.headers[.retryAfter] = "1"
        return problem
    }()

    public static let queryTimeout: Problem = {
        var problem = Problem(
            .serviceUnavailable, "query-timeout", "Query took too long",
            detail: "The database query for this request ran longer than the daemon allows (--statement-timeout-seconds) and was cancelled; nothing was written. Ask for less (a shorter from/until range, a smaller page) or retry later; writes with the same Idempotency-Key.")
        problem.headers[.retryAfter] = "5"
        return problem
    }()

    public static let internalError = Problem(
        .internalServerError, "internal", "Internal error",
        detail: "An unexpected error occurred; it has been logged with the request id.")

    public func body(instance: String?) -> [String: Any] {
        var object: [String: Any] = ["type": type, "title": title, "status": Int(status.code)]
        if let detail { object["detail"] = detail }
        if let instance { object["instance"] = instance }
        if !errors.isEmpty {
            object["errors"] = errors.map { ["field": $0.field, "message": $0.message] }
        }
        return object
    }

    public func response(instance: String?) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: body(instance: instance), options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        var headers = self.headers
        headers[.contentType] = "application/problem+json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        response(instance: nil)
    }
}
