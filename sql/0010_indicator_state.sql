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

-- The first day of any declaration involving the partner with the pallet type (the
-- relationship's first day, with its first fact).
CREATE TABLE indicator_activity (
    ecosystem_id uuid NOT NULL,
    partner_id uuid NOT NULL,
    pallet_type_id uuid NOT NULL,
    first_day integer NOT NULL,
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
-- The to-date percentiles look values up by lateness within one minute.
CREATE INDEX indicator_lateness_value_idx ON indicator_lateness (ecosystem_id, partner_id, pallet_type_id, lateness_seconds);

-- The same declarations over the whole history, per minute of lateness
-- (floor(lateness_seconds / 60)): the to-date percentiles find their minute here.
CREATE TABLE indicator_lateness_minutes (
    ecosystem_id uuid NOT NULL,
    partner_id uuid NOT NULL,
    pallet_type_id uuid NOT NULL,
    minute bigint NOT NULL,
    declarations bigint NOT NULL,
    CONSTRAINT indicator_lateness_minutes_pkey PRIMARY KEY (ecosystem_id, partner_id, pallet_type_id, minute)
);
