import Hummingbird

/// Outermost: counts each request by method, route template and the status the client
/// gets (an error answered as problem+json counts with its 4xx or 5xx), and times it until
/// the last byte of its body is written (an export streams for a while after its headers).
struct HTTPMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: DaemonMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let method = request.method.rawValue
        let metrics = self.metrics
        do {
            var response = try await next(request, context)
            let route = context.routeLabel
            let status = response.status.code
            response.body = response.body.afterWriting {
                metrics.answered(method: method, route: route, status: status, duration: ContinuousClock.now - start)
            }
            return response
        } catch {
            // `ProblemMiddleware` answers every error; one that gets here anyway is answered
            // by Hummingbird with its own status, or 500.
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            metrics.answered(method: method, route: context.routeLabel, status: status, duration: ContinuousClock.now - start)
            throw error
        }
    }
}

extension RequestContext {
    /// The template of the route the router matched (`/v1/ecosystems/{ecosystemId}/movements`),
    /// or "unmatched" (no route, or not with this method): ids never become labels, so the
    /// series stay few.
    var routeLabel: String {
        guard let path = endpointPath, path != "NotFound" else { return "unmatched" }
        return path
    }
}

extension ResponseBody {
    /// The same body, calling `done` once it is written, or once writing it failed (the
    /// client went away): each request is counted and logged once.
    func afterWriting(_ done: @escaping @Sendable () -> Void) -> ResponseBody {
        let body = self
        return ResponseBody(contentLength: body.contentLength) { writer in
            do {
                try await body.write(writer)
            } catch {
                done()
                throw error
            }
            done()
        }
    }
}
