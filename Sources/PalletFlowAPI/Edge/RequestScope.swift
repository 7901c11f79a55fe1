import PalletFlowContract
import Foundation
import PalletFlowCore
import Synchronization

/// What the edge middlewares learn about a request and the handlers need: the
/// authenticated caller, the request id, and the idempotency key of a write.
public struct RequestScope: Sendable {
    @TaskLocal public static var current = RequestScope()

    public var requestID: String = ""
    public var caller: Caller?
    public var idempotency: IdempotencyContext?
    /// Headers a handler adds verbatim (the generator percent-encodes header values, which
    /// would turn a Location path into %2F soup).
    public var responseHeaders = ResponseHeaders()
}

public final class ResponseHeaders: Sendable {
    private let fields = Mutex<[(String, String)]>([])
    public init() {}
    public func set(_ name: String, _ value: String) { fields.withLock { $0.append((name, value)) } }
    public var all: [(String, String)] { fields.withLock { $0 } }
}

/// A write's Idempotency-Key with the hash of its method, path and body. The handler stores
/// the exact response bytes with the key in the same transaction as the write; the
/// middleware then sends those bytes, so a replay is byte for byte the first response.
public final class IdempotencyContext: Sendable {
    public let key: String
    public let requestHash: [UInt8]
    private let stored = Mutex<(status: Int, body: [UInt8])?>(nil)
    private let replayedFlag = Mutex(false)

    public init(key: String, requestHash: [UInt8]) {
        self.key = key
        self.requestHash = requestHash
    }

    public var response: (status: Int, body: [UInt8])? {
        get { stored.withLock { $0 } }
        set { stored.withLock { $0 = newValue } }
    }

    /// The stored response is an earlier request's: answered with `Idempotent-Replayed: true`.
    public var replayed: Bool {
        get { replayedFlag.withLock { $0 } }
        set { replayedFlag.withLock { $0 = newValue } }
    }
}
