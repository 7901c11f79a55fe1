"""Writes under retries and contention. `retry`: every declaration sent 1 to 5 times with one
Idempotency-Key, copies often in flight at once, then the keys with other bodies.
`concurrency`: 64 writers of singles and batches on Zipf-hot accounts. Afterwards nothing
lost, nothing duplicated, and no deadlock or serialization error ever seen by a client."""

import json
import random
import threading
import time

from ..client import PROBLEM, TYPE_BASE, problem_type
from ..ledger import idempotency_audit, verify_ledger
from ..support import fmt


def run_threads(count, target):
    threads = [threading.Thread(target=target, args=(index,), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


BAD_ERROR_WORDS = ("deadlock", "serializ", "could not serialize", "40001", "40P01", "lock timeout")


def test_retry_storm(suite, test):
    """Each declaration sent 1 to 5 times, copies interleaved so that some run concurrently;
    then the same keys with other bodies."""
    n = 2_000 if suite.quick else 100_000
    workers = 16 if suite.quick else 32
    rng = random.Random(suite.seed)
    prefix = f"rs{suite.run_id}-"
    declarations = []
    for i in range(n):
        marker = f"{prefix}{i}"
        carrier, body = suite.eco.declaration(rng, marker)
        declarations.append((marker, suite.eco.token(carrier), json.dumps(body, sort_keys=True).encode()))
    sends = []
    for i in range(n):
        copies = rng.randint(1, 5)
        for _ in range(copies):
            # Copies of one declaration land close together in the queue, so several workers
            # often hold the same key at the same moment.
            sends.append((i + rng.uniform(0, 12), i))
    sends.sort()
    queue = [i for _, i in sends]
    position = [0]
    lock = threading.Lock()
    first = {}            # i -> (status, body) of the first 2xx
    originals = {}        # i -> count of 2xx without Idempotent-Replayed
    intervals = {}        # i -> [(start, end)]
    mismatches = []
    failures = []
    client = suite.client

    def worker(_):
        while True:
            with lock:
                if position[0] >= len(queue):
                    return
                i = queue[position[0]]
                position[0] += 1
            marker, token, body = declarations[i]
            start = time.monotonic()
            try:
                status, headers, data = client.request("POST", suite.eco.base + "/movements", token=token, body=body,
                                                       headers={"Idempotency-Key": marker})
            except Exception as error:
                with lock:
                    failures.append(f"{marker}: connection error {error!r}")
                continue
            end = time.monotonic()
            with lock:
                intervals.setdefault(i, []).append((start, end))
                if 200 <= status < 300:
                    if headers.get("idempotent-replayed") != "true":
                        originals[i] = originals.get(i, 0) + 1
                    if i not in first:
                        first[i] = (status, data)
                    elif first[i] != (status, data):
                        mismatches.append(marker)
                else:
                    failures.append(f"{marker}: {status} {data[:200]!r}")

    began = time.time()
    run_threads(workers, worker)
    elapsed = time.time() - began
    concurrent_sends = 0
    for spans in intervals.values():
        spans.sort()
        for (s1, e1), (s2, _) in zip(spans, spans[1:]):
            if s2 < e1:
                concurrent_sends += 1
    test.figure(f"{fmt(n)} declarations, {fmt(len(queue))} sends ({fmt(len(queue) - n)} retries, {fmt(concurrent_sends)} "
                f"while an earlier copy was in flight), {workers} clients, {elapsed:.0f} s ({len(queue) / elapsed:.0f} req/s)")
    test.check(not failures, f"{len(failures)} sends failed: {failures[:3]}")
    test.check(not mismatches, f"{len(mismatches)} replays differ from the first response: {mismatches[:3]}")
    several = [declarations[i][0] for i, count in originals.items() if count != 1]
    test.check(not several, f"{len(several)} keys answered as original (no Idempotent-Replayed) more or less than once: {several[:3]}")

    # Same key, another body: always refused, nothing written.
    reused = rng.sample(range(n), max(20, n // 100))
    refused = 0
    for i in reused:
        marker, token, body = declarations[i]
        other = json.loads(body)
        other["lines"][0]["quantity"] = other["lines"][0]["quantity"] % 40 + 1 + 40
        status, headers, data = client.request("POST", suite.eco.base + "/movements", token=token, body=other,
                                               headers={"Idempotency-Key": marker})
        if status == 422 and problem_type(data) == TYPE_BASE + "idempotency-key-reused" and headers.get("content-type") == PROBLEM:
            refused += 1
    test.check(refused == len(reused), f"same key with another body: {refused} of {len(reused)} refused with 422 idempotency-key-reused")
    acknowledged = {declarations[i][0]: [json.loads(data)["id"]] for i, (_, data) in first.items()}
    found, lost, duplicated, _ = idempotency_audit(test, suite, prefix, acknowledged)
    test.figure(f"same key with another body: {refused} of {len(reused)} refused (422 idempotency-key-reused)")
    test.figure(f"RESULT {fmt(len(acknowledged))} injected, {lost} lost, {duplicated} duplicated")
    verify_ledger(test, suite)


def test_concurrent_writers(suite, test):
    clients = 64
    per_client = 12 if suite.quick else 300
    prefix = f"cw{suite.run_id}-"
    acknowledged = {}
    errors = []
    bad = []
    lock = threading.Lock()
    counts = {"singles": 0, "batches": 0, "batch_movements": 0}
    client = suite.client

    def writer(index):
        rng = random.Random(suite.seed * 1000 + index)
        for n in range(per_client):
            key = f"{prefix}{index}-{n}"
            if rng.random() < 0.8:
                carrier, body = suite.eco.declaration(rng, key, minutes_ago=rng.randint(1, 300))
                path, markers = "/movements", [key]
            else:
                carrier = suite.eco.hot_carriers.pick(rng)
                movements = []
                size = rng.randint(2, 25)
                for j in range(size):
                    # Every movement of a batch involves the batch's declarer.
                    while True:
                        declarer, body = suite.eco.declaration(rng, f"{key}-{j}")
                        if declarer == carrier:
                            break
                    movements.append(body)
                body = {"movements": movements}
                path, markers = "/movements/batch", [f"{key}-{j}" for j in range(size)]
            try:
                status, _, data = client.request("POST", suite.eco.base + path, token=suite.eco.token(carrier), body=body,
                                                 headers={"Idempotency-Key": key})
            except Exception as error:
                with lock:
                    errors.append(f"{key}: {error!r}")
                continue
            with lock:
                if status == 201:
                    answer = json.loads(data)
                    if path == "/movements":
                        acknowledged[key] = [answer["id"]]
                        counts["singles"] += 1
                    else:
                        for marker, item in zip(markers, answer["items"]):
                            acknowledged[marker] = [item["id"]]
                        counts["batches"] += 1
                        counts["batch_movements"] += len(markers)
                else:
                    text = data.decode(errors="replace")
                    errors.append(f"{key}: {status} {text[:300]}")
                    if status >= 500 or any(word in text.lower() for word in BAD_ERROR_WORDS):
                        bad.append(f"{key}: {status} {text[:300]}")

    began = time.time()
    run_threads(clients, writer)
    elapsed = time.time() - began
    requests = clients * per_client
    test.figure(f"{clients} clients, {fmt(requests)} requests ({fmt(counts['singles'])} singles, {fmt(counts['batches'])} batches "
                f"holding {fmt(counts['batch_movements'])} movements) on Zipf-hot accounts in {elapsed:.0f} s")
    test.check(not bad, f"{len(bad)} deadlock/serialization/5xx errors visible to clients: {bad[:3]}")
    test.check(not errors, f"{len(errors)} requests failed: {errors[:3]}")
    _, lost, duplicated, _ = idempotency_audit(test, suite, prefix, acknowledged)
    test.figure(f"RESULT {fmt(len(acknowledged))} injected, {lost} lost, {duplicated} duplicated; "
                f"{len(bad)} deadlock/serialization errors seen by clients")
    verify_ledger(test, suite)
