-- Ledger rows written at schema version 8 (before the time partitions): one movement
-- with a time-ordered id (recorded 2026-03), one with a random id, their lines and
-- entries, and a discrepancy that refers to the random one.
INSERT INTO ecosystems (id, name) VALUES ('00000000-0000-0000-0000-0000000000e1', 'E');
INSERT INTO organisations (id, name) VALUES ('00000000-0000-0000-0000-0000000000a1', 'S'), ('00000000-0000-0000-0000-0000000000a2', 'C');
INSERT INTO memberships (ecosystem_id, id, organisation_id, role) VALUES
 ('00000000-0000-0000-0000-0000000000e1', '00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000a1', 'shipper'),
 ('00000000-0000-0000-0000-0000000000e1', '00000000-0000-0000-0000-0000000000b2', '00000000-0000-0000-0000-0000000000a2', 'carrier');
INSERT INTO pallet_types (ecosystem_id, id, code, name) VALUES ('00000000-0000-0000-0000-0000000000e1', '00000000-0000-0000-0000-0000000000c1', 'EPAL1', 'EPAL');
INSERT INTO accounts (ecosystem_id, class, party_id, counterparty_id, site_id, pallet_type_id, quality, balance, confirmed_balance)
VALUES ('00000000-0000-0000-0000-0000000000e1', 'owed', '00000000-0000-0000-0000-0000000000b2', '00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-000000000000', '00000000-0000-0000-0000-0000000000c1', 'A', 7, 7),
       ('00000000-0000-0000-0000-0000000000e1', 'owed', '00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000b2', '00000000-0000-0000-0000-000000000000', '00000000-0000-0000-0000-0000000000c1', 'A', -7, -7);
-- one v7 movement (2026-03) and one random (v4) id
INSERT INTO movements (ecosystem_id, id, kind, event_time, record_time, declarer_id, from_party_id, to_party_id, status, confirmed, source)
VALUES ('00000000-0000-0000-0000-0000000000e1', '019cb000-0000-7000-8000-000000000001', 'transfer', '2026-03-05', '2026-03-05', '00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000b2', 'confirmed', true, 'api'),
       ('00000000-0000-0000-0000-0000000000e1', '5d41402a-bc4b-4a76-b971-9d911017c592', 'transfer', '2026-03-06', '2026-03-06', '00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000b2', 'confirmed', true, 'api');
INSERT INTO movement_lines (ecosystem_id, movement_id, line_no, pallet_type_id, quality, quantity, exchanged_quality)
VALUES ('00000000-0000-0000-0000-0000000000e1', '019cb000-0000-7000-8000-000000000001', 0, '00000000-0000-0000-0000-0000000000c1', 'A', 4, 'A'),
       ('00000000-0000-0000-0000-0000000000e1', '5d41402a-bc4b-4a76-b971-9d911017c592', 0, '00000000-0000-0000-0000-0000000000c1', 'A', 3, 'A');
INSERT INTO ledger_entries (ecosystem_id, movement_id, account_id, amount, event_time)
SELECT '00000000-0000-0000-0000-0000000000e1', m, a, amt, '2026-03-05' FROM (VALUES
 ('019cb000-0000-7000-8000-000000000001'::uuid, 1::bigint, 4), ('019cb000-0000-7000-8000-000000000001', 2, -4),
 ('5d41402a-bc4b-4a76-b971-9d911017c592', 1, 3), ('5d41402a-bc4b-4a76-b971-9d911017c592', 2, -3)) v(m, a, amt);
INSERT INTO discrepancies (ecosystem_id, id, movement_id, contested_by, counter_lines) VALUES
 ('00000000-0000-0000-0000-0000000000e1', '00000000-0000-0000-0000-0000000000d1', '5d41402a-bc4b-4a76-b971-9d911017c592', '00000000-0000-0000-0000-0000000000b2', '[]');
