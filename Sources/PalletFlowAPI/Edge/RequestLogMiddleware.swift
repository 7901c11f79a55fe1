import Foundation
import Hummingbird
import Logging

/// Logs each request once, at info, when its answer has been written: method, path, route
/// template, the status sent, the duration in milliseconds and the request id (the one
/// `ProblemMiddleware` put in `X-Request-Id`). Placed outside `ProblemMiddleware`, so the
/// status is the one the client got.
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let logger = context.logger
        let method = request.method.rawValue
        let path = request.uri.path
        do {
            var response = try await next(request, context)
            let line: Logger.Metadata = [
                "method": .string(method), "path": .string(path),
                "route": .string(context.routeLabel),
                "status": .stringConvertible(response.status.code),
                "request_id": .string(response.headers[.requestID] ?? ""),
            ]
            response.body = response.body.afterWriting {
                var line = line
                line["duration_ms"] = .string(Self.milliseconds(ContinuousClock.now - start))
                logger.info("request", metadata: line)
            }
            return response
        } catch {
            logger.info("request", metadata: [
                "method": .string(method), "path": .string(path),
                "route": .string(context.routeLabel),
                "status": .stringConvertible((error as? any HTTPResponseError)?.status.code ?? 500),
                "duration_ms": .string(Self.milliseconds(ContinuousClock.now - start)),
            ])
            throw error
        }
    }

    /// Milliseconds with three decimals: "12.345".
    static func milliseconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        return String(format: "%.3f", Double(seconds) * 1_000 + Double(attoseconds) / 1e15)
    }
}
