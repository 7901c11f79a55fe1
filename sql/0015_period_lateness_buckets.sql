-- Lateness histograms per week and month (issue #8, B5; docs/indicators.md section 4).
--
-- An incremental update rewrites the week and month rows of every relationship the new
-- movements touch. Their median and p90 lateness were computed from indicator_lateness,
-- one row per declaration day and second of lateness: for the busiest carriers of a
-- 10M-movement ledger, a month holds over a hundred thousand rows, so the update cost
-- followed the month's volume (3.4 to 3.6 s at 10M) rather than the change. Kept per
-- period in the buckets of indicator_lateness_buckets (about a thousand at most per
-- period), the update finds each percentile's bucket here, then its value among that
-- bucket's declarations, day by day, in indicator_lateness. Derived data: moved by every
-- update with the rest of the state, rebuilt with it.
CREATE TABLE indicator_period_lateness_buckets (
    ecosystem_id uuid NOT NULL,
    partner_id uuid NOT NULL,
    pallet_type_id uuid NOT NULL,
    -- The period [period_start, period_end) in UTC day numbers: a week (from Monday) or a
    -- calendar month; a month starting on a Monday differs from that week by its end.
    period_start integer NOT NULL,
    period_end integer NOT NULL,
    low bigint NOT NULL,
    high bigint NOT NULL,
    declarations bigint NOT NULL,
    -- Of these, declared within 24 h of the event (lateness <= 86,400 s): 86,400 falls
    -- inside a bucket, so it is counted here rather than from the bounds.
    within_24h bigint NOT NULL,
    CONSTRAINT indicator_period_lateness_buckets_pkey
        PRIMARY KEY (ecosystem_id, partner_id, pallet_type_id, period_start, period_end, low)
);

-- The state already built holds every declaration in indicator_lateness: the histograms
-- are derived from it, exactly as an update adds to them (same buckets, same periods).
-- At 1M movements that is a million rows in and out; with the default work_mem the
-- aggregate spills to disk (29 s beside other work, 15 s in memory).
SET LOCAL work_mem = '256MB';
INSERT INTO indicator_period_lateness_buckets
    (ecosystem_id, partner_id, pallet_type_id, period_start, period_end, low, high, declarations, within_24h)
SELECT ecosystem_id, partner_id, pallet_type_id, p.period_start, p.period_end,
       (lateness_seconds >> s) << s, ((lateness_seconds >> s) << s) + (1::int8 << s),
       sum(declarations)::int8, coalesce(sum(declarations) FILTER (WHERE lateness_seconds <= 86400), 0)::int8
FROM (
    SELECT l.*,
           CASE WHEN lateness_seconds < 128 THEN 0
                ELSE length(ltrim(lateness_seconds::bit(64)::text, '0')) - 7 END AS s,
           date_trunc('month', (date '1970-01-01' + day)::timestamp)::date - date '1970-01-01' AS month_start,
           (date_trunc('month', (date '1970-01-01' + day)::timestamp) + interval '1 month')::date - date '1970-01-01' AS month_end
    FROM indicator_lateness l
) l
CROSS JOIN LATERAL (VALUES (day - ((day + 3) % 7 + 7) % 7, day - ((day + 3) % 7 + 7) % 7 + 7),
                           (month_start, month_end)) AS p(period_start, period_end)
GROUP BY 1, 2, 3, 4, 5, 6, 7;

-- The same updates count each touched relationship's overdue pallet notes for every period
-- end they write: through pallet_notes_issuer_idx that read every note the partner ever
-- issued, for every end (1.0 s of a 1.9 s update at 10M movements, 555,532 notes). Only
-- outstanding notes count, and each end needs those due before it: a partial index on
-- them, ordered by due date and carrying what is counted, is read alone.
CREATE INDEX pallet_notes_outstanding_idx ON pallet_notes (ecosystem_id, issuer_id, pallet_type_id, due_date)
    INCLUDE (issue_date, quantity, redeemed_quantity)
    WHERE NOT cancelled AND quantity > redeemed_quantity;
