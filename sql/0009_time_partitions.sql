-- Time partitions for the ledger's three big tables (issue #10, docs/scaling.md).
--
-- movements, movement_lines and ledger_entries are range-partitioned by month on the
-- movement id. Movement ids are time-ordered (newID(): the first 48 bits are the Unix
-- milliseconds of the recording, as in UUIDv7), so a month of recording is a range of ids.
-- Partitioning on the id rather than on a timestamp column keeps every primary and foreign
-- key as it was (PostgreSQL requires the partition key inside each unique constraint), puts
-- a movement's lines and entries in the same month as the movement, and lets a whole month
-- be archived at once (`palletflow archive`). Ids that carry no such time (rows written by
-- other tools) land in the DEFAULT partition, which is correct, only never archived.

-- The first id of the month holding `instant` (UTC months).
CREATE FUNCTION ledger_month_first_id(instant timestamptz) RETURNS uuid
    LANGUAGE sql STABLE STRICT PARALLEL SAFE AS $$
    SELECT (lpad(to_hex((extract(epoch FROM date_trunc('month', instant, 'UTC')) * 1000)::bigint), 12, '0')
            || '00000000000000000000')::uuid
$$;

-- The recording instant a time-ordered movement id carries (milliseconds).
CREATE FUNCTION movement_id_time(id uuid) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT to_timestamp((('x' || left(replace(id::text, '-', ''), 12))::bit(48)::int8) / 1000.0)
$$;

-- Free the current names: the partitioned tables take them, the old ones are copied and dropped.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT i.indexrelid::regclass::text AS name FROM pg_index i
             WHERE i.indrelid IN ('movements'::regclass, 'movement_lines'::regclass, 'ledger_entries'::regclass) LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', r.name, r.name || '_0008');
    END LOOP;
END $$;
ALTER TABLE movements RENAME TO movements_0008;
ALTER TABLE movement_lines RENAME TO movement_lines_0008;
ALTER TABLE ledger_entries RENAME TO ledger_entries_0008;
ALTER SEQUENCE movements_seq_seq RENAME TO movements_0008_seq_seq;
ALTER SEQUENCE ledger_entries_seq_seq RENAME TO ledger_entries_0008_seq_seq;

-- PostgreSQL 15 has no identity columns on partitioned tables: an owned sequence instead.
CREATE SEQUENCE movements_seq_seq;
CREATE TABLE movements (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    -- Order of recording: cursor pagination and the worker's watermark follow it.
    seq bigint NOT NULL DEFAULT nextval('movements_seq_seq'),
    kind movement_kind NOT NULL,
    event_time timestamptz NOT NULL,
    -- The offset the declarer wrote the event time with, in minutes east of UTC.
    event_offset_minutes smallint,
    record_time timestamptz NOT NULL,
    declarer_id uuid NOT NULL,
    from_party_id uuid,
    from_site_id uuid,
    to_party_id uuid,
    to_site_id uuid,
    -- The party asked to confirm; NULL when the movement involves one party only.
    counterparty_id uuid,
    status movement_status NOT NULL,
    confirmed boolean NOT NULL,
    confirmed_at timestamptz,
    confirmed_by uuid,
    delivery_note text,
    cmr text,
    order_reference text,
    pallet_note_reference text,
    evidence_sha256 text,
    evidence_url text,
    note text,
    -- A reversal points at the movement it cancels; a correction at the one it replaces.
    reverses_id uuid,
    corrects_id uuid,
    source text NOT NULL DEFAULT 'api',
    -- Late declaration, kept for charter compliance (record time - event time).
    lateness_seconds bigint GENERATED ALWAYS AS (extract(epoch FROM record_time - event_time)::bigint) STORED,
    CONSTRAINT movements_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT movements_ecosystem_fkey FOREIGN KEY (ecosystem_id) REFERENCES ecosystems (id),
    CONSTRAINT movements_declarer_fkey FOREIGN KEY (ecosystem_id, declarer_id) REFERENCES memberships (ecosystem_id, id),
    CONSTRAINT movements_from_fkey FOREIGN KEY (ecosystem_id, from_party_id) REFERENCES memberships (ecosystem_id, id),
    CONSTRAINT movements_to_fkey FOREIGN KEY (ecosystem_id, to_party_id) REFERENCES memberships (ecosystem_id, id),
    CONSTRAINT movements_offset_range CHECK (event_offset_minutes BETWEEN -1439 AND 1439)
) PARTITION BY RANGE (id);
ALTER SEQUENCE movements_seq_seq OWNED BY movements.seq;
-- A unique (seq) or (ecosystem_id, reverses_id) would have to hold the partition key, so
-- they become plain indexes: seq comes from one sequence, and a movement is reversed only
-- under its row lock, after which its status stays 'reversed' (movements_guard_update);
-- `ledger verify` reports any movement reversed twice.
CREATE INDEX movements_seq_idx ON movements (seq);
CREATE INDEX movements_reverses_idx ON movements (ecosystem_id, reverses_id) WHERE reverses_id IS NOT NULL;
CREATE INDEX movements_from_party_idx ON movements (ecosystem_id, from_party_id, event_time);
CREATE INDEX movements_to_party_idx ON movements (ecosystem_id, to_party_id, event_time);
CREATE INDEX movements_event_time_idx ON movements (ecosystem_id, event_time);
CREATE INDEX movements_pending_idx ON movements (ecosystem_id, counterparty_id) WHERE status IN ('declared', 'contested');
CREATE INDEX movements_declarer_idx ON movements (ecosystem_id, declarer_id, record_time);

CREATE TABLE movement_lines (
    ecosystem_id uuid NOT NULL,
    movement_id uuid NOT NULL,
    line_no smallint NOT NULL,
    pallet_type_id uuid NOT NULL,
    quality quality_grade NOT NULL,
    quantity bigint NOT NULL,
    exchanged_quantity bigint NOT NULL DEFAULT 0,
    exchanged_quality quality_grade NOT NULL,
    target_quality quality_grade,
    CONSTRAINT movement_lines_pkey PRIMARY KEY (ecosystem_id, movement_id, line_no),
    CONSTRAINT movement_lines_movement_fkey FOREIGN KEY (ecosystem_id, movement_id) REFERENCES movements (ecosystem_id, id),
    CONSTRAINT movement_lines_type_fkey FOREIGN KEY (ecosystem_id, pallet_type_id) REFERENCES pallet_types (ecosystem_id, id),
    CONSTRAINT movement_lines_quantity_range CHECK (quantity BETWEEN 0 AND 100000),
    CONSTRAINT movement_lines_exchanged_range CHECK (exchanged_quantity BETWEEN 0 AND 100000)
) PARTITION BY RANGE (movement_id);

CREATE SEQUENCE ledger_entries_seq_seq;
-- Append-only: triggers refuse UPDATE, DELETE and TRUNCATE, for every role.
CREATE TABLE ledger_entries (
    ecosystem_id uuid NOT NULL,
    seq bigint NOT NULL DEFAULT nextval('ledger_entries_seq_seq'),
    movement_id uuid NOT NULL,
    account_id bigint NOT NULL,
    amount bigint NOT NULL,
    event_time timestamptz NOT NULL,
    -- seq alone identifies an entry; movement_id is there because it is the partition key.
    CONSTRAINT ledger_entries_pkey PRIMARY KEY (ecosystem_id, seq, movement_id),
    CONSTRAINT ledger_entries_movement_fkey FOREIGN KEY (ecosystem_id, movement_id) REFERENCES movements (ecosystem_id, id),
    CONSTRAINT ledger_entries_account_fkey FOREIGN KEY (ecosystem_id, account_id) REFERENCES accounts (ecosystem_id, id),
    CONSTRAINT ledger_entries_amount_nonzero CHECK (amount <> 0)
) PARTITION BY RANGE (movement_id);
ALTER SEQUENCE ledger_entries_seq_seq OWNED BY ledger_entries.seq;
CREATE INDEX ledger_entries_account_time_idx ON ledger_entries (ecosystem_id, account_id, event_time);
CREATE INDEX ledger_entries_movement_idx ON ledger_entries (ecosystem_id, movement_id);

-- Row triggers on a partitioned table are cloned onto every partition; TRUNCATE triggers
-- are not, so ensure_ledger_partitions adds them to each partition it creates.
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION refuse_ledger_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change();
CREATE TRIGGER movement_lines_append_only BEFORE UPDATE OR DELETE ON movement_lines
    FOR EACH ROW EXECUTE FUNCTION refuse_ledger_change();
CREATE TRIGGER movement_lines_no_truncate BEFORE TRUNCATE ON movement_lines
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change();
CREATE TRIGGER movements_no_delete BEFORE DELETE ON movements
    FOR EACH ROW EXECUTE FUNCTION refuse_ledger_change();
CREATE TRIGGER movements_no_truncate BEFORE TRUNCATE ON movements
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change();
CREATE TRIGGER movements_guard_update BEFORE UPDATE ON movements
    FOR EACH ROW EXECUTE FUNCTION movements_guard_update();

-- Creates the monthly partitions from first_month to last_month (UTC) that do not exist
-- yet, and returns how many months it created. A month whose ids already sit in the
-- default partition is skipped (PostgreSQL would refuse it): those rows stay correct there.
-- The daemon calls it at start and the worker at each scheduling round, for the months ahead.
CREATE FUNCTION ensure_ledger_partitions(first_month timestamptz, last_month timestamptz) RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    month timestamptz := date_trunc('month', first_month, 'UTC');
    created integer := 0;
    suffix text;
    low uuid;
    high uuid;
    ledger_table text;
BEGIN
    IF last_month - first_month > interval '50 years' THEN
        RAISE EXCEPTION 'refusing to create partitions for more than 50 years (% to %)', first_month, last_month;
    END IF;
    -- Daemons and workers starting together must not race on CREATE TABLE.
    PERFORM pg_advisory_xact_lock(7061, 1);
    WHILE month <= last_month LOOP
        suffix := to_char(month AT TIME ZONE 'UTC', 'YYYY_MM');
        low := ledger_month_first_id(month);
        high := ledger_month_first_id(month + interval '32 days');
        IF to_regclass('movements_' || suffix) IS NULL THEN
            IF EXISTS (SELECT 1 FROM movements_default WHERE id >= low AND id < high) THEN
                RAISE NOTICE 'month % has rows in the default partition: left there', suffix;
            ELSE
                FOREACH ledger_table IN ARRAY ARRAY['movements', 'movement_lines', 'ledger_entries'] LOOP
                    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                                   ledger_table || '_' || suffix, ledger_table, low, high);
                    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change()',
                                   ledger_table || '_' || suffix || '_no_truncate', ledger_table || '_' || suffix);
                END LOOP;
                created := created + 1;
            END IF;
        END IF;
        month := date_trunc('month', month + interval '32 days', 'UTC');
    END LOOP;
    RETURN created;
END $$;

CREATE TABLE movements_default PARTITION OF movements DEFAULT;
CREATE TABLE movement_lines_default PARTITION OF movement_lines DEFAULT;
CREATE TABLE ledger_entries_default PARTITION OF ledger_entries DEFAULT;
CREATE TRIGGER movements_default_no_truncate BEFORE TRUNCATE ON movements_default
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change();
CREATE TRIGGER movement_lines_default_no_truncate BEFORE TRUNCATE ON movement_lines_default
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change();
CREATE TRIGGER ledger_entries_default_no_truncate BEFORE TRUNCATE ON ledger_entries_default
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change();

-- Months for the rows already recorded (time-ordered ids only: version 7) up to three
-- months ahead, then the rows themselves.
SELECT ensure_ledger_partitions(
    least(now(), coalesce((SELECT min(movement_id_time(id)) FROM movements_0008
                           WHERE substr(id::text, 15, 1) = '7' AND movement_id_time(id) > now() - interval '40 years'), now())),
    now() + interval '3 months');

INSERT INTO movements (ecosystem_id, id, seq, kind, event_time, event_offset_minutes, record_time, declarer_id,
                       from_party_id, from_site_id, to_party_id, to_site_id, counterparty_id, status, confirmed,
                       confirmed_at, confirmed_by, delivery_note, cmr, order_reference, pallet_note_reference,
                       evidence_sha256, evidence_url, note, reverses_id, corrects_id, source)
SELECT ecosystem_id, id, seq, kind, event_time, event_offset_minutes, record_time, declarer_id,
       from_party_id, from_site_id, to_party_id, to_site_id, counterparty_id, status, confirmed,
       confirmed_at, confirmed_by, delivery_note, cmr, order_reference, pallet_note_reference,
       evidence_sha256, evidence_url, note, reverses_id, corrects_id, source
FROM movements_0008;
INSERT INTO movement_lines SELECT * FROM movement_lines_0008;
INSERT INTO ledger_entries (ecosystem_id, seq, movement_id, account_id, amount, event_time)
SELECT ecosystem_id, seq, movement_id, account_id, amount, event_time FROM ledger_entries_0008;
SELECT setval('movements_seq_seq', coalesce((SELECT max(seq) FROM movements_0008), 0) + 1, false);
SELECT setval('ledger_entries_seq_seq', coalesce((SELECT max(seq) FROM ledger_entries_0008), 0) + 1, false);

-- The tables referring to movements point at the new one.
ALTER TABLE discrepancies DROP CONSTRAINT discrepancies_movement_fkey;
ALTER TABLE epcis_events DROP CONSTRAINT epcis_events_movement_fkey;
DROP TABLE ledger_entries_0008, movement_lines_0008, movements_0008;
ALTER TABLE discrepancies ADD CONSTRAINT discrepancies_movement_fkey
    FOREIGN KEY (ecosystem_id, movement_id) REFERENCES movements (ecosystem_id, id);
ALTER TABLE epcis_events ADD CONSTRAINT epcis_events_movement_fkey
    FOREIGN KEY (ecosystem_id, movement_id) REFERENCES movements (ecosystem_id, id);

-- What `palletflow archive` took out of the ledger: per account and month, the sum of the
-- entries exported and dropped, so balances still equal (archived + live) entries.
CREATE TABLE ledger_archived_totals (
    ecosystem_id uuid NOT NULL,
    account_id bigint NOT NULL,
    month date NOT NULL,
    amount bigint NOT NULL,
    confirmed_amount bigint NOT NULL,
    entries bigint NOT NULL,
    CONSTRAINT ledger_archived_totals_pkey PRIMARY KEY (ecosystem_id, account_id, month),
    CONSTRAINT ledger_archived_totals_account_fkey FOREIGN KEY (ecosystem_id, account_id) REFERENCES accounts (ecosystem_id, id)
);
CREATE TRIGGER ledger_archived_totals_append_only BEFORE UPDATE OR DELETE ON ledger_archived_totals
    FOR EACH ROW EXECUTE FUNCTION refuse_ledger_change();

-- One row per archived month: what left the database, where it went, and its checksums.
CREATE TABLE ledger_archives (
    month date NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now(),
    movements bigint NOT NULL,
    lines bigint NOT NULL,
    entries bigint NOT NULL,
    -- {"file name": "sha256", ...} as written by the archive command.
    files jsonb NOT NULL,
    location text NOT NULL,
    CONSTRAINT ledger_archives_pkey PRIMARY KEY (month)
);
