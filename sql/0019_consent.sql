-- Consent: nobody changes what they owe alone (issue: trust between parties).

-- A reversal of a movement nobody had confirmed takes its pending entries back and is
-- final: nobody confirms or contests it (confirming it would add to the confirmed balances
-- entries whose original never got there).
ALTER TYPE movement_status ADD VALUE IF NOT EXISTS 'final';

-- A contested movement that is reversed closes its discrepancy with it.
ALTER TABLE discrepancies DROP CONSTRAINT discrepancies_resolution;
ALTER TABLE discrepancies ADD CONSTRAINT discrepancies_resolution
    CHECK (resolution IS NULL OR resolution IN ('declared', 'contested', 'agreed', 'reversed'));

-- A pallet note handed to another holder moves a claim to it: the new holder accepts it
-- before it counts (until then the note stays with its holder, the transfer pending).
ALTER TABLE pallet_notes ADD COLUMN pending_holder_id uuid;
ALTER TABLE pallet_notes ADD CONSTRAINT pallet_notes_pending_holder_fkey
    FOREIGN KEY (ecosystem_id, pending_holder_id) REFERENCES memberships (ecosystem_id, id);
ALTER TABLE pallet_note_events DROP CONSTRAINT pallet_note_events_kind;
ALTER TABLE pallet_note_events ADD CONSTRAINT pallet_note_events_kind
    CHECK (kind IN ('issued', 'redeemed', 'transferred', 'cancelled', 'transfer_proposed', 'transfer_declined'));

-- Every write is safe to retry (Idempotency-Key on each POST, PUT and PATCH). A write that
-- is not one SQL statement claims its key in its own transaction (response_status 0 until
-- the answer is recorded), so two requests with one key write once; the answer is kept
-- with the headers a replay needs (Content-Type, Location).
ALTER TABLE idempotency_keys ADD COLUMN response_headers jsonb;
