import PalletFlowContract
import Foundation
import HTTPTypes
import Hummingbird

/// The two hottest writes, `POST .../movements` (a carrier's TMS declares movements one by
/// one) and `POST .../movements/batch`, served without the generated layer's request and
/// response conversions. Their answer is always the bytes the idempotency layer stored with
/// the key, which `BodyBufferMiddleware` sends, so the generated server encoding the same
/// result again, pretty printed, only to have it replaced, was work thrown away
/// (docs/performance.md, 'What limits each figure', B1).
///
/// The request is read in the generated layer's order (path parameter, Idempotency-Key,
/// Content-Type, JSON body), with the same refusals. (An Accept header excluding JSON never
/// gets here: `WriteAcceptMiddleware` refuses it before any write.)
struct DeclarationRoute: Sendable {
    static let method = HTTPRequest.Method.post
    static let single = "/v1/ecosystems/{ecosystemId}/movements"
    static let batch = "/v1/ecosystems/{ecosystemId}/movements/batch"

    let api: APIImplementation

    init(api: APIImplementation) {
        self.api = api
    }

    /// Whether this route serves the operation at `path`.
    static func serves(_ method: HTTPRequest.Method, _ path: String) -> Bool {
        method == Self.method && (path == single || path == batch)
    }

    func respond(_ request: Request, path: String, parameters: [String: Substring]) async throws -> Response {
        let raw = parameters["ecosystemId"].map(String.init) ?? ""
        let ecosystemId = raw.removingPercentEncoding ?? raw
        guard let idempotencyKey = request.headers[.idempotencyKey] else { throw idempotencyKeyRequired }
        if path == Self.batch {
            _ = try await api.declareMovementBatch(.init(
                path: .init(ecosystemId: ecosystemId), headers: .init(idempotencyKey: idempotencyKey),
                body: .json(try await body(of: request, as: Components.Schemas.MovementBatch.self))))
        } else {
            _ = try await api.declareMovement(.init(
                path: .init(ecosystemId: ecosystemId), headers: .init(idempotencyKey: idempotencyKey),
                body: .json(try await body(of: request, as: Components.Schemas.MovementDeclaration.self))))
        }
        // The handlers set the stored answer on every path that answers 201 (posted now, or
        // replayed); `BodyBufferMiddleware` sends it, with its status and headers.
        guard RequestScope.current.idempotency?.response != nil else {
            throw Problem.internalError
        }
        return Response(status: .created)
    }

    private func body<Body: Decodable>(of request: Request, as type: Body.Type) async throws -> Body {
        try MediaTypes.requireContentType(request.headers, "application/json")
        // Already collected by BodyBufferMiddleware: this takes the buffer, it does not read again.
        var request = request
        let buffer = try await request.collectBody(upTo: .max)
        // The converter's decoder differs from a plain one only in its date strategy, and the
        // contract has no date-typed field (times are RFC 3339 strings, read by `Instant`).
        return try JSONDecoder().decode(type, from: Data(buffer.readableBytesView))
    }
}
