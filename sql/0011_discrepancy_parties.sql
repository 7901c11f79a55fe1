-- The parties of the contested movement, kept on the discrepancy (issue #8, B6).
--
-- The mediation report counts each participant's open discrepancies. Finding them through
-- the movements meant joining every open discrepancy of the ecosystem to the monthly
-- movement partitions: on a ledger of 10M movements, a hash join over the busiest
-- carrier's 2M movements (1.2 s), or 44,761 index probes (3 s). A movement's parties never
-- change (the ledger is append-only), so they are copied once, when the discrepancy is
-- opened, and partial indexes on the open ones answer the count directly.

ALTER TABLE discrepancies
    ADD COLUMN declarer_id uuid,
    ADD COLUMN from_party_id uuid,
    ADD COLUMN to_party_id uuid;

UPDATE discrepancies d
SET declarer_id = m.declarer_id, from_party_id = m.from_party_id, to_party_id = m.to_party_id
FROM movements m
WHERE m.ecosystem_id = d.ecosystem_id AND m.id = d.movement_id;

ALTER TABLE discrepancies ALTER COLUMN declarer_id SET NOT NULL;

-- Filled from the movement by the database itself, so that every path that opens a
-- discrepancy (the API, EPCIS, restore of an older backup, the benchmark's generator)
-- keeps them right.
CREATE FUNCTION discrepancy_parties() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT m.declarer_id, m.from_party_id, m.to_party_id
    INTO NEW.declarer_id, NEW.from_party_id, NEW.to_party_id
    FROM movements m
    WHERE m.ecosystem_id = NEW.ecosystem_id AND m.id = NEW.movement_id;
    RETURN NEW;
END
$$;

CREATE TRIGGER discrepancies_parties BEFORE INSERT ON discrepancies
    FOR EACH ROW EXECUTE FUNCTION discrepancy_parties();

CREATE INDEX discrepancies_open_declarer_idx ON discrepancies (ecosystem_id, declarer_id) WHERE resolved_at IS NULL;
CREATE INDEX discrepancies_open_from_idx ON discrepancies (ecosystem_id, from_party_id) WHERE resolved_at IS NULL;
CREATE INDEX discrepancies_open_to_idx ON discrepancies (ecosystem_id, to_party_id) WHERE resolved_at IS NULL;
