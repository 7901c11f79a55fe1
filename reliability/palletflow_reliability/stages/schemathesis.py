"""`schemathesis`: the OpenAPI contract fuzzed by Schemathesis, run as a program (installed with
pip when missing) under the shipper's, a carrier's and the coordinator's tokens. Its ndjson
reports are read back to count the cases per operation and to tell the API's failures from
artefacts of the suite's pinning or of Schemathesis itself."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

from ..support import ROOT, fmt, run, say


def schemathesis_command():
    found = shutil.which("schemathesis") or shutil.which("st")
    if found:
        return [found]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--break-system-packages", "schemathesis"],
                   check=False)
    found = shutil.which("schemathesis")
    if found:
        return [found]
    return [sys.executable, "-m", "schemathesis.cli"]


def schemathesis_pass(suite, name, examples, seed, phases, pin=True, names=(), max_time=None, token=None):
    """One Schemathesis run, under `token` (the shipper's by default); its log and reports
    under the work directory, named `name`."""
    config = os.path.join(suite.work, f"schemathesis-{name}.toml")
    with open(config, "w") as f:
        if pin:
            f.write(f"""
[parameters]
"path.ecosystemId" = "{suite.eco.id}"
""")
    report = os.path.join(suite.work, f"schemathesis-{name}")
    argv = schemathesis_command() + [
        "--config-file", config, "run", f"http://127.0.0.1:{suite.port}/openapi.yaml",
        "--url", f"http://127.0.0.1:{suite.port}",
        "-H", f"Authorization: Bearer {token or suite.eco.shipper['token']}",
        "--checks", "all",
        # Schema-valid bodies that break a business rule (a quantity above 100,000, an unknown
        # member id) are rightly refused; `positive_data_acceptance` would call that a failure.
        "--exclude-checks", "positive_data_acceptance",
        "--max-examples", str(examples), "--seed", str(seed), "--workers", "2",
        # Without it Hypothesis stops an operation at its first failure (an artefact too) and
        # the operation gets only the cases drawn so far.
        "--continue-on-failure",
        "--generation-database", "none", "--no-color",
        "--phases", phases,
        "--report", "junit,ndjson", "--report-dir", report,
        # The suite's own tests need the demo's members and tokens: never let the fuzzer
        # deactivate members or revoke tokens.
        "--exclude-operation-id", "updateMember", "--exclude-operation-id", "revokeToken",
    ]
    for label in names:
        argv += ["--include-name", label]
    # --max-time splits the time left evenly over the operations not yet run (and keeps half
    # back for the stateful phase), so a slow operation gets its share of seconds, not its
    # max-examples: full runs leave it out unless asked.
    if max_time:
        argv += ["--max-time", str(max_time)]
    began = time.time()
    result = run(argv, timeout=None if not suite.quick else 900, cwd=suite.work)
    output = result.stdout + result.stderr
    with open(os.path.join(suite.work, f"schemathesis-{name}.log"), "w") as f:
        f.write(output)
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    number = lambda pattern: int(re.search(pattern, summary).group(1)) if re.search(pattern, summary) else 0
    ndjson = [os.path.join(report, n) for n in os.listdir(report) if n.endswith(".ndjson")] if os.path.isdir(report) else []
    return {"name": name, "pin": pin, "seed": seed, "elapsed": time.time() - began, "output": output,
            "returncode": result.returncode, "ndjson": ndjson, "failures": number(r"(\d+) failures?"),
            "errors": number(r"(\d+) errors?"), "server_errors": output.count("Server error")}


def test_schemathesis(suite, test):
    examples = suite.schemathesis_max_examples or (15 if suite.quick else 1000)
    max_time = 150 if suite.quick and not suite.schemathesis_max_time else suite.schemathesis_max_time
    inputs = operation_inputs()
    passes = [schemathesis_pass(suite, "main", examples, suite.seed, "examples,coverage,fuzzing,stateful",
                                names=suite.schemathesis_operations, max_time=max_time)]
    # The same contract from the other sides of the table: a carrier (a partner that may
    # declare but not administer) and the coordinator (reads everything, writes sessions).
    # Every answer they get must be one the contract documents, and none a 5xx.
    for role, member in (("carrier", suite.eco.carriers[0]), ("coordinator", suite.eco.coordinator)):
        passes.append(schemathesis_pass(suite, role, examples, suite.seed + 200, "examples,coverage,fuzzing",
                                        names=suite.schemathesis_operations,
                                        max_time=(max_time // 2 if max_time else None), token=member["token"]))
    counts = schemathesis_counts(passes)
    under = lambda: sorted(label for label in counts if sum(counts[label]["phases"].values()) < examples)
    if not suite.quick and not max_time:
        # Operations under max-examples after the main run. Hypothesis ends an operation's
        # fuzzing early when it has drawn every distinct input there is, or when most of what
        # it draws is rejected as invalid or too large; another seed draws other inputs.
        # 1. Operations whose only input is the ecosystem id, pinned above to the demo's: one
        #    request. Fuzz them once more with the id free (other ecosystems' ids, malformed
        #    ids): the API's real input space, answered 400/404, never 5xx.
        free = [label for label in under() if inputs.get(label) == {"path:ecosystemId"}]
        if free:
            passes.append(schemathesis_pass(suite, "ecosystem-id", examples, suite.seed + 100, "fuzzing",
                                            pin=False, names=free))
        # 2. Operations with inputs of their own: up to three more fuzzing passes, other seeds.
        for round in range(1, 4):
            counts = schemathesis_counts(passes)
            more = [label for label in under() if inputs.get(label, set()) - {"path:ecosystemId"}]
            if not more:
                break
            passes.append(schemathesis_pass(suite, f"more-{round}", examples, suite.seed + round, "fuzzing",
                                            names=more))
        # 3. Each operation still under, alone in a pass of every phase. In the full run of
        #    session 4, Hypothesis ended `POST .../movements/batch` early in every pass it
        #    shared with other operations (253, 396, 5 and 4 cases; why is not found), while
        #    alone it reaches 1,000 in one pass (1,260 cases with seeds 20261128 and 20261130).
        counts = schemathesis_counts(passes)
        for label in [label for label in under() if inputs.get(label, set()) - {"path:ecosystemId"}]:
            passes.append(schemathesis_pass(suite, "alone-" + re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-"),
                                            examples, suite.seed + 10, "examples,coverage,fuzzing", names=[label]))
        counts = schemathesis_counts(passes)
    elapsed = sum(p["elapsed"] for p in passes)
    cases = sum(sum(c["phases"].values()) for c in counts.values())
    totals = sorted(sum(c["phases"].values()) for c in counts.values())
    described = ", ".join(f"{p['name']} seed {p['seed']} {p['elapsed']:.0f} s" for p in passes)
    test.figure(f"Schemathesis {examples} max examples per operation, "
                f"{'--max-time ' + str(max_time) + ' s, ' if max_time else 'no time cap, '}"
                f"{len(passes)} passes ({described}), "
                f"{elapsed:.0f} s, {fmt(cases)} test cases"
                + (f" over {len(counts)} operations (fewest {fmt(totals[0])}, median {fmt(totals[len(totals) // 2])})"
                   if counts else ""))
    columns = ["examples", "coverage", "fuzzing", "stateful", "more", "ecosystem-id"]
    say("      cases per operation: " + " + ".join(columns) + " = total; distinct requests; operation")
    say("      (more: fuzzing passes with other seeds, then each operation still under alone; "
        "ecosystem-id: fuzzing with the ecosystem id not pinned)")
    for label in sorted(counts, key=lambda k: (sum(counts[k]["phases"].values()), k)):
        c = counts[label]
        say("      " + " ".join(f"{c['phases'].get(column, 0):6,}" for column in columns)
            + f" = {sum(c['phases'].values()):7,}; {c['distinct']:7,}  {label}")
    exhausted = []
    for label in under():
        c = counts[label]
        own = inputs.get(label, set()) - {"path:ecosystemId"}
        if not own and "path:ecosystemId" not in inputs.get(label, set()):
            reason = (f"input space exhausted: no parameters and no body, one request; Hypothesis drew it and "
                      f"had nothing else to draw ({c['distinct']} distinct requests in all phases, the coverage "
                      f"phase's other methods and missing/invalid Authorization included)")
            exhausted.append(label)
        elif not own and (max_time or suite.quick):
            reason = "its only input, the ecosystem id, is pinned: one request (full runs fuzz it free)"
        elif max_time:
            reason = f"the --max-time {max_time} s cap"
        elif suite.quick:
            reason = "quick run"
        else:
            reason = (f"every pass ended before {examples} ({', '.join(f'{k} {v}' for k, v in c['phases'].items())}); "
                      f"inputs {', '.join(sorted(inputs.get(label, set())))}")
        test.figure(f"under {fmt(examples)}: {label}: {fmt(sum(c['phases'].values()))} cases; {reason}")
    for p in passes:
        for line in "\n".join(p["output"].strip().splitlines()[-12:]).splitlines():
            say(f"      | {p['name']}: " + line)
    failures = sum(p["failures"] for p in passes)
    errors = sum(p["errors"] for p in passes)
    server_errors = sum(p["server_errors"] for p in passes)
    # negative_data_rejection failures that are not the API's: the suite pins ecosystemId
    # to the demo's id (so a "wrong-typed" ecosystemId is in fact valid), Schemathesis
    # reports a made-up property it added to an object as violating a constraint, though
    # the contract allows additional properties, and EPCIS 2.0 prescribes 413 for a capture
    # over the event limit. Every other failure counts.
    artefacts, real = [], []
    for p in passes:
        a, r = schemathesis_failures(p["ndjson"], pinned=p["pin"])
        artefacts += a
        real += r
    for text in artefacts[:5]:
        test.figure(f"(not the API's: {text})")
    for text in real[:20]:
        test.figure(f"(the API's: {text})")
    if failures and not real and artefacts:
        test.figure(f"{len(artefacts)} negative_data_rejection reports are artefacts (above); 0 failures of the API")
        failures = 0
    still = [label for label in under() if label not in exhausted]
    test.figure(f"RESULT Schemathesis: {fmt(cases)} cases over {len(counts)} operations in {elapsed:.0f} s, "
                f"fewest {fmt(totals[0]) if totals else '?'} (median {fmt(totals[len(totals) // 2]) if totals else '?'}); "
                f"{len(under())} under {fmt(examples)}"
                + (f": {len(exhausted)} with no input (exhausted: {', '.join(exhausted)})" if exhausted else "")
                + (f", {len(still)} others: {', '.join(still)}" if still and exhausted else (f": {', '.join(still)}" if still else ""))
                + f"; {failures} check failures, {server_errors} server errors (5xx), "
                f"{errors} errors inside Schemathesis itself")
    # Errors raised inside Schemathesis (its own bugs, e.g. in schema walking) are reported,
    # not counted against the API; every check failure is. Schemathesis exits 1 on any
    # failure, the artefacts above included.
    for p in passes:
        test.check(p["returncode"] == 0 or p["errors"] > 0 or (p["failures"] and not real),
                   f"schemathesis {p['name']}: exit {p['returncode']} (log: {suite.work}/schemathesis-{p['name']}.log)")
    test.check(failures == 0 and not real, f"schemathesis: {failures} failures of the API")
    test.check(server_errors == 0, f"schemathesis: {server_errors} server errors")
    test.check(suite.daemon.alive(), "palletflowd died under Schemathesis")


def operation_inputs():
    """'METHOD /path' -> the operation's inputs ('in:name' of its parameters, 'body')."""
    import yaml
    with open(os.path.join(ROOT, "Sources/PalletFlowContract/openapi.yaml")) as f:
        document = yaml.safe_load(f)

    def resolve(node):
        while isinstance(node, dict) and "$ref" in node:
            target = document
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            node = target
        return node

    result = {}
    for path, item in document["paths"].items():
        common = [resolve(p) for p in item.get("parameters", [])]
        for method, operation in item.items():
            if method == "parameters" or not isinstance(operation, dict):
                continue
            found = {f"{p['in']}:{p['name']}" for p in common + [resolve(p) for p in operation.get("parameters", [])]}
            if operation.get("requestBody"):
                found.add("body")
            result[f"{method.upper()} {path}"] = found
    return result


def schemathesis_counts(passes):
    """'METHOD /path' -> {"phases": {column: cases}, "distinct": distinct requests}. Counted per
    operation from each case; the fuzzing of a later pass is column "more", or "ecosystem-id"
    when that pass left the ecosystem id free."""
    counts = {}
    seen = {}
    for p in passes:
        for path in p["ndjson"]:
            with open(path) as f:
                for line in f:
                    try:
                        scenario = json.loads(line).get("ScenarioFinished") or {}
                    except ValueError:
                        continue
                    recorder = scenario.get("recorder") or {}
                    phase = scenario.get("phase") or "?"
                    column = phase if p["name"] == "main" else ("ecosystem-id" if not p["pin"] else "more")
                    for node in (recorder.get("cases") or {}).values():
                        case = node.get("value") or {}
                        # A unit phase's scenario is one operation (its coverage cases include
                        # other methods on the path: still that operation's); a stateful scenario
                        # is a chain of operations, each case counted for its own.
                        label = recorder.get("label", "?")
                        if phase == "stateful":
                            label = f"{case.get('method', '?')} {case.get('path', '?')}"
                        entry = counts.setdefault(label, {"phases": {}, "distinct": 0})
                        entry["phases"][column] = entry["phases"].get(column, 0) + 1
                        key = json.dumps({k: case.get(k) for k in ("method", "path_parameters", "query", "headers",
                                                                   "cookies", "body", "media_type")},
                                         sort_keys=True, default=str)
                        bucket = seen.setdefault(label, set())
                        if key not in bucket:
                            bucket.add(key)
                            entry["distinct"] += 1
    return counts


def request_properties():
    """'METHOD /path' -> the property names of its JSON request body (one level, refs resolved)."""
    import yaml
    with open(os.path.join(ROOT, "Sources/PalletFlowContract/openapi.yaml")) as f:
        document = yaml.safe_load(f)

    def resolve(schema):
        while isinstance(schema, dict) and "$ref" in schema:
            node = document
            for part in schema["$ref"].lstrip("#/").split("/"):
                node = node[part]
            schema = node
        return schema or {}

    def names(schema, depth=0):
        schema = resolve(schema)
        found = set(schema.get("properties", {}))
        if depth < 4:
            for sub in schema.get("properties", {}).values():
                found |= names(sub, depth + 1)
            if "items" in schema:
                found |= names(schema["items"], depth + 1)
        return found

    result = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            body = ((operation.get("requestBody") or {}).get("content") or {}).get("application/json") or {}
            result[f"{method.upper()} {path}"] = names(body.get("schema") or {})
    return result


def schemathesis_failures(ndjson, pinned=True):
    """(artefacts, real): texts of negative_data_rejection failures that the suite itself
    or Schemathesis made up, and of every other failure."""
    known = request_properties()
    artefacts, real = [], []
    for path in ndjson:
        with open(path) as f:
            for line in f:
                try:
                    recorder = (json.loads(line).get("ScenarioFinished") or {}).get("recorder") or {}
                except ValueError:
                    continue
                for checks in (recorder.get("checks") or {}).values():
                    for check in checks:
                        failure = ((check.get("failure_info") or {}).get("failure")) or {}
                        if check.get("status") != "failure" or not failure:
                            continue
                        operation = failure.get("operation", "?")
                        message = failure.get("message", "")
                        text = f"{operation}: {check.get('name')}: {message.splitlines()[-1] if message else '?'}"
                        component = re.search(r"Invalid component: (?:in body - )?(.*?)\s*(?::|->)", message, re.S)
                        if check.get("name") == "negative_data_rejection" and (
                                (pinned and "parameter `ecosystemId` in path" in message)
                                # EPCIS 2.0: a capture over the event limit is 413
                                # CaptureLimitExceededException, not 400/422 (docs/epcis.md).
                                or (operation.endswith("/epcis/capture") and "maxItems" in message)
                                or (component and "parameter `" not in component.group(1)
                                    and component.group(1).strip() not in known.get(operation, set()))):
                            artefacts.append(text)
                        else:
                            real.append(text)
    return artefacts, real
