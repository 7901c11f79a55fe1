-- Cooperation kits (onboarding of partners) and the statement after the work.

CREATE TABLE kit_templates (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT kit_templates_pkey PRIMARY KEY (ecosystem_id, id)
);

CREATE TABLE kit_items (
    ecosystem_id uuid NOT NULL,
    template_id uuid NOT NULL,
    item_no integer NOT NULL,
    kind text NOT NULL,
    title text NOT NULL,
    detail text,
    url text,
    scheduled_at timestamptz,
    -- Items tied to a fact complete themselves when the fact holds.
    fact text,
    CONSTRAINT kit_items_pkey PRIMARY KEY (ecosystem_id, template_id, item_no),
    CONSTRAINT kit_items_template_fkey FOREIGN KEY (ecosystem_id, template_id) REFERENCES kit_templates (ecosystem_id, id),
    CONSTRAINT kit_items_kind CHECK (kind IN ('charter', 'document', 'meeting', 'training', 'contact', 'checklist')),
    CONSTRAINT kit_items_fact CHECK (fact IS NULL OR fact IN ('charter_signed', 'first_declaration', 'first_statement_acknowledged'))
);

CREATE TABLE kit_assignments (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    template_id uuid NOT NULL,
    membership_id uuid NOT NULL,
    assigned_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT kit_assignments_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT kit_assignments_once UNIQUE (ecosystem_id, template_id, membership_id),
    CONSTRAINT kit_assignments_template_fkey FOREIGN KEY (ecosystem_id, template_id) REFERENCES kit_templates (ecosystem_id, id)
);

CREATE TABLE kit_item_progress (
    ecosystem_id uuid NOT NULL,
    assignment_id uuid NOT NULL,
    item_no integer NOT NULL,
    done boolean NOT NULL,
    attended boolean,
    note text,
    updated_by uuid NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT kit_item_progress_pkey PRIMARY KEY (ecosystem_id, assignment_id, item_no)
);

-- The statement after the work (devis après travail): what was done for the partner and
-- what it changed, sent monthly as an occasion for dialogue.
CREATE TABLE work_statements (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    membership_id uuid NOT NULL,
    period_start date NOT NULL,
    period_end date NOT NULL,
    movements_handled bigint NOT NULL,
    pallets_issued bigint NOT NULL,
    pallets_recovered bigint NOT NULL,
    losses bigint NOT NULL,
    losses_value_minor bigint NOT NULL,
    previous_losses_value_minor bigint NOT NULL,
    disputes_closed bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    answer text,
    answer_comment text,
    answered_by uuid,
    answered_at timestamptz,
    CONSTRAINT work_statements_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT work_statements_once UNIQUE (ecosystem_id, membership_id, period_start),
    CONSTRAINT work_statements_answer CHECK (answer IS NULL OR answer IN ('acknowledged', 'answered'))
);
