import Foundation
import HTTPTypes
import Hummingbird
import Synchronization

/// One tenant cannot starve the others: the expensive reads of one ecosystem (the ledger
/// check, mediation reports, the movements export, EPCIS queries, indicator lists) run at
/// most `perEcosystem` at a time. They also run on a pool of their own, under a statement
/// limit of their own (palletflowd's `--heavy-read-connections`,
/// `--heavy-read-timeout-seconds`), so ten ledger checks of one shipper occupy that pool's
/// share, never the connections that carry the other ecosystems' declarations.
///
/// A read that finds its ecosystem's share taken waits its turn up to `patience`, then is
/// answered 429 with `Retry-After`.
final class HeavyReadGate: Sendable {
    let perEcosystem: Int
    let patience: Duration
    private let running = Mutex<[UUID: Int]>([:])

    init(perEcosystem: Int, patience: Duration = .seconds(10)) {
        self.perEcosystem = max(1, perEcosystem)
        self.patience = patience
    }

    func run<Result: Sendable>(_ ecosystem: UUID, _ body: () async throws -> Result) async throws -> Result {
        let deadline = ContinuousClock.now + patience
        while !enter(ecosystem) {
            guard ContinuousClock.now < deadline else { throw busy }
            try await Task.sleep(for: .milliseconds(50))
        }
        defer { leave(ecosystem) }
        return try await body()
    }

    /// How many of `ecosystem`'s expensive reads run now.
    func count(_ ecosystem: UUID) -> Int { running.withLock { $0[ecosystem] ?? 0 } }

    private func enter(_ ecosystem: UUID) -> Bool {
        running.withLock { running in
            let now = running[ecosystem] ?? 0
            guard now < perEcosystem else { return false }
            running[ecosystem] = now + 1
            return true
        }
    }

    private func leave(_ ecosystem: UUID) {
        running.withLock { running in
            let left = (running[ecosystem] ?? 1) - 1
            running[ecosystem] = left > 0 ? left : nil
        }
    }

    private var busy: Problem {
        var problem = Problem(
            .tooManyRequests, "heavy-reads-busy", "Too many expensive reads at once",
            detail: "This ecosystem already runs \(perEcosystem) expensive reads (ledger check, reports, exports, EPCIS queries, indicator lists) and this one waited its turn \(Int(patience.components.seconds)) s. Retry after a few seconds.")
        problem.headers[.retryAfter] = "5"
        return problem
    }
}

/// Sends the expensive reads through the caller's ecosystem's `HeavyReadGate`. The list of
/// such routes is here, in one place.
struct HeavyReadMiddleware<Context: RequestContext>: RouterMiddleware {
    let gate: HeavyReadGate

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.method == .get, let caller = RequestScope.current.caller, Self.isHeavy(request.uri.path) else {
            return try await next(request, context)
        }
        return try await gate.run(caller.ecosystem) { try await next(request, context) }
    }

    /// `GET /v1/ecosystems/{id}/` + ledger/verify, sessions/{id}/report, movements/export,
    /// epcis/events[/{eventId}], indicators.
    static func isHeavy(_ path: String) -> Bool {
        let parts = path.split(separator: "/").map(String.init)
        guard parts.count >= 4, parts[0] == "v1", parts[1] == "ecosystems" else { return false }
        switch Array(parts.dropFirst(3)) {
        case ["ledger", "verify"], ["movements", "export"], ["epcis", "events"], ["indicators"]: return true
        case let rest where rest.count == 3 && rest[0] == "sessions" && rest[2] == "report": return true
        case let rest where rest.count == 3 && rest[0] == "epcis" && rest[1] == "events": return true
        default: return false
        }
    }
}
