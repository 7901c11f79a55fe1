-- What an incremental indicator update reads, kept close together (issue #8, B5 at 10M;
-- docs/performance.md change 24).
--
-- After a batch, the update reads back the touched relationships' histograms and, per
-- percentile, one bucket's declarations. At 10M movements, EXPLAIN (ANALYZE, BUFFERS) of
-- those reads showed one buffer per row read: 49,539 buffers for 48,638 bucket rows of the
-- busiest carriers' current weeks and months, and a heap visit per declaration row for the
-- whole-history percentiles (about 2,000 rows per lookup), 450 ms of a 1.2 s update.

-- The whole-history percentiles read (lateness, count) within one bucket: carrying the
-- count in the index lets them read the index alone.
DROP INDEX indicator_lateness_value_idx;
SET LOCAL maintenance_work_mem = '512MB';
CREATE INDEX indicator_lateness_value_idx ON indicator_lateness (ecosystem_id, partner_id, pallet_type_id, lateness_seconds)
    INCLUDE (declarations);

-- Every update adds to the current period's buckets, the same rows again and again. On full
-- pages each new version went to another page, so a period's thousand buckets ended on a
-- thousand pages. Half-empty pages keep the new versions beside the old ones (HOT updates:
-- no indexed column changes), so a relationship's buckets stay on a few pages. The rewrite
-- (CLUSTER, in key order) applies the fill factor to the rows already there.
ALTER TABLE indicator_lateness_buckets SET (fillfactor = 50);
ALTER TABLE indicator_period_lateness_buckets SET (fillfactor = 50);
CLUSTER indicator_lateness_buckets USING indicator_lateness_buckets_pkey;
CLUSTER indicator_period_lateness_buckets USING indicator_period_lateness_buckets_pkey;
ANALYZE indicator_lateness_buckets, indicator_period_lateness_buckets;
