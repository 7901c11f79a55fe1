#!/usr/bin/env python3
"""Browser tests of the dashboard: a real headless Chromium, driven with Selenium, against
a real palletflowd on its own embedded PostgreSQL with the demo ecosystem.

It signs in as the shipper, the coordinator and a carrier, walks every page, submits a
mediation action, compares the numbers shown with the API's, checks that no page logs a
console error, tries what a carrier must not do, and saves a screenshot of every page in
artifacts/browser/. Run: scripts/browser-tests (or python3 Tests/Browser/dashboard_test.py
BINARY_DIR).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARTIFACTS = os.path.join(ROOT, "artifacts", "browser")
failures = []
checks = 0


def check(condition, message):
    global checks
    checks += 1
    if not condition:
        failures.append(message)
        print("  FAIL", message, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, binaries):
        self.dir = tempfile.mkdtemp(prefix="pf-browser-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(self.dir, "daemon.log"), "w")
        self.process = subprocess.Popen(
            [os.path.join(binaries, "palletflowd"), "--demo", "--with-worker", "--data-dir", os.path.join(self.dir, "data"),
             "--port", str(self.port), "--log-format", "text", "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.tokens = {}
        self.ecosystem = None
        deadline = time.time() + 600
        for line in self.process.stdout:
            match = re.match(r"\s+ecosystem id\s+([0-9a-f-]{36})", line)
            if match:
                self.ecosystem = match.group(1)
            match = re.match(r"\s+(shipper|carrier|warehouse|supplier|customer|coordinator)\s+(pft_\S+)\s+(.+)$", line)
            if match:
                self.tokens.setdefault(match.group(1), []).append((match.group(2), match.group(3).strip()))
            if line.startswith("Try:") or time.time() > deadline:
                break
        if not self.ecosystem:
            raise SystemExit("palletflowd did not print the demo ecosystem; see " + self.log.name)
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(self.base + "/readyz", timeout=2).status == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)

    def api(self, token, path):
        request = urllib.request.Request(self.base + f"/v1/ecosystems/{self.ecosystem}" + path,
                                         headers={"Authorization": "Bearer " + token})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def browser(width=1366, height=900):
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--lang=en-GB"]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)


def visit(driver, daemon, path, name):
    driver.get(daemon.base + path)
    shot = os.path.join(ARTIFACTS, name + ".png")
    # A full-page screenshot: grow the window to the page's height first.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, min(max(height, 600), 8000))
    driver.save_screenshot(shot)
    driver.set_window_size(width, 900)
    errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    check(not errors, f"{name}: console errors {errors}")
    check("<h1>" in driver.page_source or "<h1 " in driver.page_source, f"{name}: the page has a heading")
    return driver


def sign_in(driver, daemon, token):
    driver.get(daemon.base + "/app/sign-in")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(lambda: "/app/sign-in" not in driver.current_url)


def wait_for(condition, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline and not condition():
        time.sleep(0.1)


def numbers(driver, attribute):
    return {element.get_attribute(attribute): int(element.text)
            for element in driver.find_elements(By.CSS_SELECTOR, f"[{attribute}]")}


def main():
    binaries = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".build", "debug")
    os.makedirs(ARTIFACTS, exist_ok=True)
    for old in os.listdir(ARTIFACTS):
        os.remove(os.path.join(ARTIFACTS, old))
    daemon = Daemon(binaries)
    print(f"palletflowd at {daemon.base}, ecosystem {daemon.ecosystem}", flush=True)
    shipper_token, shipper_name = daemon.tokens["shipper"][0]
    coordinator_token, _ = daemon.tokens["coordinator"][0]
    carrier_token, carrier_name = daemon.tokens["carrier"][0]
    other_carrier_token, other_carrier_name = daemon.tokens["carrier"][1]
    members = {m["name"]: m for m in daemon.api(shipper_token, "/members")["items"]}
    shipper_id = members[shipper_name]["id"]
    carrier_id = members[carrier_name]["id"]
    other_carrier_id = members[other_carrier_name]["id"]
    driver = browser()
    try:
        # --- The shipper: overview numbers equal the API's.
        print("shipper: overview, partner, every page", flush=True)
        sign_in(driver, daemon, shipper_token)
        check(driver.current_url.endswith("/app"), "the shipper lands on the overview")
        visit(driver, daemon, "/app", "01-overview")
        shown = numbers(driver, "data-owed")
        expected = {}
        for row in daemon.api(shipper_token, "/balances?view=bilateral")["items"]:
            if row.get("counterpartyId") == shipper_id and row.get("partyId") not in (None, shipper_id):
                key = f"{row['partyId']}:{row['palletTypeCode']}"
                expected[key] = expected.get(key, 0) + row["balance"]
        check(len(shown) > 5, f"the overview lists balances ({len(shown)})")
        check(shown == expected, f"overview balances equal the API's: {sorted(set(shown.items()) ^ set(expected.items()))[:6]}")
        to_date = daemon.api(shipper_token, "/indicators?period=to_date")["items"]
        out = int(driver.find_element(By.ID, "pallets-out").text)
        check(out == sum(row["outstanding"] for row in to_date), "pallets out equals the sum of the API's outstanding")
        open_count = int(driver.find_element(By.ID, "open-discrepancies").text)
        check(open_count == len(daemon.api(shipper_token, "/discrepancies?open=true")["items"]), "open discrepancies equal the API's")
        check(len(driver.find_elements(By.CSS_SELECTOR, "figure svg")) >= 4, "the overview draws its charts")
        check(len(driver.find_elements(By.CSS_SELECTOR, "figure details table")) >= 4, "every chart has its data table")

        visit(driver, daemon, f"/app/partners/{carrier_id}", "02-partner")
        closing = numbers(driver, "data-closing")
        month = time.strftime("%Y-%m-01", time.gmtime())
        tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
        statement = daemon.api(shipper_token, f"/statements?party={carrier_id}&counterparty={shipper_id}"
                                              f"&from={month}T00:00:00Z&until={tomorrow}T00:00:00Z")
        check(closing == {f"{line['palletTypeCode']}:{line['quality']}": line["closing"] for line in statement["lines"]},
              "the statement's closing balances equal the API's")
        check(len(driver.find_elements(By.CSS_SELECTOR, "#movements-table tbody tr")) > 0, "the partner's movements are listed")
        driver.find_element(By.CSS_SELECTOR, "select#kind option[value=return]").click()
        driver.find_element(By.XPATH, "//select[@id='kind']/ancestor::form//button").click()
        wait_for(lambda: "kind=return" in driver.current_url)
        kinds = {row.find_elements(By.TAG_NAME, "td")[1].text for row in driver.find_elements(By.CSS_SELECTOR, "#movements-table tbody tr")}
        check(kinds <= {"return"}, f"the kind filter keeps returns only ({kinds})")
        sessions = daemon.api(shipper_token, "/sessions")["items"]
        session = sorted(sessions, key=lambda s: s["scheduledAt"])[-1]
        for path, name in [("/app/me", "03-shipper-account"), ("/app/sessions", "04-sessions"),
                           (f"/app/sessions/{session['id']}", "05-session"), (f"/app/sessions/{session['id']}/print", "06-session-print"),
                           ("/app/charters", "07-charters"), ("/app/kits", "08-kits"), ("/app/indicators", "09-indicators")]:
            visit(driver, daemon, path, name)
        # Recompute the indicators and follow the job until it is done.
        driver.find_element(By.CSS_SELECTOR, "form[action='/app/indicators/recompute'] button").click()
        wait_for(lambda: "job=" in driver.current_url)
        check("job=" in driver.current_url, "the recompute leads to its job")
        deadline = time.time() + 120
        state = ""
        while time.time() < deadline:
            cells = driver.find_elements(By.CSS_SELECTOR, "#jobs tbody tr:first-child td")
            state = cells[2].text if len(cells) > 2 else ""
            if state in ("done", "failed"):
                break
            time.sleep(1)
            driver.get(driver.current_url)
        check(state == "done", f"the recompute job finishes (state {state!r})")
        # French, then back to English.
        driver.get(daemon.base + "/app/language/fr?back=/app")
        check("Vue d'ensemble" in driver.page_source and 'lang="fr"' in driver.page_source, "the overview speaks French")
        visit(driver, daemon, "/app", "10-overview-fr")
        driver.get(daemon.base + "/app/language/en?back=/app")
        # Tablet width.
        driver.set_window_size(820, 1180)
        driver.get(daemon.base + "/app")
        driver.save_screenshot(os.path.join(ARTIFACTS, "11-overview-tablet.png"))
        overflow = driver.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        check(overflow <= 1, f"no horizontal scrolling at tablet width ({overflow}px)")
        driver.set_window_size(1366, 900)
        driver.find_element(By.CSS_SELECTOR, "form[action='/app/sign-out'] button").click()
        wait_for(lambda: "/app/sign-in" in driver.current_url)
        check("/app/sign-in" in driver.current_url, "sign-out returns to the sign-in page")

        # --- The coordinator submits a mediation action; the API's report has it.
        print("coordinator: a mediation action through the form", flush=True)
        sign_in(driver, daemon, coordinator_token)
        visit(driver, daemon, f"/app/sessions/{session['id']}", "12-session-coordinator")
        driver.find_element(By.ID, "description").send_keys("Browser test: send the dock count sheet")
        owner = driver.find_element(By.CSS_SELECTOR, f"#ownerId option[value='{carrier_id}']")
        owner.click()
        driver.find_element(By.CSS_SELECTOR, f"form[action='/app/sessions/{session['id']}/actions'] button").click()
        wait_for(lambda: "saved=1" in driver.current_url)
        check("saved=1" in driver.current_url, "the action form comes back saved")
        report = daemon.api(coordinator_token, f"/sessions/{session['id']}/report")
        check(any(a["description"] == "Browser test: send the dock count sheet" and a["ownerId"] == carrier_id
                  for a in report["actions"]), "the API's report lists the new action")
        visit(driver, daemon, f"/app/sessions/{session['id']}", "13-session-after-action")
        check("Browser test: send the dock count sheet" in driver.page_source, "the page shows the new action")
        driver.find_element(By.CSS_SELECTOR, "form[action='/app/sign-out'] button").click()
        wait_for(lambda: "/app/sign-in" in driver.current_url)

        # --- A carrier: its own numbers, and what it must not do.
        print("carrier: own account, another carrier's page, a cross-site form", flush=True)
        sign_in(driver, daemon, carrier_token)
        check(driver.current_url.endswith("/app/me"), "a carrier lands on its own account")
        visit(driver, daemon, "/app/me", "14-carrier-account")
        shown = numbers(driver, "data-owe")
        mine = {}
        for row in daemon.api(carrier_token, f"/balances?view=bilateral&party={carrier_id}")["items"]:
            if row["balance"] != 0:
                mine[f"{row['counterpartyId']}:{row['palletTypeCode']}:{row['quality']}"] = max(0, row["balance"])
        check(shown == mine, "the carrier's own balances equal the API's")
        driver.get(daemon.base + f"/app/partners/{other_carrier_id}")
        check("404" in driver.page_source and other_carrier_name not in driver.page_source,
              "a carrier cannot open another carrier's page")
        driver.get(daemon.base + "/app")
        check(driver.current_url.endswith("/app/me"), "the overview sends a carrier to its own page")
        # A plenary session it takes part in: its own section, no other partner named.
        names = {m["id"]: m["name"] for m in members.values()}
        plenary = [s for s in sessions if carrier_id in s["participantIds"]]
        driver.get_log("browser")  # the other carrier's page answered 404 above, as it should
        if plenary:
            others = [names[p] for p in plenary[-1]["participantIds"]
                      if p != carrier_id and members.get(names.get(p, ""), {}).get("role") not in ("shipper", "coordinator")]
            visit(driver, daemon, f"/app/sessions/{plenary[-1]['id']}", "15-session-carrier")
            check(carrier_name in driver.page_source, "the carrier's session page shows its own section")
            leaked = [name for name in others if name in driver.page_source]
            check(not leaked, f"the carrier's session page names no other participant ({leaked})")
            check("The ecosystem this period" in driver.page_source, "the carrier's session page shows the ecosystem's anonymous figures")
        # A form on another origin posting into the dashboard: SameSite=Strict keeps the
        # session cookie home and the form token is missing, so nothing happens.
        pending = [m for m in daemon.api(shipper_token, "/movements?status=declared")["items"]
                   if m.get("counterpartyId") == carrier_id]
        if pending:
            target = pending[0]["id"]
            page = f"<form id=f method=post action='{daemon.base}/app/movements/{target}/confirm'></form><script>document.getElementById('f').submit()</script>"
            driver.get("data:text/html;charset=utf-8," + urllib.request.quote(page))
            time.sleep(1)
            after = daemon.api(shipper_token, f"/movements/{target}")
            check(after["status"] == "declared", "a cross-site form confirms nothing")
            driver.get_log("browser")
    finally:
        driver.quit()
        daemon.stop()
    print(f"{checks} checks, {len(failures)} failed; screenshots in {ARTIFACTS}")
    if failures:
        for failure in failures:
            print(" -", failure)
        sys.exit(1)


if __name__ == "__main__":
    main()
