import Foundation
import Logging
import NIOCore
import PalletFlowCore
import PostgresNIO
import Synchronization

/// A write's Idempotency-Key, for writes that are not one SQL statement (every write but
/// the declarations, whose statement records the key itself, `Store.post`).
///
/// The API sets it as a task-local value around the handler; the handler's first
/// `Store.transaction` inserts the key as pending in that same transaction, so the write and
/// the key commit or roll back together, and a second request with the key, racing the
/// first, finds it taken. The API then records the answer on the key (`completeIdempotentWrite`).
public final class IdempotencyClaim: Sendable {
    @TaskLocal public static var current: IdempotencyClaim?

    public let ecosystem: UUID
    public let member: UUID
    public let key: String
    public let requestHash: [UInt8]
    private let claimed = Mutex(false)

    public init(ecosystem: UUID, member: UUID, key: String, requestHash: [UInt8]) {
        self.ecosystem = ecosystem
        self.member = member
        self.key = key
        self.requestHash = requestHash
    }

    /// Whether a transaction took the key (it committed, or is running).
    public var isClaimed: Bool { claimed.withLock { $0 } }

    /// True for the first transaction of the request: it inserts the key.
    func beginClaim() -> Bool {
        claimed.withLock { taken in
            if taken { return false }
            taken = true
            return true
        }
    }

    /// The transaction that claimed the key rolled back: the key is free again.
    func rollBackClaim() {
        claimed.withLock { $0 = false }
    }
}

/// Another request with the same Idempotency-Key holds it: its answer is awaited.
public struct IdempotencyKeyTaken: Error, Sendable {}

/// What a key recorded: the request it was first used with and, once written, the answer.
public struct IdempotentRecord: Sendable {
    public var requestHash: [UInt8]
    /// 0 while the first request is still in flight (or stopped before answering).
    public var status: Int
    public var body: [UInt8]
    public var headers: [String: String]
    public var createdAt: Date

    public var isPending: Bool { status == 0 }
}

extension Store {
    func claim(_ claim: IdempotencyClaim, on connection: PostgresConnection) async throws {
        var inserted = false
        for try await _ in try await connection.query("""
            INSERT INTO idempotency_keys (ecosystem_id, membership_id, key, request_hash, response_status, response_body,
                                          created_at)
            VALUES (\(claim.ecosystem), \(claim.member), \(claim.key), \(ByteBuffer(bytes: claim.requestHash)), 0,
                    \(ByteBuffer()), \(nowDate))
            ON CONFLICT DO NOTHING
            RETURNING 1
            """, logger: logger) { inserted = true }
        guard inserted else { throw IdempotencyKeyTaken() }
    }

    /// The record of a key, if it was used.
    public func idempotentRecord(ecosystem: UUID, member: UUID, key: String) async throws -> IdempotentRecord? {
        for try await (hash, status, body, headers, created) in try await client.query("""
            SELECT request_hash, response_status::int4, response_body, coalesce(response_headers::text, '{}'), created_at
            FROM idempotency_keys WHERE ecosystem_id = \(ecosystem) AND membership_id = \(member) AND key = \(key)
            """, logger: logger).decode((ByteBuffer, Int32, ByteBuffer, String, Date).self) {
            let fields = (try? JSONSerialization.jsonObject(with: Data(headers.utf8))) as? [String: String] ?? [:]
            return IdempotentRecord(requestHash: Array(buffer: hash), status: Int(status), body: Array(buffer: body),
                                    headers: fields, createdAt: created)
        }
        return nil
    }

    /// Records the answer of a write on its key: on the pending row its transaction claimed,
    /// or, for a write that used no transaction, as a new row (one statement either way).
    public func completeIdempotentWrite(_ claim: IdempotencyClaim, status: Int, headers: [String: String], body: [UInt8])
        async throws
    {
        let headerText = String(decoding: try JSONSerialization.data(withJSONObject: headers, options: [.sortedKeys]),
                                as: UTF8.self)
        let hash = ByteBuffer(bytes: claim.requestHash)
        try await client.query("""
            WITH done AS (
                UPDATE idempotency_keys SET response_status = \(status), response_body = \(ByteBuffer(bytes: body)),
                       response_headers = \(headerText)::jsonb
                WHERE ecosystem_id = \(claim.ecosystem) AND membership_id = \(claim.member) AND key = \(claim.key)
                  AND response_status = 0 AND request_hash = \(hash)
                RETURNING 1)
            INSERT INTO idempotency_keys (ecosystem_id, membership_id, key, request_hash, response_status, response_body,
                                          response_headers, created_at)
            SELECT \(claim.ecosystem), \(claim.member), \(claim.key), \(hash), \(status), \(ByteBuffer(bytes: body)),
                   \(headerText)::jsonb, \(nowDate)
            WHERE NOT EXISTS (SELECT 1 FROM done)
            ON CONFLICT DO NOTHING
            """, logger: logger)
    }
}
