import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import OpenAPIRuntime
import PalletFlowCore
import PalletFlowStore

/// Makes every write safe to retry: a POST, PUT or PATCH carrying an `Idempotency-Key`
/// runs once; the same key with the same request answers the first answer again, byte for
/// byte (`Idempotent-Replayed: true`); the same key with another request is refused (422).
///
/// Look up, then run with the key claimed inside the write's own transaction
/// (`IdempotencyClaim`), then record the answer. Two requests racing with one key: the
/// second finds the key taken when its transaction claims it, rolls back, and answers the
/// first one's answer once recorded. Refusals (4xx thrown by a handler) write nothing and
/// are not recorded: a retry is judged again, as for the declarations.
///
/// The declarations (`POST .../movements`, `/batch`, `/import`) record their key in the very
/// statement that writes them (`Store.post`, `BodyBufferMiddleware`) and pass through here.
struct IdempotencyMiddleware<Context: RequestContext>: RouterMiddleware {
    let store: Store
    /// A write to no route, or with a method the route does not serve, is left to the
    /// router's 404 or 405: a key only ever records an operation's answer.
    let routes: RouteTable
    /// How long a request waits for the answer of another one with its key before
    /// answering 409 (the first is slow, or its server stopped before answering).
    var waitForFirst: Duration = .seconds(5)

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.method == .post || request.method == .put || request.method == .patch,
              let idempotency = RequestScope.current.idempotency, let caller = RequestScope.current.caller,
              !Self.recordsItsOwnKey(request.uri.path), routes.methods(at: request.uri.path).contains(request.method)
        else { return try await next(request, context) }
        let claim = IdempotencyClaim(ecosystem: caller.ecosystem, member: caller.membership, key: idempotency.key,
                                     requestHash: idempotency.requestHash)
        if let earlier = try await answered(claim) { return earlier }
        do {
            let response = try await IdempotencyClaim.$current.withValue(claim) {
                try await next(request, context)
            }
            return try await record(response, for: claim, withholdingSecret: Self.answersWithSecret(request))
        } catch let error where Self.isKeyTaken(error) {
            // Another request claimed the key between our look-up and our write, which
            // rolled back: its answer is ours.
            if let earlier = try await answered(claim) { return earlier }
            throw Self.inFlight
        }
    }

    /// Writes whose answer holds a secret shown once (a token, an invitation code, a webhook's
    /// signing secret). Secrets are kept hashed or not at all, never in a stored answer: a
    /// replay of such a write says it was done and names what it made, without the secret.
    static func answersWithSecret(_ request: Request) -> Bool {
        guard request.method == .post else { return false }
        let parts = request.uri.path.split(separator: "/")
        guard parts.count >= 4, parts[0] == "v1", parts[1] == "ecosystems" else { return false }
        return (parts.count == 4 && (parts[3] == "invitations" || parts[3] == "webhooks"))
            || (parts.count == 6 && parts[3] == "members" && parts[5] == "tokens")
    }

    /// The generated layer wraps what a handler throws.
    static func isKeyTaken(_ error: any Error) -> Bool {
        error is IdempotencyKeyTaken || (error as? ServerError)?.underlyingError is IdempotencyKeyTaken
    }

    /// The routes whose handlers store the key with the write in one statement.
    static func recordsItsOwnKey(_ path: String) -> Bool {
        let parts = path.split(separator: "/")
        guard parts.count >= 4, parts[0] == "v1", parts[1] == "ecosystems", parts[3] == "movements" else { return false }
        return parts.count == 4 || (parts.count == 5 && (parts[4] == "batch" || parts[4] == "import"))
    }

    /// The earlier request's answer, or a refusal when the key came with another request;
    /// nil when the key is new. While the first request with the key has not answered yet,
    /// waits for it a while.
    func answered(_ claim: IdempotencyClaim) async throws -> Response? {
        let deadline = ContinuousClock.now + waitForFirst
        while true {
            guard let record = try await store.idempotentRecord(ecosystem: claim.ecosystem, member: claim.member, key: claim.key)
            else { return nil }
            guard record.requestHash == claim.requestHash else { throw APIImplementation.keyReused }
            if !record.isPending { return try Self.replay(record) }
            guard ContinuousClock.now < deadline else { throw Self.inFlight }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Records a successful answer on the key and sends it as recorded.
    func record(_ response: Response, for claim: IdempotencyClaim, withholdingSecret: Bool) async throws -> Response {
        guard (200..<300).contains(response.status.code) else { return response }
        var response = response
        let sink = CollectedBody()
        try await response.body.write(CollectingWriter(sink: sink))
        let body = sink.bytes
        var headers: [String: String] = [:]
        headers["Content-Type"] = response.headers[.contentType]
        headers["Location"] = response.headers[.location]
        for (name, value) in RequestScope.current.responseHeaders.all where name.lowercased() == "location" {
            headers["Location"] = value
        }
        var kept = body
        if withholdingSecret {
            headers = [Self.secretWithheld: "true"]
            kept = Array(#"{"id":""#.utf8) + Array((Self.madeID(in: body) ?? "").utf8) + Array(#""}"#.utf8)
        }
        try await store.completeIdempotentWrite(claim, status: Int(response.status.code), headers: headers, body: kept)
        response.body = .init(byteBuffer: ByteBuffer(bytes: body))
        return response
    }

    static var secretWithheld: String { "PalletFlow-Secret-Withheld" }

    /// The id of what a secret-bearing write made (`id`, or `token.id` for a token).
    static func madeID(in body: [UInt8]) -> String? {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else { return nil }
        return object["id"] as? String ?? (object["token"] as? [String: Any])?["id"] as? String
    }

    static func replay(_ record: IdempotentRecord) throws -> Response {
        if record.headers[secretWithheld] != nil {
            let made = (try? JSONSerialization.jsonObject(with: Data(record.body)) as? [String: String])?["id"] ?? "?"
            throw Problem(.conflict, "idempotency-secret-not-kept", "Already done; its secret is not shown again",
                          detail: "This write was done the first time this Idempotency-Key was used: it made \(made). Its secret is shown once and never stored; if the first answer was lost, revoke it and make another.")
        }
        var headers = HTTPFields()
        for (name, value) in record.headers.sorted(by: { $0.key < $1.key }) {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        headers[.idempotentReplayed] = "true"
        return Response(status: HTTPResponse.Status(code: record.status), headers: headers,
                        body: .init(byteBuffer: ByteBuffer(bytes: record.body)))
    }

    static var inFlight: Problem {
        var problem = Problem(.conflict, "idempotency-key-in-flight", "Idempotency-Key in use",
                              detail: "A request with this Idempotency-Key is still being answered, or its server stopped before answering. Retry in a moment with the same key; if this lasts, read the resource to see whether the write was done.")
        problem.headers[.retryAfter] = "1"
        return problem
    }
}

/// The bytes of a response body, gathered once to be stored and sent.
final class CollectedBody: @unchecked Sendable {
    // Written by one writer, sequentially, then read once: no concurrent access.
    var bytes: [UInt8] = []
}

struct CollectingWriter: ResponseBodyWriter {
    let sink: CollectedBody

    mutating func write(_ buffer: ByteBuffer) async throws {
        sink.bytes.append(contentsOf: buffer.readableBytesView)
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
}
