"""The command: its options, the tests and the CI subset, one daemon and one database that
every selected test runs against in sequence, and the summary, whose last line reads
`reliability: N passed, N failed` (exit status 1 when any test failed, 2 when the demo could
not be seeded)."""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import uuid

from .client import Client, Ecosystem
from .cluster import Cluster
from .daemon import Daemon, build
from .stages.access import test_append_only, test_limits, test_secrets_and_audit, test_tenancy
from .stages.crashes import test_crash_daemon, test_crash_postgres, test_crash_worker
from .stages.inputs import test_fuzz_parsers, test_injection
from .stages.schemathesis import test_schemathesis
from .stages.writes import test_concurrent_writers, test_retry_storm
from .support import Test, free_port, run, say


TESTS = [
    ("retry", "Retry storm", test_retry_storm),
    ("concurrency", "Concurrent writers", test_concurrent_writers),
    ("injection", "Injection strings in text fields", test_injection),
    ("tenancy", "Tenant isolation from outside", test_tenancy),
    ("limits", "Request size and rate limits", test_limits),
    ("fuzz", "CSV and EPCIS parser fuzzing", test_fuzz_parsers),
    ("crash-daemon", "kill -9 of palletflowd under load", test_crash_daemon),
    ("crash-postgres", "Immediate PostgreSQL stops under load", test_crash_postgres),
    ("crash-worker", "kill -9 of the worker mid-job", test_crash_worker),
    ("append-only", "Ledger tables refuse UPDATE/DELETE", test_append_only),
    ("schemathesis", "Schemathesis against /openapi.yaml", test_schemathesis),
    ("secrets-audit", "Secrets never stored or logged; audit log", test_secrets_and_audit),
]

# The CI subset (crash-worker, which waits for a job lease to expire, is left to full runs).
QUICK = {"retry", "concurrency", "injection", "tenancy", "limits", "fuzz", "crash-daemon", "crash-postgres",
         "append-only", "schemathesis", "secrets-audit"}


class Suite:
    """What every test is handed: the options, the executables, the work directory, the
    daemon, the cluster, the shared client and the demo ecosystem (set by main)."""


def main():
    parser = argparse.ArgumentParser(description="PalletFlow reliability and security suite")
    parser.add_argument("--quick", action="store_true", help="the CI subset, at small sizes")
    parser.add_argument("--only", help="comma-separated test names: " + ", ".join(name for name, _, _ in TESTS))
    parser.add_argument("--skip", help="comma-separated test names to leave out")
    parser.add_argument("--release", action="store_true", help="build and test the release configuration")
    parser.add_argument("--bin-dir", help="use these built executables instead of building")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory and logs")
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--schemathesis-max-time", type=int,
                        help="stop Schemathesis after this many seconds (quick default 150; full runs: none). "
                             "Schemathesis then splits the time over the operations, so slow ones get fewer cases")
    parser.add_argument("--schemathesis-max-examples", type=int,
                        help="Hypothesis examples per operation (quick 15, full 1000)")
    parser.add_argument("--schemathesis-operation", action="append", default=[], metavar="LABEL",
                        help="fuzz only this operation, e.g. 'POST /v1/ecosystems/{ecosystemId}/movements/batch' "
                             "(repeatable; default: every operation)")
    args = parser.parse_args()

    selected = [t for t in TESTS if (not args.quick or t[0] in QUICK)]
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {t[0] for t in TESTS}
        if unknown:
            parser.error(f"unknown tests: {', '.join(sorted(unknown))}")
        selected = [t for t in TESTS if t[0] in wanted]
    if args.skip:
        selected = [t for t in selected if t[0] not in set(args.skip.split(","))]

    bins = build(args)
    suite = Suite()
    suite.quick = args.quick
    suite.schemathesis_max_time = args.schemathesis_max_time
    suite.schemathesis_max_examples = args.schemathesis_max_examples
    suite.schemathesis_operations = args.schemathesis_operation
    suite.seed = args.seed
    suite.bins = bins
    suite.run_id = uuid.uuid4().hex[:6]
    suite.started = time.time()
    suite.body_limit = 4 * 1024 * 1024 if args.quick else 16 * 1024 * 1024
    suite.rss_bound_kib = 1024 * 1024
    # A short path: the cluster's Unix socket lives under it.
    suite.work = tempfile.mkdtemp(prefix="pfrel-", dir="/tmp")
    os.chmod(suite.work, 0o755)
    suite.data_dir = os.path.join(suite.work, "data")
    suite.port = free_port()
    say(f"== reliability suite ({'quick' if args.quick else 'full'}), work directory {suite.work}, port {suite.port}")

    seeded = run([bins.cli, "demo", "--json", "--data-dir", suite.data_dir])
    if seeded.returncode != 0:
        say(seeded.stdout + seeded.stderr)
        sys.exit(2)
    seeded_json = json.loads(seeded.stdout)
    suite.secrets = [o["token"] for o in seeded_json["organisations"]]
    suite.cluster = Cluster(suite.data_dir)
    suite.daemon = Daemon(bins, suite.data_dir, suite.port, os.path.join(suite.work, "palletflowd.log"),
                          rate_limit=0, extra=["--body-limit-bytes", str(suite.body_limit)])
    results = []
    try:
        suite.daemon.start()
        suite.client = Client(suite.port)
        suite.eco = Ecosystem(seeded_json, suite.client)
        for name, title, function in selected:
            test = Test(name)
            say(f"-- {name}: {title}")
            try:
                if not suite.daemon.alive():
                    suite.daemon.start()
                if not suite.cluster.running():
                    suite.cluster.start()
                function(suite, test)
            except Exception as error:
                test.defect(f"the test itself failed: {error!r}")
                traceback.print_exc()
            elapsed = time.time() - test.started
            verdict = "PASS" if not test.defects else "FAIL"
            say(f"   {verdict} {name} ({elapsed:.0f} s)")
            results.append((name, verdict, test))
    finally:
        suite.daemon.stop()
        try:
            suite.cluster.stop()
        except Exception:
            pass
    say("")
    say("== summary")
    for name, verdict, test in results:
        say(f"{verdict:4} {name}")
        for figure in test.figures:
            if figure.startswith("RESULT "):
                say(f"       {figure[7:]}")
        for defect in test.defects:
            say(f"       DEFECT {defect}")
    passed = sum(1 for r in results if r[1] == "PASS")
    failed = len(results) - passed
    if args.keep or failed:
        say(f"logs and data kept in {suite.work}")
    else:
        shutil.rmtree(suite.work, ignore_errors=True)
    say(f"reliability: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
