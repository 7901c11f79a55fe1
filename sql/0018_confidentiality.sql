-- What one ecosystem's readers can learn of another's (issue: trust between parties).
--
-- Jobs are addressed by a random id. The identity column counts every ecosystem's jobs,
-- so handing it out (`Location: .../jobs/{id}`) told a shipper how many jobs the other
-- ecosystems had queued between two of its own.
ALTER TABLE jobs ADD COLUMN public_id uuid NOT NULL DEFAULT gen_random_uuid();
CREATE UNIQUE INDEX jobs_public_id_key ON jobs (public_id);

-- A member's name is the one its ecosystem gave it. An organisation is shared by the
-- ecosystems it belongs to (found by its PGLN, a public GS1 key), but the name another
-- shipper wrote for it is that shipper's business: adding a member by a PGLN already used
-- elsewhere used to answer with the other ecosystem's name for it.
ALTER TABLE memberships ADD COLUMN name text;
UPDATE memberships m SET name = o.name FROM organisations o WHERE o.id = m.organisation_id;
ALTER TABLE memberships ALTER COLUMN name SET NOT NULL;
ALTER TABLE memberships ADD CONSTRAINT memberships_name_not_blank CHECK (length(btrim(name)) > 0);
