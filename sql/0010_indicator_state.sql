-- Running state of the indicators (issue #8, docs/indicators.md section 4): what an
-- incremental update needs from a relationship's whole history, kept per relationship
-- and day and moved forward from the movements after the watermark, so an update reads
-- what changed instead of rereading the ledger. Derived data: rebuilt by every full
-- recompute, and from the ledger when `state_seq` is NULL.

-- How far the state has read movements.seq (NULL: not built yet).
ALTER TABLE indicator_watermarks ADD COLUMN state_seq bigint;

-- The facts of section 1, summed per partner, pallet type, kind and day. A reversal
-- subtracts what its original added; rows summing to 0 are ignored.
CREATE TABLE indicator_facts (
    ecosystem_id uuid NOT NULL,
    partner_id uuid NOT NULL,
    pallet_type_id uuid NOT NULL,
    kind text NOT NULL,
    day integer NOT NULL,
    quantity bigint NOT NULL,
    CONSTRAINT indicator_facts_pkey PRIMARY KEY (ecosystem_id, partner_id, pallet_type_id, kind, day)
);

-- Per relationship: the first day of any declaration involving the partner with the
-- pallet type (the relationship's first day, with its first fact), and the partner's own
-- declarations over the whole history: how many, how many within 24 h, the last day.
CREATE TABLE indicator_activity (
    ecosystem_id uuid NOT NULL,
    partner_id uuid NOT NULL,
    pallet_type_id uuid NOT NULL,
    first_day integer NOT NULL,
    declarations bigint NOT NULL,
    within_24h bigint NOT NULL,
    last_day integer,
    CONSTRAINT indicator_activity_pkey PRIMARY KEY (ecosystem_id, partner_id, pallet_type_id)
);

-- The partner's own declarations per day and lateness (seconds): how many.
CREATE TABLE indicator_lateness (
    ecosystem_id uuid NOT NULL,
    partner_id uuid NOT NULL,
    pallet_type_id uuid NOT NULL,
    day integer NOT NULL,
    lateness_seconds bigint NOT NULL,
    declarations bigint NOT NULL,
    CONSTRAINT indicator_lateness_pkey PRIMARY KEY (ecosystem_id, partner_id, pallet_type_id, day, lateness_seconds)
);
-- The to-date percentiles look values up by lateness within one bucket.
CREATE INDEX indicator_lateness_value_idx ON indicator_lateness (ecosystem_id, partner_id, pallet_type_id, lateness_seconds);

-- The same declarations over the whole history, per bucket of lateness [low, high): exact
-- below 128 s, then 64 buckets per power of two (a 2% relative width), so a relationship
-- has about a thousand buckets at most whatever its history. The to-date percentiles find
-- their bucket here, then their value among the bucket's declarations.
CREATE TABLE indicator_lateness_buckets (
    ecosystem_id uuid NOT NULL,
    partner_id uuid NOT NULL,
    pallet_type_id uuid NOT NULL,
    low bigint NOT NULL,
    high bigint NOT NULL,
    declarations bigint NOT NULL,
    CONSTRAINT indicator_lateness_buckets_pkey PRIMARY KEY (ecosystem_id, partner_id, pallet_type_id, low)
);

-- Movements with a discrepancy (open or resolved), per pallet type of their lines: the
-- contested declarations. Discrepancies come without a movement of their own, so each
-- update adds the new ones (and drops any whose discrepancies are gone) by comparing
-- with `discrepancies`, a small table.
CREATE TABLE indicator_contested (
    ecosystem_id uuid NOT NULL,
    movement_id uuid NOT NULL,
    pallet_type_id uuid NOT NULL,
    declarer_id uuid NOT NULL,
    day integer NOT NULL,
    -- Counted as a declaration: neither a reversal nor a correction.
    counted boolean NOT NULL,
    CONSTRAINT indicator_contested_pkey PRIMARY KEY (ecosystem_id, movement_id, pallet_type_id)
);
