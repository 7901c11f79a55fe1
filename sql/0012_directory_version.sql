-- A version number of each ecosystem's directory (issue #8, latency at 70% load).
--
-- Every declaration is checked against the ecosystem's directory (members, sites, pallet
-- types), which the daemon keeps in memory for two seconds. Reloading it took four
-- queries and tens of milliseconds for an ecosystem of 2,000 sites, and every request
-- arriving during a reload waited for it: every two seconds, a stall the 99th percentile
-- saw. With a version that every change to the directory bumps, the daemon revalidates
-- its copy by reading one row, and reloads only when something changed, whichever
-- process changed it.

ALTER TABLE ecosystems ADD COLUMN directory_version bigint NOT NULL DEFAULT 0;

-- Statement-level, so a bulk insert (a restore, the benchmark's generator) bumps each
-- ecosystem once, not once per row.
CREATE FUNCTION bump_directory_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ecosystems SET directory_version = directory_version + 1
    WHERE id IN (SELECT DISTINCT ecosystem_id FROM changed);
    RETURN NULL;
END $$;

CREATE TRIGGER memberships_directory_insert AFTER INSERT ON memberships
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
CREATE TRIGGER memberships_directory_update AFTER UPDATE ON memberships
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
CREATE TRIGGER memberships_directory_delete AFTER DELETE ON memberships
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
CREATE TRIGGER sites_directory_insert AFTER INSERT ON sites
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
CREATE TRIGGER sites_directory_update AFTER UPDATE ON sites
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
CREATE TRIGGER sites_directory_delete AFTER DELETE ON sites
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
CREATE TRIGGER pallet_types_directory_insert AFTER INSERT ON pallet_types
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
CREATE TRIGGER pallet_types_directory_update AFTER UPDATE ON pallet_types
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
CREATE TRIGGER pallet_types_directory_delete AFTER DELETE ON pallet_types
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();

-- A member's name and PGLN live on its organisation, which may belong to several
-- ecosystems: a change to it is a change to each of their directories.
CREATE FUNCTION bump_directory_version_of_organisations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ecosystems SET directory_version = directory_version + 1
    WHERE id IN (SELECT m.ecosystem_id FROM memberships m JOIN changed c ON c.id = m.organisation_id);
    RETURN NULL;
END $$;

CREATE TRIGGER organisations_directory_update AFTER UPDATE ON organisations
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version_of_organisations();
