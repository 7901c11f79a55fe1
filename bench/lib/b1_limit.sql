-- B1-limit: what the daemon sends PostgreSQL for one declaration (a carrier's delivery to
-- a consignee site with a shortfall of 3), run by pgbench -M prepared, like the daemon: the
-- token lookup of Store.authenticate (which the daemon caches: pgbench does it every time)
-- and the single statement of Store.post
-- (Sources/PalletFlowStore/Ledger/Store+Ledger.swift), with the same
-- CTE, the same rows written and the same locks. Differences, all cheaper or equal for
-- the daemon: values the daemon computes in Swift (the token's SHA-256, the movement id,
-- the idempotency key, ids picked at random) are computed here in SQL from pgbench's
-- random numbers; the postings the daemon sends as arrays are written as ARRAY[...] of
-- the same values. Variables from pgbench -D: eco (ecosystem id), seed (generator seed).
\set c random(1, 50)
\set s random(1, 2000)
\set mid random(1, 281474976710655)
SELECT t.ecosystem_id, t.membership_id, o.id, o.name, m.role::text, t.id
FROM api_tokens t
JOIN memberships m ON m.ecosystem_id = t.ecosystem_id AND m.id = t.membership_id
JOIN organisations o ON o.id = m.organisation_id
WHERE t.token_hash = sha256(convert_to('pft_' || rpad('b' || :seed::text || '-carrier-' || :c::int, 43, 'x'), 'UTF8'))
  AND t.revoked_at IS NULL AND m.active;
WITH v AS (
    SELECT md5('palletflow-bench' || ':' || :seed::text || ':' || 'carrier' || ':' || :c::int)::uuid AS carrier,
           md5('palletflow-bench' || ':' || :seed::text || ':' || 'customer' || ':' || ((:s::int - 1) / 10 + 1))::uuid AS customer,
           md5('palletflow-bench' || ':' || :seed::text || ':' || 'csite' || ':' || :s::int)::uuid AS site,
           md5('palletflow-bench' || ':' || :seed::text || ':' || 'type' || ':' || '1')::uuid AS pallet_type,
           -- Time-ordered like newID(): Unix milliseconds, version 7, variant 10.
           (lpad(to_hex(floor(extract(epoch FROM clock_timestamp()) * 1000)::int8), 12, '0') || '7000-8000-'
            || lpad(to_hex(:mid::int8), 12, '0'))::uuid AS mid,
           'pgbench-' || :client_id::int || '-' || :mid::int8 AS key,
           (extract(epoch FROM now()) * 1000000)::int8 AS now_us,
           '00000000-0000-0000-0000-000000000000'::uuid AS none
), lock AS (
    -- Shared among writers; the indicators' watermark reader takes it exclusively.
    SELECT pg_advisory_xact_lock_shared(hashtextextended(:eco::uuid::text, 7)) AS held
), key AS (
    INSERT INTO idempotency_keys (ecosystem_id, membership_id, key, request_hash, response_status, response_body)
    SELECT :eco::uuid, v.carrier, v.key, sha256(convert_to(v.key, 'UTF8')), 201, convert_to(repeat('x', 760), 'UTF8')
    FROM v
    WHERE v.key <> ''
    ON CONFLICT DO NOTHING
    RETURNING 1 AS inserted
), go AS (
    SELECT 1 AS ok FROM lock, v WHERE v.key = '' OR EXISTS (SELECT 1 FROM key)
), mv AS (
    INSERT INTO movements (ecosystem_id, id, kind, event_time, event_offset_minutes, record_time, declarer_id,
        from_party_id, from_site_id, to_party_id, to_site_id, counterparty_id, status, confirmed, confirmed_at,
        delivery_note, cmr, order_reference, pallet_note_reference, evidence_sha256, evidence_url, note,
        reverses_id, corrects_id, source)
    SELECT :eco::uuid, x.id, x.kind::movement_kind,
           'epoch'::timestamptz + x.event_us * interval '1 microsecond', nullif(x.offset_minutes, 9999),
           'epoch'::timestamptz + x.record_us * interval '1 microsecond', x.declarer,
           nullif(x.from_party, v.none), nullif(x.from_site, v.none),
           nullif(x.to_party, v.none), nullif(x.to_site, v.none), nullif(x.counterparty, v.none),
           x.status::movement_status, x.confirmed,
           CASE WHEN x.confirmed THEN 'epoch'::timestamptz + x.record_us * interval '1 microsecond' END,
           nullif(x.delivery_note, ''), nullif(x.cmr, ''), nullif(x.order_reference, ''),
           nullif(x.pallet_note_reference, ''), nullif(x.evidence_sha256, ''), nullif(x.evidence_url, ''),
           nullif(x.note, ''), nullif(x.reverses, v.none), nullif(x.corrects, v.none), x.source
    FROM v, unnest(ARRAY[v.mid]::uuid[], ARRAY['delivery']::text[], ARRAY[v.now_us - 3600000000]::int8[], ARRAY[60]::int4[],
                ARRAY[v.now_us]::int8[], ARRAY[v.carrier]::uuid[], ARRAY[v.carrier]::uuid[], ARRAY[v.none]::uuid[],
                ARRAY[v.customer]::uuid[], ARRAY[v.site]::uuid[], ARRAY[v.customer]::uuid[], ARRAY['declared']::text[],
                ARRAY[false]::bool[], ARRAY['']::text[], ARRAY['CMR-' || :mid::int8]::text[], ARRAY['']::text[],
                ARRAY['']::text[], ARRAY['']::text[], ARRAY['']::text[],
                ARRAY['']::text[], ARRAY[v.none]::uuid[], ARRAY[v.none]::uuid[], ARRAY['api']::text[])
         AS x(id, kind, event_us, offset_minutes, record_us, declarer, from_party, from_site, to_party, to_site,
              counterparty, status, confirmed, delivery_note, cmr, order_reference, pallet_note_reference,
              evidence_sha256, evidence_url, note, reverses, corrects, source)
    WHERE EXISTS (SELECT 1 FROM go)
    RETURNING 1
), ln AS (
    INSERT INTO movement_lines (ecosystem_id, movement_id, line_no, pallet_type_id, quality, quantity,
                                exchanged_quantity, exchanged_quality, target_quality)
    SELECT :eco::uuid, x.movement, x.line_no, x.pallet_type, x.quality::quality_grade, x.quantity,
           x.exchanged, x.exchanged_quality::quality_grade, nullif(x.target_quality, '')::quality_grade
    FROM v, unnest(ARRAY[v.mid]::uuid[], ARRAY[0]::int2[], ARRAY[v.pallet_type]::uuid[], ARRAY['A']::text[],
                ARRAY[33]::int8[], ARRAY[30]::int8[], ARRAY['A']::text[], ARRAY['']::text[])
         AS x(movement, line_no, pallet_type, quality, quantity, exchanged, exchanged_quality, target_quality)
    WHERE EXISTS (SELECT 1 FROM go)
    RETURNING 1
), p AS (
    SELECT x.movement, x.class::account_class AS class, x.party, x.counterparty, x.site, x.pallet_type,
           x.quality::quality_grade AS quality, x.amount, x.confirmed,
           'epoch'::timestamptz + x.event_us * interval '1 microsecond' AS event_time
    FROM v, unnest(ARRAY[v.mid, v.mid, v.mid, v.mid]::uuid[], ARRAY['holding', 'holding', 'owed', 'owed']::text[],
                ARRAY[v.carrier, v.customer, v.carrier, v.customer]::uuid[], ARRAY[v.none, v.none, v.customer, v.carrier]::uuid[],
                ARRAY[v.none, v.site, v.none, v.none]::uuid[], ARRAY[v.pallet_type, v.pallet_type, v.pallet_type, v.pallet_type]::uuid[],
                ARRAY['A', 'A', 'A', 'A']::text[], ARRAY[-3, 3, -3, 3]::int8[],
                ARRAY[false, false, false, false]::bool[], ARRAY[v.now_us - 3600000000, v.now_us - 3600000000,
                      v.now_us - 3600000000, v.now_us - 3600000000]::int8[])
         AS x(movement, class, party, counterparty, site, pallet_type, quality, amount, confirmed, event_us)
    WHERE EXISTS (SELECT 1 FROM go)
), acc AS (
    INSERT INTO accounts AS a (ecosystem_id, class, party_id, counterparty_id, site_id, pallet_type_id, quality,
                               balance, confirmed_balance)
    SELECT :eco::uuid, class, party, counterparty, site, pallet_type, quality,
           sum(amount), coalesce(sum(amount) FILTER (WHERE confirmed), 0)
    FROM p
    GROUP BY class, party, counterparty, site, pallet_type, quality
    ORDER BY class, party, counterparty, site, pallet_type, quality
    ON CONFLICT ON CONSTRAINT accounts_natural_key DO UPDATE
        SET balance = a.balance + excluded.balance,
            confirmed_balance = a.confirmed_balance + excluded.confirmed_balance
    RETURNING id, class, party_id, counterparty_id, site_id, pallet_type_id, quality
), en AS (
    INSERT INTO ledger_entries (ecosystem_id, movement_id, account_id, amount, event_time)
    SELECT :eco::uuid, p.movement, acc.id, p.amount, p.event_time
    FROM p JOIN acc ON acc.class = p.class AND acc.party_id = p.party AND acc.counterparty_id = p.counterparty
                   AND acc.site_id = p.site AND acc.pallet_type_id = p.pallet_type AND acc.quality = p.quality
    RETURNING 1
), nt AS (
    INSERT INTO pallet_notes (ecosystem_id, id, serial, issuer_id, holder_id, pallet_type_id, quality, quantity,
                              issue_date, due_date, movement_id)
    SELECT :eco::uuid, x.id, nullif(x.serial, ''), x.issuer, x.holder, x.pallet_type, x.quality::quality_grade,
           x.quantity, x.issue_date::date, x.due_date::date, x.movement
    FROM unnest('{}'::uuid[], '{}'::text[], '{}'::uuid[], '{}'::uuid[],
                '{}'::uuid[], '{}'::text[], '{}'::int8[], '{}'::text[],
                '{}'::text[], '{}'::uuid[])
         AS x(id, serial, issuer, holder, pallet_type, quality, quantity, issue_date, due_date, movement)
    WHERE EXISTS (SELECT 1 FROM go)
    RETURNING id, quantity
), ne AS (
    INSERT INTO pallet_note_events (ecosystem_id, note_id, kind, quantity, by_membership_id)
    SELECT :eco::uuid, nt.id, 'issued', nt.quantity, v.carrier FROM nt, v
), au AS (
    -- Who declared what and when: one audit row per movement posted.
    INSERT INTO audit_log (ecosystem_id, membership_id, action, subject_id, detail)
    SELECT :eco::uuid, v.carrier, 'movement.declare', x.id, jsonb_build_object('source', x.source, 'kind', x.kind)
    FROM v, unnest(ARRAY[v.mid]::uuid[], ARRAY['api']::text[], ARRAY['delivery']::text[]) AS x(id, source, kind)
    WHERE EXISTS (SELECT 1 FROM go)
)
SELECT (SELECT count(*) FROM key)::int8, (SELECT count(*) FROM mv)::int8, (SELECT count(*) FROM en)::int8,
       k.request_hash, k.response_status::int4, k.response_body
FROM v
LEFT JOIN idempotency_keys k
  ON k.ecosystem_id = :eco::uuid AND k.membership_id = v.carrier AND k.key = v.key;
-- Store.post answers once PostgreSQL has committed the statement's implicit transaction: it
-- sends one more statement on the connection, which PostgreSQL reads only after that commit
-- (DatabaseClient.committed(on:)). So does this script.
SELECT 1;
