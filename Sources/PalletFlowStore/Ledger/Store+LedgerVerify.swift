import Foundation
import Logging
import PalletFlowCore
import PostgresNIO

/// What `palletflow ledger verify` proves, with every violation it found.
public struct LedgerVerification: Sendable, Codable {
    public var accounts: Int64
    public var entries: Int64
    public var movements: Int64
    /// Accounts whose stored balance differs from the sum of their entries.
    public var balanceMismatches: [String]
    /// Pallet types whose physical or bilateral book does not sum to zero.
    public var conservationViolations: [String]
    /// Bilateral accounts whose mirror does not hold the opposite amount.
    public var mirrorViolations: [String]
    /// Movements whose own entries do not sum to zero per pallet type and book.
    public var unbalancedMovements: [String]
    /// Movements cancelled by more than one reversal.
    public var reversedTwice: [String] = []

    public var holds: Bool {
        balanceMismatches.isEmpty && conservationViolations.isEmpty && mirrorViolations.isEmpty && unbalancedMovements.isEmpty
            && reversedTwice.isEmpty
    }
}

extension Store {
    /// Checks, set-based and read-only, that every balance equals the sum of its entries
    /// (all and confirmed), that each pallet type is conserved in both books, that each
    /// bilateral account mirrors its counterpart, and that each movement balances.
    /// `ecosystem` nil checks every ecosystem.
    ///
    /// The check reads every entry: on a large ledger it legitimately outlasts the daemon's
    /// limit for requests (`--statement-timeout-seconds`). It runs under
    /// `statementTimeoutSeconds` instead (the daemon's limit for expensive reads), or with
    /// no limit when nil (the CLI).
    public func verifyLedger(ecosystem: UUID? = nil, statementTimeoutSeconds: Double? = nil) async throws -> LedgerVerification {
        let milliseconds = statementTimeoutSeconds.map { max(1, Int(($0 * 1000).rounded())) } ?? 0
        return try await transaction { connection in
            // One snapshot for all checks, so concurrent writers cannot cause false alarms.
            try await connection.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL: "SET LOCAL statement_timeout = \(milliseconds)"), logger: logger)
            return try await verifyLedger(ecosystem: ecosystem, on: connection)
        }
    }

    /// The same checks inside the caller's transaction (a restore checks what it wrote).
    public func verifyLedger(ecosystem: UUID?, on connection: PostgresConnection) async throws -> LedgerVerification {
        let none = noneID
        let scope = ecosystem ?? none
        do {
            var report = LedgerVerification(accounts: 0, entries: 0, movements: 0, balanceMismatches: [],
                                            conservationViolations: [], mirrorViolations: [], unbalancedMovements: [])
            for try await (accounts, entries, movements) in try await connection.query("""
                SELECT (SELECT count(*) FROM accounts WHERE \(scope) = \(none) OR ecosystem_id = \(scope))::int8,
                       (SELECT count(*) FROM ledger_entries WHERE \(scope) = \(none) OR ecosystem_id = \(scope))::int8,
                       (SELECT count(*) FROM movements WHERE \(scope) = \(none) OR ecosystem_id = \(scope))::int8
                """, logger: logger).decode((Int64, Int64, Int64).self) {
                report.accounts = accounts
                report.entries = entries
                report.movements = movements
            }
            for try await (ecosystemID, account, balance, confirmed, sum, confirmedSum) in try await connection.query("""
                SELECT a.ecosystem_id, a.id, a.balance, a.confirmed_balance, coalesce(s.total, 0)::int8,
                       coalesce(s.confirmed_total, 0)::int8
                FROM accounts a
                LEFT JOIN (
                    -- Live entries plus what `palletflow archive` took out, per account.
                    SELECT ecosystem_id, account_id, sum(total) AS total, sum(confirmed_total) AS confirmed_total
                    FROM (SELECT e.ecosystem_id, e.account_id, sum(e.amount) AS total,
                                 sum(e.amount) FILTER (WHERE m.confirmed) AS confirmed_total
                          FROM ledger_entries e JOIN movements m ON m.ecosystem_id = e.ecosystem_id AND m.id = e.movement_id
                          WHERE \(scope) = \(none) OR e.ecosystem_id = \(scope)
                          GROUP BY e.ecosystem_id, e.account_id
                          UNION ALL
                          SELECT t.ecosystem_id, t.account_id, sum(t.amount), sum(t.confirmed_amount)
                          FROM ledger_archived_totals t
                          WHERE \(scope) = \(none) OR t.ecosystem_id = \(scope)
                          GROUP BY t.ecosystem_id, t.account_id) parts
                    GROUP BY ecosystem_id, account_id) s
                  ON s.ecosystem_id = a.ecosystem_id AND s.account_id = a.id
                WHERE (\(scope) = \(none) OR a.ecosystem_id = \(scope))
                  AND (a.balance <> coalesce(s.total, 0) OR a.confirmed_balance <> coalesce(s.confirmed_total, 0))
                LIMIT 100
                """, logger: logger).decode((UUID, Int64, Int64, Int64, Int64, Int64).self) {
                report.balanceMismatches.append(
                    "ecosystem \(ecosystemID) account \(account): balance \(balance) (confirmed \(confirmed)) but entries sum to \(sum) (confirmed \(confirmedSum))")
            }
            for try await (ecosystemID, type, book, total) in try await connection.query("""
                SELECT ecosystem_id, pallet_type_id, CASE WHEN class = 'owed' THEN 'bilateral' ELSE 'physical' END AS book,
                       sum(balance)::int8
                FROM accounts WHERE \(scope) = \(none) OR ecosystem_id = \(scope)
                GROUP BY 1, 2, 3 HAVING sum(balance) <> 0
                LIMIT 100
                """, logger: logger).decode((UUID, UUID, String, Int64).self) {
                report.conservationViolations.append("ecosystem \(ecosystemID) pallet type \(type): \(book) book sums to \(total), not 0")
            }
            for try await (ecosystemID, account, balance, mirror) in try await connection.query("""
                SELECT a.ecosystem_id, a.id, a.balance, coalesce(b.balance, 0)
                FROM accounts a
                LEFT JOIN accounts b ON b.ecosystem_id = a.ecosystem_id AND b.class = 'owed' AND b.party_id = a.counterparty_id
                     AND b.counterparty_id = a.party_id AND b.site_id = a.site_id AND b.pallet_type_id = a.pallet_type_id
                     AND b.quality = a.quality
                WHERE a.class = 'owed' AND (\(scope) = \(none) OR a.ecosystem_id = \(scope))
                  AND a.balance <> -coalesce(b.balance, 0)
                LIMIT 100
                """, logger: logger).decode((UUID, Int64, Int64, Int64).self) {
                report.mirrorViolations.append("ecosystem \(ecosystemID) account \(account): \(balance), mirror \(mirror)")
            }
            for try await (ecosystemID, movement, total) in try await connection.query("""
                SELECT e.ecosystem_id, e.movement_id, sum(e.amount)::int8
                FROM ledger_entries e JOIN accounts a ON a.ecosystem_id = e.ecosystem_id AND a.id = e.account_id
                WHERE \(scope) = \(none) OR e.ecosystem_id = \(scope)
                GROUP BY e.ecosystem_id, e.movement_id, a.pallet_type_id, a.class = 'owed'
                HAVING sum(e.amount) <> 0
                LIMIT 100
                """, logger: logger).decode((UUID, UUID, Int64).self) {
                report.unbalancedMovements.append("ecosystem \(ecosystemID) movement \(movement): entries sum to \(total)")
            }
            for try await (ecosystemID, movement, count) in try await connection.query("""
                SELECT ecosystem_id, reverses_id, count(*)::int8 FROM movements
                WHERE reverses_id IS NOT NULL AND (\(scope) = \(none) OR ecosystem_id = \(scope))
                GROUP BY ecosystem_id, reverses_id HAVING count(*) > 1
                LIMIT 100
                """, logger: logger).decode((UUID, UUID, Int64).self) {
                report.reversedTwice.append("ecosystem \(ecosystemID) movement \(movement): reversed \(count) times")
            }
            return report
        }
    }
}
