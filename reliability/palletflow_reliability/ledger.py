"""What the write tests check afterwards, on the database itself rather than on the answers:
every acknowledged declaration stored once under the id it was answered with, nothing stored
that no request declared, every movement whole and audited, and the ledger verify of both
the API and the CLI."""

import json

from .support import fmt, run


def movement_markers(cluster, ecosystem, prefix):
    """marker -> [movement ids] for movements whose order reference starts with prefix."""
    found = {}
    for marker, movement in cluster.rows(
            f"SELECT order_reference, id FROM movements WHERE ecosystem_id = '{ecosystem.id}' "
            f"AND order_reference LIKE '{prefix}%'"):
        found.setdefault(marker, []).append(movement)
    return found


def verify_ledger(test, suite):
    """The ledger check through the API (shipper) and the CLI on the same cluster."""
    client = suite.client
    status, _, body = client.request("GET", suite.eco.base + "/ledger/verify", token=suite.eco.shipper["token"])
    report = json.loads(body) if status == 200 else {}
    ok = status == 200 and report.get("holds") is True
    test.check(ok, f"GET ledger/verify: {status} {body[:400]!r}")
    result = run([suite.bins.cli, "ledger", "verify", "--ecosystem", suite.eco.id, "--data-dir", suite.data_dir])
    test.check(result.returncode == 0, f"palletflow ledger verify exit {result.returncode}: {result.stdout[-400:]}{result.stderr[-400:]}")
    if ok:
        test.figure(f"ledger verify holds: {fmt(report.get('movements', 0))} movements, "
                    f"{fmt(report.get('entries', 0))} entries, {fmt(report.get('accounts', 0))} accounts")
    # Every movement is whole (none half-applied): it has its lines, and its entries sum to
    # zero (a full exchange nets to no entry at all, which is fine).
    orphans = suite.cluster.value(f"""
        SELECT count(*) FROM movements m WHERE m.ecosystem_id = '{suite.eco.id}' AND (
          NOT EXISTS (SELECT 1 FROM movement_lines l WHERE l.ecosystem_id = m.ecosystem_id AND l.movement_id = m.id)
          OR (SELECT coalesce(sum(amount), 0) FROM ledger_entries e WHERE e.ecosystem_id = m.ecosystem_id AND e.movement_id = m.id) <> 0)""")
    test.check(orphans == "0", f"{orphans} movements without lines or with unbalanced entries")


def idempotency_audit(test, suite, prefix, acknowledged, in_doubt=()):
    """acknowledged: marker -> movement id(s) from 2xx answers. Returns (lost, duplicated)."""
    found = movement_markers(suite.cluster, suite.eco, prefix)
    lost = [m for m in acknowledged if m not in found]
    duplicated = sum(len(ids) - 1 for ids in found.values() if len(ids) > 1)
    phantom = [m for m in found if m not in acknowledged and m not in in_doubt]
    wrong_id = [m for m, ids in acknowledged.items() if m in found and ids and not set(ids) <= set(found[m])]
    test.check(not lost, f"{len(lost)} acknowledged declarations missing, e.g. {lost[:3]}")
    test.check(duplicated == 0, f"{duplicated} duplicated movements")
    test.check(not phantom, f"{len(phantom)} movements that no request declared, e.g. {phantom[:3]}")
    test.check(not wrong_id, f"{len(wrong_id)} declarations stored under another id than the one answered, e.g. {wrong_id[:3]}")
    resolved = sum(1 for m in in_doubt if m in found)
    audited = int(suite.cluster.value(f"""
        SELECT count(*) FROM audit_log a JOIN movements m ON m.ecosystem_id = a.ecosystem_id AND m.id = a.subject_id
        WHERE a.ecosystem_id = '{suite.eco.id}' AND a.action = 'movement.declare' AND m.order_reference LIKE '{prefix}%'"""))
    total = sum(len(ids) for ids in found.values())
    test.check(audited == total, f"{total} movements but {audited} audit rows (movement.declare)")
    return found, len(lost), duplicated, resolved
