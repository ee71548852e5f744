"""A fake Linode API v4 on 127.0.0.1 (standard library only).

It serves a scenario file from tests/fixtures/linode/ in the real wire format:
list endpoints paginate as the API does ({"data", "page", "pages", "results"},
?page=&page_size= with page_size 25..500), the X-Filter header is parsed and
applied (+and, +or, +gt/+gte/+lt/+lte/+neq/+contains, +order_by/+order), and
every request needs "Authorization: Bearer <token>".

Time comes from a FakeClock the test moves: an object whose "created" lies
after "now" is not listed yet, and its "_changes" ({"at": ..., "set": {...}})
apply once "at" has passed, so a backup can go pending -> running ->
successful while a test watches.

Faults are switched at run time with set_fault(mode, path=None, **params)
or add_fault(Fault(...)), in the vocabulary of tests/fakes/faults.py (the
modes of SERVES). Every request is recorded in .requests, faulty or not.

    with FakeLinodeAPI("account") as api:
        client = LinodeClient(api.token, base_url=api.url)
"""
from __future__ import annotations

import calendar
import json
import math
import operator
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlsplit

from .clock import FakeClock
from .faults import Fault, LoopbackAPI

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "linode"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
MIN_PAGE_SIZE, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE = 25, 500, 100
# A snapshot in one of these states is the "in_progress" one.
SNAPSHOT_IN_PROGRESS = ("pending", "running", "needsPostProcessing", "paused")
DEFAULT_TOKEN = "fake-linode-token-5f1c0e9a7b3d4c2e"

SERVES = ("error", "rate_limited", "auth_mid_pagination", "slow", "hang", "malformed_json", "missing_data",
          "page_loop", "pages_grow", "short_page", "refused")

# Fields each collection can be filtered on; anything else is a 400, as on the API.
_FILTERABLE = {
    "images": {"id", "label", "is_public", "vendor", "deprecated", "type", "status", "created"},
    "instances": {"id", "label", "group", "region", "type", "image", "tags"},
    "disks": {"id", "label", "filesystem", "status"},
    "events": {"id", "action", "created", "seen", "username"},
}
_OPS = {"+gt": operator.gt, "+gte": operator.ge, "+lt": operator.lt, "+lte": operator.le,
        "+neq": operator.ne, "+contains": lambda value, arg: arg in value}
_INSTANCE_PATH = re.compile(r"^/linode/instances/(\d+)/(disks|backups)$")
# Per-user limits as Akamai's "Rate limits" page for the Linode API words them: GETs of
# paginated collections have their own per-minute budget, every other request another.
PUBLISHED_LIMITS = {"collection": (200, 60.0), "other": (800, 60.0)}
_COLLECTIONS = re.compile(r"^/v4/(images|linode/instances|account/events|linode/instances/\d+/disks)$")


class RateLimiter:
    """Fixed windows per request class; answers the X-RateLimit-* headers and 429 + Retry-After.

    limits: class -> (requests, window seconds). The windows run on `clock`
    (the real time by default: rate limits are about real request pacing).
    """

    def __init__(self, limits=None, clock=time.time):
        self.limits = dict(limits or PUBLISHED_LIMITS)
        self.clock = clock
        self._windows: Dict[str, Tuple[float, int]] = {}     # class -> (window start, used)
        self.rejected = 0
        self._lock = threading.Lock()

    def take(self, path: str) -> Tuple[bool, Dict[str, str]]:
        cls = "collection" if _COLLECTIONS.match(path) else "other"
        limit, window = self.limits[cls]
        now = self.clock()
        with self._lock:
            start, used = self._windows.get(cls, (now, 0))
            if now - start >= window:
                start, used = now, 0
            ok = used < limit
            if ok:
                used += 1
            else:
                self.rejected += 1
            self._windows[cls] = (start, used)
        reset = start + window
        headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(limit - used),
                   "X-RateLimit-Reset": str(int(math.ceil(reset)))}
        if not ok:
            headers["Retry-After"] = str(max(1, int(math.ceil(reset - now))))
        return ok, headers


def parse_time(text: str) -> float:
    """Unix seconds of an API timestamp (UTC, no zone suffix)."""
    return float(calendar.timegm(time.strptime(text, TIME_FORMAT)))


def format_time(ts: float) -> str:
    return time.strftime(TIME_FORMAT, time.gmtime(ts))


def load_scenario(name: str) -> dict:
    with open(FIXTURES / f"{name}.json", encoding="utf-8") as f:
        return json.load(f)


@dataclass(frozen=True)
class Request:
    method: str
    path: str                 # e.g. "/v4/account/events"
    query: Dict[str, str]
    headers: Dict[str, str]


class _ApiError(Exception):
    def __init__(self, status, reason, field=None, headers=None):
        super().__init__(reason)
        self.status = status
        self.body = {"errors": [dict({"reason": reason}, **({"field": field} if field else {}))]}
        self.headers = headers or {}


def shift_times(obj, seconds: float):
    """The scenario with every timestamp moved by `seconds` (for live=True)."""
    if isinstance(obj, dict):
        return {k: shift_times(v, seconds) for k, v in obj.items()}
    if isinstance(obj, list):
        return [shift_times(v, seconds) for v in obj]
    if isinstance(obj, str) and _TIME_RE.match(obj):
        return format_time(parse_time(obj) + seconds)
    return obj


_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


class FakeLinodeAPI(LoopbackAPI):
    """live=True moves the scenario so that its "now" is the real time now and
    follows the wall clock: for tests of the exporter as a process, whose
    clock is the real one."""

    def __init__(self, scenario: str = "account", token: str = DEFAULT_TOKEN,
                 clock: Optional[FakeClock] = None, live: bool = False,
                 rate_limiter: Optional[RateLimiter] = None, latency: float = 0.0, sleep=time.sleep):
        super().__init__()
        self.scenario = load_scenario(scenario)
        self.token = token
        self.rate_limiter = rate_limiter      # None: no limits enforced
        self.latency = latency                # seconds added to every answer (benchmarks)
        self._sleep = sleep                   # how the latency passes: a simulated clock's advance in benchmarks
        self.account_scope = True             # False: the token may not read /account (403)
        if live:
            self.scenario = shift_times(self.scenario, round(time.time()) - parse_time(self.scenario["now"]))
            clock = clock or time.time
        self.clock = clock or FakeClock(parse_time(self.scenario["now"]))
        self.requests: List[Request] = []
        self._lock = threading.Lock()

    SERVES = SERVES
    NAME = "fake-linode-api"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v4"

    # ---- test controls --------------------------------------------------

    def add(self, collection: str, obj: dict) -> None:
        """Add an object to a top-level collection of the scenario (e.g. "events")."""
        with self._lock:
            self.scenario[collection].append(obj)

    def paths(self) -> List[str]:
        return [r.path for r in self.requests]

    # ---- request handling -----------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        query = dict(parse_qsl(url.query))
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            h.rfile.read(length)
        with self._lock:
            self.requests.append(Request(h.command, url.path, query, dict(h.headers.items())))
        fault = self.faults.match(url.path[len("/v4"):] if url.path.startswith("/v4/") else url.path)
        if self.latency:
            self._sleep(self.latency)
        if self._wait_if_hanging(fault):
            return
        limited = {}
        try:
            if self.rate_limiter is not None:
                ok, limited = self.rate_limiter.take(url.path)
                if not ok:
                    raise _ApiError(429, "Too Many Requests", headers=limited)
            status, body, headers = 200, self._respond(h, url.path, query, fault), dict(limited)
        except _ApiError as e:
            status, body, headers = e.status, e.body, e.headers
        # The API names the account owning the token on every answer (the API reference's Response Headers).
        if self.scenario.get("account", {}).get("euuid"):
            headers.setdefault("X-Customer-UUID", self.scenario["account"]["euuid"])
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(raw)))
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(raw)
        except OSError:     # the client gave up (timeout) before we answered
            pass

    def _respond(self, h, path, query, fault: Optional[Fault]):
        page = _int_param(query, "page", 1)
        mode = fault.mode if fault else None
        if mode == "error":
            raise _ApiError(fault.status, fault.message or {
                500: "Internal Server Error", 503: "Service Unavailable", 403: "Unauthorized",
                404: "Not found"}.get(fault.status, "Error"), headers=dict(fault.headers))
        if mode == "rate_limited":
            raise _ApiError(429, "Too Many Requests", headers={"Retry-After": str(fault.retry_after)})
        if mode == "auth_mid_pagination" and page >= 2:
            raise _ApiError(401, "Invalid Token")
        if mode == "malformed_json":
            return b'{"data": [{"id": "private/1", "label": '
        if mode == "missing_data":
            return {"page": 1, "pages": 1, "results": 0}
        if h.command != "GET":
            raise _ApiError(405, "Method Not Allowed")
        if not path.startswith("/v4/"):
            raise _ApiError(404, "Not found")
        authenticated = self._authenticate(h.headers.get("Authorization"))
        return self._route(path[len("/v4"):], query, h.headers.get("X-Filter"), authenticated, mode)

    def _authenticate(self, header):
        if header is None:
            return False
        if header != f"Bearer {self.token}":
            raise _ApiError(401, "Invalid Token")
        return True

    def _route(self, path, query, x_filter, authenticated, mode):
        now = format_time(self.clock())
        if path == "/images":
            images = self._visible("images", now)
            if not authenticated:       # anonymous callers see public images only
                images = [i for i in images if i["is_public"]]
            return self._page("images", images, query, x_filter, mode)
        if not authenticated:
            raise _ApiError(401, "Invalid Token")
        if path == "/linode/instances":
            return self._page("instances", self._visible("instances", now), query, x_filter, mode)
        if path == "/account":
            if "account" not in self.scenario or not self.account_scope:
                raise _ApiError(403, "Unauthorized")      # a token without the account scope
            # Every documented field, the scenario's own values over the "account" fixture's.
            return {**load_scenario("account")["account"], **self.scenario["account"]}
        if path == "/account/events":
            events = sorted(self._visible("events", now), key=lambda e: e["id"], reverse=True)
            return self._page("events", events, query, x_filter, mode)
        m = _INSTANCE_PATH.match(path)
        if m and any(i["id"] == int(m.group(1)) for i in self._visible("instances", now)):
            linode_id, what = m.group(1), m.group(2)
            if what == "disks":
                disks = [d for d in (_at(x, now) for x in self.scenario["disks"].get(linode_id, [])) if d]
                return self._page("disks", disks, query, x_filter, mode)
            return self._backups(linode_id, now)
        raise _ApiError(404, "Not found")

    def _visible(self, collection, now):
        with self._lock:
            objects = list(self.scenario[collection])
        return [o for o in (_at(x, now) for x in objects) if o is not None]

    def _backups(self, linode_id, now):
        backups = [b for b in (_at(x, now) for x in self.scenario["backups"].get(linode_id, [])) if b]
        snapshots = [b for b in backups if b["type"] == "snapshot"]
        done = [b for b in snapshots if b["status"] == "successful"]
        return {
            "automatic": [b for b in backups if b["type"] == "auto"],
            "snapshot": {
                "current": max(done, key=lambda b: b["created"]) if done else None,
                "in_progress": next((b for b in snapshots if b["status"] in SNAPSHOT_IN_PROGRESS), None),
            },
        }

    def _page(self, collection, items, query, x_filter, mode):
        flt = _parse_filter(x_filter, _FILTERABLE[collection])
        items = _order([i for i in items if _matches(i, flt)], flt)
        size = _int_param(query, "page_size", DEFAULT_PAGE_SIZE)
        if not MIN_PAGE_SIZE <= size <= MAX_PAGE_SIZE:
            raise _ApiError(400, f"Must be between {MIN_PAGE_SIZE} and {MAX_PAGE_SIZE}", field="page_size")
        page = _int_param(query, "page", 1)
        pages = max(1, math.ceil(len(items) / size))
        served = 1 if (mode == "page_loop" and page >= 2) else page
        body = {"data": items[(served - 1) * size:served * size], "page": page,
                "pages": pages, "results": len(items)}
        if mode == "pages_grow" and page >= 2:
            body["pages"] = page + 1
        if mode == "short_page" and page >= 2:
            body["data"] = body["data"][:len(body["data"]) // 2]
        return body


# ---- scenario and filter helpers ---------------------------------------------

def _at(obj, now):
    """The object as the API shows it at `now`: None before it exists, due changes applied."""
    if obj.get("created") and obj["created"] > now:
        return None
    shown = {k: v for k, v in obj.items() if k != "_changes"}
    for change in obj.get("_changes", ()):
        if change["at"] <= now:
            shown.update(change["set"])
    return shown


def _int_param(query, name, default):
    try:
        return int(query.get(name, default))
    except ValueError:
        raise _ApiError(400, "Must be an integer", field=name) from None


def _parse_filter(header, allowed):
    if not header:
        return {}
    try:
        flt = json.loads(header)
    except ValueError:
        raise _ApiError(400, "Invalid JSON", field="X-Filter") from None
    if not isinstance(flt, dict):
        raise _ApiError(400, "Must be an object", field="X-Filter")
    for field in _filter_fields(flt):
        if field not in allowed:
            raise _ApiError(400, f"Cannot filter on {field}", field="X-Filter")
    return flt


def _filter_fields(flt):
    for key, cond in flt.items():
        if key in ("+and", "+or"):
            for sub in cond:
                yield from _filter_fields(sub)
        elif key == "+order_by":
            yield cond
        elif not key.startswith("+"):
            yield key


def _matches(obj, flt):
    for key, cond in flt.items():
        if key == "+and":
            ok = all(_matches(obj, sub) for sub in cond)
        elif key == "+or":
            ok = any(_matches(obj, sub) for sub in cond)
        elif key.startswith("+"):      # +order_by, +order, +limit
            continue
        else:
            ok = _compare(obj.get(key), cond)
        if not ok:
            return False
    return True


def _compare(value, cond):
    if not isinstance(cond, dict):
        return value == cond
    try:
        return all(_OPS[op](value, arg) for op, arg in cond.items())
    except (KeyError, TypeError):       # unknown operator, or None compared to a value
        return False


def _order(items, flt):
    key = flt.get("+order_by")
    if not key:
        return items
    return sorted(items, key=lambda i: (i.get(key) is None, i.get(key)), reverse=flt.get("+order") == "desc")


# ---- synthetic accounts for benchmarks (additive: fixtures and tests do not use these) ----

def synthetic_scenario(instances: int, *, images: Optional[int] = None, disks_per_instance: int = 2,
                       backups_every: int = 1, now: Optional[float] = None) -> dict:
    """A scenario dict with `instances` instances, for benchmarks.

    Every instance has `disks_per_instance` disks; every `backups_every`-th
    one (0: none) has the Backup Service on, with two automatic backups, the
    newer still running on every 10th. `images` private images (default
    instances // 2), one every 30 minutes back from `now` (default: the real
    time), each with its disk_imagize event; every 50th is still creating.
    """
    now = time.time() if now is None else now
    t = lambda offset: format_time(now - offset)  # noqa: E731
    images = instances // 2 if images is None else images
    scenario = {"_about": f"synthetic: {instances} instances, {images} private images", "now": t(0),
                "account": {"euuid": "0B4A3F6C-2D1E-4F5A-9C8B7A6D5E4F3A2B"},
                "images": [], "instances": [], "disks": {}, "backups": {}, "events": []}
    for n in range(instances):
        iid = 100_000 + n
        backups = bool(backups_every) and n % backups_every == 0
        scenario["instances"].append({
            "id": iid, "label": f"server-{n:05d}", "group": "", "status": "running", "created": t(86400 * 90),
            "updated": t(86400 * 90), "type": "g6-standard-2", "region": "us-east", "image": "linode/debian12",
            "ipv4": [f"192.0.{2 + n // 250 % 250}.{n % 250 + 1}"], "ipv6": "2600:3c03::f03c:94ff:fe65:1/128",
            "hypervisor": "kvm", "specs": {"disk": 81920, "memory": 4096, "vcpus": 2, "transfer": 4000, "gpus": 0},
            "alerts": {"cpu": 180, "io": 10000, "network_in": 10, "network_out": 10, "transfer_quota": 80},
            "backups": {"enabled": backups, "available": backups,
                        "schedule": {"day": "Scheduling", "window": "Scheduling"},
                        "last_successful": t(86400 + 3600) if backups else None},
            "tags": [], "watchdog_enabled": True, "host_uuid": f"3f4c0b6e-0001-4b7e-9c55-{iid:012d}",
            "has_user_data": False, "disk_encryption": "disabled", "lke_cluster_id": None, "capabilities": []})
        scenario["disks"][str(iid)] = [
            {"id": iid * 10 + d, "label": "Debian 12 Disk" if d == 0 else f"Data Disk {d}", "status": "ready",
             "size": 20480 if d == 0 else 512, "filesystem": "ext4", "created": t(86400 * 90),
             "updated": t(86400 * 90), "disk_encryption": "disabled"} for d in range(disks_per_instance)]
        if backups:
            running = n % 10 == 0
            scenario["backups"][str(iid)] = [
                {"id": iid * 10 + k, "label": None, "status": "running" if running and k == 0 else "successful",
                 "type": "auto", "region": "us-east", "created": t(3600 + 86400 * k),
                 "updated": t(1800 + 86400 * k), "finished": None if running and k == 0 else t(1800 + 86400 * k),
                 "configs": ["My Debian 12 Profile"], "disks": [], "available": not (running and k == 0)}
                for k in range(2)]
    for n in range(images):
        server = 100_000 + (n % instances if instances else 0)
        creating = n % 50 == 0
        image_id = f"private/{300_000 + n}"
        label = f"snap-{n:05d}"
        scenario["images"].append({
            "id": image_id, "label": label, "description": None, "created": t(1800 * n), "updated": t(1800 * n),
            "created_by": "ops", "deprecated": False, "is_public": False, "is_shared": False,
            "size": 0 if creating else 2048 + n % 1000, "total_size": 0 if creating else 2048 + n % 1000,
            "type": "manual", "vendor": None, "expiry": None, "eol": None,
            "status": "creating" if creating else "available", "capabilities": [], "tags": [], "regions": []})
        if instances:
            scenario["events"].append({
                "id": 900_000 + n, "action": "disk_imagize", "created": t(1800 * n),
                "duration": None if creating else 600.0,
                "entity": {"id": server, "label": f"server-{server - 100_000:05d}", "type": "linode",
                           "url": f"/v4/linode/instances/{server}"},
                "secondary_entity": {"id": image_id, "label": label, "type": "image", "url": f"/v4/images/{image_id}"},
                "status": "started" if creating else "finished", "percent_complete": 0 if creating else 100,
                "rate": None, "read": False, "seen": True, "time_remaining": None, "username": "ops",
                "message": None})
    return scenario


def synthetic_api(instances: int, *, token: str = DEFAULT_TOKEN, clock=None, **kw) -> FakeLinodeAPI:
    """A FakeLinodeAPI serving synthetic_scenario(instances, **kw), on the real clock unless `clock` is given."""
    api = FakeLinodeAPI("empty", token=token, clock=clock or time.time)
    api.scenario = synthetic_scenario(instances, now=api.clock(), **kw)
    return api
