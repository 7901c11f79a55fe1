-- Least privilege in the database (docs/operations.md, "Two database roles").
--
-- The daemon and the worker connect as an application role that is neither a superuser
-- nor the tables' owner: it holds only the privileges listed in `app_privileges`, so it
-- cannot UPDATE a fact, DELETE or TRUNCATE history, disable a trigger, change
-- session_replication_role, or detach or drop a partition. Migrations, `archive`,
-- `restore` and the other admin commands run as the owner.
--
-- The list is data, not a sequence of GRANT statements: `apply_app_privileges()` revokes
-- everything from each application role and grants exactly what the list says, and the
-- migrator calls it after every run. A table a later migration adds gets nothing until
-- that migration adds its row here (PrivilegeTests fails on a table the list does not
-- name; partitions are reached through their parent and get nothing of their own).
--
-- An expand step: two new tables, functions, and ENABLE ALWAYS on the guard triggers, each
-- ALTER TABLE holding its table's lock only for the catalog change (busy tables: the
-- lock is waited for at most 5 s, else the migration fails whole and is retried later).
SET LOCAL lock_timeout = '5s';

CREATE TABLE app_privileges (
    table_name text NOT NULL,
    -- Table-wide privileges among SELECT, INSERT, UPDATE and DELETE.
    privileges text[] NOT NULL,
    -- UPDATE of these columns only: the workflow columns of a table that keeps history.
    update_columns text[] NOT NULL DEFAULT '{}',
    why text NOT NULL,
    CONSTRAINT app_privileges_pkey PRIMARY KEY (table_name),
    CONSTRAINT app_privileges_known CHECK (privileges <@ ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']),
    CONSTRAINT app_privileges_one_update CHECK (NOT ('UPDATE' = ANY (privileges) AND cardinality(update_columns) > 0))
);

-- The roles the privileges go to: `palletflow database roles --app-role NAME` records one,
-- the embedded cluster records `palletflow_app`. Roles are global to the server; a recorded
-- role that does not exist (a copy of the database on another server) is skipped.
CREATE TABLE app_roles (
    role_name text NOT NULL,
    CONSTRAINT app_roles_pkey PRIMARY KEY (role_name)
);

INSERT INTO app_privileges (table_name, privileges, update_columns, why) VALUES
    ('schema_migrations', '{SELECT}', '{}', 'the worker and the daemon check the schema is up to date'),
    ('app_privileges', '{}', '{}', 'the owner''s'),
    ('app_roles', '{}', '{}', 'the owner''s'),
    ('ecosystems', '{SELECT,INSERT}', '{directory_version}', 'the demo creates one; directory triggers bump the version'),
    ('organisations', '{SELECT,INSERT}', '{}', 'members join'),
    ('memberships', '{SELECT,INSERT}', '{active}', 'a member is deactivated, never deleted'),
    ('sites', '{SELECT,INSERT}', '{}', ''),
    ('pallet_types', '{SELECT,INSERT}', '{active}', 'a pallet type is deactivated, never deleted'),
    ('pallet_type_values', '{SELECT,INSERT}', '{unit_value_minor,currency}', 'a value set again for the same date'),
    ('api_tokens', '{SELECT,INSERT}', '{revoked_at}', 'revocation and rotation'),
    ('audit_log', '{SELECT,INSERT}', '{}', 'history'),
    ('movements', '{SELECT,INSERT}', '{status,confirmed,confirmed_at,confirmed_by}',
        'history: only the workflow state moves (movements_guard_update checks how)'),
    ('movement_lines', '{SELECT,INSERT}', '{}', 'history'),
    ('ledger_entries', '{SELECT,INSERT}', '{}', 'history'),
    ('accounts', '{SELECT,INSERT}', '{balance,confirmed_balance}', 'balances follow the entries'),
    ('idempotency_keys', '{SELECT,INSERT}', '{response_status,response_body,response_headers}',
        'a claimed key gets its answer once (Store+Idempotency); `palletflow vacuum` (the owner) deletes old keys'),
    ('pallet_notes', '{SELECT,INSERT}', '{redeemed_quantity,holder_id,pending_holder_id}', 'redemption, proposed and accepted transfer'),
    ('pallet_note_events', '{SELECT,INSERT}', '{}', 'history'),
    ('discrepancies', '{SELECT,INSERT}', '{resolved_at,resolved_by,resolution,resolution_note,correction_movement_id}',
        'a discrepancy is resolved once; `archive` (the owner) deletes archived ones'),
    ('statement_answers', '{SELECT,INSERT}', '{}', 'history'),
    ('jobs', '{SELECT,INSERT}', '{state,run_at,attempts,locked_by,locked_until,last_error,progress,finished_at}',
        'the queue; `palletflow vacuum` (the owner) deletes finished jobs'),
    ('indicator_watermarks', '{SELECT,INSERT}', '{last_seq,state_seq,updated_at}', 'derived'),
    ('indicators', '{SELECT,INSERT,UPDATE,DELETE}', '{}', 'derived: rewritten by the worker'),
    ('indicator_facts', '{SELECT,INSERT,UPDATE,DELETE}', '{}', 'derived: rebuilt by the worker'),
    ('indicator_activity', '{SELECT,INSERT,UPDATE,DELETE}', '{}', 'derived: rebuilt by the worker'),
    ('indicator_lateness', '{SELECT,INSERT,UPDATE,DELETE}', '{}', 'derived: rebuilt by the worker'),
    ('indicator_lateness_buckets', '{SELECT,INSERT,UPDATE,DELETE}', '{}', 'derived: rebuilt by the worker'),
    ('indicator_period_lateness_buckets', '{SELECT,INSERT,UPDATE,DELETE}', '{}', 'derived: rebuilt by the worker'),
    ('indicator_contested', '{SELECT,INSERT,UPDATE,DELETE}', '{}', 'derived: rebuilt by the worker'),
    ('alert_rules', '{SELECT,INSERT}', '{threshold,active}', ''),
    ('alerts', '{SELECT,INSERT}', '{acknowledged_at,acknowledged_by}', ''),
    ('webhooks', '{SELECT,INSERT}', '{active}', ''),
    ('webhook_deliveries', '{SELECT,INSERT}', '{}', 'history'),
    ('statements_issued', '{SELECT,INSERT}', '{}', 'history'),
    ('invitations', '{SELECT,INSERT}', '{accepted_at,membership_id}', 'single use'),
    ('charter_versions', '{SELECT,INSERT}', '{status,content_hash,published_at}', 'a draft is published once'),
    ('charter_clauses', '{SELECT,INSERT}', '{}', ''),
    ('charter_signatures', '{SELECT,INSERT}', '{}', 'history'),
    ('clause_evaluations', '{SELECT,INSERT}', '{result,measured,evaluated_at}', 'evaluated again for the same period'),
    ('mediation_sessions', '{SELECT,INSERT}',
        '{state,minutes,review_inside,review_relationship,review_partner,held_at,closed_at}', 'planned, held, closed'),
    ('mediation_participants', '{SELECT,INSERT}', '{}', ''),
    ('mediation_resolutions', '{SELECT,INSERT}', '{}', ''),
    ('mediation_actions', '{SELECT,INSERT}', '{status,updated_at}', ''),
    ('kit_templates', '{SELECT,INSERT}', '{}', ''),
    ('kit_items', '{SELECT,INSERT}', '{}', ''),
    ('kit_assignments', '{SELECT,INSERT}', '{}', ''),
    ('kit_item_progress', '{SELECT,INSERT}', '{done,attended,note,updated_by,updated_at}', ''),
    ('work_statements', '{SELECT,INSERT}', '{answer,answer_comment,answered_by,answered_at}', 'answered once'),
    ('epcis_capture_jobs', '{SELECT,INSERT}', '{}', 'history'),
    ('epcis_events', '{SELECT,INSERT}', '{}', 'history; `archive` (the owner) deletes archived ones'),
    ('web_sessions', '{SELECT,INSERT}', '{ended_at}', 'sign-out'),
    ('ledger_archived_totals', '{SELECT}', '{}', 'history: written by `archive` and `restore` (the owner)'),
    ('ledger_archives', '{SELECT}', '{}', 'written by `archive` (the owner)');

-- The guard triggers of the tables whose rows the ledger keeps. With ENABLE ALWAYS they
-- also fire under session_replication_role = replica, which a superuser could set to skip
-- ordinary triggers. On a partitioned table PostgreSQL 15 applies it to every partition,
-- and partitions created later inherit it from their parent's trigger.
CREATE FUNCTION guard_trigger_functions() RETURNS regproc[] LANGUAGE sql STABLE AS $$
    SELECT ARRAY['refuse_ledger_change'::regproc, 'movements_guard_update'::regproc,
                 'refuse_referenced_change'::regproc, 'refuse_published_charter_change'::regproc]
$$;

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT tgrelid::regclass AS relation, tgname FROM pg_trigger
             WHERE tgfoid = ANY (guard_trigger_functions()) AND NOT tgisinternal AND tgparentid = 0 LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', t.relation, t.tgname);
    END LOOP;
END $$;

-- Monthly partitions are created ahead by the daemon and the worker, which connect as the
-- application role: as in sql/0013, run as the function's owner (SECURITY DEFINER) so
-- the partitions belong to the owner and the application role can never drop or detach
-- them. The search path is fixed (public, where it creates them; temporary objects last)
-- so that no object of the caller's is found instead of ours.
CREATE OR REPLACE FUNCTION ensure_ledger_partitions(first_month timestamptz, last_month timestamptz) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
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
                    -- TRUNCATE triggers are not cloned from the parent (row triggers are).
                    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change()',
                                   ledger_table || '_' || suffix || '_no_truncate', ledger_table || '_' || suffix);
                    EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER %I',
                                   ledger_table || '_' || suffix, ledger_table || '_' || suffix || '_no_truncate');
                END LOOP;
                PERFORM link_ledger_partitions(suffix);
                created := created + 1;
            END IF;
        END IF;
        month := date_trunc('month', month + interval '32 days', 'UTC');
    END LOOP;
    RETURN created;
END $$;
REVOKE EXECUTE ON FUNCTION ensure_ledger_partitions(timestamptz, timestamptz) FROM PUBLIC;

-- After a full build of the indicator state the planner's statistics still describe the
-- tables before it (Store.rebuildIndicatorState): ANALYZE needs the tables' owner, and the
-- worker is not, so it asks the owner's function. (VACUUM cannot run in a function: after
-- a build by the worker, autovacuum sets the visibility map, as before sql/0016's change 28.)
CREATE FUNCTION analyze_indicator_state() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    ANALYZE indicator_facts, indicator_activity, indicator_lateness, indicator_lateness_buckets,
            indicator_period_lateness_buckets, indicator_contested;
END $$;
REVOKE EXECUTE ON FUNCTION analyze_indicator_state() FROM PUBLIC;

-- Grants each recorded application role exactly what `app_privileges` lists, after
-- revoking everything else it holds on this schema's tables and sequences; returns the
-- tables the list does not name (they get nothing). Run by the owner: the migrator after
-- every run, and `palletflow database roles`.
CREATE FUNCTION apply_app_privileges() RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    app record;
    t record;
    s record;
BEGIN
    FOR app IN SELECT r.rolname, r.rolsuper, r.oid FROM app_roles a JOIN pg_roles r ON r.rolname = a.role_name LOOP
        -- A role that could rewrite history must not pass for the application's.
        IF app.rolsuper THEN
            RAISE EXCEPTION 'application role % is a superuser: it could rewrite history', app.rolname;
        END IF;
        IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
                     AND pg_has_role(app.oid, c.relowner, 'USAGE')) THEN
            RAISE EXCEPTION 'application role % owns PalletFlow''s tables (or inherits from their owner): use a role of its own', app.rolname;
        END IF;
        EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', app.rolname);
        FOR t IN SELECT c.oid::regclass AS relation, c.relname::text AS name, c.relispartition AS partition,
                        p.privileges, p.update_columns
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 LEFT JOIN app_privileges p ON p.table_name = c.relname
                 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') LOOP
            EXECUTE format('REVOKE ALL ON TABLE %s FROM %I', t.relation, app.rolname);
            -- Partitions are reached through their parent, which checks the privileges.
            IF t.partition OR t.privileges IS NULL THEN CONTINUE; END IF;
            IF cardinality(t.privileges) > 0 THEN
                EXECUTE format('GRANT %s ON TABLE %s TO %I', array_to_string(t.privileges, ', '), t.relation, app.rolname);
            END IF;
            IF cardinality(t.update_columns) > 0 THEN
                EXECUTE format('GRANT UPDATE (%s) ON TABLE %s TO %I',
                               (SELECT string_agg(quote_ident(c), ', ') FROM unnest(t.update_columns) AS c),
                               t.relation, app.rolname);
            END IF;
        END LOOP;
        -- Sequences: nextval for the tables the role inserts into (movements.seq,
        -- ledger_entries.seq), nothing else (setval would need UPDATE).
        FOR s IN SELECT c.oid::regclass AS sequence,
                        EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class o ON o.oid = d.refobjid
                                JOIN app_privileges p ON p.table_name = o.relname
                                WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                                  AND 'INSERT' = ANY (p.privileges)) AS used
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relkind = 'S' LOOP
            EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %I', s.sequence, app.rolname);
            IF s.used THEN
                EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %I', s.sequence, app.rolname);
            END IF;
        END LOOP;
        -- The owner's functions it may call (SECURITY DEFINER, EXECUTE revoked from PUBLIC).
        EXECUTE format('GRANT EXECUTE ON FUNCTION ensure_ledger_partitions(timestamptz, timestamptz), analyze_indicator_state() TO %I',
                       app.rolname);
    END LOOP;
    RETURN QUERY
        SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND NOT EXISTS (SELECT 1 FROM app_privileges p WHERE p.table_name = c.relname)
        ORDER BY 1;
END $$;
