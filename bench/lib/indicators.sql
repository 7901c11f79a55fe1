-- B4 reference: every row of the `indicators` table for one ecosystem (docs/indicators.md,
-- full recompute: day, week, month and to_date periods), computed by one set-based query.
--
--   psql -v eco="'<id>'" -v today=NULL -v store=1 -f bench/lib/indicators.sql    # rebuild the table (B4 timing)
--   psql -v eco="'<id>'" -v today=NULL -v compare=1 -f bench/lib/indicators.sql  # rows differing from the table
--
-- FIFO without a loop: the k-th pallet issued is matched with the k-th pallet consumed
-- (returned or written off), in fact order. A consumption that comes after its issue is a
-- matched pair (a return) or a write-off; one that comes before is a credit that covers
-- the issue. Write-offs beyond what is open are dropped: the running balance
-- S = open - credit is the only state that needs a recursion, and it is a window
-- aggregate (pg_temp.fifo_balance). Pairs come from cutting the cumulative issued and
-- consumed ranges at every boundary; stocks at a period's end from the cumulative
-- consumption before it. `today` NULL means the engine's (UTC day of now + 15 min).
\set ON_ERROR_STOP on
SET client_min_messages = warning;
SET max_parallel_workers_per_gather = 0;
SET work_mem = '256MB';
-- Hash joins over the CTEs (their row counts are misestimated) and no JIT compilation.
SET enable_nestloop = off;
SET jit = off;

CREATE OR REPLACE FUNCTION pg_temp.fifo_step(balance int8, ord int, quantity int8) RETURNS int8
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN ord = 0 THEN balance + quantity
                WHEN ord IN (1, 2) THEN balance - quantity
                ELSE greatest(balance - quantity, least(balance, 0)) END
$$;
DROP AGGREGATE IF EXISTS pg_temp.fifo_balance(int, int8);
CREATE AGGREGATE pg_temp.fifo_balance(int, int8) (SFUNC = pg_temp.fifo_step, STYPE = int8, INITCOND = '0');

-- Without -v store=1 the rows go to a temporary table (for the comparison); with it they
-- replace the ecosystem's rows in `indicators` in one transaction, as the engine does.
\if :{?store}
\set target indicators
BEGIN;
DELETE FROM indicators WHERE ecosystem_id = :eco::uuid;
\else
\set target bench_indicators
CREATE TEMP TABLE IF NOT EXISTS bench_indicators (LIKE indicators);
TRUNCATE bench_indicators;
\endif

INSERT INTO :target (ecosystem_id, partner_id, pallet_type_id, period, period_start, period_end, issued,
    spot_returned, later_returned, declared_losses, scrapped, outstanding, outstanding_value_minor, currency,
    aging_0_30, aging_31_60, aging_61_90, aging_90_plus, presumed_losses, rotation_average_days,
    rotation_median_days, rotation_p90_days, overdue_notes_count, overdue_notes_quantity,
    overdue_notes_value_minor, declarations, lateness_median_seconds, lateness_p90_seconds, declared_within_24h,
    contested, computed_at)
WITH settings AS (
    SELECT e.id AS eco, m.id AS shipper, e.loss_horizon_days AS horizon,
           coalesce(:today::int, floor((extract(epoch FROM now()) + 900) / 86400)::int) AS today
    FROM ecosystems e JOIN memberships m ON m.ecosystem_id = e.id AND m.role = 'shipper'
    WHERE e.id = :eco::uuid
),
-- Facts (docs/indicators.md section 1), summed per partner, type, kind and day.
mv AS (
    SELECT m.id, m.kind, m.from_party_id, m.to_party_id, floor(extract(epoch FROM m.event_time) / 86400)::int AS day
    FROM movements m, settings s
    WHERE m.ecosystem_id = s.eco AND m.status <> 'reversed' AND m.reverses_id IS NULL
      AND (m.from_party_id = s.shipper OR m.to_party_id = s.shipper OR m.kind IN ('loss', 'scrap'))
),
ln AS (
    SELECT mv.*, l.pallet_type_id, l.quantity, l.exchanged_quantity
    FROM mv JOIN movement_lines l ON l.ecosystem_id = :eco::uuid AND l.movement_id = mv.id
),
facts AS (
    SELECT partner, pallet_type_id AS type, ord, day, sum(quantity)::int8 AS q FROM (
        SELECT to_party_id AS partner, pallet_type_id, 0 AS ord, day, quantity FROM ln, settings s
         WHERE from_party_id = s.shipper AND to_party_id <> s.shipper AND kind IN ('pickup', 'delivery', 'transfer', 'return')
        UNION ALL SELECT to_party_id, pallet_type_id, 1, day, exchanged_quantity FROM ln, settings s
         WHERE from_party_id = s.shipper AND to_party_id <> s.shipper AND exchanged_quantity > 0
        UNION ALL SELECT from_party_id, pallet_type_id, 2, day, quantity FROM ln, settings s
         WHERE to_party_id = s.shipper AND from_party_id <> s.shipper AND kind IN ('pickup', 'delivery', 'transfer', 'return')
        UNION ALL SELECT from_party_id, pallet_type_id, 0, day, exchanged_quantity FROM ln, settings s
         WHERE to_party_id = s.shipper AND from_party_id <> s.shipper AND exchanged_quantity > 0
        UNION ALL SELECT from_party_id, pallet_type_id, 3, day, quantity FROM ln, settings s
         WHERE kind = 'loss' AND to_party_id = s.shipper AND from_party_id <> s.shipper
        UNION ALL SELECT from_party_id, pallet_type_id, 4, day, quantity FROM ln, settings s
         WHERE kind = 'scrap' AND from_party_id <> s.shipper
    ) f
    WHERE quantity > 0
    GROUP BY 1, 2, 3, 4
),
-- FIFO state after each fact, in (day, kind) order: S = open - credit.
seq AS (
    SELECT f.*, row_number() OVER w AS pos, pg_temp.fifo_balance(ord, q) OVER w AS balance
    FROM facts f
    WINDOW w AS (PARTITION BY partner, type ORDER BY day, ord ROWS UNBOUNDED PRECEDING)
),
eff AS (
    SELECT s.*,
           CASE WHEN ord = 0 THEN q ELSE 0 END AS issued_q,
           CASE WHEN ord IN (1, 2) THEN q WHEN ord IN (3, 4)
                THEN coalesce(lag(balance) OVER (PARTITION BY partner, type ORDER BY pos), 0) - balance ELSE 0 END AS consumed
    FROM seq s
),
cum AS (
    SELECT e.*, sum(issued_q) OVER w AS i_end, sum(consumed) OVER w AS c_end
    FROM eff e
    WINDOW w AS (PARTITION BY partner, type ORDER BY pos ROWS UNBOUNDED PRECEDING)
),
-- Cut the issued and consumed unit ranges at every boundary: each segment is one issue
-- fact against one consumption fact. The first issue (consumption) ending at or after a
-- boundary is found by a running min from the top, over keys that grow with the ranges.
bounds AS (
    SELECT partner, type, b, min(ikey) AS ikey, min(ckey) AS ckey FROM (
        SELECT partner, type, i_end AS b, pos * 1048576 + day AS ikey, NULL::int8 AS ckey FROM cum WHERE ord = 0
        UNION ALL SELECT partner, type, c_end, NULL, (pos * 1048576 + day) * 8 + ord FROM cum WHERE consumed > 0
    ) x GROUP BY 1, 2, 3
),
segments AS (
    SELECT partner, type, b - coalesce(lag(b) OVER (PARTITION BY partner, type ORDER BY b), 0) AS q,
           min(ikey) OVER (PARTITION BY partner, type ORDER BY b DESC ROWS UNBOUNDED PRECEDING) AS ikey,
           min(ckey) OVER (PARTITION BY partner, type ORDER BY b DESC ROWS UNBOUNDED PRECEDING) AS ckey
    FROM bounds
),
pairs AS (
    SELECT partner, type, ((ckey / 8) % 1048576)::int AS return_day,
           ((ckey / 8) % 1048576 - ikey % 1048576)::int AS age, sum(q) AS q
    FROM segments
    WHERE ckey / 8 / 1048576 > ikey / 1048576 AND ckey % 8 IN (1, 2) AND q > 0
    GROUP BY 1, 2, 3, 4
),
-- Declarations of each partner (lateness, contests), one per movement, partner and type.
activity AS (
    SELECT DISTINCT ON (m.id, p.partner, l.pallet_type_id) p.partner, l.pallet_type_id AS type,
           floor(extract(epoch FROM m.event_time) / 86400)::int AS day, m.lateness_seconds AS lateness,
           m.declarer_id = p.partner AS by_partner,
           EXISTS (SELECT 1 FROM discrepancies d WHERE d.ecosystem_id = m.ecosystem_id AND d.movement_id = m.id) AS contested
    FROM movements m
    JOIN movement_lines l ON l.ecosystem_id = m.ecosystem_id AND l.movement_id = m.id
    CROSS JOIN LATERAL (VALUES (m.from_party_id), (m.to_party_id), (m.declarer_id)) AS p(partner)
    CROSS JOIN settings s
    WHERE m.ecosystem_id = s.eco AND m.reverses_id IS NULL AND m.source NOT IN ('reversal', 'correction')
      AND p.partner IS NOT NULL AND p.partner <> s.shipper
),
declared AS (SELECT * FROM activity WHERE by_partner),
rel AS (
    SELECT partner, type, least(min(day), (SELECT today FROM settings)) AS first_day FROM (
        SELECT partner, type, day FROM facts UNION ALL SELECT partner, type, day FROM activity) x
    GROUP BY 1, 2
),
-- The periods of each relationship (IndicatorEngine.rows).
periods AS (
    SELECT r.partner, r.type, 'day' AS period, d AS s, d + 1 AS e
    FROM rel r, settings st, generate_series(greatest(r.first_day, st.today - 91), st.today) d
    UNION ALL
    SELECT r.partner, r.type, 'week', w, w + 7
    FROM rel r, settings st,
         generate_series(r.first_day - (((r.first_day + 3) % 7) + 7) % 7, st.today, 7) w
    UNION ALL
    SELECT r.partner, r.type, 'month', (mo::date - date '1970-01-01'),
           ((mo + interval '1 month')::date - date '1970-01-01')
    FROM rel r, settings st,
         generate_series(date_trunc('month', date '1970-01-01' + r.first_day), date '1970-01-01' + st.today,
                         interval '1 month') mo
    UNION ALL
    SELECT r.partner, r.type, 'to_date', r.first_day, st.today + 1 FROM rel r, settings st
),
-- Cumulative figures before each day d, per relationship: flows of [s, e) are
-- cumulative(e) - cumulative(s); stocks at a period's end read cumulative(e).
notes AS (
    SELECT issuer_id AS partner, pallet_type_id AS type, (due_date - date '1970-01-01') AS due_day,
           (quantity - redeemed_quantity)::int8 AS open
    FROM pallet_notes WHERE ecosystem_id = :eco::uuid AND NOT cancelled AND quantity > redeemed_quantity
),
daily AS (
    SELECT partner, type, day + 1 AS d,
           sum(q) FILTER (WHERE ord = 0) AS issued, sum(q) FILTER (WHERE ord = 1) AS spot,
           sum(q) FILTER (WHERE ord = 2) AS later, sum(q) FILTER (WHERE ord = 3) AS losses,
           sum(q) FILTER (WHERE ord = 4) AS scrapped, max(c_end) AS c_end, 0::int8 AS notes, 0::int8 AS note_q
    FROM cum GROUP BY 1, 2, 3
    UNION ALL
    -- A note counts as overdue at a period ending e when due_day < e - 1.
    SELECT partner, type, due_day + 2, 0, 0, 0, 0, 0, 0, count(*), sum(open) FROM notes GROUP BY 1, 2, 3
    UNION ALL
    SELECT r.partner, r.type, g.d, 0, 0, 0, 0, 0, 0, 0, 0
    FROM rel r CROSS JOIN settings st
    CROSS JOIN LATERAL generate_series(least(r.first_day, st.today - 91) - 31, st.today + 32) g(d)
),
grid AS (
    SELECT partner, type, d,
           sum(sum(issued)) OVER w AS issued, sum(sum(spot)) OVER w AS spot, sum(sum(later)) OVER w AS later,
           sum(sum(losses)) OVER w AS losses, sum(sum(scrapped)) OVER w AS scrapped,
           coalesce(max(max(c_end)) OVER w, 0) AS c_end, sum(sum(notes)) OVER w AS notes, sum(sum(note_q)) OVER w AS note_q
    FROM daily
    GROUP BY partner, type, d
    WINDOW w AS (PARTITION BY partner, type ORDER BY d ROWS UNBOUNDED PRECEDING)
),
-- Open units at a period's end e: issued units past the consumption so far, C(e). Those
-- issued on days [lo, hi) number max(0, I(hi) - max(I(lo), C(e))) (I = cumulative issued);
-- the aging buckets and presumed losses are such day ranges.
figures AS (
    SELECT p.*, ge.issued - gs.issued AS issued, ge.spot - gs.spot AS spot, ge.later - gs.later AS later,
           ge.losses - gs.losses AS losses, ge.scrapped - gs.scrapped AS scrapped,
           greatest(0, ge.issued - ge.c_end) AS outstanding,
           greatest(0, ge.issued - greatest(coalesce(g31.issued, 0), ge.c_end)) AS a0,
           greatest(0, coalesce(g31.issued, 0) - greatest(coalesce(g61.issued, 0), ge.c_end)) AS a1,
           greatest(0, coalesce(g61.issued, 0) - greatest(coalesce(g91.issued, 0), ge.c_end)) AS a2,
           greatest(0, coalesce(g91.issued, 0) - ge.c_end) AS a3,
           greatest(0, coalesce(gh.issued, 0) - ge.c_end) AS presumed,
           ge.notes AS overdue_notes, ge.note_q AS overdue_quantity
    FROM periods p CROSS JOIN settings st
    JOIN grid gs ON gs.partner = p.partner AND gs.type = p.type AND gs.d = p.s
    JOIN grid ge ON ge.partner = p.partner AND ge.type = p.type AND ge.d = p.e
    LEFT JOIN grid g31 ON g31.partner = p.partner AND g31.type = p.type AND g31.d = p.e - 31
    LEFT JOIN grid g61 ON g61.partner = p.partner AND g61.type = p.type AND g61.d = p.e - 61
    LEFT JOIN grid g91 ON g91.partner = p.partner AND g91.type = p.type AND g91.d = p.e - 91
    LEFT JOIN grid gh ON gh.partner = p.partner AND gh.type = p.type AND gh.d = p.e - 1 - st.horizon
),
-- Each return day and each declaration day falls in one period of each kind.
periods_of AS (
    SELECT 'day' AS period, 0 AS k UNION ALL SELECT 'week', 1 UNION ALL SELECT 'month', 2 UNION ALL SELECT 'to_date', 3
),
-- The period (of each kind) that a day falls in, as the period's start day.
pair_periods AS MATERIALIZED (
    SELECT pr.partner, pr.type, k.period, pr.age, pr.q,
           CASE k.k WHEN 0 THEN pr.return_day WHEN 1 THEN pr.return_day - ((pr.return_day + 3) % 7 + 7) % 7
                    WHEN 2 THEN (date_trunc('month', date '1970-01-01' + pr.return_day)::date - date '1970-01-01')
                    ELSE r.first_day END AS s
    FROM pairs pr CROSS JOIN periods_of k JOIN rel r ON r.partner = pr.partner AND r.type = pr.type
),
declared_periods AS MATERIALIZED (
    SELECT d.partner, d.type, k.period, d.lateness, d.contested,
           CASE k.k WHEN 0 THEN d.day WHEN 1 THEN d.day - ((d.day + 3) % 7 + 7) % 7
                    WHEN 2 THEN (date_trunc('month', date '1970-01-01' + d.day)::date - date '1970-01-01')
                    ELSE r.first_day END AS s
    FROM declared d CROSS JOIN periods_of k JOIN rel r ON r.partner = d.partner AND r.type = d.type
),
rotation AS (
    SELECT partner, type, period, s, sum(age * q)::float8 / sum(q) AS average,
           min(age) FILTER (WHERE running >= greatest(1, ceil(total * 0.5::float8))) AS median,
           min(age) FILTER (WHERE running >= greatest(1, ceil(total * 0.9::float8))) AS p90
    FROM (
        SELECT x.partner, x.type, x.period, x.s, x.age, x.q,
               sum(x.q) OVER (PARTITION BY x.partner, x.type, x.period, x.s ORDER BY x.age) AS running,
               sum(x.q) OVER (PARTITION BY x.partner, x.type, x.period, x.s) AS total
        FROM pair_periods x JOIN periods p USING (partner, type, period, s)
    ) x
    GROUP BY 1, 2, 3, 4
),
-- Lateness percentiles by rank (nearest rank, as IndicatorMath.percentile): one sort of
-- the declarations by period and lateness, then the element at ceil(n x f).
declarations AS (
    SELECT partner, type, period, s, max(n) AS n,
           min(lateness) FILTER (WHERE rn = greatest(1, ceil(n * 0.5::float8))) AS late_median,
           min(lateness) FILTER (WHERE rn = greatest(1, ceil(n * 0.9::float8))) AS late_p90,
           count(*) FILTER (WHERE lateness <= 86400) AS within_24h, count(*) FILTER (WHERE contested) AS contested
    FROM (
        SELECT x.partner, x.type, x.period, x.s, x.lateness, x.contested,
               row_number() OVER w AS rn, count(*) OVER (PARTITION BY x.partner, x.type, x.period, x.s) AS n
        FROM declared_periods x JOIN periods p USING (partner, type, period, s)
        WINDOW w AS (PARTITION BY x.partner, x.type, x.period, x.s ORDER BY x.lateness)
    ) x
    GROUP BY 1, 2, 3, 4
)
SELECT :eco::uuid, f.partner, f.type, f.period::indicator_period, date '1970-01-01' + f.s, date '1970-01-01' + f.e,
       f.issued, f.spot, f.later, f.losses, f.scrapped, f.outstanding, v.unit_value_minor * f.outstanding,
       v.currency, f.a0, f.a1, f.a2, f.a3, f.presumed,
       r.average, r.median, r.p90, f.overdue_notes, f.overdue_quantity, v.unit_value_minor * f.overdue_quantity,
       coalesce(d.n, 0), d.late_median, d.late_p90, coalesce(d.within_24h, 0), coalesce(d.contested, 0), now()
FROM figures f
LEFT JOIN rotation r USING (partner, type, period, s)
LEFT JOIN declarations d USING (partner, type, period, s)
LEFT JOIN LATERAL (
    SELECT unit_value_minor, currency FROM pallet_type_values
    WHERE ecosystem_id = :eco::uuid AND pallet_type_id = f.type AND valid_from <= date '1970-01-01' + f.e - 1
    ORDER BY valid_from DESC LIMIT 1) v ON true;
\if :{?store}
COMMIT;
\endif

\if :{?compare}
-- Rows of the stored table (the engine's last recompute) and of this query that differ.
WITH a AS (
    SELECT partner_id, pallet_type_id, period, period_start, period_end, issued, spot_returned, later_returned,
           declared_losses, scrapped, outstanding, outstanding_value_minor, currency, aging_0_30, aging_31_60, aging_61_90,
           aging_90_plus, presumed_losses, round(rotation_average_days::numeric, 9) AS rot, rotation_median_days,
           rotation_p90_days, overdue_notes_count, overdue_notes_quantity, overdue_notes_value_minor, declarations,
           lateness_median_seconds, lateness_p90_seconds, declared_within_24h, contested
    FROM indicators WHERE ecosystem_id = :eco::uuid
), b AS (
    SELECT partner_id, pallet_type_id, period, period_start, period_end, issued, spot_returned, later_returned,
           declared_losses, scrapped, outstanding, outstanding_value_minor, currency, aging_0_30, aging_31_60, aging_61_90,
           aging_90_plus, presumed_losses, round(rotation_average_days::numeric, 9), rotation_median_days,
           rotation_p90_days, overdue_notes_count, overdue_notes_quantity, overdue_notes_value_minor, declarations,
           lateness_median_seconds, lateness_p90_seconds, declared_within_24h, contested
    FROM bench_indicators
)
SELECT (SELECT count(*) FROM (SELECT * FROM a EXCEPT ALL SELECT * FROM b) x) + (SELECT count(*) FROM (SELECT * FROM b EXCEPT ALL SELECT * FROM a) y)
       || ' of ' || (SELECT count(*) FROM a) || '/' || (SELECT count(*) FROM b);
\endif
