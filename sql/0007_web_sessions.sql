-- Dashboard sign-in sessions (docs/dashboard.md). A session is opened with an API token
-- and lives no longer than it: revoking the token ends its sessions at once, because
-- every lookup joins the live token.
CREATE TABLE web_sessions (
    ecosystem_id uuid NOT NULL,
    id uuid NOT NULL,
    -- SHA-256 of the cookie's secret; the secret itself is never stored.
    secret_hash bytea NOT NULL,
    token_id uuid NOT NULL,
    -- Synchronizer token every form of this session must echo.
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    ended_at timestamptz,
    CONSTRAINT web_sessions_pkey PRIMARY KEY (ecosystem_id, id),
    CONSTRAINT web_sessions_secret_key UNIQUE (secret_hash),
    CONSTRAINT web_sessions_token_fkey FOREIGN KEY (ecosystem_id, token_id) REFERENCES api_tokens (ecosystem_id, id),
    CONSTRAINT web_sessions_secret_length CHECK (octet_length(secret_hash) = 32)
);
CREATE INDEX web_sessions_expires_idx ON web_sessions (expires_at);
