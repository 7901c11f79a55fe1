-- GS1 EPCIS 2.0 capture and query (docs/epcis.md).

-- One capture request. Captures are processed while the request waits, so a job is
-- written once, finished; the row is what GET /epcis/capture/{id} reports.
CREATE TABLE epcis_capture_jobs (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    membership_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    error_behaviour text NOT NULL,
    success boolean NOT NULL,
    event_count integer NOT NULL,
    -- Per event: what became of it (posted, stored, duplicate, retracted, rejected).
    outcomes jsonb NOT NULL,
    errors jsonb NOT NULL,
    CONSTRAINT epcis_capture_jobs_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT epcis_capture_jobs_membership_fkey FOREIGN KEY (ecosystem_id, membership_id)
        REFERENCES memberships (ecosystem_id, id),
    CONSTRAINT epcis_capture_jobs_behaviour_known CHECK (error_behaviour IN ('rollback', 'proceed', 'all'))
);

-- Captured events, as sent. Identifiers are also kept in canonical form (`pgln:<13
-- digits>`, `grai:<14 digits>`, `sgln:<13 digits>`) so that URN and Digital Link
-- notations of one key match the same query.
CREATE TABLE epcis_events (
    ecosystem_id uuid NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    event_id text NOT NULL,
    -- An error declaration shares its eventID with the event it retracts.
    retraction boolean NOT NULL,
    event_type text NOT NULL,
    event_time timestamptz NOT NULL,
    event_offset text NOT NULL,
    record_time timestamptz NOT NULL,
    biz_step text,
    disposition text,
    read_point text,
    biz_location text,
    epc_classes text[] NOT NULL,
    source_owning text[] NOT NULL,
    source_possessing text[] NOT NULL,
    destination_owning text[] NOT NULL,
    destination_possessing text[] NOT NULL,
    -- Members the event names; with captured_by, who may read it.
    parties uuid[] NOT NULL,
    captured_by uuid NOT NULL,
    capture_id uuid NOT NULL,
    -- The movement the event posted, or for an error declaration the reversal it posted.
    movement_id uuid,
    content_sha256 bytea NOT NULL,
    -- Namespace prefixes of the capture's @context, for reading extensions back.
    context jsonb NOT NULL,
    document jsonb NOT NULL,
    CONSTRAINT epcis_events_pkey PRIMARY KEY (ecosystem_id, seq),
    CONSTRAINT epcis_events_once UNIQUE (ecosystem_id, event_id, retraction),
    CONSTRAINT epcis_events_capture_fkey FOREIGN KEY (ecosystem_id, capture_id) REFERENCES epcis_capture_jobs (ecosystem_id, id),
    CONSTRAINT epcis_events_movement_fkey FOREIGN KEY (ecosystem_id, movement_id) REFERENCES movements (ecosystem_id, id)
);
CREATE INDEX epcis_events_time_idx ON epcis_events (ecosystem_id, event_time, event_id);
CREATE INDEX epcis_events_movement_idx ON epcis_events (ecosystem_id, movement_id) WHERE movement_id IS NOT NULL;

-- Captured events are facts like ledger entries: never edited, never deleted.
CREATE TRIGGER epcis_events_append_only BEFORE UPDATE OR DELETE ON epcis_events
    FOR EACH ROW EXECUTE FUNCTION refuse_ledger_change();
