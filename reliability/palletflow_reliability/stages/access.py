"""Who may do what, and what stays secret. `limits`: bodies over the limit and requests over
the per-token and per-address rates refused cleanly. `append-only`: nobody rewrites the
ledger, not even the tables' owner. `secrets-audit`: no token secret in the database or the
logs, every movement audited. `tenancy`: another ecosystem's token learns nothing of the
demo's ids."""

import http.client
import json
import os
import random
import re
import time
import uuid

from ..client import PROBLEM, TYPE_BASE, Client, problem_type
from ..daemon import Daemon
from ..ledger import movement_markers
from ..support import fmt, run


def test_limits(suite, test):
    """413 for bodies over the limit (declared length and chunked), 429 per token."""
    client = Client(suite.port)
    token = suite.eco.carriers[0]["token"]
    big = b"x" * (suite.body_limit + 1)
    status, headers, data = client.request("POST", suite.eco.base + "/movements/import", token=token, body=big,
                                           content_type="text/csv", headers={"Idempotency-Key": f"big{suite.run_id}"})
    test.check(status == 413 and headers.get("content-type") == PROBLEM and problem_type(data) == TYPE_BASE + "too-large",
               f"body over the limit (Content-Length): {status} {data[:200]!r}")
    # Chunked, no Content-Length: refused once the limit is crossed.
    connection = http.client.HTTPConnection("127.0.0.1", suite.port, timeout=60)
    connection.putrequest("POST", suite.eco.base + "/movements/import")
    connection.putheader("Authorization", f"Bearer {token}")
    connection.putheader("Content-Type", "text/csv")
    connection.putheader("Idempotency-Key", f"bigc{suite.run_id}")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    chunk = b"y" * 65536
    try:
        for _ in range(suite.body_limit // len(chunk) + 2):
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        connection.send(b"0\r\n\r\n")
    except OSError:
        pass
    response = connection.getresponse()
    data = response.read()
    test.check(response.status == 413 and response.getheader("content-type") == PROBLEM,
               f"chunked body over the limit: {response.status} {data[:200]!r}")
    connection.close()
    test.figure(f"bodies of {fmt(suite.body_limit + 1)} bytes: 413 problem+json (type too-large) with Content-Length and chunked")

    # Rate limit: a daemon with 5 requests/s per token (bursts of 10).
    suite.daemon.stop()
    limited = Daemon(suite.bins, suite.data_dir, suite.port, suite.daemon.log_path, rate_limit=5, address_limit=1,
                     extra=["--body-limit-bytes", str(suite.body_limit)])
    limited.start()
    try:
        limited_client = Client(suite.port)
        answers = {}
        retry_after = set()
        for _ in range(40):
            status, headers, data = limited_client.request("GET", "/v1/me", token=token)
            answers[status] = answers.get(status, 0) + 1
            if status == 429:
                test.check(headers.get("content-type") == PROBLEM and problem_type(data) == TYPE_BASE + "rate-limited",
                           f"429 without problem+json rate-limited: {data[:200]!r}")
                retry_after.add(headers.get("retry-after"))
        other, _, _ = limited_client.request("GET", "/v1/me", token=suite.eco.shipper["token"])
        test.check(answers.get(429, 0) >= 25, f"40 requests at once with a 5/s limit: {answers}")
        test.check(answers.get(200, 0) >= 10, f"the burst of 10 was not served: {answers}")
        test.check(all(value and value.isdigit() and int(value) >= 1 for value in retry_after), f"Retry-After values {retry_after}")
        test.check(other == 200, f"another token was limited too: {other}")
        time.sleep(1.2)
        again, _, _ = limited_client.request("GET", "/v1/me", token=token)
        test.check(again == 200, f"the token was not served again after waiting: {again}")
        test.figure(f"rate limit 5/s per token: 40 requests at once -> {dict(sorted(answers.items()))}, Retry-After "
                    f"{sorted(retry_after)}; another token {other}; the same token after 1.2 s {again}")
        # Per address (1/s, bursts of 20): guessing tokens is slowed down, a valid token
        # from the same address is still served.
        guesses = {}
        for n in range(40):
            status, headers, data = limited_client.request("GET", "/v1/me", token=f"pf_guess{n:032d}")
            guesses[status] = guesses.get(status, 0) + 1
            if status == 429:
                test.check(headers.get("content-type") == PROBLEM and problem_type(data) == TYPE_BASE + "rate-limited",
                           f"429 to a guessed token without problem+json rate-limited: {data[:200]!r}")
        test.check(guesses.get(401, 0) <= 21 and guesses.get(429, 0) >= 19,
                   f"40 guessed tokens with a 1/s per-address limit (bursts of 20): {guesses}")
        valid, _, _ = limited_client.request("GET", "/v1/me", token=suite.eco.shipper["token"])
        test.check(valid == 200, f"a valid token from the same address was held back: {valid}")
        test.figure(f"per-address limit 1/s, bursts of 20: 40 guessed tokens -> {dict(sorted(guesses.items()))}; "
                    f"a valid token from the same address {valid}")
    finally:
        limited.stop()
        suite.daemon.start()


def test_append_only(suite, test):
    """The ledger refuses UPDATE/DELETE/TRUNCATE, and what it names refuses DELETE, TRUNCATE and a new key,
    even to the tables' owner (by its triggers); the daemon's own role may not even try (sql/0020)."""
    role = suite.cluster.value("SELECT current_user")
    statements = [
        "UPDATE ledger_entries SET amount = amount + 1 WHERE ctid = (SELECT ctid FROM ledger_entries LIMIT 1)",
        "DELETE FROM ledger_entries WHERE ctid = (SELECT ctid FROM ledger_entries LIMIT 1)",
        "TRUNCATE ledger_entries CASCADE",
        "UPDATE movement_lines SET quantity = quantity + 1 WHERE ctid = (SELECT ctid FROM movement_lines LIMIT 1)",
        "DELETE FROM movement_lines WHERE ctid = (SELECT ctid FROM movement_lines LIMIT 1)",
        "DELETE FROM movements WHERE ctid = (SELECT ctid FROM movements LIMIT 1)",
        "TRUNCATE movements CASCADE",
        "UPDATE movements SET kind = 'loss' WHERE ctid = (SELECT ctid FROM movements LIMIT 1)",
        "UPDATE movements SET note = 'rewritten' WHERE ctid = (SELECT ctid FROM movements LIMIT 1)",
        "UPDATE epcis_events SET event_id = event_id WHERE ctid = (SELECT ctid FROM epcis_events LIMIT 1)",
        # What the ledger names (sql/0017): never deleted nor re-keyed.
        "DELETE FROM accounts WHERE ctid = (SELECT ctid FROM accounts LIMIT 1)",
        "UPDATE memberships SET id = gen_random_uuid() WHERE ctid = (SELECT ctid FROM memberships LIMIT 1)",
        "TRUNCATE pallet_types CASCADE",
    ]
    refused = 0
    for sql in statements:
        table = re.search(r"(?:UPDATE|FROM|TRUNCATE) (\w+)", sql).group(1)
        if suite.cluster.value(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1) t") == "0" and not sql.startswith("TRUNCATE"):
            test.figure(f"({table} is empty: nothing to try `{sql[:40]}...` on)")
            continue
        code, out, err = suite.cluster.psql(f"BEGIN; {sql}; ROLLBACK;", check=False)
        if code != 0 and ("append-only" in err or "cannot" in err or "posted" in err or "named by the ledger" in err):
            refused += 1
        else:
            test.defect(f"as {role}, `{sql[:70]}` was not refused: {out.strip()[:120]} {err.strip()[:200]}")
    test.check(refused >= len(statements) - 1, f"only {refused} statements refused")
    test.figure(f"RESULT {refused} of {len(statements)} UPDATE/DELETE/TRUNCATE on ledger tables and what they name refused to the role "
                f"`{role}` (the tables' owner, a superuser) by the triggers")
    # The daemon and the worker connect as palletflow_app: refused for lack of privilege.
    denied = 0
    for sql in statements:
        code, out, err = suite.cluster.psql(f"BEGIN; {sql}; ROLLBACK;", check=False, user="palletflow_app")
        if code != 0 and ("permission denied" in err or "must be owner" in err):
            denied += 1
        else:
            test.defect(f"as palletflow_app, `{sql[:70]}` was not refused for lack of privilege: {out.strip()[:120]} {err.strip()[:200]}")
    test.check(denied == len(statements), f"only {denied} statements refused to palletflow_app")
    test.figure(f"RESULT {denied} of {len(statements)} refused to the daemon's role `palletflow_app` (permission denied)")


def test_secrets_and_audit(suite, test):
    # Tokens: only SHA-256 digests stored; no secret anywhere in a dump of the database.
    dump = run([os.path.join(suite.cluster.bin, "pg_dump"), "-h", suite.cluster.socket_dir, "-U", "postgres", "palletflow"])
    test.check(dump.returncode == 0, f"pg_dump: {dump.stderr[-200:]}")
    secrets = set(suite.secrets)
    in_dump = [s for s in secrets if s in dump.stdout]
    test.check(not in_dump, f"{len(in_dump)} token secrets found in the database dump")
    # Logs: no token secret in anything the daemon or worker wrote.
    logs = ""
    for name in os.listdir(suite.work):
        # Schemathesis's own logs show the answers it got, tokens issued to it included.
        if name.endswith(".log") and not name.startswith("schemathesis"):
            with open(os.path.join(suite.work, name), errors="replace") as f:
                logs += f.read()
    in_logs = [s for s in secrets if s in logs]
    prefixed = len(re.findall(r"pft_[A-Za-z0-9_-]{8,}", logs))
    test.check(not in_logs and prefixed == 0, f"{len(in_logs)} token secrets ({prefixed} pft_ strings) in the logs")
    test.figure(f"{len(secrets)} live token secrets: 0 in a pg_dump of the database, {len(in_logs)} in "
                f"{fmt(len(logs))} bytes of daemon and worker logs")
    # Audit: every movement has its movement.declare row; other writes have theirs.
    movements = int(suite.cluster.value(f"SELECT count(*) FROM movements WHERE ecosystem_id = '{suite.eco.id}'"))
    audited = int(suite.cluster.value(f"SELECT count(DISTINCT subject_id) FROM audit_log WHERE ecosystem_id = '{suite.eco.id}' "
                                      f"AND action = 'movement.declare'"))
    actions = suite.cluster.rows(f"SELECT action, count(*) FROM audit_log WHERE ecosystem_id = '{suite.eco.id}' "
                                 f"AND at > to_timestamp({suite.started}) GROUP BY 1 ORDER BY 2 DESC")
    missing_actor = suite.cluster.value(f"SELECT count(*) FROM audit_log WHERE ecosystem_id = '{suite.eco.id}' AND "
                                        f"action = 'movement.declare' AND membership_id IS NULL AND at > to_timestamp({suite.started})")
    unaudited = suite.cluster.value(f"""SELECT count(*) FROM movements m WHERE m.ecosystem_id = '{suite.eco.id}' AND NOT EXISTS (
        SELECT 1 FROM audit_log a WHERE a.ecosystem_id = m.ecosystem_id AND a.subject_id = m.id AND a.action = 'movement.declare')""")
    test.check(unaudited == "0", f"{unaudited} movements without their movement.declare audit row")
    test.check(missing_actor == "0", f"{missing_actor} audit rows without who")
    test.figure(f"RESULT audit log: {fmt(audited)} of {fmt(movements)} movements (the demo's and the run's) have their "
                f"movement.declare row (who, what, when); {unaudited} without; actions during the run "
                f"{dict((a, int(c)) for a, c in actions)}")


def test_tenancy(suite, test):
    """From outside: another ecosystem's token gets the same answer for the demo's real ids
    as for ids that do not exist (no existence leak). The full matrix is in the Swift tests."""
    result = run([suite.bins.cli, "ecosystem", "create", "--name", f"Foreign {suite.run_id}", "--shipper-name", "Foreign SA",
                  "--json", "--data-dir", suite.data_dir])
    if not test.check(result.returncode == 0, f"ecosystem create: {result.stderr[-300:]}"):
        return
    foreign = json.loads(result.stdout)
    token = foreign.get("token") or foreign.get("shipperToken") or foreign.get("adminToken")
    suite.secrets.append(token)
    client = suite.client
    status, _, data = client.request("GET", suite.eco.base + "/movements?limit=5", token=suite.eco.shipper["token"])
    movement = json.loads(data)["items"][0]["id"]
    member = suite.eco.carriers[0]["memberId"]
    real = suite.eco.id
    fake = str(uuid.uuid4())
    paths = ["", "/members", f"/members/{member}", f"/members/{member}/tokens", "/sites", "/pallet-types", "/movements",
             f"/movements/{movement}", "/movements/export", "/balances", "/ledger/verify", "/pallet-notes", "/statements",
             "/indicators", "/jobs", "/alerts", "/webhooks", "/charters", "/sessions", "/discrepancies", "/epcis/events"]
    leaks = 0
    for path in paths:
        a = client.request("GET", f"/v1/ecosystems/{real}{path}", token=token)
        b = client.request("GET", f"/v1/ecosystems/{fake}{path.replace(movement, str(uuid.uuid4()))}", token=token)
        same = a[0] == b[0] and problem_type(a[2]) == problem_type(b[2]) and 400 <= a[0] < 500
        if not same:
            leaks += 1
            test.defect(f"GET {path}: demo's id -> {a[0]} {problem_type(a[2])}, unknown id -> {b[0]} {problem_type(b[2])}")
    # A write into the demo with the foreign token: refused, nothing written.
    _, body = suite.eco.declaration(random.Random(1), f"foreign{suite.run_id}")
    status, _, _ = client.request("POST", suite.eco.base + "/movements", token=token, body=body,
                                  headers={"Idempotency-Key": f"foreign{suite.run_id}"})
    test.check(status in (403, 404), f"foreign write: {status}")
    test.check(not movement_markers(suite.cluster, suite.eco, f"foreign{suite.run_id}"), "the foreign write was stored")
    test.figure(f"RESULT {len(paths)} GET endpoints with another ecosystem's token: {len(paths) - leaks} answer the demo's "
                f"real ids exactly as unknown ids; a foreign write refused ({status}), nothing stored")
