-- The worker: a job queue on PostgreSQL, indicator tables with their watermark, alerts
-- and webhooks.

CREATE TYPE job_state AS ENUM ('queued', 'running', 'done', 'failed');

CREATE TABLE jobs (
    id bigint GENERATED ALWAYS AS IDENTITY,
    ecosystem_id uuid,
    kind text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    state job_state NOT NULL DEFAULT 'queued',
    run_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 5,
    -- A running job belongs to one worker until its lease expires; a killed worker's job
    -- is then taken again by another.
    locked_by text,
    locked_until timestamptz,
    last_error text,
    progress text,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CONSTRAINT jobs_pkey PRIMARY KEY (id),
    CONSTRAINT jobs_attempts_range CHECK (attempts >= 0 AND max_attempts BETWEEN 1 AND 100)
);
-- What a worker looks for: queued and due, or running with an expired lease.
CREATE INDEX jobs_ready_idx ON jobs (run_at) WHERE state IN ('queued', 'running');
-- At most one queued job of a kind per ecosystem and key: schedules and triggers dedupe.
CREATE UNIQUE INDEX jobs_one_queued ON jobs (coalesce(ecosystem_id, '00000000-0000-0000-0000-000000000000'), kind,
    coalesce(payload->>'dedupe', '')) WHERE state = 'queued';

-- How far the indicators have read the ledger, per ecosystem (movements.seq).
CREATE TABLE indicator_watermarks (
    ecosystem_id uuid NOT NULL,
    last_seq bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT indicator_watermarks_pkey PRIMARY KEY (ecosystem_id)
);

CREATE TYPE indicator_period AS ENUM ('day', 'week', 'month', 'to_date');

-- Per ecosystem x partner x pallet type x period: the figures of docs/indicators.md.
CREATE TABLE indicators (
    ecosystem_id uuid NOT NULL,
    partner_id uuid NOT NULL,
    pallet_type_id uuid NOT NULL,
    period indicator_period NOT NULL,
    period_start date NOT NULL,
    period_end date NOT NULL,
    issued bigint NOT NULL,
    spot_returned bigint NOT NULL,
    later_returned bigint NOT NULL,
    declared_losses bigint NOT NULL,
    scrapped bigint NOT NULL,
    outstanding bigint NOT NULL,
    outstanding_value_minor bigint,
    currency char(3),
    aging_0_30 bigint NOT NULL,
    aging_31_60 bigint NOT NULL,
    aging_61_90 bigint NOT NULL,
    aging_90_plus bigint NOT NULL,
    presumed_losses bigint NOT NULL,
    rotation_average_days double precision,
    rotation_median_days integer,
    rotation_p90_days integer,
    overdue_notes_count bigint NOT NULL,
    overdue_notes_quantity bigint NOT NULL,
    overdue_notes_value_minor bigint,
    declarations bigint NOT NULL,
    lateness_median_seconds bigint,
    lateness_p90_seconds bigint,
    declared_within_24h bigint NOT NULL,
    contested bigint NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT indicators_pkey PRIMARY KEY (ecosystem_id, partner_id, pallet_type_id, period, period_start)
);
CREATE INDEX indicators_period_idx ON indicators (ecosystem_id, period, period_start);

CREATE TABLE alert_rules (
    ecosystem_id uuid NOT NULL,
    kind text NOT NULL,
    threshold double precision NOT NULL,
    active boolean NOT NULL DEFAULT true,
    CONSTRAINT alert_rules_pkey PRIMARY KEY (ecosystem_id, kind),
    CONSTRAINT alert_rules_kind CHECK (kind IN ('restitution_below', 'balance_above', 'notes_overdue',
                                                'declarations_late', 'discrepancy_open_days'))
);

CREATE TABLE alerts (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    kind text NOT NULL,
    partner_id uuid,
    pallet_type_id uuid,
    -- Same condition, same period: one alert, however often the worker looks.
    dedupe_key text NOT NULL,
    message text NOT NULL,
    value double precision,
    threshold double precision,
    created_at timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    acknowledged_by uuid,
    CONSTRAINT alerts_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT alerts_dedupe_key UNIQUE (ecosystem_id, dedupe_key)
);

CREATE TABLE webhooks (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    url text NOT NULL,
    -- HMAC-SHA256 key for the X-PalletFlow-Signature header; shown once at creation.
    secret text NOT NULL,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhooks_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT webhooks_url_scheme CHECK (url ~ '^https?://')
);

CREATE TABLE webhook_deliveries (
    ecosystem_id uuid NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    webhook_id uuid NOT NULL,
    alert_id uuid,
    status integer,
    error text,
    attempt integer NOT NULL,
    delivered_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (ecosystem_id, id)
);

-- Monthly statements the worker issued to each partner: what was shown, so an
-- acknowledgement (statement_answers) can be matched to it later.
CREATE TABLE statements_issued (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    party_id uuid NOT NULL,
    counterparty_id uuid NOT NULL,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    statement_hash text NOT NULL,
    closing jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT statements_issued_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT statements_issued_once UNIQUE (ecosystem_id, party_id, counterparty_id, period_start)
);
