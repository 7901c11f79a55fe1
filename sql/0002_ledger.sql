-- The pallet ledger: movements, their lines, double-entry accounts and entries,
-- idempotency keys, pallet notes, discrepancies and statement acknowledgements.

CREATE TYPE movement_kind AS ENUM
    ('pickup', 'delivery', 'return', 'transfer', 'purchase', 'repair', 'scrap', 'loss', 'inventory');
-- declared: one side said it; confirmed: the counterparty agreed (or nobody else is
-- involved); contested: the counterparty gave other counts; reversed: cancelled by a
-- reversal movement, kept for the record.
CREATE TYPE movement_status AS ENUM ('declared', 'confirmed', 'contested', 'reversed');
CREATE TYPE account_class AS ENUM ('holding', 'owed', 'pool_in', 'scrapped', 'lost', 'adjusted');

CREATE TABLE movements (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    -- Order of recording: cursor pagination and the worker's watermark follow it.
    seq bigint GENERATED ALWAYS AS IDENTITY,
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
    CONSTRAINT movements_seq_key UNIQUE (seq),
    CONSTRAINT movements_ecosystem_fkey FOREIGN KEY (ecosystem_id) REFERENCES ecosystems (id),
    CONSTRAINT movements_declarer_fkey FOREIGN KEY (ecosystem_id, declarer_id) REFERENCES memberships (ecosystem_id, id),
    CONSTRAINT movements_from_fkey FOREIGN KEY (ecosystem_id, from_party_id) REFERENCES memberships (ecosystem_id, id),
    CONSTRAINT movements_to_fkey FOREIGN KEY (ecosystem_id, to_party_id) REFERENCES memberships (ecosystem_id, id),
    CONSTRAINT movements_reverses_once UNIQUE (ecosystem_id, reverses_id),
    CONSTRAINT movements_offset_range CHECK (event_offset_minutes BETWEEN -1439 AND 1439)
);
CREATE INDEX movements_from_party_idx ON movements (ecosystem_id, from_party_id, event_time);
CREATE INDEX movements_to_party_idx ON movements (ecosystem_id, to_party_id, event_time);
CREATE INDEX movements_event_time_idx ON movements (ecosystem_id, event_time);
CREATE INDEX movements_pending_idx ON movements (ecosystem_id, counterparty_id) WHERE status IN ('declared', 'contested');

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
);

-- One row per account. party/counterparty/site use the all-zero UUID for "none" so the
-- natural key never holds NULL and writers can lock accounts in one global order.
CREATE TABLE accounts (
    ecosystem_id uuid NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    class account_class NOT NULL,
    party_id uuid NOT NULL,
    counterparty_id uuid NOT NULL,
    site_id uuid NOT NULL,
    pallet_type_id uuid NOT NULL,
    quality quality_grade NOT NULL,
    -- Current balance (sum of all entries) and the part from confirmed movements.
    balance bigint NOT NULL DEFAULT 0,
    confirmed_balance bigint NOT NULL DEFAULT 0,
    CONSTRAINT accounts_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT accounts_natural_key UNIQUE (ecosystem_id, class, party_id, counterparty_id, site_id, pallet_type_id, quality),
    CONSTRAINT accounts_type_fkey FOREIGN KEY (ecosystem_id, pallet_type_id) REFERENCES pallet_types (ecosystem_id, id)
);
CREATE INDEX accounts_party_idx ON accounts (ecosystem_id, party_id, class);

-- Append-only: a trigger refuses UPDATE and DELETE, for every role.
CREATE TABLE ledger_entries (
    ecosystem_id uuid NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    movement_id uuid NOT NULL,
    account_id bigint NOT NULL,
    amount bigint NOT NULL,
    event_time timestamptz NOT NULL,
    CONSTRAINT ledger_entries_pkey PRIMARY KEY (ecosystem_id, seq),
    CONSTRAINT ledger_entries_movement_fkey FOREIGN KEY (ecosystem_id, movement_id) REFERENCES movements (ecosystem_id, id),
    CONSTRAINT ledger_entries_account_fkey FOREIGN KEY (ecosystem_id, account_id) REFERENCES accounts (ecosystem_id, id),
    CONSTRAINT ledger_entries_amount_nonzero CHECK (amount <> 0)
);
CREATE INDEX ledger_entries_account_time_idx ON ledger_entries (ecosystem_id, account_id, event_time);
CREATE INDEX ledger_entries_movement_idx ON ledger_entries (ecosystem_id, movement_id);

CREATE FUNCTION refuse_ledger_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger table % is append-only: correct by reversal, never by %', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'P0001', HINT = 'post a reversal movement linked to the original';
END $$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION refuse_ledger_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change();
CREATE TRIGGER movement_lines_append_only BEFORE UPDATE OR DELETE ON movement_lines
    FOR EACH ROW EXECUTE FUNCTION refuse_ledger_change();
CREATE TRIGGER movements_no_delete BEFORE DELETE ON movements
    FOR EACH ROW EXECUTE FUNCTION refuse_ledger_change();
CREATE TRIGGER movements_no_truncate BEFORE TRUNCATE ON movements
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change();

-- A posted movement's facts never change; only its workflow state moves forward.
CREATE FUNCTION movements_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.ecosystem_id, NEW.id, NEW.seq, NEW.kind, NEW.event_time, NEW.event_offset_minutes, NEW.record_time,
        NEW.declarer_id, NEW.from_party_id, NEW.from_site_id, NEW.to_party_id, NEW.to_site_id, NEW.counterparty_id,
        NEW.delivery_note, NEW.cmr, NEW.order_reference, NEW.pallet_note_reference, NEW.evidence_sha256,
        NEW.evidence_url, NEW.note, NEW.reverses_id, NEW.corrects_id, NEW.source)
       IS DISTINCT FROM
       (OLD.ecosystem_id, OLD.id, OLD.seq, OLD.kind, OLD.event_time, OLD.event_offset_minutes, OLD.record_time,
        OLD.declarer_id, OLD.from_party_id, OLD.from_site_id, OLD.to_party_id, OLD.to_site_id, OLD.counterparty_id,
        OLD.delivery_note, OLD.cmr, OLD.order_reference, OLD.pallet_note_reference, OLD.evidence_sha256,
        OLD.evidence_url, OLD.note, OLD.reverses_id, OLD.corrects_id, OLD.source) THEN
        RAISE EXCEPTION 'movement % is posted: its facts cannot change; correct it by reversal', OLD.id
            USING ERRCODE = 'P0001';
    END IF;
    IF OLD.confirmed AND NOT NEW.confirmed THEN
        RAISE EXCEPTION 'movement % is confirmed and cannot be unconfirmed', OLD.id USING ERRCODE = 'P0001';
    END IF;
    IF OLD.status = 'reversed' AND NEW.status <> 'reversed' THEN
        RAISE EXCEPTION 'movement % is reversed for good', OLD.id USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER movements_guard_update BEFORE UPDATE ON movements
    FOR EACH ROW EXECUTE FUNCTION movements_guard_update();

-- Retries of a write with the same key replay the first response byte for byte.
CREATE TABLE idempotency_keys (
    ecosystem_id uuid NOT NULL,
    membership_id uuid NOT NULL,
    key text NOT NULL,
    request_hash bytea NOT NULL,
    response_status smallint NOT NULL,
    response_body bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (ecosystem_id, membership_id, key),
    CONSTRAINT idempotency_keys_key_length CHECK (length(key) BETWEEN 1 AND 255)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- Pallet notes (bon palette, Palettenschein): the issuer owes the holder.
CREATE TABLE pallet_notes (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    serial text,
    issuer_id uuid NOT NULL,
    holder_id uuid NOT NULL,
    pallet_type_id uuid NOT NULL,
    quality quality_grade NOT NULL,
    quantity bigint NOT NULL,
    redeemed_quantity bigint NOT NULL DEFAULT 0,
    issue_date date NOT NULL,
    due_date date NOT NULL,
    movement_id uuid,
    cancelled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pallet_notes_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT pallet_notes_serial_key UNIQUE (ecosystem_id, serial),
    CONSTRAINT pallet_notes_issuer_fkey FOREIGN KEY (ecosystem_id, issuer_id) REFERENCES memberships (ecosystem_id, id),
    CONSTRAINT pallet_notes_holder_fkey FOREIGN KEY (ecosystem_id, holder_id) REFERENCES memberships (ecosystem_id, id),
    CONSTRAINT pallet_notes_type_fkey FOREIGN KEY (ecosystem_id, pallet_type_id) REFERENCES pallet_types (ecosystem_id, id),
    CONSTRAINT pallet_notes_quantity_range CHECK (quantity BETWEEN 1 AND 100000),
    CONSTRAINT pallet_notes_redeemed_range CHECK (redeemed_quantity BETWEEN 0 AND quantity),
    CONSTRAINT pallet_notes_due_after_issue CHECK (due_date >= issue_date),
    CONSTRAINT pallet_notes_parties_differ CHECK (issuer_id <> holder_id)
);
CREATE INDEX pallet_notes_issuer_idx ON pallet_notes (ecosystem_id, issuer_id);
CREATE INDEX pallet_notes_holder_idx ON pallet_notes (ecosystem_id, holder_id);

CREATE TABLE pallet_note_events (
    ecosystem_id uuid NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    note_id uuid NOT NULL,
    kind text NOT NULL,
    quantity bigint,
    movement_id uuid,
    from_holder_id uuid,
    to_holder_id uuid,
    by_membership_id uuid NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pallet_note_events_pkey PRIMARY KEY (ecosystem_id, seq),
    CONSTRAINT pallet_note_events_note_fkey FOREIGN KEY (ecosystem_id, note_id) REFERENCES pallet_notes (ecosystem_id, id),
    CONSTRAINT pallet_note_events_kind CHECK (kind IN ('issued', 'redeemed', 'transferred', 'cancelled'))
);

-- A contested declaration: both versions stay visible until resolved.
CREATE TABLE discrepancies (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    movement_id uuid NOT NULL,
    contested_by uuid NOT NULL,
    -- The counterparty's counts: [{"lineNo":0,"quantity":..,"exchangedQuantity":..}, ...]
    counter_lines jsonb NOT NULL,
    evidence_sha256 text,
    evidence_url text,
    note text,
    opened_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    resolved_by uuid,
    resolution text,
    resolution_note text,
    correction_movement_id uuid,
    CONSTRAINT discrepancies_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT discrepancies_movement_fkey FOREIGN KEY (ecosystem_id, movement_id) REFERENCES movements (ecosystem_id, id),
    CONSTRAINT discrepancies_one_open UNIQUE (ecosystem_id, movement_id),
    CONSTRAINT discrepancies_resolution CHECK (resolution IS NULL OR resolution IN ('declared', 'contested', 'agreed'))
);

-- A partner's answer to a period statement (Saldenbestätigung).
CREATE TABLE statement_answers (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    party_id uuid NOT NULL,
    counterparty_id uuid NOT NULL,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    -- SHA-256 of the statement's closing balances as shown: what was acknowledged.
    statement_hash text NOT NULL,
    answer text NOT NULL,
    comment text,
    answered_by uuid NOT NULL,
    answered_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT statement_answers_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT statement_answers_answer CHECK (answer IN ('acknowledged', 'contested'))
);
