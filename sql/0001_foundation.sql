-- Foundation: ecosystems, organisations, memberships, sites, pallet types, tokens.
-- Every tenant-owned table carries ecosystem_id first in its primary key, so the schema
-- can later be distributed by ecosystem (Citus) and every lookup is tenant-scoped.

CREATE TYPE member_role AS ENUM ('shipper', 'carrier', 'warehouse', 'supplier', 'customer', 'coordinator');
CREATE TYPE quality_grade AS ENUM ('new', 'A', 'B', 'C', 'unusable');

CREATE TABLE ecosystems (
    id uuid NOT NULL,
    name text NOT NULL,
    -- Days after which an unreturned issue is a presumed loss (DOMAIN.md, Indicators).
    loss_horizon_days integer NOT NULL DEFAULT 120,
    -- Days between a pallet note's issue and its due date.
    note_due_days integer NOT NULL DEFAULT 30,
    currency char(3) NOT NULL DEFAULT 'EUR',
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ecosystems_pkey PRIMARY KEY (id),
    CONSTRAINT ecosystems_name_not_blank CHECK (length(btrim(name)) > 0),
    CONSTRAINT ecosystems_loss_horizon_positive CHECK (loss_horizon_days BETWEEN 1 AND 3650),
    CONSTRAINT ecosystems_note_due_positive CHECK (note_due_days BETWEEN 1 AND 3650)
);

-- An organisation can belong to several ecosystems (a carrier serves many shippers).
CREATE TABLE organisations (
    id uuid NOT NULL,
    name text NOT NULL,
    pgln text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT organisations_pkey PRIMARY KEY (id),
    CONSTRAINT organisations_pgln_key UNIQUE (pgln),
    CONSTRAINT organisations_name_not_blank CHECK (length(btrim(name)) > 0),
    CONSTRAINT organisations_pgln_format CHECK (pgln IS NULL OR pgln ~ '^[0-9]{13}$')
);

CREATE TABLE memberships (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    organisation_id uuid NOT NULL,
    role member_role NOT NULL,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT memberships_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT memberships_id_key UNIQUE (id),
    CONSTRAINT memberships_organisation_once UNIQUE (ecosystem_id, organisation_id),
    CONSTRAINT memberships_ecosystem_fkey FOREIGN KEY (ecosystem_id) REFERENCES ecosystems (id),
    CONSTRAINT memberships_organisation_fkey FOREIGN KEY (organisation_id) REFERENCES organisations (id)
);
-- One shipper per ecosystem: the ecosystem is that shipper's network.
CREATE UNIQUE INDEX memberships_one_shipper ON memberships (ecosystem_id) WHERE role = 'shipper';

CREATE TABLE sites (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    membership_id uuid NOT NULL,
    name text NOT NULL,
    sgln text,
    address text,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sites_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT sites_membership_fkey FOREIGN KEY (ecosystem_id, membership_id) REFERENCES memberships (ecosystem_id, id),
    CONSTRAINT sites_sgln_key UNIQUE (ecosystem_id, sgln),
    CONSTRAINT sites_name_not_blank CHECK (length(btrim(name)) > 0)
);

CREATE TABLE pallet_types (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    code text NOT NULL,
    name text NOT NULL,
    length_mm integer,
    width_mm integer,
    height_mm integer,
    exchangeable boolean NOT NULL DEFAULT true,
    grai_class text,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pallet_types_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT pallet_types_code_key UNIQUE (ecosystem_id, code),
    CONSTRAINT pallet_types_grai_key UNIQUE (ecosystem_id, grai_class),
    CONSTRAINT pallet_types_code_format CHECK (code ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$'),
    CONSTRAINT pallet_types_dimensions_positive CHECK (
        coalesce(length_mm, 1) > 0 AND coalesce(width_mm, 1) > 0 AND coalesce(height_mm, 1) > 0)
);

-- A type's unit value changes over time; the value in force at a date is the latest
-- valid_from on or before it. Money is in minor units (cents).
CREATE TABLE pallet_type_values (
    ecosystem_id uuid NOT NULL,
    pallet_type_id uuid NOT NULL,
    valid_from date NOT NULL,
    unit_value_minor bigint NOT NULL,
    currency char(3) NOT NULL,
    CONSTRAINT pallet_type_values_pkey PRIMARY KEY (ecosystem_id, pallet_type_id, valid_from),
    CONSTRAINT pallet_type_values_type_fkey FOREIGN KEY (ecosystem_id, pallet_type_id) REFERENCES pallet_types (ecosystem_id, id),
    CONSTRAINT pallet_type_values_non_negative CHECK (unit_value_minor >= 0),
    CONSTRAINT pallet_type_values_currency_format CHECK (currency ~ '^[A-Z]{3}$')
);

-- API tokens: only the SHA-256 of the secret is kept; the secret is shown once.
CREATE TABLE api_tokens (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    membership_id uuid NOT NULL,
    name text NOT NULL,
    token_hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CONSTRAINT api_tokens_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT api_tokens_hash_key UNIQUE (token_hash),
    CONSTRAINT api_tokens_membership_fkey FOREIGN KEY (ecosystem_id, membership_id) REFERENCES memberships (ecosystem_id, id),
    CONSTRAINT api_tokens_hash_length CHECK (octet_length(token_hash) = 32)
);

-- Who did what, when: one row per accepted write.
CREATE TABLE audit_log (
    ecosystem_id uuid NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    at timestamptz NOT NULL DEFAULT now(),
    membership_id uuid,
    action text NOT NULL,
    subject_id uuid,
    detail jsonb,
    CONSTRAINT audit_log_pkey PRIMARY KEY (ecosystem_id, seq)
);
