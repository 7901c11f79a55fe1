import Foundation
import HTTPTypes
import Hummingbird
import Synchronization

/// Token buckets, one per key (an API token, a client address): each holds up to `burst`
/// requests and refills at `perSecond`. Kept in memory (per daemon process); idle buckets
/// are dropped once full.
public final class RateLimiter<Key: Hashable & Sendable>: Sendable {
    struct Bucket {
        var tokens: Double
        var updated: UInt64
    }

    public let perSecond: Double
    public let burst: Double
    private let buckets = Mutex<[Key: Bucket]>([:])
    /// Above this many buckets, the full (idle) ones are forgotten.
    private let pruneAbove: Int

    /// `perSecond` <= 0 disables the limiter. The burst defaults to twice the rate (at least 1).
    public init(perSecond: Double, burst: Double? = nil, pruneAbove: Int = 10_000) {
        self.perSecond = perSecond
        self.burst = max(1, burst ?? perSecond * 2)
        self.pruneAbove = pruneAbove
    }

    public var enabled: Bool { perSecond > 0 }

    /// Takes one request from `key`'s bucket: nil when allowed, otherwise the seconds to
    /// wait until the next request would be allowed.
    public func acquire(_ key: Key, now: UInt64 = DispatchTime.now().uptimeNanoseconds) -> Double? {
        guard enabled else { return nil }
        return buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: burst, updated: now)
            let elapsed = Double(now &- bucket.updated) / 1_000_000_000
            bucket.tokens = min(burst, bucket.tokens + max(0, elapsed) * perSecond)
            bucket.updated = now
            let wait: Double?
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                wait = nil
            } else {
                wait = (1 - bucket.tokens) / perSecond
            }
            buckets[key] = bucket
            if buckets.count > pruneAbove {
                buckets = buckets.filter { _, other in
                    other.tokens + Double(now &- other.updated) / 1_000_000_000 * perSecond < burst
                }
            }
            return wait
        }
    }
}

/// Refuses a caller's requests beyond its token's rate with 429 problem+json and
/// `Retry-After`. Runs after authentication: requests without a token are not counted here
/// (they can only reach the public endpoints).
struct RateLimitMiddleware<Context: RequestContext>: RouterMiddleware {
    let limiter: RateLimiter<UUID>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard limiter.enabled, let caller = RequestScope.current.caller else {
            return try await next(request, context)
        }
        if let wait = limiter.acquire(caller.token) {
            let seconds = max(1, Int(wait.rounded(.up)))
            var problem = Problem(
                .tooManyRequests, "rate-limited", "Too many requests",
                detail: "This token is limited to \(formatRate(limiter.perSecond)) requests per second (bursts of \(formatRate(limiter.burst))). Retry after \(seconds) s.")
            problem.headers[.retryAfter] = String(seconds)
            throw problem
        }
        return try await next(request, context)
    }

}

/// What is reached without a token (signing in to the dashboard, accepting an invitation)
/// and requests whose token is unknown are limited per client address: guessing codes or
/// tokens is slow. Behind a reverse proxy every client has the proxy's address, so the
/// limit applies to them together (`--rate-limit-per-address`).
public final class AddressLimiter: Sendable {
    let limiter: RateLimiter<String>

    /// `perSecond` <= 0 disables it; bursts of 20 attempts.
    public init(perSecond: Double) {
        limiter = RateLimiter<String>(perSecond: perSecond, burst: max(1, perSecond * 20))
    }

    /// Takes one attempt from `address`; throws 429 when it has none left.
    func attempt(_ address: String) throws {
        if let wait = limiter.acquire(address) { throw Self.tooMany(address: address, wait: wait, limiter: limiter) }
    }

    static func tooMany(address: String, wait: Double, limiter: RateLimiter<String>) -> Problem {
        let seconds = max(1, Int(wait.rounded(.up)))
        var problem = Problem(
            .tooManyRequests, "rate-limited", "Too many attempts",
            detail: "Too many sign-ins, invitation codes or unknown tokens from this address (\(formatRate(limiter.perSecond)) a second, bursts of \(formatRate(limiter.burst))). Retry after \(seconds) s.")
        problem.headers[.retryAfter] = String(seconds)
        return problem
    }
}

/// The client's address as the rate limits key it: the connection's peer, without its port.
func clientAddress(_ context: some RemoteAddressRequestContext) -> String {
    guard let address = context.remoteAddress else { return "unknown" }
    return address.ipAddress ?? address.description
}

/// Counts every attempt at the public doors (dashboard sign-in, invitation acceptance)
/// against the client's address.
struct PublicDoorLimitMiddleware<Context: RemoteAddressRequestContext>: RouterMiddleware {
    let limiter: AddressLimiter

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.method == .post, request.uri.path == "/app/sign-in" || request.uri.path == "/v1/invitations/accept" {
            try limiter.attempt(clientAddress(context))
        }
        return try await next(request, context)
    }
}

/// A rate as people read it: 500, or 0.5.
func formatRate(_ value: Double) -> String {
    value == value.rounded() ? String(Int(value)) : String(value)
}
