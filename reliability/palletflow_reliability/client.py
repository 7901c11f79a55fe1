"""The suite's side of the API: one keep-alive connection per thread, problem+json answers,
and the demo ecosystem's ids and tokens, with valid declarations drawn on Zipf-hot accounts
(a few carriers and pallet types take most of the traffic, as in real use: the contention
the tests want)."""

import http.client
import json
import threading
import time

from .support import Failure

PROBLEM = "application/problem+json"
TYPE_BASE = "https://palletflow.dev/problems/"


class Client:
    """One keep-alive HTTP/1.1 connection per thread."""

    def __init__(self, port, timeout=60):
        self.port = port
        self.timeout = timeout
        self.local = threading.local()

    def _connection(self):
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.local.connection = connection
        return connection

    def reset(self):
        connection = getattr(self.local, "connection", None)
        if connection is not None:
            try:
                connection.close()
            except Exception:
                pass
        self.local.connection = None

    def request(self, method, path, token=None, body=None, headers=None, content_type="application/json"):
        """Returns (status, headers with lower-case names, body bytes); raises OSError or
        http.client errors when the connection fails (the caller decides what that means)."""
        all_headers = {}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            if not isinstance(body, (bytes, bytearray)):
                body = json.dumps(body, sort_keys=True).encode()
            all_headers["Content-Type"] = content_type
        all_headers.update(headers or {})
        reused = getattr(self.local, "connection", None) is not None
        connection = self._connection()
        try:
            try:
                connection.request(method, path, body=body, headers=all_headers)
                response = connection.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A kept-alive connection to a daemon that has since been restarted: reads
                # are retried once on a new connection (writes never are: the caller decides).
                if not reused or method != "GET":
                    raise
                self.reset()
                connection = self._connection()
                connection.request(method, path, body=body, headers=all_headers)
                response = connection.getresponse()
            data = response.read()
            result = (response.status, {k.lower(): v for k, v in response.getheaders()}, data)
            if response.getheader("connection", "").lower() == "close":
                self.reset()
            return result
        except Exception:
            self.reset()
            raise


def problem_type(body):
    try:
        return json.loads(body).get("type", "")
    except Exception:
        return ""


class Zipf:
    def __init__(self, items, s=1.2):
        self.items = list(items)
        weights = [1 / (rank ** s) for rank in range(1, len(self.items) + 1)]
        total = sum(weights)
        self.cumulative = []
        running = 0
        for weight in weights:
            running += weight / total
            self.cumulative.append(running)

    def pick(self, rng):
        x = rng.random()
        for item, bound in zip(self.items, self.cumulative):
            if x <= bound:
                return item
        return self.items[-1]


class Ecosystem:
    """The demo's ids and tokens, read through the API."""

    def __init__(self, seeded, client):
        self.id = seeded["ecosystemId"]
        self.base = f"/v1/ecosystems/{self.id}"
        self.members = {}
        for organisation in seeded["organisations"]:
            self.members[organisation["memberId"]] = dict(organisation)
        self.tokens = [o["token"] for o in seeded["organisations"]]
        self.shipper = next(m for m in self.members.values() if m["role"] == "shipper")
        self.carriers = [m for m in self.members.values() if m["role"] == "carrier"]
        self.customers = [m for m in self.members.values() if m["role"] == "customer"]
        self.coordinator = next(m for m in self.members.values() if m["role"] == "coordinator")
        status, _, body = client.request("GET", self.base + "/sites", token=self.shipper["token"])
        if status != 200:
            raise Failure(f"GET sites: {status} {body[:200]}")
        self.sites = {}
        for site in json.loads(body)["items"]:
            owner = site.get("memberId") or site.get("ownerId") or site.get("partyId")
            self.sites.setdefault(owner, []).append(site["id"])
        status, _, body = client.request("GET", self.base + "/pallet-types", token=self.shipper["token"])
        self.pallet_types = [t for t in json.loads(body)["items"] if t.get("active", True)]
        self.exchangeable = {t["code"] for t in self.pallet_types if t.get("exchangeable")}
        self.hot_carriers = Zipf([c["memberId"] for c in self.carriers])
        self.hot_types = Zipf([t["code"] for t in self.pallet_types])
        self.hot_customers = Zipf([c["memberId"] for c in self.customers if self.sites.get(c["memberId"])])
        self.qualities = Zipf(["A", "B", "new", "C"])

    def token(self, member_id):
        return self.members[member_id]["token"]

    def declaration(self, rng, marker, minutes_ago=None):
        """A valid movement declared by a carrier, on Zipf-hot accounts; `marker` goes into
        references.order so that SQL can find it again."""
        carrier = self.hot_carriers.pick(rng)
        shipper = self.shipper["memberId"]
        shipper_site = self.sites[shipper][0 if rng.random() < 0.8 else -1]
        code = self.hot_types.pick(rng)
        quantity = rng.randint(1, 40)
        exchanged = rng.randint(0, quantity) if code in self.exchangeable and rng.random() < 0.5 else 0
        kind = rng.choices(["pickup", "delivery", "return"], [5, 3, 2])[0]
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60 * (minutes_ago or rng.randint(5, 600))))
        line = {"palletType": code, "quality": self.qualities.pick(rng), "quantity": quantity}
        if kind == "pickup":
            frm, to = {"partyId": shipper, "siteId": shipper_site}, {"partyId": carrier}
            line["exchangedQuantity"] = exchanged
        elif kind == "delivery":
            customer = self.hot_customers.pick(rng)
            frm, to = {"partyId": carrier}, {"partyId": customer, "siteId": self.sites[customer][0]}
            line["exchangedQuantity"] = exchanged
        else:
            frm, to = {"partyId": carrier}, {"partyId": shipper, "siteId": shipper_site}
        body = {"kind": kind, "eventTime": when, "from": frm, "to": to, "lines": [line],
                "references": {"order": marker, "cmr": f"CMR-{rng.randint(1, 99999)}"}}
        return carrier, body
