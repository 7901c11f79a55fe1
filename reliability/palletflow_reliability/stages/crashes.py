"""Crashes under load: kill -9 of palletflowd (`crash-daemon`), immediate PostgreSQL stops
(`crash-postgres`), kill -9 of the worker in the middle of a job (`crash-worker`). Writers
retry what got no answer with the same key and body, as a careful client does; afterwards
nothing is lost, duplicated or half-applied, and a job killed mid-way completes once."""

import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid

from ..client import PROBLEM, Client, problem_type
from ..ledger import idempotency_audit, verify_ledger
from ..support import fmt, run


class CrashLoad:
    """Writers that keep declaring through crashes, like a careful client: an answer-less
    request is retried later with the same key and body."""

    def __init__(self, suite, prefix, threads):
        self.suite = suite
        self.prefix = prefix
        self.threads = threads
        self.acknowledged = {}
        self.in_doubt = {}      # marker -> (token, body)
        self.refused = {}       # marker -> (status, type) of non-2xx answers
        self.lock = threading.Lock()
        self.counter = 0
        self.stop = threading.Event()
        self.rng = random.Random(suite.seed + 7)
        self.sent = 0

    def next_declaration(self):
        with self.lock:
            if self.in_doubt and self.rng.random() < 0.5:
                marker = next(iter(self.in_doubt))
                token, body = self.in_doubt.pop(marker)
                return marker, token, body, True
            self.counter += 1
            marker = f"{self.prefix}{self.counter}"
            carrier, body = self.suite.eco.declaration(self.rng, marker)
            return marker, self.suite.eco.token(carrier), json.dumps(body, sort_keys=True).encode(), False

    def loop(self, _):
        client = Client(self.suite.port, timeout=30)
        while not self.stop.is_set():
            marker, token, body, _retry = self.next_declaration()
            try:
                status, headers, data = client.request("POST", self.suite.eco.base + "/movements", token=token, body=body,
                                                       headers={"Idempotency-Key": marker})
            except Exception:
                with self.lock:
                    self.in_doubt[marker] = (token, body)
                time.sleep(0.05)
                continue
            with self.lock:
                self.sent += 1
                if status == 201:
                    self.acknowledged[marker] = [json.loads(data)["id"]]
                    self.refused.pop(marker, None)
                else:
                    # 503 while the database is down: retried later like a lost answer.
                    self.refused[marker] = (status, problem_type(data), headers.get("content-type"))
                    self.in_doubt[marker] = (token, body)
                    if status == 503:
                        time.sleep(0.05)

    def start(self):
        self.stop.clear()
        self.workers = [threading.Thread(target=self.loop, args=(i,), daemon=True) for i in range(self.threads)]
        for worker in self.workers:
            worker.start()

    def halt(self):
        self.stop.set()
        for worker in self.workers:
            worker.join()

    def drain(self, test):
        """Retries what is still in doubt until every declaration got its answer."""
        client = Client(self.suite.port, timeout=30)
        rounds = 0
        while self.in_doubt and rounds < 20:
            rounds += 1
            for marker, (token, body) in list(self.in_doubt.items()):
                try:
                    status, _, data = client.request("POST", self.suite.eco.base + "/movements", token=token, body=body,
                                                     headers={"Idempotency-Key": marker})
                except Exception as error:
                    test.figure(f"(retry of {marker} got no answer: {error!r}; daemon alive: {self.suite.daemon.alive()})")
                    time.sleep(0.5)
                    continue
                if status == 201:
                    self.acknowledged[marker] = [json.loads(data)["id"]]
                    del self.in_doubt[marker]
        test.check(not self.in_doubt, f"{len(self.in_doubt)} declarations still without an answer after retries")


def test_crash_daemon(suite, test):
    kills = 5 if suite.quick else 100
    load = CrashLoad(suite, f"kd{suite.run_id}-", threads=8)
    rng = random.Random(suite.seed + 3)
    restarts = []
    in_doubt_total = 0
    for k in range(kills):
        if not suite.daemon.alive():
            began = time.time()
            suite.daemon.start()
            restarts.append(time.time() - began)
        load.start()
        time.sleep(rng.uniform(0.2, 1.5))
        suite.daemon.kill9()
        load.halt()
        in_doubt_total += len(load.in_doubt)
    suite.daemon.start()
    load.drain(test)
    unexpected = {m: r for m, r in load.refused.items() if r[0] != 201}
    test.check(not unexpected, f"{len(unexpected)} declarations refused: {list(unexpected.items())[:3]}")
    test.figure(f"{kills} kill -9 of palletflowd under load (8 writers), restart {sum(restarts) / max(1, len(restarts)):.1f} s "
                f"on average; {fmt(in_doubt_total)} requests cut off without an answer, retried with their key afterwards")
    _, lost, duplicated, _ = idempotency_audit(test, suite, load.prefix, load.acknowledged)
    test.figure(f"RESULT {fmt(len(load.acknowledged))} injected, {lost} lost, {duplicated} duplicated")
    verify_ledger(test, suite)


def test_crash_postgres(suite, test):
    stops = 3 if suite.quick else 20
    load = CrashLoad(suite, f"pg{suite.run_id}-", threads=4)
    rng = random.Random(suite.seed + 5)
    probe = Client(suite.port, timeout=25)
    latencies = []
    outage_answers = {}
    wrong = []
    recoveries = []
    token = suite.eco.shipper["token"]
    for s in range(stops):
        load.start()
        time.sleep(rng.uniform(0.3, 1.5))
        suite.cluster.stop_immediately()
        # While it is down: every answer that needs the database is 503 problem+json.
        down_until = time.time() + rng.uniform(1.0, 3.0)
        # The probe declaration is sent with its own carrier's token: with another carrier's
        # it is rightly refused (422, the declarer is not a party) whether the database is up
        # or not, which a run found when the Zipf draw picked another carrier than the first.
        declarer, declaration = suite.eco.declaration(rng, f"pgprobe{suite.run_id}-{s}")
        probes = [("GET", "/readyz", None, None), ("GET", "/v1/me", token, None),
                  ("GET", suite.eco.base + "/balances", token, None),
                  ("POST", suite.eco.base + "/movements", suite.eco.token(declarer), declaration)]
        while time.time() < down_until:
            for method, path, probe_token, body in probes:
                headers = {"Idempotency-Key": f"pgprobe{suite.run_id}-{s}"} if method == "POST" else None
                sent = time.monotonic()
                try:
                    status, response_headers, data = probe.request(method, path, token=probe_token, body=body, headers=headers)
                    latencies.append(time.monotonic() - sent)
                except Exception as error:
                    wrong.append(f"{method} {path}: connection error {error!r}")
                    continue
                outage_answers[status] = outage_answers.get(status, 0) + 1
                if status == 200 and path == "/v1/me":
                    # Answered from the daemon's authentication cache (--auth-cache-seconds):
                    # it needs no database.
                    continue
                if status != 503 or response_headers.get("content-type") != PROBLEM \
                        or not response_headers.get("retry-after"):
                    wrong.append(f"{method} {path}: {status} {response_headers.get('content-type')} "
                                 f"Retry-After {response_headers.get('retry-after')!r} {data[:160]!r}")
            time.sleep(0.1)
        test.check(suite.daemon.alive(), "palletflowd died while PostgreSQL was down")
        suite.cluster.start()
        began = time.time()
        recovered = False
        while time.time() - began < 60:
            try:
                status, _, _ = probe.request("GET", "/v1/me", token=token)
                if status == 200:
                    recovered = True
                    break
            except Exception:
                pass
            time.sleep(0.05)
        recoveries.append(time.time() - began)
        test.check(recovered, "the daemon did not recover within 60 s after PostgreSQL came back")
        time.sleep(0.5)
        load.halt()
    load.drain(test)
    test.check(not wrong, f"{len(wrong)} answers during outages were not 503 problem+json with Retry-After: {wrong[:4]}")
    # A bounded wait for a connection (2 s), then 503; reconnection within seconds.
    test.check(max(latencies or [0]) <= 4.0, f"an answer during an outage took {max(latencies or [0]):.1f} s (bound 4 s)")
    test.check(max(recoveries) <= 5.0, f"back to 200 only after {max(recoveries):.1f} s (bound 5 s)")
    test.figure(f"{stops} immediate PostgreSQL stops (pg_ctl stop -m immediate) under load (4 writers); answers while down: "
                f"{dict(sorted(outage_answers.items()))} in {max(latencies or [0]):.1f} s at most; back to 200 after {max(recoveries):.2f} s at worst "
                f"({sum(recoveries) / len(recoveries):.2f} s on average), no daemon restart")
    _, lost, duplicated, _ = idempotency_audit(test, suite, load.prefix, load.acknowledged)
    test.figure(f"RESULT {fmt(len(load.acknowledged))} injected, {lost} lost, {duplicated} duplicated")
    verify_ledger(test, suite)


def indicator_snapshot(suite):
    """Every figure of every indicator row of the demo (all columns but computed_at)."""
    return suite.cluster.rows(f"""
        SELECT partner_id, pallet_type_id, period, period_start, period_end, issued, spot_returned, later_returned,
               declared_losses, scrapped, outstanding, outstanding_value_minor, currency, aging_0_30, aging_31_60,
               aging_61_90, aging_90_plus, presumed_losses, rotation_average_days, rotation_median_days,
               rotation_p90_days, overdue_notes_count, overdue_notes_quantity, overdue_notes_value_minor, declarations,
               lateness_median_seconds, lateness_p90_seconds, declared_within_24h, contested
        FROM indicators WHERE ecosystem_id = '{suite.eco.id}' ORDER BY 1, 2, 3, 4""")


def grow_ecosystem(suite, test, target):
    """Declares batches of 500 through the API until the demo holds `target` movements, so
    that a recompute lasts long enough to be killed in the middle."""
    count = int(suite.cluster.value(f"SELECT count(*) FROM movements WHERE ecosystem_id = '{suite.eco.id}'"))
    rng = random.Random(suite.seed + 11)
    client = Client(suite.port, timeout=300)
    batches = 0
    began = time.time()
    while count < target:
        carrier = suite.eco.hot_carriers.pick(rng)
        movements = []
        while len(movements) < 500:
            declarer, body = suite.eco.declaration(rng, f"cw{suite.run_id}-{batches}-{len(movements)}",
                                                   minutes_ago=rng.randint(5, 200 * 1440))
            if declarer == carrier:
                movements.append(body)
        status, _, data = client.request("POST", suite.eco.base + "/movements/batch", token=suite.eco.token(carrier),
                                         body={"movements": movements},
                                         headers={"Idempotency-Key": f"cw{suite.run_id}-{batches}"})
        if not test.check(status == 201, f"growing the ecosystem: batch {status} {data[:300]!r}"):
            break
        batches += 1
        count += len(movements)
    if batches:
        test.figure(f"ecosystem grown to {fmt(count)} movements ({batches} batches of 500 in {time.time() - began:.0f} s)")
    return count


def test_crash_worker(suite, test):
    """kill -9 of palletflow-worker in the middle of an indicators.recompute job, then a new
    worker: the job is taken again after its lease, completes once, and every indicator
    equals the one a clean recompute gives (nothing counted twice, nothing missed)."""
    log = open(os.path.join(suite.work, "worker.log"), "ab")
    lease = 10

    def start_worker():
        return subprocess.Popen([suite.bins.worker, "--data-dir", suite.data_dir, "--log-format", "json",
                                 "--job-lease-seconds", str(lease)],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)

    def job_row(job_id):
        # The API names a job by its public id (a UUID), the table keys it by a bigint.
        rows = suite.cluster.rows(f"SELECT state, attempts, locked_by, finished_at IS NOT NULL FROM jobs "
                                  f"WHERE public_id = '{uuid.UUID(job_id)}'")
        if not rows:
            return None
        state, attempts, holder, finished = rows[0]
        return state, int(attempts), holder, finished == "t"

    movements = grow_ecosystem(suite, test, 20_000 if suite.quick else 60_000)
    # The reference: a clean recompute by the CLI, timed.
    began = time.time()
    result = run([suite.bins.cli, "indicators", "recompute", "--ecosystem", suite.eco.id, "--data-dir", suite.data_dir])
    clean_seconds = time.time() - began
    if not test.check(result.returncode == 0, f"palletflow indicators recompute: {result.stderr[-300:]}"):
        return
    reference = indicator_snapshot(suite)
    test.figure(f"reference: a clean recompute of {fmt(movements)} movements, {fmt(len(reference))} indicator rows, "
                f"{clean_seconds:.1f} s")

    kills = 1 if suite.quick else 3
    rng = random.Random(suite.seed + 13)
    killed_mid_job = 0
    completed = 0
    differing_total = 0
    tries = 0
    while killed_mid_job < kills and tries < kills + 5:
        tries += 1
        worker = start_worker()
        status, _, data = suite.client.request("POST", suite.eco.base + "/indicators/recompute",
                                               token=suite.eco.shipper["token"])
        if not test.check(status in (200, 201, 202), f"POST indicators/recompute: {status} {data[:200]!r}"):
            worker.kill()
            break
        job_id = json.loads(data)["id"]
        deadline = time.time() + 120
        while time.time() < deadline and (job_row(job_id) or ["queued"])[0] == "queued":
            time.sleep(0.01)
        # Somewhere in the middle of the job (a clean run's duration as the guide).
        time.sleep(rng.uniform(0.15, 0.7) * clean_seconds)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        state_at_kill, attempts_at_kill, holder, _ = job_row(job_id)
        mid_job = state_at_kill == "running"
        if mid_job:
            killed_mid_job += 1
        # Another worker takes the job again once the dead one's lease has expired.
        worker = start_worker()
        deadline = time.time() + lease + 60 + 5 * clean_seconds
        while time.time() < deadline and job_row(job_id)[0] not in ("done", "failed"):
            time.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
        state, attempts, _, finished = job_row(job_id)
        test.check(state == "done" and finished, f"job {job_id} ended {state} (attempts {attempts})")
        if mid_job:
            # Claimed twice (the killed worker, then the new one), completed once.
            test.check(attempts == attempts_at_kill + 1, f"job {job_id}: {attempts} attempts after {attempts_at_kill} at the kill")
        if state == "done":
            completed += 1
        after = indicator_snapshot(suite)
        differing = len(set(map(tuple, reference)) ^ set(map(tuple, after)))
        differing_total += differing
        test.check(differing == 0, f"job {job_id}: {differing} indicator rows differ from the clean recompute")
        test.figure(f"job {job_id} (indicators.recompute): worker killed while the job was {state_at_kill} "
                    f"(attempt {attempts_at_kill}, held by {holder}) -> {state} after {attempts} attempts; "
                    f"{differing} of {fmt(len(after))} indicator rows differ from the reference")
    log.close()
    duplicates = suite.cluster.value(f"""
        SELECT count(*) FROM (SELECT 1 FROM indicators WHERE ecosystem_id = '{suite.eco.id}'
                              GROUP BY partner_id, pallet_type_id, period, period_start HAVING count(*) > 1) d""")
    test.check(int(duplicates) == 0, f"{duplicates} indicator keys stored twice")
    test.check(killed_mid_job >= kills, f"the worker was killed in the middle of a job {killed_mid_job} times of {kills}")
    test.figure(f"RESULT {killed_mid_job} kill -9 of the worker mid-job: {completed} jobs completed once each, "
                f"{fmt(len(reference))} indicator rows identical to a clean recompute ({differing_total} differ, "
                f"0 counted twice)")
