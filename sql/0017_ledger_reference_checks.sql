-- The ledger's new rows are checked against the members, pallet types and accounts they
-- refer to once per statement, by one set-based query per table, instead of by a foreign
-- key trigger per row (issue #8, B2; docs/performance.md, change 30).
--
-- A foreign key runs, for every row inserted, a query of its own (an executor started
-- and ended) and locks the row it refers to FOR KEY SHARE until commit; many writers
-- locking the same member's row share it through a MultiXact. A batch of 1,000 deliveries
-- ran 9,000 such checks on members, pallet types and accounts (3 per movement, 1 per line,
-- 1 per entry), besides the 5,000 on the movements. On the 100k bench database, four
-- rounds each way in turn (ABBA), same daemon: B2 (1,000-line batches) 5,780 to 7,850
-- movements/s with the foreign keys, 8,240 to 9,130 with these checks; B1 680 to 974
-- against 655 to 960 declarations/s and pgbench's B1-limit 861 to 1,427 against 1,077 to
-- 1,295 transactions/s: no cost for a single declaration.
--
-- The lines' and entries' own movement keeps its foreign key, per month (sql/0013): a
-- check of the partitioned movements from a statement trigger opens every month's
-- partition and index: B1-limit fell by 15 to 25% (two rounds), B2 rose by 20%.
--
-- The lock is what keeps a concurrent DELETE (or change of key) from taking the row away
-- between the check and the commit. The rows checked here (memberships, pallet types,
-- accounts; ecosystems through the memberships) are never deleted nor given another key:
-- the ledger names them forever, a member leaves by having its tokens revoked, a pallet
-- type by being deactivated. The triggers below make that a rule of the database, so the
-- checks need no lock, and see every committed row. A row whose reference is missing is
-- refused with SQLSTATE 23503 (foreign_key_violation), the constraint named
-- `<table>_<column>_ref`.

-- A movement's ecosystem is checked through its declarer's membership, which refers to
-- its ecosystem by a foreign key.
CREATE FUNCTION check_movement_references() RETURNS trigger LANGUAGE plpgsql
    -- Probes of the referenced keys by their index, never a scan of the table: the plan is
    -- made once per session, for whatever number of rows the first statement brought, and
    -- kept for every size after it. Left to itself, the planner chose to read the members
    -- whole for a single declaration (250 us a statement instead of 50).
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    missing record;
BEGIN
    SELECT r.party_column, r.ecosystem_id, r.party INTO missing
    FROM (SELECT DISTINCT 'declarer_id' AS party_column, ecosystem_id, declarer_id AS party FROM added
          UNION ALL
          SELECT DISTINCT 'from_party_id', ecosystem_id, from_party_id FROM added WHERE from_party_id IS NOT NULL
          UNION ALL
          SELECT DISTINCT 'to_party_id', ecosystem_id, to_party_id FROM added WHERE to_party_id IS NOT NULL) AS r
    WHERE NOT EXISTS (SELECT 1 FROM memberships p WHERE p.ecosystem_id = r.ecosystem_id AND p.id = r.party)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'movements.%: % is not a member of ecosystem %', missing.party_column, missing.party, missing.ecosystem_id
            USING ERRCODE = 'foreign_key_violation', TABLE = 'movements',
                  CONSTRAINT = 'movements_' || missing.party_column || '_ref';
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION check_movement_line_references() RETURNS trigger LANGUAGE plpgsql
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    missing record;
BEGIN
    SELECT r.ecosystem_id, r.pallet_type_id INTO missing
    FROM (SELECT DISTINCT ecosystem_id, pallet_type_id FROM added) AS r
    WHERE NOT EXISTS (SELECT 1 FROM pallet_types t WHERE t.ecosystem_id = r.ecosystem_id AND t.id = r.pallet_type_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'movement_lines.pallet_type_id: pallet type % does not exist in ecosystem %', missing.pallet_type_id, missing.ecosystem_id
            USING ERRCODE = 'foreign_key_violation', TABLE = 'movement_lines', CONSTRAINT = 'movement_lines_pallet_type_id_ref';
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION check_ledger_entry_references() RETURNS trigger LANGUAGE plpgsql
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    missing record;
BEGIN
    SELECT r.ecosystem_id, r.account_id INTO missing
    FROM (SELECT DISTINCT ecosystem_id, account_id FROM added) AS r
    WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.ecosystem_id = r.ecosystem_id AND a.id = r.account_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger_entries.account_id: account % does not exist in ecosystem %', missing.account_id, missing.ecosystem_id
            USING ERRCODE = 'foreign_key_violation', TABLE = 'ledger_entries', CONSTRAINT = 'ledger_entries_account_id_ref';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER movements_references AFTER INSERT ON movements REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION check_movement_references();
CREATE TRIGGER movement_lines_references AFTER INSERT ON movement_lines REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION check_movement_line_references();
CREATE TRIGGER ledger_entries_references AFTER INSERT ON ledger_entries REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION check_ledger_entry_references();

-- The rows referred to keep their keys and are never deleted. (`UPDATE OF` the key: the
-- accounts' balance updates do not even evaluate the trigger.)
CREATE FUNCTION refuse_referenced_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are named by the ledger: they are never deleted nor given another key (%)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'P0001',
              HINT = 'revoke a member''s tokens, deactivate a pallet type; the ledger keeps them';
END $$;

CREATE TRIGGER ecosystems_kept BEFORE DELETE ON ecosystems
    FOR EACH ROW EXECUTE FUNCTION refuse_referenced_change();
CREATE TRIGGER ecosystems_key_kept BEFORE UPDATE OF id ON ecosystems
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION refuse_referenced_change();
CREATE TRIGGER ecosystems_no_truncate BEFORE TRUNCATE ON ecosystems
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_referenced_change();
CREATE TRIGGER memberships_kept BEFORE DELETE ON memberships
    FOR EACH ROW EXECUTE FUNCTION refuse_referenced_change();
CREATE TRIGGER memberships_key_kept BEFORE UPDATE OF ecosystem_id, id ON memberships
    FOR EACH ROW WHEN ((OLD.ecosystem_id, OLD.id) IS DISTINCT FROM (NEW.ecosystem_id, NEW.id))
    EXECUTE FUNCTION refuse_referenced_change();
CREATE TRIGGER memberships_no_truncate BEFORE TRUNCATE ON memberships
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_referenced_change();
CREATE TRIGGER pallet_types_kept BEFORE DELETE ON pallet_types
    FOR EACH ROW EXECUTE FUNCTION refuse_referenced_change();
CREATE TRIGGER pallet_types_key_kept BEFORE UPDATE OF ecosystem_id, id ON pallet_types
    FOR EACH ROW WHEN ((OLD.ecosystem_id, OLD.id) IS DISTINCT FROM (NEW.ecosystem_id, NEW.id))
    EXECUTE FUNCTION refuse_referenced_change();
CREATE TRIGGER pallet_types_no_truncate BEFORE TRUNCATE ON pallet_types
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_referenced_change();
CREATE TRIGGER accounts_kept BEFORE DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION refuse_referenced_change();
CREATE TRIGGER accounts_key_kept BEFORE UPDATE OF ecosystem_id, id ON accounts
    FOR EACH ROW WHEN ((OLD.ecosystem_id, OLD.id) IS DISTINCT FROM (NEW.ecosystem_id, NEW.id))
    EXECUTE FUNCTION refuse_referenced_change();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_referenced_change();

-- The foreign keys the checks replace.
ALTER TABLE movements DROP CONSTRAINT movements_ecosystem_fkey, DROP CONSTRAINT movements_declarer_fkey,
    DROP CONSTRAINT movements_from_fkey, DROP CONSTRAINT movements_to_fkey;
ALTER TABLE movement_lines DROP CONSTRAINT movement_lines_type_fkey;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_account_fkey;
