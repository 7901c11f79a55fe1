import PalletFlowContract
import HTTPTypes
import Hummingbird
import OpenAPIRuntime
import Synchronization

/// The operations registered from the OpenAPI document, so an existing path asked with
/// the wrong method answers 405 with `Allow` instead of 404.
final class RouteTable: Sendable {
    private let routes = Mutex<[(segments: [Substring], method: HTTPRequest.Method)]>([])

    func add(path: String, method: HTTPRequest.Method) {
        let segments = path.split(separator: "/")
        routes.withLock { $0.append((segments, method)) }
    }

    /// Methods served at this concrete path; empty when the path is unknown. A literal
    /// segment beats a parameter, as in the router: `/movements/batch` is not
    /// `/movements/{movementId}`.
    func methods(at path: String) -> [HTTPRequest.Method] {
        let segments = path.split(separator: "/")
        return routes.withLock { routes in
            let matching = routes.filter { route in
                route.segments.count == segments.count
                    && zip(route.segments, segments).allSatisfy { $0.first == "{" || $0.first == ":" || $0 == $1 }
            }
            func literals(_ route: (segments: [Substring], method: HTTPRequest.Method)) -> [Bool] {
                route.segments.map { $0.first != "{" && $0.first != ":" }
            }
            guard let best = matching.map(literals).max(by: { $0.lexicographicallyPrecedes($1) { !$0 && $1 } }) else { return [] }
            return matching.filter { literals($0) == best }.map(\.method)
        }
    }
}

/// Registers the generated handlers on the router and remembers what was registered. The
/// two declaration routes are served by `DeclarationRoute` instead of their generated handlers.
struct RecordingTransport<Context: RequestContext>: ServerTransport {
    let router: Router<Context>
    let table: RouteTable
    let declarations: DeclarationRoute

    func register(
        _ handler: @escaping @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?),
        method: HTTPRequest.Method,
        path: String
    ) throws {
        table.add(path: path, method: method)
        guard DeclarationRoute.serves(method, path) else {
            router.register(handler, method: method, path: path)
            return
        }
        let declarations = self.declarations
        router.on(RouterPath(path), method: method) { request, context in
            var parameters: [String: Substring] = [:]
            for (name, value) in context.parameters { parameters[String(name)] = value }
            return try await declarations.respond(request, path: path, parameters: parameters)
        }
    }
}
