-- Cooperation: invitations (prescription), commitment charters with signatures and clause
-- evaluations, mediation sessions with their participants, resolutions and actions.

CREATE TABLE invitations (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    -- Single use: only the SHA-256 of the code is kept, like tokens.
    code_hash bytea NOT NULL,
    organisation_name text NOT NULL,
    pgln text,
    role member_role NOT NULL,
    expires_at timestamptz NOT NULL,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    accepted_at timestamptz,
    membership_id uuid,
    CONSTRAINT invitations_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT invitations_code_key UNIQUE (code_hash),
    CONSTRAINT invitations_role CHECK (role <> 'shipper')
);

CREATE TABLE charter_versions (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    version integer NOT NULL,
    title text NOT NULL,
    status text NOT NULL DEFAULT 'draft',
    -- SHA-256 of the published text and clauses: what a signature binds to.
    content_hash text,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    CONSTRAINT charter_versions_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT charter_versions_number UNIQUE (ecosystem_id, version),
    CONSTRAINT charter_versions_status CHECK (status IN ('draft', 'published')),
    CONSTRAINT charter_versions_published_hash CHECK (status = 'draft' OR content_hash IS NOT NULL)
);

CREATE TABLE charter_clauses (
    ecosystem_id uuid NOT NULL,
    version_id uuid NOT NULL,
    clause_no integer NOT NULL,
    text text NOT NULL,
    metric text,
    comparator text,
    target double precision,
    period text,
    roles member_role[] NOT NULL DEFAULT '{}',
    CONSTRAINT charter_clauses_pkey PRIMARY KEY (ecosystem_id, version_id, clause_no),
    CONSTRAINT charter_clauses_version_fkey FOREIGN KEY (ecosystem_id, version_id) REFERENCES charter_versions (ecosystem_id, id),
    CONSTRAINT charter_clauses_measurable CHECK (
        (metric IS NULL AND comparator IS NULL AND target IS NULL)
        OR (metric IS NOT NULL AND comparator IN ('>=', '<=', '>', '<') AND target IS NOT NULL AND period IN ('week', 'month')))
);

-- A published version is frozen, for every role: edits make a new draft.
CREATE FUNCTION refuse_published_charter_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    frozen boolean;
BEGIN
    IF TG_TABLE_NAME = 'charter_versions' THEN
        IF OLD.status = 'published' THEN
            RAISE EXCEPTION 'charter version % is published and frozen; make a new version', OLD.version USING ERRCODE = 'P0001';
        END IF;
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END IF;
    SELECT status = 'published' INTO frozen FROM charter_versions
     WHERE ecosystem_id = coalesce(NEW.ecosystem_id, OLD.ecosystem_id) AND id = coalesce(NEW.version_id, OLD.version_id);
    IF frozen THEN
        RAISE EXCEPTION 'the clauses of a published charter version are frozen' USING ERRCODE = 'P0001';
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER charter_versions_frozen BEFORE UPDATE OR DELETE ON charter_versions
    FOR EACH ROW EXECUTE FUNCTION refuse_published_charter_change();
CREATE TRIGGER charter_clauses_frozen BEFORE INSERT OR UPDATE OR DELETE ON charter_clauses
    FOR EACH ROW EXECUTE FUNCTION refuse_published_charter_change();

CREATE TABLE charter_signatures (
    ecosystem_id uuid NOT NULL,
    version_id uuid NOT NULL,
    membership_id uuid NOT NULL,
    content_hash text NOT NULL,
    signed_by_token uuid,
    signed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT charter_signatures_pkey PRIMARY KEY (ecosystem_id, version_id, membership_id),
    CONSTRAINT charter_signatures_version_fkey FOREIGN KEY (ecosystem_id, version_id) REFERENCES charter_versions (ecosystem_id, id),
    CONSTRAINT charter_signatures_member_fkey FOREIGN KEY (ecosystem_id, membership_id) REFERENCES memberships (ecosystem_id, id)
);

-- History of each measurable clause per signatory and period.
CREATE TABLE clause_evaluations (
    ecosystem_id uuid NOT NULL,
    version_id uuid NOT NULL,
    clause_no integer NOT NULL,
    membership_id uuid NOT NULL,
    period_start date NOT NULL,
    result text NOT NULL,
    measured double precision,
    evaluated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT clause_evaluations_pkey PRIMARY KEY (ecosystem_id, version_id, clause_no, membership_id, period_start),
    CONSTRAINT clause_evaluations_result CHECK (result IN ('met', 'not_met', 'not_measurable'))
);

CREATE TABLE mediation_sessions (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    title text NOT NULL,
    state text NOT NULL DEFAULT 'planned',
    scheduled_at timestamptz NOT NULL,
    period_start date NOT NULL,
    period_end date NOT NULL,
    agenda text,
    minutes text,
    -- Reflexivity on three levels (DOMAIN.md, Cooperation).
    review_inside text,
    review_relationship text,
    review_partner text,
    previous_session_id uuid,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    held_at timestamptz,
    closed_at timestamptz,
    CONSTRAINT mediation_sessions_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT mediation_sessions_state CHECK (state IN ('planned', 'held', 'closed')),
    CONSTRAINT mediation_sessions_period CHECK (period_end > period_start)
);

CREATE TABLE mediation_participants (
    ecosystem_id uuid NOT NULL,
    session_id uuid NOT NULL,
    membership_id uuid NOT NULL,
    CONSTRAINT mediation_participants_pkey PRIMARY KEY (ecosystem_id, session_id, membership_id),
    CONSTRAINT mediation_participants_session_fkey FOREIGN KEY (ecosystem_id, session_id) REFERENCES mediation_sessions (ecosystem_id, id)
);

CREATE TABLE mediation_resolutions (
    ecosystem_id uuid NOT NULL,
    session_id uuid NOT NULL,
    discrepancy_id uuid NOT NULL,
    decided_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mediation_resolutions_pkey PRIMARY KEY (ecosystem_id, session_id, discrepancy_id)
);

CREATE TABLE mediation_actions (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    session_id uuid NOT NULL,
    description text NOT NULL,
    owner_id uuid NOT NULL,
    due_date date NOT NULL,
    status text NOT NULL DEFAULT 'open',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mediation_actions_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT mediation_actions_status CHECK (status IN ('open', 'done', 'dropped'))
);
