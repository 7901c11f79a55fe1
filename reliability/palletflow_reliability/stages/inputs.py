"""Hostile input. `fuzz`: malformed, huge, deeply nested and mis-encoded bodies to the CSV
import and the EPCIS capture, each answered with a clean 4xx problem+json, the daemon alive
and its memory bounded. `injection`: SQL, markup and format strings in every text field of a
declaration, stored and read back verbatim, and in query parameters, never a 5xx."""

import datetime
import json
import random

from ..client import PROBLEM, Client
from ..support import fmt


def fuzz_payloads(suite):
    """(name, content type, body) for the CSV import and the EPCIS capture."""
    rng = random.Random(suite.seed + 11)
    header = "movement_ref,kind,event_time,from_party,from_site,to_party,to_site,pallet_type,quality,quantity,exchanged_quantity\n"
    shipper = suite.eco.shipper["memberId"]
    carrier = suite.eco.carriers[0]["memberId"]
    site = suite.eco.sites[shipper][0]
    # A valid row, dated yesterday: it must stay within the back-dating window whenever this runs.
    yesterday = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)).strftime("%Y-%m-%dT08:00:00Z")
    row = f",pickup,{yesterday},{shipper},{site},{carrier},,EPAL1,A,3,0\n"
    limit = suite.body_limit
    csv = [
        ("empty", b""),
        ("header only", header.encode()),
        ("random bytes 4 KiB", bytes(rng.getrandbits(8) for _ in range(4096))),
        ("invalid UTF-8", header.encode() + b"\xff\xfe\xc3\x28" + row.encode()),
        ("UTF-16 with BOM", (header + row).encode("utf-16")),
        ("Latin-1 accents", (header + row.replace("EPAL1", "ÉPAL1")).encode("latin-1")),
        ("NUL bytes in a stored field", (header.rstrip("\n") + ",note\n").encode() + row.rstrip("\n").encode() + b",a\x00b\n"),
        ("unbalanced quotes", (header + '"abc,pickup,"2026\n' * 100).encode()),
        ("one line of 8 MiB", b"x" * (8 << 20)),
        ("a field of 8 MiB in quotes", header.encode() + b'"' + b"y" * (8 << 20) + b'",pickup\n'),
        ("100,000 columns", (",".join(["a"] * 100_000) + "\n").encode()),
        ("20,000 valid rows (over the 10,000-line limit)", (header + row * 20_000).encode()),
        ("200,000 empty lines", b"\n" * 200_000),
        ("bare CR line ends (valid: may be accepted)", (header + row).replace("\n", "\r").encode()),
        ("quantity overflow", (header + row.replace(",3,0", ",99999999999999999999999,0")).encode()),
        ("negative quantity", (header + row.replace(",3,0", ",-3,0")).encode()),
        ("formula injection", (header + row.replace("EPAL1", "=cmd|' /C calc'!A0")).encode()),
        ("over the body limit", b"a," * ((limit // 2) + 1000)),
    ]
    deep = 200_000
    epcis = [
        ("empty", b""),
        ("not JSON", b"<epcis>nope</epcis>"),
        ("truncated", b'{"type": "EPCISDocument", "epcisBody": {"eventList": [{"type": "ObjectEvent"'),
        ("invalid UTF-8", b'{"type": "EPCISDocument", "x": "\xff\xfe"}'),
        ("UTF-16 with BOM", json.dumps({"type": "EPCISDocument", "schemaVersion": "2.0"}).encode("utf-16")),
        ("nested arrays x200,000", b"[" * deep + b"]" * deep),
        ("nested objects x200,000", b'{"a":' * deep + b"1" + b"}" * deep),
        ("nested in eventList x100,000", b'{"type":"EPCISDocument","schemaVersion":"2.0","creationDate":"2026-01-01T00:00:00Z","epcisBody":{"eventList":['
         + b"[" * 100_000 + b"]" * 100_000 + b"]}}"),
        ("unclosed nesting x1,000,000", b"[" * 1_000_000),
        ("string of 12 MiB", b'{"type": "EPCISDocument", "schemaVersion": "2.0", "x": "' + b"z" * (12 << 20) + b'"}'),
        ("200,000 empty events", b'{"type":"EPCISDocument","schemaVersion":"2.0","creationDate":"2026-01-01T00:00:00Z","epcisBody":{"eventList":['
         + b",".join([b"{}"] * 200_000) + b"]}}"),
        ("huge number", b'{"type": "EPCISDocument", "schemaVersion": 1e999999}'),
        ("NUL in strings", b'{"type": "EPCISDocument\\u0000", "schemaVersion": "2.0\\u0000"}'),
        ("lone surrogate", b'{"type": "EPCISDocument", "schemaVersion": "\\ud800"}'),
        ("duplicate keys x100,000", b"{" + b",".join(b'"k":1' for _ in range(100_000)) + b"}"),
        ("random bytes 64 KiB", bytes(rng.getrandbits(8) for _ in range(65536))),
        ("over the body limit", b'{"x":"' + b"a" * (limit + 10) + b'"}'),
    ]
    for name, body in csv:
        yield "CSV " + name, "/movements/import", "text/csv", body
    for name, body in epcis:
        yield "EPCIS " + name, "/epcis/capture", "application/ld+json", body
        if name in ("nested arrays x200,000", "invalid UTF-8"):
            yield "EPCIS " + name + " (application/json)", "/epcis/capture", "application/json", body


def test_fuzz_parsers(suite, test):
    client = Client(suite.port, timeout=120)
    carrier = suite.eco.carriers[0]
    token = carrier["token"]
    _, before = suite.daemon.memory()
    statuses = {}
    cases = 0
    for name, path, content_type, body in fuzz_payloads(suite):
        cases += 1
        key = f"fz{suite.run_id}-{cases}"
        try:
            status, headers, data = client.request("POST", suite.eco.base + path, token=token, body=body,
                                                   content_type=content_type, headers={"Idempotency-Key": key})
        except Exception as error:
            test.defect(f"{name}: no answer ({error!r}); daemon alive: {suite.daemon.alive()}")
            if not suite.daemon.alive():
                suite.daemon.start()
            continue
        statuses[status] = statuses.get(status, 0) + 1
        ok = (400 <= status < 500 and headers.get("content-type") == PROBLEM) or ("valid:" in name and status == 201)
        # A valid-looking import may be accepted (2xx) only when it really is valid.
        if not ok:
            test.defect(f"{name} ({fmt(len(body))} bytes): {status} {headers.get('content-type')} {data[:200]!r}")
        if not suite.daemon.alive():
            test.defect(f"{name}: palletflowd died")
            suite.daemon.start()
    rss, hwm = suite.daemon.memory()
    test.check(hwm < suite.rss_bound_kib, f"peak RSS {hwm // 1024} MiB above the bound {suite.rss_bound_kib // 1024} MiB")
    test.figure(f"{cases} malformed, huge, deeply nested or mis-encoded bodies to the CSV import and EPCIS capture: "
                f"answers {dict(sorted(statuses.items()))}")
    test.figure(f"RESULT {cases} injected, {sum(v for k, v in statuses.items() if 400 <= k < 500)} clean 4xx problem+json; "
                f"daemon peak RSS (VmHWM) {hwm // 1024} MiB (before {before // 1024} MiB, now {rss // 1024} MiB, "
                f"bound {suite.rss_bound_kib // 1024} MiB)")


INJECTIONS = [
    "'; DROP TABLE movements; --",
    "' OR '1'='1",
    "\"; DELETE FROM ledger_entries WHERE ''='",
    "$$; TRUNCATE accounts; $$",
    "\\'; SELECT pg_sleep(10); --",
    "<script>alert('x')</script>",
    "{{7*7}} ${7*7} #{7*7} %s %n %x",
    "${jndi:ldap://127.0.0.1/a}",
    "../../../../etc/passwd",
    "Robert'); DROP TABLE audit_log;--",
    "‮gnp.exe 🚚 ÄÖÜ ß 日本語 \u200b",
    "line1\nline2\r\n\ttab",
    "\\x00 \\u0000 literal backslashes",
]


def test_injection(suite, test):
    client = suite.client
    carrier = suite.eco.carriers[1]
    rng = random.Random(suite.seed + 13)
    stored = 0
    for index, text in enumerate(INJECTIONS):
        marker = f"inj{suite.run_id}-{index}"
        _, body = suite.eco.declaration(rng, marker)
        while body["from"]["partyId"] != carrier["memberId"] and body["to"]["partyId"] != carrier["memberId"]:
            declarer, body = suite.eco.declaration(rng, marker)
            if declarer == carrier["memberId"]:
                break
        body["note"] = text
        body["references"].update({"cmr": text[:200], "deliveryNote": text[:200], "palletNote": text[:200]})
        url = "https://evidence.example/" + urllib_quote(text)
        body["evidence"] = {"sha256": "a" * 64, "url": url}
        status, _, data = client.request("POST", suite.eco.base + "/movements", token=carrier["token"], body=body,
                                         headers={"Idempotency-Key": marker})
        if not test.check(status == 201, f"injection {text!r}: {status} {data[:200]!r}"):
            continue
        movement = json.loads(data)["id"]
        status, _, data = client.request("GET", f"{suite.eco.base}/movements/{movement}", token=carrier["token"])
        read = json.loads(data)
        same = (read.get("note") == text and read.get("references", {}).get("cmr") == text[:200]
                and read.get("evidence", {}).get("url") == url)
        if test.check(same, f"injection {text!r} not read back verbatim: {read.get('note')!r}"):
            stored += 1
    # A NUL character cannot be stored by PostgreSQL: a clean 4xx, not a 500.
    _, body = suite.eco.declaration(rng, f"inj{suite.run_id}-nul")
    body["note"] = "before\u0000after"
    declarer = body["from"]["partyId"] if body["from"]["partyId"] in suite.eco.members and suite.eco.members[body["from"]["partyId"]]["role"] == "carrier" else body["to"]["partyId"]
    status, headers, data = client.request("POST", suite.eco.base + "/movements", token=suite.eco.token(declarer), body=body,
                                           headers={"Idempotency-Key": f"inj{suite.run_id}-nul"})
    test.check(400 <= status < 500 and headers.get("content-type") == PROBLEM, f"note with NUL: {status} {data[:200]!r}")
    # Member names and query parameters.
    shipper = suite.eco.shipper["token"]
    for index, text in enumerate(INJECTIONS[:5]):
        status, _, data = client.request("POST", suite.eco.base + "/members", token=shipper,
                                         body={"name": f"{text} {suite.run_id}-{index}", "role": "customer"})
        if test.check(status == 201, f"member named {text!r}: {status} {data[:200]!r}"):
            test.check(json.loads(data).get("name") == f"{text} {suite.run_id}-{index}", f"member name {text!r} not verbatim")
    query_5xx = 0
    for text in INJECTIONS:
        quoted = urllib_quote(text)
        for path in [f"/movements?palletType={quoted}", f"/movements?from={quoted}", f"/movements?cursor={quoted}",
                     f"/balances?party={quoted}", f"/movements/export?from={quoted}", f"/epcis/events?EQ_bizStep={quoted}"]:
            status, _, _ = client.request("GET", suite.eco.base + path, token=shipper)
            if status >= 500:
                query_5xx += 1
                test.defect(f"GET {path}: {status}")
    tables = suite.cluster.value("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN "
                                 "('movements', 'ledger_entries', 'accounts', 'audit_log')")
    test.check(tables == "4", "a ledger table disappeared")
    test.figure(f"RESULT {len(INJECTIONS)} injection strings in every text field of a declaration: {stored} stored and read back "
                f"verbatim; 5 as member names; {len(INJECTIONS) * 6} as query parameters ({query_5xx} 5xx); tables intact")


def urllib_quote(text):
    import urllib.parse
    return urllib.parse.quote(text, safe="")
