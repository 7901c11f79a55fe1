-- Lines and entries refer to their movement through a foreign key per monthly partition
-- (issue #8, B2), not through one on the partitioned tables.
--
-- A foreign key to a partitioned table is checked by a query that routes through the
-- partitions for every row: 63 microseconds per ledger entry and 34 per line, measured
-- with auto_explain's trigger times on a batch of 1,000 deliveries (4,000 entries): 285 ms
-- of the statement's 620. A movement's lines and entries sit in the partition of its own
-- month (all three are partitioned by the time in the movement id), so each month's lines
-- and entries can refer to that month's movements directly, a plain table, checked like
-- any other foreign key. Every line and entry still has its movement; the archive drops a
-- month's lines and entries before its movements, as before.

ALTER TABLE movement_lines DROP CONSTRAINT movement_lines_movement_fkey;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_movement_fkey;

CREATE FUNCTION link_ledger_partitions(suffix text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    ledger_table text;
BEGIN
    FOREACH ledger_table IN ARRAY ARRAY['movement_lines', 'ledger_entries'] LOOP
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I FOREIGN KEY (ecosystem_id, movement_id) REFERENCES %I (ecosystem_id, id)',
                       ledger_table || '_' || suffix, ledger_table || '_' || suffix || '_movement_fkey',
                       'movements_' || suffix);
    END LOOP;
END $$;

SELECT link_ledger_partitions(substr(c.relname::text, length('movements_') + 1))
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'movements'::regclass;

-- As in 0009, and each new month's lines and entries linked to its movements.
CREATE OR REPLACE FUNCTION ensure_ledger_partitions(first_month timestamptz, last_month timestamptz) RETURNS integer
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
                PERFORM link_ledger_partitions(suffix);
                created := created + 1;
            END IF;
        END IF;
        month := date_trunc('month', month + interval '32 days', 'UTC');
    END LOOP;
    RETURN created;
END $$;
