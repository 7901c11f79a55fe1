import Foundation
import Logging
import PalletFlowCore
import PostgresNIO

/// PalletFlow's PostgreSQL edge. Every method takes the ecosystem it works in and binds
/// every value; the SQL for each capability lives in `Store+Capability.swift`.
public struct Store: Sendable {
    /// The connection pool, each lease bounded in time (`DatabaseClient`).
    public let client: DatabaseClient
    public let logger: Logger
    /// Authenticated tokens of this process (see `TokenCache` for when revocations apply).
    public let tokenCache: TokenCache
    /// The business clock: every "now" and "today" a rule or a query needs comes from here
    /// and is bound as a parameter, never read from PostgreSQL's `now()` (`WallClock`).
    public let clock: WallClock

    public init(database: DatabaseClient, logger: Logger, tokenCacheLifetime: Duration = .seconds(5),
                clock: WallClock = .system) {
        self.client = database
        self.logger = logger
        self.tokenCache = TokenCache(lifetime: tokenCacheLifetime)
        self.clock = clock
    }

    /// On a pool the caller runs (the CLI, tests).
    public init(client: PostgresClient, logger: Logger, tokenCacheLifetime: Duration = .seconds(5),
                clock: WallClock = .system) {
        self.init(database: DatabaseClient(client, logger: logger), logger: logger, tokenCacheLifetime: tokenCacheLifetime,
                  clock: clock)
    }

    /// The clock's current instant.
    public var now: Instant { clock.now() }

    /// The clock's current instant as a `Date` (what postgres-nio binds as timestamptz).
    public var nowDate: Date { clock.now().date }

    /// Today, days since 1970-01-01 (UTC).
    public var today: Int { clock.today }
}

extension Store {
    /// A transaction whose errors come out as thrown inside it (postgres-nio wraps them).
    /// COMMIT completes once the transaction is durable. Writes answered 2xx go through
    /// here, or are single statements whose commit `DatabaseClient.committed(on:)` proves.
    ///
    /// Inside a request that carries an Idempotency-Key (`IdempotencyClaim.current`), the
    /// first transaction also claims the key, so the write and the key commit together.
    public func transaction<Result: Sendable>(
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        let claim = IdempotencyClaim.current
        let claiming = claim?.beginClaim() ?? false
        do {
            let result = try await client.withTransaction(logger: logger) { connection in
                if claiming, let claim { try await self.claim(claim, on: connection) }
                return try await body(connection)
            }
            return result
        } catch let error as PostgresTransactionError {
            if claiming { claim?.rollBackClaim() }
            throw error.closureError ?? error.beginError ?? error.commitError ?? error
        } catch {
            if claiming { claim?.rollBackClaim() }
            throw error
        }
    }
}

/// A request the store refuses for a reason the caller can fix.
public enum StoreError: Error, Sendable, Equatable {
    /// The thing does not exist in this ecosystem, or the caller may not see it.
    case notFound(String)
    /// The request conflicts with the current state (duplicate code, reused key...).
    case conflict(String)
    /// Fields that are invalid against the data (unknown ids...).
    case invalid([FieldError])
    /// The caller's role does not allow this action.
    case forbidden(String)
}

/// SQLSTATE codes the store maps to user errors.
enum SQLState {
    static let uniqueViolation = "23505"
    static let foreignKeyViolation = "23503"
    static let checkViolation = "23514"
    static let raiseException = "P0001"
}

extension PSQLError {
    var sqlState: String? { serverInfo?[.sqlState] }
    var constraintName: String? { serverInfo?[.constraintName] }
}

public struct EcosystemRecord: Sendable, Hashable {
    public var id: UUID
    public var name: String
    public var lossHorizonDays: Int
    public var noteDueDays: Int
    public var currency: String
    public var createdAt: Date
}

public struct MemberRecord: Sendable, Hashable {
    public var id: UUID
    public var organisation: UUID
    public var name: String
    public var pgln: String?
    public var role: Role
    public var active: Bool
    public var createdAt: Date
}

public struct SiteRecord: Sendable, Hashable {
    public var id: UUID
    public var member: UUID
    public var name: String
    public var sgln: String?
    public var address: String?
    public var active: Bool
}

public struct PalletTypeRecord: Sendable, Hashable {
    public var id: UUID
    public var code: String
    public var name: String
    public var lengthMillimetres: Int?
    public var widthMillimetres: Int?
    public var heightMillimetres: Int?
    public var exchangeable: Bool
    public var graiClass: String?
    public var active: Bool
    /// The unit value in force today, in minor units, with its currency and start date.
    public var unitValueMinor: Int64?
    public var currency: String?
    public var valueValidFrom: Date?
}

public struct TokenRecord: Sendable, Hashable {
    public var id: UUID
    public var member: UUID
    public var name: String
    public var createdAt: Date
    public var revokedAt: Date?
}

/// UUIDv7-like: time-ordered so new rows land at the end of B-tree indexes, and a
/// movement's id says which monthly ledger partition holds it (sql/0009). `at` is the
/// recording instant; only tools that record history after the fact (the demo) pass it.
public func newID(at instant: Date = Date()) -> UUID {
    // Version 7: 48 bits of milliseconds, then random bits (from the pool, not one system
    // call per id).
    let random = RandomPool.bytes(10)
    var bytes: uuid_t = (0, 0, 0, 0, 0, 0, random[0], random[1], random[2], random[3], random[4], random[5],
                         random[6], random[7], random[8], random[9])
    let millis = UInt64(max(0, instant.timeIntervalSince1970) * 1000)
    bytes.0 = UInt8((millis >> 40) & 0xff)
    bytes.1 = UInt8((millis >> 32) & 0xff)
    bytes.2 = UInt8((millis >> 24) & 0xff)
    bytes.3 = UInt8((millis >> 16) & 0xff)
    bytes.4 = UInt8((millis >> 8) & 0xff)
    bytes.5 = UInt8(millis & 0xff)
    bytes.6 = (bytes.6 & 0x0f) | 0x70
    bytes.8 = (bytes.8 & 0x3f) | 0x80
    return UUID(uuid: bytes)
}

/// The recording instant a time-ordered id from `newID` carries (SQL: movement_id_time);
/// nil for ids of another version, which carry no time.
public func recordingInstant(of id: UUID) -> Instant? {
    let bytes = id.uuid
    guard bytes.6 >> 4 == 7 else { return nil }
    let millis = [bytes.0, bytes.1, bytes.2, bytes.3, bytes.4, bytes.5].reduce(Int64(0)) { $0 << 8 | Int64($1) }
    return Instant(microsecondsSinceEpoch: millis * 1_000)
}
