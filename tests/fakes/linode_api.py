"""A fake Linode API v4 on 127.0.0.1 (standard library only).

It serves a scenario (tests/fakes/scenario.py; files in tests/fixtures/linode/)
in the real wire format: list endpoints paginate as the API does ({"data",
"page", "pages", "results"}, ?page=&page_size= with page_size 25..500), the
X-Filter header is parsed and applied (+and, +or, +gt/+gte/+lt/+lte/+neq/
+contains, +order_by/+order), and every request needs "Authorization:
Bearer <token>". The scenario's kinds are images, instances, events, and
disks and backups (each with the linode_id of its instance, not served).

Time comes from a FakeClock the test moves: the scenario's steps apply once
their time has passed, so a backup can go pending -> running -> successful
while a test watches, and an object whose "created" lies ahead is not listed
yet. add() and change() are steps at the current time.

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
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from .clock import FakeClock
from .faults import ApiError, Fault, LoopbackAPI, Request
from .linode_rate_limits import RateLimiter
from .scenario import Scenario

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "linode"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
MIN_PAGE_SIZE, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE = 25, 500, 100
# A snapshot in one of these states is the "in_progress" one.
SNAPSHOT_IN_PROGRESS = ("pending", "running", "needsPostProcessing", "paused")
DEFAULT_TOKEN = "fake-linode-token-5f1c0e9a7b3d4c2e"

# Fields that hold times: Unix seconds in the scenario, API timestamps on the wire.
TIME_FIELDS = ("created", "updated", "finished", "last_successful", "expiry", "eol")
KINDS = ("images", "instances", "disks", "backups", "events")

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
def parse_time(text: str) -> float:
    """Unix seconds of an API timestamp (UTC, no zone suffix)."""
    return float(calendar.timegm(time.strptime(text, TIME_FORMAT)))


def format_time(ts: float) -> str:
    return time.strftime(TIME_FORMAT, time.gmtime(ts))


def load_scenario(name: str) -> Scenario:
    """tests/fixtures/linode/<name>.yaml"""
    return Scenario.load(FIXTURES / f"{name}.yaml")


def wire(value, key=None):
    """An object as the API writes it: its times (Unix seconds in the scenario) as API timestamps."""
    if isinstance(value, dict):
        return {k: wire(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [wire(v, key) for v in value]
    if key in TIME_FIELDS and isinstance(value, (int, float)):
        return format_time(value)
    return value


def _error(status, reason, field=None, headers=None) -> ApiError:
    """An error answer in the Linode API's shape: {"errors": [{"reason", "field"}]}."""
    return ApiError(status, {"errors": [dict({"reason": reason}, **({"field": field} if field else {}))]}, headers)


class FakeLinodeAPI(LoopbackAPI):
    """live=True moves the scenario so that it starts at the real time now and
    follows the wall clock: for tests of the exporter as a process, whose
    clock is the real one."""

    def __init__(self, scenario: Union[str, Scenario] = "account", token: str = DEFAULT_TOKEN,
                 clock: Optional[FakeClock] = None, live: bool = False,
                 rate_limiter: Optional[RateLimiter] = None, latency: float = 0.0, sleep=time.sleep):
        super().__init__()
        self.scenario = load_scenario(scenario) if isinstance(scenario, str) else scenario
        self.token = token
        self.rate_limiter = rate_limiter      # None: no limits enforced
        self.latency = latency                # seconds added to every answer (benchmarks)
        self._sleep = sleep                   # how the latency passes: a simulated clock's advance in benchmarks
        self.account_scope = True             # False: the token may not read /account (403)
        # What GET /account answers (None: 403): every documented field, the scenario's own values
        # over the "account" fixture's.
        self.account = self.scenario.header.get("account")
        if live:
            self.scenario = self.scenario.rebased(round(time.time()))
            clock = clock or time.time
        self.clock = clock or FakeClock(self.scenario.start)
        self._lock = threading.Lock()
        self._shown: Tuple[Optional[Scenario], int, dict] = (None, -1, {})   # the state last served

    SERVES = SERVES
    NAME = "fake-linode-api"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v4"

    # ---- test controls --------------------------------------------------

    def add(self, kind: str, obj: dict) -> None:
        """Add an object (with its "id") to the account from now on, e.g. an event."""
        self.change(kind, obj["id"], obj)

    def change(self, kind: str, object_id, fields: dict) -> None:
        """Change an object's fields from now on (a step at the clock's time)."""
        with self._lock:
            self.scenario = self.scenario.with_step(self.clock(), {kind: {object_id: fields}})

    def objects(self, kind: str) -> List[dict]:
        """The objects of a kind as they are now, in the API's format (disks and backups with linode_id)."""
        return self._visible(kind, format_time(self.clock()))

    # ---- request handling -----------------------------------------------

    def fault_path(self, path: str) -> str:
        return path[len("/v4"):] if path.startswith("/v4/") else path

    def before_answer(self) -> None:
        if self.latency:
            self._sleep(self.latency)

    def respond(self, request: Request, body: bytes, fault: Optional[Fault]):
        headers = {}
        # The API names the account owning the token on every answer (the API reference's Response Headers).
        if (self.account or {}).get("euuid"):
            headers["X-Customer-UUID"] = self.account["euuid"]
        if self.rate_limiter is not None:
            ok, limited = self.rate_limiter.take(request.path)
            if not ok:
                raise _error(429, "Too Many Requests", headers={**limited, **headers})
            headers = {**limited, **headers}
        try:
            return self._respond(request, fault), headers
        except ApiError as e:
            if "X-Customer-UUID" in headers:
                e.headers.setdefault("X-Customer-UUID", headers["X-Customer-UUID"])
            raise

    def _respond(self, request: Request, fault: Optional[Fault]):
        query, path = request.query, request.path
        page = _int_param(query, "page", 1)
        mode = fault.mode if fault else None
        if mode == "error":
            raise _error(fault.status, fault.message or {
                500: "Internal Server Error", 503: "Service Unavailable", 403: "Unauthorized",
                404: "Not found"}.get(fault.status, "Error"), headers=dict(fault.headers))
        if mode == "rate_limited":
            raise _error(429, "Too Many Requests", headers={"Retry-After": str(fault.retry_after)})
        if mode == "auth_mid_pagination" and page >= 2:
            raise _error(401, "Invalid Token")
        if mode == "malformed_json":
            return b'{"data": [{"id": "private/1", "label": '
        if mode == "missing_data":
            return {"page": 1, "pages": 1, "results": 0}
        if request.method != "GET":
            raise _error(405, "Method Not Allowed")
        if not path.startswith("/v4/"):
            raise _error(404, "Not found")
        authenticated = self._authenticate(request.headers.get("Authorization"))
        return self._route(path[len("/v4"):], query, request.headers.get("X-Filter"), authenticated, mode)

    def _authenticate(self, header):
        if header is None:
            return False
        if header != f"Bearer {self.token}":
            raise _error(401, "Invalid Token")
        return True

    def _route(self, path, query, x_filter, authenticated, mode):
        now = format_time(self.clock())
        if path == "/images":
            images = self._visible("images", now)
            if not authenticated:       # anonymous callers see public images only
                images = [i for i in images if i["is_public"]]
            return self._page("images", images, query, x_filter, mode)
        if not authenticated:
            raise _error(401, "Invalid Token")
        if path == "/linode/instances":
            return self._page("instances", self._visible("instances", now), query, x_filter, mode)
        if path == "/account":
            if self.account is None or not self.account_scope:
                raise _error(403, "Unauthorized")      # a token without the account scope
            return {**load_scenario("account").header["account"], **self.account}
        if path == "/account/events":
            events = sorted(self._visible("events", now), key=lambda e: e["id"], reverse=True)
            return self._page("events", events, query, x_filter, mode)
        m = _INSTANCE_PATH.match(path)
        if m and any(i["id"] == int(m.group(1)) for i in self._visible("instances", now)):
            linode_id, what = m.group(1), m.group(2)
            if what == "disks":
                return self._page("disks", self._of_instance("disks", linode_id, now), query, x_filter, mode)
            return self._backups(linode_id, now)
        raise _error(404, "Not found")

    def _state(self, now: str) -> dict:
        """kind -> (objects in the API's format, by linode_id) after the steps due by `now`, kept
        until the next step: a large account is not rebuilt for every request."""
        with self._lock:
            scenario = self.scenario
            step = scenario.step_at(parse_time(now))
            shown_scenario, shown_step, shown = self._shown
            if shown_scenario is scenario and shown_step == step:
                return shown
        state = scenario.state(step, TIME_FIELDS)
        shown = {}
        for kind in KINDS:
            objs = [wire({"id": oid, **fields}) for oid, fields in state.get(kind, {}).items()]
            by_linode: Dict[str, List[dict]] = {}
            for o in objs:
                if "linode_id" in o:
                    by_linode.setdefault(str(o["linode_id"]), []).append(
                        {k: v for k, v in o.items() if k != "linode_id"})
            shown[kind] = (objs, by_linode)
        with self._lock:
            if self.scenario is scenario:
                self._shown = (scenario, step, shown)
        return shown

    def _visible(self, kind, now):
        """The objects of a kind listed at `now` (an API timestamp): none created later."""
        return [o for o in self._state(now)[kind][0] if not (o.get("created") and o["created"] > now)]

    def _of_instance(self, kind, linode_id, now):
        return [o for o in self._state(now)[kind][1].get(linode_id, ())
                if not (o.get("created") and o["created"] > now)]

    def _backups(self, linode_id, now):
        backups = self._of_instance("backups", linode_id, now)
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
            raise _error(400, f"Must be between {MIN_PAGE_SIZE} and {MAX_PAGE_SIZE}", field="page_size")
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


# ---- filter helpers --------------------------------------------------

def _int_param(query, name, default):
    try:
        return int(query.get(name, default))
    except ValueError:
        raise _error(400, "Must be an integer", field=name) from None


def _parse_filter(header, allowed):
    if not header:
        return {}
    try:
        flt = json.loads(header)
    except ValueError:
        raise _error(400, "Invalid JSON", field="X-Filter") from None
    if not isinstance(flt, dict):
        raise _error(400, "Must be an object", field="X-Filter")
    for field in _filter_fields(flt):
        if field not in allowed:
            raise _error(400, f"Cannot filter on {field}", field="X-Filter")
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
