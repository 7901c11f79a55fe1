import Foundation
import Logging
import PalletFlowCore
import PostgresNIO

/// Declaration figures of one relationship over one period (docs/indicators.md, section 2).
public struct DeclarationStats: Sendable, Hashable {
    public var declarations: Int64 = 0
    public var latenessMedianSeconds: Int64?
    public var latenessP90Seconds: Int64?
    public var declaredWithin24h: Int64 = 0
    public var contested: Int64 = 0
    public init() {}
}

/// One period [start, end) of one relationship.
public struct PeriodKey: Sendable, Hashable {
    public var key: RelationshipKey
    public var start: Int
    public var end: Int
    public init(key: RelationshipKey, start: Int, end: Int) {
        self.key = key
        self.start = start
        self.end = end
    }
}

/// The periods of one relationship ending on one day.
public struct EndKey: Sendable, Hashable {
    public var key: RelationshipKey
    public var end: Int
    public init(key: RelationshipKey, end: Int) {
        self.key = key
        self.end = end
    }
}

/// How the few movements of a delta reach their lines and originals: by primary-key
/// probes, one partition each (the tables are range-partitioned by movement id). The
/// planner otherwise hashes every line and movement of the ledger to join a delta of
/// 10,000: at 1M movements the facts, declarations and touched-relationship statements
/// took 590, 210 and 190 ms of an update's 1.7 s, and they grow with the ledger; with
/// probes, 60 to 80 ms. A build of the state, or a delta as large as one, joins by hashing.
enum DeltaJoin {
    /// Up to this many movements, probe.
    static let probeLimit: Int64 = 200_000

    /// Probes for a delta after a state already built; a build from the first movement
    /// (`after` 0) joins, whatever its size.
    static func probes(after: Int64, upTo: Int64) -> Bool {
        after > 0 && upTo - after <= probeLimit
    }

    /// The lines of the movement `movement` (an alias), as `alias`.
    static func lines(of movement: String, as alias: String, ecosystem: String, probe: Bool) -> String {
        probe
            ? "CROSS JOIN LATERAL (SELECT \(alias).* FROM movement_lines \(alias) WHERE \(alias).ecosystem_id = \(ecosystem) AND \(alias).movement_id = \(movement).id OFFSET 0) \(alias)"
            : "JOIN movement_lines \(alias) ON \(alias).ecosystem_id = \(ecosystem) AND \(alias).movement_id = \(movement).id"
    }
}

/// Periods of relationships, as the columns a query unnests.
struct PeriodList {
    var partners: [UUID] = []
    var types: [UUID] = []
    var starts: [Int32] = []
    var ends: [Int32] = []

    mutating func append(_ key: RelationshipKey, _ start: Int, _ end: Int) {
        partners.append(key.partner)
        types.append(key.palletType)
        starts.append(Int32(start))
        ends.append(Int32(end))
    }
}

/// What an incremental update reads for the relationships it recomputes, from the running
/// state (sql/0010_indicator_state.sql) rather than from the ledger.
public struct IndicatorState: Sendable {
    /// Every fact of each relationship (summed per kind and day).
    public var facts: [RelationshipKey: [RelationshipFact]] = [:]
    /// The first day of any declaration involving the partner with the pallet type.
    public var firstActivityDay: [RelationshipKey: Int] = [:]
    /// The relationship's first day: its first fact or declaration.
    public var firstDay: [RelationshipKey: Int] = [:]
    /// Declaration figures over the whole history (contested not included), for the
    /// relationships whose declarations all lie on or before `today`.
    public var toDate: [RelationshipKey: DeclarationStats] = [:]
    /// Relationships with declarations after `today`: their to-date figures are in `periods`.
    public var completeLateness: Set<RelationshipKey> = []
    /// Declaration figures (contested not included) of every period an update may write;
    /// absent: no declaration.
    public var periods: [PeriodKey: DeclarationStats] = [:]
    /// Overdue notes (count, quantity) as of the last day of periods ending on `end`; absent: none.
    public var overdueNotes: [EndKey: (count: Int64, quantity: Int64)] = [:]
    /// The partner's own contested declarations per day.
    public var contested: [RelationshipKey: [Int: Int64]] = [:]
    public init() {}
}

extension Store {
    /// The incremental update of docs/indicators.md, section 4, in one transaction: moves the
    /// running state forward from the movements after its watermark, finds the relationships
    /// the new movements touch, reads their state, lets `compute` build their rows and
    /// replaces them. Returns the relationships recomputed, the rows written and the watermark.
    public func updateIndicatorsIncrementally(
        ecosystem: UUID, shipper: UUID, today: Int,
        compute: ([RelationshipKey: Int], IndicatorState) -> [IndicatorRow]
    ) async throws -> (relationships: Int, rows: Int, watermark: Int64) {
        let last = try await committedSeq(ecosystem: ecosystem)
        let (result, rebuilt) = try await transaction { connection in
            // Each statement reads what changed: compiling it to machine code (PostgreSQL's
            // JIT, above jit_above_cost) took 330 ms of a 1,008 ms statement at 1M movements
            // and never pays back here.
            try await connection.query("SET LOCAL jit = off", logger: logger)
            // One update at a time per ecosystem: the state moves by deltas.
            try await connection.query("""
                INSERT INTO indicator_watermarks (ecosystem_id, last_seq) VALUES (\(ecosystem), 0) ON CONFLICT (ecosystem_id) DO NOTHING
                """, logger: logger)
            var watermark: Int64 = 0
            var stateSeq: Int64?
            for try await (seq, state) in try await connection.query("""
                SELECT last_seq, state_seq FROM indicator_watermarks WHERE ecosystem_id = \(ecosystem) FOR UPDATE
                """, logger: logger).decode((Int64, Int64?).self) {
                watermark = seq
                stateSeq = state
            }
            let target = max(last, watermark, stateSeq ?? 0)
            if let stateSeq {
                if stateSeq < target {
                    try await applyIndicatorState(ecosystem: ecosystem, shipper: shipper, after: stateSeq, upTo: target, on: connection)
                }
            } else {
                try await rebuildIndicatorState(ecosystem: ecosystem, shipper: shipper, upTo: target, on: connection)
            }
            let rebuilt = stateSeq == nil
            // Relationships whose rows are older than the state: from the lower of both watermarks.
            let pairs = try await changedRelationships(ecosystem: ecosystem, shipper: shipper, after: min(watermark, stateSeq ?? watermark),
                                                       upTo: target, on: connection)
            var rows: [IndicatorRow] = []
            if !pairs.isEmpty {
                try await syncContested(ecosystem: ecosystem, on: connection)
                let state = try await readIndicatorState(ecosystem: ecosystem, pairs: pairs, today: today, on: connection)
                rows = compute(pairs, state)
                try await replaceIndicatorRows(ecosystem: ecosystem, pairs: pairs, rows: rows, replaceAll: false, on: connection)
            }
            try await connection.query("""
                UPDATE indicator_watermarks SET last_seq = \(target), state_seq = \(target), updated_at = \(nowDate)
                WHERE ecosystem_id = \(ecosystem)
                """, logger: logger)
            return ((pairs.count, rows.count, target), rebuilt)
        }
        if rebuilt { await settleIndicatorState() }
        return result
    }

    /// After a build of the state, outside its transaction: VACUUM marks the new pages
    /// all-visible, so the updates' index-only look-ups (`indicator_lateness_value_idx`)
    /// stop visiting the table for each row, as they did until autovacuum came by (B5 at
    /// 10M right after a build: 1.6 to 2.5 s, docs/performance.md, 'What limits each figure', B5).
    /// The build is committed either way: a failure here (a statement limit) only leaves the
    /// pages to autovacuum, as before.
    /// Only the tables' owner may VACUUM them: the worker (the application role) leaves the
    /// pages to autovacuum; `palletflow indicators recompute` (the owner) settles them.
    func settleIndicatorState() async {
        do {
            let owner = try await client.withConnection { connection in
                try await DatabaseRoles.canRewriteHistory(connection, logger: logger)
            }
            guard owner else { return }
            try await client.query("""
                VACUUM (ANALYZE) indicator_facts, indicator_activity, indicator_lateness, indicator_lateness_buckets,
                                 indicator_period_lateness_buckets, indicator_contested
                """, logger: logger)
        } catch {
            logger.warning("the indicator state was built, but not vacuumed: autovacuum will do it",
                           metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    /// The highest movements.seq below which every movement is committed (or rolled back).
    public func committedSeq(ecosystem: UUID) async throws -> Int64 {
        // Writers hold this lock shared from before their sequence number is drawn until they
        // commit; taking it exclusively for a moment means no write is in flight, so every
        // movement up to max(seq) is committed (or rolled back) and none is skipped later.
        try await transaction { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(hashtextextended(\(ecosystem)::text, 7))", logger: logger)
            var last: Int64 = 0
            for try await seq in try await connection.query(
                "SELECT coalesce(max(seq), 0)::int8 FROM movements WHERE ecosystem_id = \(ecosystem)", logger: logger).decode(Int64.self) {
                last = seq
            }
            return last
        }
    }

    /// Relationships touched by the movements in (after, upTo] and the earliest day each
    /// touches (a reversal counts on the day of what it reverses).
    func changedRelationships(ecosystem: UUID, shipper: UUID, after: Int64, upTo: Int64,
                              on connection: PostgresConnection) async throws -> [RelationshipKey: Int] {
        var pairs: [RelationshipKey: Int] = [:]
        let probe = DeltaJoin.probes(after: after, upTo: upTo)
        let original = probe
            ? "LEFT JOIN LATERAL (SELECT o.event_time FROM movements o WHERE o.ecosystem_id = m.ecosystem_id AND o.id = m.reverses_id OFFSET 0) o ON true"
            : "LEFT JOIN movements o ON o.ecosystem_id = m.ecosystem_id AND o.id = m.reverses_id"
        for try await (partner, type, day) in try await connection.query("""
            SELECT p.partner, l.pallet_type_id,
                   min(floor(extract(epoch FROM coalesce(o.event_time, m.event_time)) / 86400))::int8
            FROM movements m
            \(unescaped: DeltaJoin.lines(of: "m", as: "l", ecosystem: "m.ecosystem_id", probe: probe))
            \(unescaped: original)
            CROSS JOIN LATERAL (VALUES (m.from_party_id), (m.to_party_id), (m.declarer_id)) AS p(partner)
            WHERE m.ecosystem_id = \(ecosystem) AND m.seq > \(after) AND m.seq <= \(upTo)
              AND p.partner IS NOT NULL AND p.partner <> \(shipper)
            GROUP BY 1, 2
            """, logger: logger).decode((UUID, UUID, Int64).self) {
            pairs[RelationshipKey(partner: partner, palletType: type)] = Int(day)
        }
        return pairs
    }

    /// Drops the ecosystem's state and builds it from every movement up to `upTo`.
    func rebuildIndicatorState(ecosystem: UUID, shipper: UUID, upTo: Int64, on connection: PostgresConnection) async throws {
        try await connection.query("DELETE FROM indicator_facts WHERE ecosystem_id = \(ecosystem)", logger: logger)
        try await connection.query("DELETE FROM indicator_activity WHERE ecosystem_id = \(ecosystem)", logger: logger)
        try await connection.query("DELETE FROM indicator_lateness WHERE ecosystem_id = \(ecosystem)", logger: logger)
        try await connection.query("DELETE FROM indicator_lateness_buckets WHERE ecosystem_id = \(ecosystem)", logger: logger)
        try await connection.query("DELETE FROM indicator_period_lateness_buckets WHERE ecosystem_id = \(ecosystem)", logger: logger)
        try await connection.query("DELETE FROM indicator_contested WHERE ecosystem_id = \(ecosystem)", logger: logger)
        try await applyIndicatorState(ecosystem: ecosystem, shipper: shipper, after: 0, upTo: upTo, on: connection)
        // The planner's statistics still describe the tables before the build (empty, the
        // first time): the next updates' plans went wrong until autovacuum analysed them
        // (B5 at 10M: 26, 15 and 14 s right after the build, 1.9 s once analysed).
        // ANALYZE needs the tables' owner: the owner's function does it (sql/0020).
        try await connection.query("SELECT analyze_indicator_state()", logger: logger)
    }

    /// Adds the movements in (after, upTo] to the state, set-based. A movement adds its facts
    /// unless it is a reversal; a reversal subtracts the facts of the movement it reverses
    /// (added when that one was read, or in this same delta), so the sums equal the facts of
    /// the movements neither reversed nor reversals, as a full recompute reads them.
    /// Declarations (reversals and corrections excluded, reversed originals included) only
    /// ever add.
    func applyIndicatorState(ecosystem: UUID, shipper: UUID, after: Int64, upTo: Int64,
                             on connection: PostgresConnection) async throws {
        let probe = DeltaJoin.probes(after: after, upTo: upTo)
        // The ecosystem is bound once per use below ($1 in the fragments would not be).
        let movementsOfDelta = probe
            ? "CROSS JOIN LATERAL (SELECT o.* FROM movements o WHERE o.ecosystem_id = s.ecosystem_id AND o.id = s.id OFFSET 0) o"
            : "JOIN movements o ON o.ecosystem_id = s.ecosystem_id AND o.id = s.id"
        try await connection.query("""
            WITH src AS (
                SELECT m.ecosystem_id, m.id, 1 AS sign FROM movements m
                WHERE m.ecosystem_id = \(ecosystem) AND m.seq > \(after) AND m.seq <= \(upTo) AND m.reverses_id IS NULL
                UNION ALL
                SELECT m.ecosystem_id, m.reverses_id, -1 FROM movements m
                WHERE m.ecosystem_id = \(ecosystem) AND m.seq > \(after) AND m.seq <= \(upTo) AND m.reverses_id IS NOT NULL
            ), m AS (
                SELECT o.ecosystem_id, o.id, o.kind, o.from_party_id, o.to_party_id, s.sign,
                       floor(extract(epoch FROM o.event_time) / 86400)::int4 AS day
                FROM src s \(unescaped: movementsOfDelta)
                WHERE o.reverses_id IS NULL
                  AND (o.from_party_id = \(shipper) OR o.to_party_id = \(shipper) OR o.kind IN ('loss', 'scrap'))
            ), l AS (
                SELECT m.id, m.kind, m.from_party_id, m.to_party_id, m.sign, m.day, l.pallet_type_id, l.quantity, l.exchanged_quantity
                FROM m \(unescaped: DeltaJoin.lines(of: "m", as: "l", ecosystem: "m.ecosystem_id", probe: probe))
            )
            INSERT INTO indicator_facts AS f (ecosystem_id, partner_id, pallet_type_id, kind, day, quantity)
            SELECT \(ecosystem), partner, pallet_type_id, kind, day, sum(sign * quantity)::int8 FROM (
                SELECT to_party_id AS partner, pallet_type_id, 'issued' AS kind, day, quantity, sign FROM l
                 WHERE from_party_id = \(shipper) AND to_party_id <> \(shipper) AND kind IN ('pickup', 'delivery', 'transfer', 'return')
                UNION ALL
                SELECT to_party_id, pallet_type_id, 'spotReturn', day, exchanged_quantity, sign FROM l
                 WHERE from_party_id = \(shipper) AND to_party_id <> \(shipper) AND exchanged_quantity > 0
                UNION ALL
                SELECT from_party_id, pallet_type_id, 'laterReturn', day, quantity, sign FROM l
                 WHERE to_party_id = \(shipper) AND from_party_id <> \(shipper) AND kind IN ('pickup', 'delivery', 'transfer', 'return')
                UNION ALL
                SELECT from_party_id, pallet_type_id, 'issued', day, exchanged_quantity, sign FROM l
                 WHERE to_party_id = \(shipper) AND from_party_id <> \(shipper) AND exchanged_quantity > 0
                UNION ALL
                SELECT from_party_id, pallet_type_id, 'declaredLoss', day, quantity, sign FROM l
                 WHERE kind = 'loss' AND to_party_id = \(shipper) AND from_party_id <> \(shipper)
                UNION ALL
                SELECT from_party_id, pallet_type_id, 'scrapped', day, quantity, sign FROM l
                 WHERE kind = 'scrap' AND from_party_id <> \(shipper)
            ) facts
            WHERE quantity > 0
            GROUP BY 1, 2, 3, 4, 5
            ON CONFLICT (ecosystem_id, partner_id, pallet_type_id, kind, day)
            DO UPDATE SET quantity = f.quantity + excluded.quantity
            """, logger: logger)
        try await connection.query("""
            WITH d AS (
                SELECT DISTINCT m.id, p.partner, l.pallet_type_id,
                       floor(extract(epoch FROM m.event_time) / 86400)::int4 AS day, m.lateness_seconds,
                       m.declarer_id = p.partner AS by_partner
                FROM movements m
                \(unescaped: DeltaJoin.lines(of: "m", as: "l", ecosystem: "m.ecosystem_id", probe: probe))
                CROSS JOIN LATERAL (VALUES (m.from_party_id), (m.to_party_id), (m.declarer_id)) AS p(partner)
                WHERE m.ecosystem_id = \(ecosystem) AND m.seq > \(after) AND m.seq <= \(upTo)
                  AND m.reverses_id IS NULL AND m.source NOT IN ('reversal', 'correction')
                  AND p.partner IS NOT NULL AND p.partner <> \(shipper)
            ), first AS (
                INSERT INTO indicator_activity AS a (ecosystem_id, partner_id, pallet_type_id, first_day, declarations, within_24h, last_day)
                SELECT \(ecosystem), partner, pallet_type_id, min(day), count(*) FILTER (WHERE by_partner),
                       count(*) FILTER (WHERE by_partner AND lateness_seconds <= 86400), max(day) FILTER (WHERE by_partner)
                FROM d GROUP BY 1, 2, 3
                ON CONFLICT (ecosystem_id, partner_id, pallet_type_id) DO UPDATE
                SET first_day = least(a.first_day, excluded.first_day), declarations = a.declarations + excluded.declarations,
                    within_24h = a.within_24h + excluded.within_24h, last_day = greatest(a.last_day, excluded.last_day)
            ), own AS (
                -- The inserts below go in key order, so a relationship's rows lie on few
                -- pages (sql/0016): a build hashed them all over the table, one page per
                -- row read back by every update (docs/performance.md, change 26).
                SELECT partner, pallet_type_id, day, lateness_seconds, count(*)::int8 AS declarations
                FROM d WHERE by_partner GROUP BY 1, 2, 3, 4
            ), days AS (
                INSERT INTO indicator_lateness AS x (ecosystem_id, partner_id, pallet_type_id, day, lateness_seconds, declarations)
                SELECT \(ecosystem), partner, pallet_type_id, day, lateness_seconds, declarations FROM own
                ORDER BY 2, 3, 4, 5
                ON CONFLICT (ecosystem_id, partner_id, pallet_type_id, day, lateness_seconds)
                DO UPDATE SET declarations = x.declarations + excluded.declarations
            ), shift AS (
                -- Bucket width 2^s: 1 below 128 s (negative lateness included), else 1/64 of the power of two.
                SELECT partner, pallet_type_id, day, declarations, lateness_seconds,
                       CASE WHEN lateness_seconds < 128 THEN 0
                            ELSE length(ltrim(lateness_seconds::bit(64)::text, '0')) - 7 END AS s
                FROM own
            ), periods AS (
                -- The same buckets per week (from Monday) and calendar month (sql/0015).
                INSERT INTO indicator_period_lateness_buckets AS b
                    (ecosystem_id, partner_id, pallet_type_id, period_start, period_end, low, high, declarations, within_24h)
                SELECT \(ecosystem), partner, pallet_type_id, p.period_start, p.period_end,
                       (lateness_seconds >> s) << s, ((lateness_seconds >> s) << s) + (1::int8 << s), sum(declarations)::int8,
                       coalesce(sum(declarations) FILTER (WHERE lateness_seconds <= 86400), 0)::int8
                FROM shift
                CROSS JOIN LATERAL (VALUES
                    (day - ((day + 3) % 7 + 7) % 7, day - ((day + 3) % 7 + 7) % 7 + 7),
                    (date_trunc('month', (date '1970-01-01' + day)::timestamp)::date - date '1970-01-01',
                     (date_trunc('month', (date '1970-01-01' + day)::timestamp) + interval '1 month')::date - date '1970-01-01')
                ) AS p(period_start, period_end)
                GROUP BY 1, 2, 3, 4, 5, 6, 7
                ORDER BY 2, 3, 4, 5, 6
                ON CONFLICT (ecosystem_id, partner_id, pallet_type_id, period_start, period_end, low)
                DO UPDATE SET declarations = b.declarations + excluded.declarations, within_24h = b.within_24h + excluded.within_24h
            )
            INSERT INTO indicator_lateness_buckets AS b (ecosystem_id, partner_id, pallet_type_id, low, high, declarations)
            SELECT \(ecosystem), partner, pallet_type_id, (lateness_seconds >> s) << s, ((lateness_seconds >> s) << s) + (1::int8 << s),
                   sum(declarations)::int8
            FROM shift GROUP BY 1, 2, 3, 4, 5
            ORDER BY 2, 3, 4
            ON CONFLICT (ecosystem_id, partner_id, pallet_type_id, low) DO UPDATE SET declarations = b.declarations + excluded.declarations
            """, logger: logger)
    }

    /// Brings the contested movements of the state in step with `discrepancies`: adds the
    /// movements contested since the last update, drops those whose discrepancies are gone.
    func syncContested(ecosystem: UUID, on connection: PostgresConnection) async throws {
        try await connection.query("""
            DELETE FROM indicator_contested c
            WHERE c.ecosystem_id = \(ecosystem)
              AND NOT EXISTS (SELECT 1 FROM discrepancies d WHERE d.ecosystem_id = \(ecosystem) AND d.movement_id = c.movement_id)
            """, logger: logger)
        try await connection.query("""
            INSERT INTO indicator_contested (ecosystem_id, movement_id, pallet_type_id, declarer_id, day, counted)
            SELECT DISTINCT \(ecosystem), m.id, l.pallet_type_id, m.declarer_id, floor(extract(epoch FROM m.event_time) / 86400)::int4,
                   m.reverses_id IS NULL AND m.source NOT IN ('reversal', 'correction')
            FROM (SELECT DISTINCT d.movement_id FROM discrepancies d
                  WHERE d.ecosystem_id = \(ecosystem)
                    AND NOT EXISTS (SELECT 1 FROM indicator_contested c WHERE c.ecosystem_id = \(ecosystem) AND c.movement_id = d.movement_id)) d
            CROSS JOIN LATERAL (SELECT m.* FROM movements m WHERE m.ecosystem_id = \(ecosystem) AND m.id = d.movement_id OFFSET 0) m
            CROSS JOIN LATERAL (SELECT l.pallet_type_id FROM movement_lines l
                                WHERE l.ecosystem_id = \(ecosystem) AND l.movement_id = m.id OFFSET 0) l
            ON CONFLICT DO NOTHING
            """, logger: logger)
    }

    /// The state of the given relationships: all their facts, their first day, their own
    /// declarations from the first day of the earliest period starting on or before each
    /// relationship's `fromDay` (a week or a month), the whole-history declaration figures,
    /// and their contested declarations.
    func readIndicatorState(ecosystem: UUID, pairs: [RelationshipKey: Int], today: Int,
                            on connection: PostgresConnection) async throws -> IndicatorState {
        var state = IndicatorState()
        let keys = Array(pairs.keys)
        let partners = keys.map(\.partner)
        let types = keys.map(\.palletType)
        for try await (partner, type, kind, day, quantity) in try await connection.query("""
            SELECT r.partner, r.pallet_type, f.kind, f.day::int8, f.quantity
            FROM unnest(\(partners)::uuid[], \(types)::uuid[]) AS r(partner, pallet_type)
            -- A probe of the primary key per relationship: joined, the planner cannot count
            -- the array and hashed every fact of the ecosystem (327,009 rows at 10M, 64 ms).
            CROSS JOIN LATERAL (
                SELECT f.kind, f.day, f.quantity FROM indicator_facts f
                WHERE f.ecosystem_id = \(ecosystem) AND f.partner_id = r.partner AND f.pallet_type_id = r.pallet_type
                  AND f.quantity <> 0 OFFSET 0) f
            """, logger: logger).decode((UUID, UUID, String, Int64, Int64).self) {
            guard let factKind = RelationshipFact.Kind(rawValue: kind) else { continue }
            state.facts[RelationshipKey(partner: partner, palletType: type), default: []]
                .append(RelationshipFact(factKind, day: Int(day), quantity: quantity))
        }
        // Whole history, per relationship: the count, within 24 h and the last day are kept
        // as they are; the nearest-rank median and p90 (the rank as IndicatorMath.percentile
        // computes it, in float8) are found in two steps: the bucket holding each rank from
        // the per-bucket counts, then the value among that bucket's declarations.
        var late: Set<RelationshipKey> = []
        var totals: [RelationshipKey: DeclarationStats] = [:]
        for try await (partner, type, firstDay, declarations, within, lastDay) in try await connection.query("""
            SELECT a.partner_id, a.pallet_type_id, a.first_day::int8, a.declarations, a.within_24h, a.last_day::int8
            FROM unnest(\(partners)::uuid[], \(types)::uuid[]) AS r(partner, pallet_type)
            JOIN indicator_activity a ON a.ecosystem_id = \(ecosystem) AND a.partner_id = r.partner AND a.pallet_type_id = r.pallet_type
            """, logger: logger).decode((UUID, UUID, Int64, Int64, Int64, Int64?).self) {
            let key = RelationshipKey(partner: partner, palletType: type)
            state.firstActivityDay[key] = Int(firstDay)
            if let lastDay, lastDay > today { late.insert(key); continue }
            var stats = DeclarationStats()
            stats.declarations = declarations
            stats.declaredWithin24h = within
            totals[key] = stats
        }
        let counted = keys.filter { (totals[$0]?.declarations ?? 0) > 0 }
        for try await (partner, type, median, p90) in try await connection.query("""
            WITH r AS (
                SELECT * FROM unnest(\(counted.map(\.partner))::uuid[], \(counted.map(\.palletType))::uuid[]) AS r(partner, pallet_type)
            ), q AS (
                SELECT a.partner_id, a.pallet_type_id, f.fraction, greatest(1, ceil(a.declarations::float8 * f.fraction))::int8 AS rank
                FROM r JOIN indicator_activity a ON a.ecosystem_id = \(ecosystem) AND a.partner_id = r.partner AND a.pallet_type_id = r.pallet_type
                CROSS JOIN (VALUES (0.5::float8), (0.9::float8)) AS f(fraction)
            ), h AS (
                SELECT b.partner_id, b.pallet_type_id, b.low, b.high, b.declarations,
                       sum(b.declarations) OVER (PARTITION BY b.partner_id, b.pallet_type_id ORDER BY b.low) AS upto
                FROM r JOIN indicator_lateness_buckets b
                  ON b.ecosystem_id = \(ecosystem) AND b.partner_id = r.partner AND b.pallet_type_id = r.pallet_type
                WHERE b.declarations <> 0
            ), m AS (
                SELECT DISTINCT ON (q.partner_id, q.pallet_type_id, q.fraction)
                       q.partner_id, q.pallet_type_id, q.fraction, q.rank - (h.upto - h.declarations) AS within_rank, h.low, h.high
                FROM q JOIN h ON h.partner_id = q.partner_id AND h.pallet_type_id = q.pallet_type_id AND h.upto >= q.rank
                ORDER BY q.partner_id, q.pallet_type_id, q.fraction, h.low
            ), v AS (
                SELECT m.partner_id, m.pallet_type_id, m.fraction,
                       (SELECT y.lateness_seconds FROM (
                            SELECT x.lateness_seconds, sum(x.n) OVER (ORDER BY x.lateness_seconds) AS upto FROM (
                                SELECT lateness_seconds, sum(declarations) AS n FROM indicator_lateness
                                WHERE ecosystem_id = \(ecosystem) AND partner_id = m.partner_id AND pallet_type_id = m.pallet_type_id
                                  AND lateness_seconds >= m.low AND lateness_seconds < m.high
                                GROUP BY 1) x) y
                        WHERE y.upto >= m.within_rank
                        ORDER BY y.lateness_seconds LIMIT 1) AS value
                FROM m
            )
            SELECT partner_id, pallet_type_id, min(value) FILTER (WHERE fraction = 0.5::float8),
                   min(value) FILTER (WHERE fraction = 0.9::float8)
            FROM v GROUP BY 1, 2
            """, logger: logger).decode((UUID, UUID, Int64?, Int64?).self) {
            let key = RelationshipKey(partner: partner, palletType: type)
            totals[key]?.latenessMedianSeconds = median
            totals[key]?.latenessP90Seconds = p90
        }
        state.toDate = totals
        // The periods the rows may need (every day, week and month from the one holding each
        // relationship's earliest touched day to today; to-date too where declarations lie
        // after `today`): their declaration figures and overdue notes, computed here. Weeks
        // and months have histograms of their own (sql/0015); days and the to-date span
        // are read from the declarations per day.
        // Every period end of every relationship, for the overdue notes.
        var periodKeys: [RelationshipKey] = [], ends: [Int32] = []
        var calendar = PeriodList(), daily = PeriodList()
        for key in keys {
            let fromDay = pairs[key]!
            for kind in PeriodKind.allCases {
                var start = kind.start(of: fromDay)
                while start <= today {
                    let end = kind.end(startingAt: start)
                    periodKeys.append(key); ends.append(Int32(end))
                    if kind == .day { daily.append(key, start, end) } else { calendar.append(key, start, end) }
                    start = end
                }
            }
            let firstDay = min(state.facts[key]?.map(\.day).min() ?? today, state.firstActivityDay[key] ?? today)
            state.firstDay[key] = firstDay
            // The to-date row: its notes always; its declarations here only where some lie
            // after `today` (otherwise they are in `toDate`).
            periodKeys.append(key); ends.append(Int32(today + 1))
            if late.contains(key) { daily.append(key, firstDay, today + 1) }
        }
        func record(_ row: (UUID, UUID, Int64, Int64, Int64, Int64?, Int64?, Int64)) {
            let (partner, type, start, end, count, median, p90, within) = row
            var stats = DeclarationStats()
            stats.declarations = count
            stats.latenessMedianSeconds = median
            stats.latenessP90Seconds = p90
            stats.declaredWithin24h = within
            state.periods[PeriodKey(key: RelationshipKey(partner: partner, palletType: type), start: Int(start), end: Int(end))] = stats
        }
        // Nearest-rank percentiles over the counted values: the smallest value whose running
        // count reaches ceil(f x n) (f x n in float8, as IndicatorMath.percentile computes it).
        // Declarations sharing a lateness are counted, not expanded (a batch has thousands).
        for try await row in try await connection.query("""
            WITH v AS (
                SELECT p.partner, p.pallet_type, p.s, p.e, l.lateness_seconds, sum(l.declarations) AS n
                FROM unnest(\(daily.partners)::uuid[], \(daily.types)::uuid[], \(daily.starts)::int4[], \(daily.ends)::int4[])
                     AS p(partner, pallet_type, s, e)
                CROSS JOIN LATERAL (
                    SELECT l.lateness_seconds, l.declarations FROM indicator_lateness l
                    WHERE l.ecosystem_id = \(ecosystem) AND l.partner_id = p.partner AND l.pallet_type_id = p.pallet_type
                      AND l.day >= p.s AND l.day < p.e AND l.declarations <> 0 OFFSET 0) l
                GROUP BY 1, 2, 3, 4, 5
            ), c AS (
                SELECT v.*, sum(n) OVER (PARTITION BY partner, pallet_type, s, e ORDER BY lateness_seconds) AS upto,
                       sum(n) OVER (PARTITION BY partner, pallet_type, s, e) AS total
                FROM v
            )
            SELECT partner, pallet_type, s::int8, e::int8, max(total)::int8,
                   min(lateness_seconds) FILTER (WHERE upto >= greatest(1, ceil(total::float8 * 0.5::float8))),
                   min(lateness_seconds) FILTER (WHERE upto >= greatest(1, ceil(total::float8 * 0.9::float8))),
                   coalesce(sum(n) FILTER (WHERE lateness_seconds <= 86400), 0)::int8
            FROM c GROUP BY 1, 2, 3, 4
            """, logger: logger).decode((UUID, UUID, Int64, Int64, Int64, Int64?, Int64?, Int64).self) {
            record(row)
        }
        // Weeks and months, as the to-date figures: each rank's bucket from the period's
        // histogram, then the value among that bucket's declarations, read day by day
        // through the primary key. The cost follows the buckets (a thousand at most per
        // period), not the period's declarations.
        for try await row in try await connection.query("""
            WITH c AS (
                SELECT p.partner, p.pallet_type, p.s, p.e, b.low, b.high, b.declarations AS n,
                       sum(b.declarations) OVER (PARTITION BY p.partner, p.pallet_type, p.s, p.e ORDER BY b.low) AS upto,
                       sum(b.declarations) OVER (PARTITION BY p.partner, p.pallet_type, p.s, p.e) AS total,
                       sum(b.within_24h) OVER (PARTITION BY p.partner, p.pallet_type, p.s, p.e) AS within
                FROM unnest(\(calendar.partners)::uuid[], \(calendar.types)::uuid[], \(calendar.starts)::int4[], \(calendar.ends)::int4[])
                     AS p(partner, pallet_type, s, e)
                JOIN indicator_period_lateness_buckets b
                  ON b.ecosystem_id = \(ecosystem) AND b.partner_id = p.partner AND b.pallet_type_id = p.pallet_type
                 AND b.period_start = p.s AND b.period_end = p.e AND b.declarations <> 0
            ), q AS (
                SELECT DISTINCT ON (c.partner, c.pallet_type, c.s, c.e, f.fraction)
                       c.partner, c.pallet_type, c.s, c.e, c.total, c.within, f.fraction, c.low, c.high,
                       greatest(1, ceil(c.total::float8 * f.fraction)) - (c.upto - c.n)::float8 AS within_rank
                FROM c CROSS JOIN (VALUES (0.5::float8), (0.9::float8)) AS f(fraction)
                WHERE c.upto >= greatest(1, ceil(c.total::float8 * f.fraction))
                ORDER BY c.partner, c.pallet_type, c.s, c.e, f.fraction, c.low
            ), v AS (
                SELECT q.*,
                       (SELECT y.lateness_seconds FROM (
                            SELECT x.lateness_seconds, sum(x.n) OVER (ORDER BY x.lateness_seconds) AS upto FROM (
                                SELECT l.lateness_seconds, sum(l.declarations) AS n
                                FROM generate_series(q.s, q.e - 1) AS d(day)
                                CROSS JOIN LATERAL (
                                    SELECT l.lateness_seconds, l.declarations FROM indicator_lateness l
                                    WHERE l.ecosystem_id = \(ecosystem) AND l.partner_id = q.partner AND l.pallet_type_id = q.pallet_type
                                      AND l.day = d.day AND l.lateness_seconds >= q.low AND l.lateness_seconds < q.high OFFSET 0) l
                                GROUP BY 1) x) y
                        WHERE y.upto >= q.within_rank
                        ORDER BY y.lateness_seconds LIMIT 1) AS value
                FROM q
            )
            SELECT partner, pallet_type, s::int8, e::int8, max(total)::int8,
                   min(value) FILTER (WHERE fraction = 0.5::float8), min(value) FILTER (WHERE fraction = 0.9::float8),
                   max(within)::int8
            FROM v GROUP BY 1, 2, 3, 4
            """, logger: logger).decode((UUID, UUID, Int64, Int64, Int64, Int64?, Int64?, Int64).self) {
            record(row)
        }
        for try await (partner, type, end, count, quantity) in try await connection.query("""
            WITH e AS (
                SELECT DISTINCT * FROM unnest(\(periodKeys.map(\.partner))::uuid[], \(periodKeys.map(\.palletType))::uuid[], \(ends)::int4[])
                AS e(partner, pallet_type, e)
            )
            -- Per end, the relationship's outstanding notes issued before it and due before
            -- its last day, counted in pallet_notes_outstanding_idx alone (sql/0015).
            SELECT e.partner, e.pallet_type, e.e::int8, n.count, n.quantity
            FROM e CROSS JOIN LATERAL (
                SELECT count(*)::int8 AS count, coalesce(sum(n.quantity - n.redeemed_quantity), 0)::int8 AS quantity
                FROM pallet_notes n
                WHERE n.ecosystem_id = \(ecosystem) AND n.issuer_id = e.partner AND n.pallet_type_id = e.pallet_type
                  AND NOT n.cancelled AND n.quantity > n.redeemed_quantity
                  AND n.due_date < date '1970-01-01' + (e.e - 1) AND n.issue_date < date '1970-01-01' + e.e) n
            WHERE n.count > 0
            """, logger: logger).decode((UUID, UUID, Int64, Int64, Int64).self) {
            state.overdueNotes[EndKey(key: RelationshipKey(partner: partner, palletType: type), end: Int(end))] = (count, quantity)
        }
        state.completeLateness = late
        // Contested declarations: from the contested movements the state keeps in step with
        // `discrepancies` (syncContested), a few per relationship.
        for try await (partner, type, day, count) in try await connection.query("""
            SELECT c.declarer_id, c.pallet_type_id, c.day::int8, count(*)::int8
            FROM indicator_contested c
            WHERE c.ecosystem_id = \(ecosystem) AND c.counted AND c.declarer_id = ANY(\(partners)::uuid[])
            GROUP BY 1, 2, 3
            """, logger: logger).decode((UUID, UUID, Int64, Int64).self) {
            let key = RelationshipKey(partner: partner, palletType: type)
            guard pairs[key] != nil else { continue }
            state.contested[key, default: [:]][Int(day)] = count
        }
        return state
    }
}
