"""A fake OpenStack cloud (Keystone v3, Glance v2, Nova v2.1, Cinder v3) on 127.0.0.1.

It speaks the real wire format closely enough that unpatched openstacksdk and
keystoneauth work against it through a clouds.yaml: version discovery, the
token POST with its service catalog, marker/limit pagination with each
service's own "next" link shape, and the error bodies.

A *scenario* is a timeline of steps (see tests/fixtures/openstack/*.yaml); each
step patches the state of the previous one and moves the fake's clock, so a
test can walk an image from queued to active across refreshes. *Faults* are
switched on at run time with add_fault(Fault(...)) or set_fault(mode, path),
in the vocabulary of tests/fakes/faults.py (the modes of SERVES), and apply
to the requests whose path they match: error statuses, slow, hung and
stalled answers, malformed JSON, next links that loop or overlap, refused
connections; stop() refuses further connections, refuse() does so until
accept(). Every request is recorded in ``requests``; every token issued in
``tokens_issued``.

live=True is for tests of the exporter as a process, whose clock is the real
one: each goto() moves the scenario so that the step's time is the real time
now, and clock() is the wall clock.

Only the standard library (plus PyYAML for fixture files) is used.
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit

import yaml

from .faults import Fault, Faults

SERVES = ("error", "rate_limited", "slow", "hang", "stall", "malformed_json", "page_loop", "page_overlap", "refused")

MAX_LIMIT = 1000            # Glance api_limit_max, Nova/Cinder osapi_max_limit
GLANCE_DEFAULT_LIMIT = 25   # Glance limit_param_default
NOVA_MAX_MICROVERSION = "2.96"
CINDER_MAX_MICROVERSION = "3.70"
MIB = 1024 * 1024
# Nova and Cinder build next links from their own configured host, often an
# internal name a client cannot reach; the fake does so too.
INTERNAL_HOST = "http://controller.internal.example:8774"
SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "openstack" / "samples"


def sample(name: str):
    """An official API-reference sample (tests/fixtures/openstack/samples/PROVENANCE.md)."""
    with open(SAMPLES / name, encoding="utf-8") as f:
        return json.load(f)


# ---- scenario ----------------------------------------------------------------

_DURATION = re.compile(r"^([+-]?)((?:\d+(?:\.\d+)?[dhms])+)$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_offset(value) -> float:
    """"25h", "-23h30m", "+2d", "0s" or a number of seconds -> seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    m = _DURATION.match(str(value).strip())
    if not m:
        raise ValueError(f"bad duration {value!r}; use e.g. 90s, 5m, -23h30m, 2d")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(m.group(2)))
    return -seconds if m.group(1) == "-" else seconds


def iso(ts: float, naive_micro: bool = False) -> str:
    """Glance/Nova write "...Z"; Cinder writes naive UTC with microseconds."""
    dt = datetime.fromtimestamp(ts, timezone.utc)
    if naive_micro:
        return dt.replace(tzinfo=None).isoformat(timespec="microseconds")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


KINDS = ("servers", "images", "volume_snapshots")


@dataclass
class Scenario:
    """A project's servers, images and volume snapshots over a few points in time.

    ``steps`` is a list of {"at": offset, "servers"/"images"/"volume_snapshots":
    {id: fields or None}}. Each step merges its fields into the objects of the
    previous step; None deletes the object. An object created in a step gets
    created_at = the step's time unless it gives ``created_at`` (an offset from
    the step's time); every change sets updated_at = the step's time unless
    ``updated_at`` is given (also an offset).
    """
    project_id: str = "6a3c0e0b8f6b4c53a1d7c2f4e5b6a7c8"
    project_name: str = "demo"
    domain: str = "Default"
    start: float = 1714564800.0            # 2024-05-01T12:00:00Z
    limits: Optional[Dict[str, int]] = None  # unified limits; None = Glance without them
    steps: List[dict] = field(default_factory=lambda: [{"at": "0s"}])
    # Large synthetic scenarios skip the step machinery and set these directly.
    prebuilt: Optional[Dict[str, Dict[str, dict]]] = None

    @classmethod
    def from_file(cls, path) -> "Scenario":
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        project = data.get("project", {})
        start = data.get("start", cls.start)
        if isinstance(start, datetime):
            start = start.replace(tzinfo=start.tzinfo or timezone.utc).timestamp()
        elif isinstance(start, str):
            start = datetime.fromisoformat(start).timestamp()
        return cls(project_id=project.get("id", cls.project_id),
                   project_name=project.get("name", cls.project_name),
                   domain=project.get("domain", cls.domain),
                   start=float(start), limits=data.get("limits"),
                   steps=data.get("steps") or [{"at": "0s"}])

    @classmethod
    def synthetic(cls, images: int, servers: int, *, saving_every: int = 100,
                  start: Optional[float] = None) -> "Scenario":
        """N images and M servers for benchmarks, one image every 10 minutes back from start.

        Every ``saving_every``-th image is saving (a running job); the others
        are active snapshots. ``start`` defaults to now, so that a source on
        the real clock sees the recent ones inside its lookback.
        """
        s = cls(limits={"image_count_total": images * 2, "image_size_total": images * 4096},
                start=time.time() if start is None else start)
        now = s.start
        srv = {}
        for i in range(servers):
            sid = str(uuid.UUID(int=(1 << 64) + i))
            srv[sid] = {"name": f"server-{i:05d}", "image": "0" * 32, "volumes": [],
                        "status": "ACTIVE", "task_state": None, "project": s.project_id,
                        "created_at": now - 86400 * 30, "updated_at": now - 86400}
        ids = list(srv)
        imgs = {}
        for i in range(images):
            iid = str(uuid.UUID(int=(2 << 64) + i))
            saving = saving_every and i % saving_every == 0
            created = now - 600 * i
            imgs[iid] = {"name": f"snap-{i:05d}", "status": "saving" if saving else "active",
                         "size": None if saving else 1_000_000_000 + i,
                         "server": ids[i % servers] if servers else "", "image_type": "snapshot",
                         "owner": s.project_id, "visibility": "private",
                         "created_at": created, "updated_at": created + (0 if saving else 900)}
        s.prebuilt = {"servers": srv, "images": imgs, "volume_snapshots": {}}
        return s

    def time_of(self, step: int) -> float:
        return self.start + parse_offset(self.steps[step].get("at", 0))

    def state_at(self, step: int) -> Dict[str, Dict[str, dict]]:
        """Objects by kind and id after applying steps 0..step."""
        if self.prebuilt is not None:
            return self.prebuilt
        state: Dict[str, Dict[str, dict]] = {k: {} for k in KINDS}
        for i in range(step + 1):
            now = self.time_of(i)
            for kind in KINDS:
                for oid, patch in (self.steps[i].get(kind) or {}).items():
                    self._apply(state[kind], str(oid), patch, now)
        return state

    def _apply(self, objs, oid, patch, now):
        if patch is None:
            objs.pop(oid, None)
            return
        obj = objs.setdefault(oid, {"created_at": now, "project": self.project_id})
        patch = dict(patch)
        for key in ("created_at", "updated_at"):
            if key in patch:
                patch[key] = now + parse_offset(patch[key])
        obj.update(patch)
        if "updated_at" not in patch:
            obj["updated_at"] = now


_ERROR_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


# ---- the server --------------------------------------------------------------

Request = Tuple[str, str, Dict[str, str], Dict[str, str]]   # method, path, query, headers


class FakeOpenStack:
    """One project on one fake cloud.

        fake = FakeOpenStack(Scenario.from_file(...)).start()
        fake.url, fake.now, fake.step(), fake.add_fault(Fault("error", "/v2/images", 503))
        fake.requests -> [(method, path, query, headers), ...]
        fake.stop()
    """

    def __init__(self, scenario: Optional[Scenario] = None, *, user: str = "imaging",
                 password: str = "s3cret-Passw0rd", admin: bool = False,
                 services: Tuple[str, ...] = ("image", "compute", "block-storage"), live: bool = False,
                 api_key: str = "", nova_max_microversion: str = NOVA_MAX_MICROVERSION):
        self.scenario = scenario or Scenario()
        # Rackspace's Identity v2.0: RAX-KSKEY:apiKeyCredentials with this key (empty: v2.0 off).
        self.api_key = api_key
        self.v2_auth_bodies: List[dict] = []
        self.nova_max_microversion = nova_max_microversion
        # Cinder's version document: "v3" (normal), "v1" (a Cinder that offers only v1)
        # or "broken" (discovery answers 500).
        self.cinder_versions = "v3"
        self.live = live
        self._port = 0
        self.user = user
        self.password = password
        self.admin = admin
        self.services = services
        # /v2/info/usage: "limits" (unified limits on), "disabled" (Glance answers
        # {"usage": {}}) or "missing" (Glance before Xena: 404).
        self.usage_api = "limits" if self.scenario.limits is not None else "disabled"
        self.requests: List[Request] = []
        self.tokens_issued: List[str] = []
        self._valid_tokens: set = set()
        self.faults = Faults(SERVES)
        self._lock = threading.Lock()
        self._tls = threading.local()     # the headers of the request a handler thread serves
        self._stopping = threading.Event()
        self._open: set = set()
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self.goto(0)

    # -- lifecycle --
    def start(self) -> "FakeOpenStack":
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        self._httpd.daemon_threads = True
        self._port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self._port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openstack",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every open connection: later requests are refused."""
        self._stopping.set()
        self._close()

    def refuse(self) -> None:
        """The cloud goes down: the listener and kept-alive connections close until accept()."""
        self._close()

    def accept(self) -> None:
        """The cloud is back, on the same port."""
        if self._httpd is None:
            self.start()

    def _close(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            self._thread.join(5)
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- scenario and clock --
    def goto(self, step: int) -> None:
        if self.live:
            at = parse_offset(self.scenario.steps[step].get("at", 0)) if self.scenario.prebuilt is None else 0.0
            self.scenario = replace(self.scenario, start=float(round(time.time())) - at)
        state = self.scenario.state_at(step)
        with self._lock:
            self.step_index = step
            self.now = self.scenario.time_of(step)
            self._state = state
            self._sorted = {kind: _newest_first(objs) for kind, objs in state.items()}

    def step(self) -> None:
        """Move the scenario (and its clock) to the next step."""
        if self.step_index + 1 >= len(self.scenario.steps):
            raise IndexError("the scenario has no more steps")
        self.goto(self.step_index + 1)

    def clock(self) -> float:
        return time.time() if self.live else self.now

    # -- faults and tokens --
    def add_fault(self, fault: Fault) -> Fault:
        self.faults.add(fault)
        if fault.mode == "refused":
            self.refuse()
        return fault

    def set_fault(self, mode: str, path: Optional[str] = None, **params) -> Fault:
        """Clear the faults on, then switch one on for every request or for paths starting with `path`."""
        self.clear_faults()
        return self.add_fault(Fault(mode, "^" + re.escape(path) if path else "", **params))

    def clear_faults(self) -> None:
        if any(f.mode == "refused" for f in self.faults.clear()):
            self.accept()

    def expire_tokens(self) -> None:
        """Every issued token becomes invalid (401) as when Keystone's tokens expire."""
        with self._lock:
            self._valid_tokens.clear()

    def record(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)

    def paths(self, method: str = "GET") -> List[str]:
        return [p for m, p, _, _ in self.requests if m == method]


def _newest_first(objs: Dict[str, dict]) -> List[str]:
    """The APIs' default order: created_at descending, id descending as tie breaker."""
    return sorted(objs, key=lambda oid: (objs[oid]["created_at"], oid), reverse=True)


# ---- HTTP handler ------------------------------------------------------------

class _HttpError(Exception):
    def __init__(self, status, message=""):
        self.status = status
        self.message = message or _ERROR_TITLES.get(status, "Error")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenStack
    protocol_version = "HTTP/1.1"      # keep-alive, as the real API endpoints
    server_version = "fake-openstack"

    def log_message(self, *args):      # keep test output quiet
        pass

    def setup(self):
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle plus the
        # client's delayed ACK stalls every keep-alive response by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.fake._lock:
            self.fake._open.add(self.connection)

    def finish(self):
        with self.fake._lock:
            self.fake._open.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def handle(self):
        try:
            super().handle()
        except OSError:
            pass                       # the client gave up (timeout) or we were stopped

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # -- plumbing --
    def _dispatch(self, method):
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fake = self.fake
        fake.record((method, path, query, dict(self.headers.items())))
        fake._tls.headers = self.headers
        fault = fake.faults.match(path)
        kind = fault.mode if fault is not None else ""
        if kind == "hang":
            fake._stopping.wait()          # until stop(); then drop the connection unanswered
            self.close_connection = True
            return
        if kind == "slow" and fake._stopping.wait(fault.delay):
            self.close_connection = True
            return
        if kind == "stall":
            self._stall()
            return
        if kind == "malformed_json":
            self._send(200, {}, b'{"images": [{"id": "')
            return
        try:
            if kind == "error":
                raise _HttpError(fault.status, fault.message)
            if kind == "rate_limited":
                raise _HttpError(429, fault.message or "Rate limit exceeded")
            status, headers, doc = self._route(method, path, query, body, link=kind)
        except _HttpError as e:
            status, headers, doc = e.status, {}, _error_body(e.status, e.message, path)
            if kind == "error":
                headers = fault.headers
            if kind == "rate_limited":
                headers = {"Retry-After": str(fault.retry_after)}
        self._send(status, headers, json.dumps(doc).encode())

    def _stall(self):
        """Headers and the first bytes of the body, then nothing until stop()."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b'{"images": [')
        self.wfile.flush()
        self.fake._stopping.wait()
        self.close_connection = True

    def _send(self, status, headers, data: bytes):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-openstack-request-id", "req-" + str(uuid.uuid4()))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self):
        token = self.headers.get("X-Auth-Token")
        with self.fake._lock:
            ok = token in self.fake._valid_tokens
        if not ok:
            raise _HttpError(401, "The request you have made requires authentication.")

    def _route(self, method, path, query, body, link=""):
        base = self.fake.url
        if path.startswith("/identity"):
            return _keystone(self.fake, method, path[len("/identity"):] or "/", body, base)
        if method != "GET":
            raise _HttpError(405, "This fake serves read-only requests only.")
        for prefix, service, versions, api in (
                ("/image", "image", _glance_versions, _glance),
                ("/compute", "compute", _nova_versions, _nova),
                ("/volume", "block-storage", _cinder_versions, _cinder)):
            if path == prefix or path.startswith(prefix + "/"):
                if service not in self.fake.services:
                    raise _HttpError(404)
                rest = path[len(prefix):] or "/"
                doc = versions(rest, base, self.fake)
                if doc is not None:
                    return doc
                self._authorized()
                return api(self.fake, rest, query, base, link)
        raise _HttpError(404)


def _error_body(status, message, path):
    """Keystone's {"error": {...}}; Nova's and Cinder's {"itemNotFound": {...}} style."""
    title = _ERROR_TITLES.get(status, "Error")
    if path.startswith("/identity"):
        return {"error": {"code": status, "title": title, "message": message}}
    key = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
           429: "overLimit"}.get(status, "computeFault")
    return {key: {"code": status, "message": message}}


# ---- Keystone ----------------------------------------------------------------

def _keystone_version(base):
    return {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{base}/identity/v3/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.identity-v3+json"}]}


def _keystone(fake, method, rest, body, base):
    if rest == "/" and method == "GET":
        return 300, {}, {"versions": {"values": [_keystone_version(base)]}}
    if rest == "/v3" and method == "GET":
        return 200, {}, {"version": _keystone_version(base)}
    if rest == "/v3/auth/tokens" and method == "POST":
        return _issue_token(fake, body, base)
    if rest == "/v2.0/tokens" and method == "POST" and fake.api_key:
        return _issue_v2_token(fake, body, base)
    raise _HttpError(404)


def _issue_v2_token(fake, body, base):
    """Rackspace Identity v2.0: {"auth": {"RAX-KSKEY:apiKeyCredentials": {"username", "apiKey"}}}.

    The answer is Keystone v2.0's access document (Keystone's api-ref
    sample), with the catalog in v2.0's publicURL/internalURL form.
    """
    sc = fake.scenario
    try:
        fake.v2_auth_bodies.append(json.loads(body))
        creds = json.loads(body)["auth"]["RAX-KSKEY:apiKeyCredentials"]
        user, key = creds["username"], creds["apiKey"]
    except (ValueError, KeyError, TypeError):
        raise _HttpError(400, "Invalid json request body") from None
    if user != fake.user or key != fake.api_key:
        raise _HttpError(401, "Username or api key is invalid.")
    token = uuid.uuid4().hex
    with fake._lock:
        fake.tokens_issued.append(token)
        fake._valid_tokens.add(token)
    now = time.time()
    doc = sample("keystone-v2-authenticate-response.json")
    access = doc["access"]
    access["token"].update({"id": token, "issued_at": iso(now).replace("Z", ".000000Z"),
                            "expires": iso(now + 3600).replace("Z", ".000000Z"),
                            "tenant": {"id": sc.project_id, "name": sc.project_id, "enabled": True,
                                       "description": "", "tags": []}})
    access["user"].update({"id": uuid.uuid4().hex, "name": fake.user, "username": fake.user,
                           "RAX-AUTH:defaultRegion": "RegionOne"})
    access["serviceCatalog"] = [
        {"type": stype, "name": name, "endpoints": [
            {"region": "RegionOne", "tenantId": sc.project_id, "publicURL": url, "internalURL": url}]}
        for stype, name, url in (("image", "cloudImages", f"{base}/image"),
                                 ("compute", "cloudServersOpenStack", f"{base}/compute/v2.1"),
                                 ("volumev3", "cloudBlockStorage", f"{base}/volume/v3/{sc.project_id}"),
                                 ("block-storage", "cloudBlockStorage", f"{base}/volume/v3/{sc.project_id}"))
        if stype.replace("volumev3", "block-storage") in fake.services]
    return 200, {}, doc


def _issue_token(fake, body, base):
    sc = fake.scenario
    try:
        auth = json.loads(body)["auth"]
        pw_user = auth["identity"]["password"]["user"]
        project = auth["scope"]["project"]
    except (ValueError, KeyError, TypeError):
        raise _HttpError(400, "Expecting password auth scoped to a project.") from None
    right_project = project.get("id") == sc.project_id or project.get("name") == sc.project_name
    if pw_user.get("name") != fake.user or pw_user.get("password") != fake.password or not right_project:
        raise _HttpError(401, "The request you have made requires authentication.")
    token = "gAAAAAB" + uuid.uuid4().hex + uuid.uuid4().hex
    with fake._lock:
        fake.tokens_issued.append(token)
        fake._valid_tokens.add(token)
    now = time.time()
    domain = {"id": "default", "name": sc.domain}
    pid = sc.project_id
    endpoints = {"identity": f"{base}/identity", "image": f"{base}/image",
                 "compute": f"{base}/compute/v2.1",
                 "block-storage": f"{base}/volume/v3/{pid}", "volumev3": f"{base}/volume/v3/{pid}"}
    if fake.cinder_versions == "v1":     # a Cinder that offers v1 only registers as "volume"
        endpoints = {k: v for k, v in endpoints.items() if k not in ("block-storage", "volumev3")}
        endpoints["volume"] = f"{base}/volume/v1/{pid}"
    catalog = []
    for stype, url in endpoints.items():
        if stype in ("identity",) or stype in fake.services or (
                stype in ("volumev3", "volume") and "block-storage" in fake.services):
            catalog.append({"type": stype, "name": stype, "id": uuid.uuid4().hex, "endpoints": [
                {"id": uuid.uuid4().hex, "interface": iface, "region": "RegionOne",
                 "region_id": "RegionOne", "url": url} for iface in ("public", "internal")]})
    roles = [{"id": uuid.uuid4().hex, "name": "member"}, {"id": uuid.uuid4().hex, "name": "reader"}]
    if fake.admin:
        roles.append({"id": uuid.uuid4().hex, "name": "admin"})
    # Keystone's api-ref sample of a project-scoped password token, with this cloud's values.
    doc = sample("keystone-v3-auth-password-project-scoped-response.json")
    doc["token"].update({
        "methods": ["password"], "audit_ids": [uuid.uuid4().hex[:22]],
        "issued_at": iso(now).replace("Z", ".000000Z"),
        "expires_at": iso(now + 3600).replace("Z", ".000000Z"),
        "user": {"id": uuid.uuid4().hex, "name": fake.user, "domain": domain, "password_expires_at": None},
        "project": {"id": pid, "name": sc.project_name, "domain": domain},
        "is_domain": False, "roles": roles, "catalog": catalog})
    return 201, {"X-Subject-Token": token}, doc


# ---- version discovery ---------------------------------------------------------

def _glance_versions(rest, base, fake):
    if rest in ("/", "/versions"):
        vs = [{"id": v, "status": "CURRENT" if v == "v2.16" else "SUPPORTED",
               "links": [{"rel": "self", "href": f"{base}/image/v2/"}]}
              for v in ("v2.16", "v2.15", "v2.9", "v2.0")]
        return 300, {}, {"versions": vs}
    return None


def _nova_version(base, top=NOVA_MAX_MICROVERSION):
    return {"id": "v2.1", "status": "CURRENT", "version": top,
            "min_version": "2.1", "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{base}/compute/v2.1/"}]}


def _nova_versions(rest, base, fake):
    if rest == "/":
        return 200, {}, {"versions": [_nova_version(base, fake.nova_max_microversion)]}
    if rest == "/v2.1":
        return 200, {}, {"version": _nova_version(base, fake.nova_max_microversion)}
    return None


def _cinder_version(base):
    return {"id": "v3.0", "status": "CURRENT", "version": CINDER_MAX_MICROVERSION,
            "min_version": "3.0", "updated": "2023-08-31T00:00:00Z",
            "links": [{"rel": "self", "href": f"{base}/volume/v3/"}]}


def _cinder_v1(base):
    return {"id": "v1.0", "status": "DEPRECATED", "version": "", "min_version": "",
            "updated": "2016-05-02T20:25:19Z", "links": [{"rel": "self", "href": f"{base}/volume/v1/"}]}


def _cinder_versions(rest, base, fake):
    if fake.cinder_versions == "broken" and rest in ("/", "/v3", f"/v3/{fake.scenario.project_id}"):
        raise _HttpError(500, "discovery is broken")
    if fake.cinder_versions == "v1":
        if rest == "/":
            return 300, {}, {"versions": [_cinder_v1(base)]}
        if rest.startswith("/v3"):
            raise _HttpError(404)
        return None
    if rest == "/":
        doc = sample("cinder-versions-response.json")
        v = doc["versions"][0]
        v["version"] = CINDER_MAX_MICROVERSION
        v["links"] = [link if link["rel"] != "self" else {"rel": "self", "href": f"{base}/volume/v3/"}
                      for link in v["links"]]
        return 300, {}, doc
    if rest in ("/v3", f"/v3/{fake.scenario.project_id}"):
        return 200, {}, {"version": _cinder_version(base)}
    return None


# ---- pagination ---------------------------------------------------------------

def _limit(query, default):
    raw = query.get("limit")
    if raw is None:
        return min(default, MAX_LIMIT)
    try:
        n = int(raw)
    except ValueError:
        raise _HttpError(400, f"limit param must be an integer: {raw!r}") from None
    if n < 0:
        raise _HttpError(400, "limit param must be positive")
    return min(n, MAX_LIMIT)


def _page(ids, query, default_limit):
    """The page after ``marker``, as every OpenStack service does it. -> (page, limit, more)"""
    limit = _limit(query, default_limit)
    start = 0
    marker = query.get("marker")
    if marker:
        try:
            start = ids.index(marker) + 1
        except ValueError:
            raise _HttpError(400, f"marker [{marker}] not found") from None
    page = ids[start:start + limit]
    # The services link a next page whenever the page is full, even when it
    # happens to be the last one (the client then gets an empty page).
    return page, limit, bool(page) and len(page) == limit


def _next_query(query, page, limit, link):
    """The next page's query: the request's own filters, limit and marker.

    link "page_loop" drops the marker (back to the first page); "page_overlap" marks
    the page's first item, so the next page repeats items of this one.
    """
    q = {k: v for k, v in query.items() if k not in ("marker", "limit")}
    q["limit"] = str(limit)
    if link != "page_loop" and page:
        q["marker"] = page[0] if link == "page_overlap" else page[-1]
    return urlencode(q)


def _visible(fake, obj, query, all_projects_key):
    if query.get(all_projects_key) in ("1", "True", "true"):
        if not fake.admin:
            raise _HttpError(403, "Policy doesn't allow listing all projects' resources.")
        return True
    return obj["project"] == fake.scenario.project_id


# ---- Glance -------------------------------------------------------------------

def _glance(fake, rest, query, base, link):
    if rest == "/v2/images":
        return _glance_images(fake, query, link)
    if rest == "/v2/info/usage":
        return _glance_usage(fake)
    raise _HttpError(404)


def _glance_image(oid, o, project_id):
    """An image in the shape of Glance's api-ref sample (images-list-response.json)."""
    doc = dict(sample("glance-images-list-response.json")["images"][0])
    doc.update({"id": oid, "name": o.get("name"), "status": o.get("status", "active"),
                "size": o.get("size"), "virtual_size": None, "checksum": None, "os_hash_algo": None,
                "os_hash_value": None, "visibility": o.get("visibility", "private"),
                "os_hidden": bool(o.get("hidden", False)),
                "owner": o.get("owner", o.get("project", project_id)), "tags": [],
                "created_at": iso(o["created_at"]), "updated_at": iso(o["updated_at"]),
                "self": f"/v2/images/{oid}", "file": f"/v2/images/{oid}/file"})
    # Nova writes these as image properties, which Glance returns as top-level keys.
    if o.get("image_type"):
        doc["image_type"] = o["image_type"]
    if o.get("server"):
        doc["instance_uuid"] = o["server"]
        doc["base_image_ref"] = ""
    if o.get("backup_type"):
        doc["backup_type"] = o["backup_type"]
    if o.get("bdm"):
        # A boot-from-volume server's snapshot (nova.compute.api.snapshot_volume_backed):
        # no instance_uuid, a JSON-encoded block device mapping, size 0.
        doc["bdm_v2"] = "True"
        doc["root_device_name"] = "/dev/vda"
        doc["block_device_mapping"] = json.dumps([
            {"source_type": "snapshot", "destination_type": "volume", "snapshot_id": sid, "boot_index": i,
             "device_name": f"/dev/vd{chr(97 + i)}", "delete_on_termination": False, "volume_size": 10,
             "guest_format": None, "disk_bus": "virtio", "device_type": "disk", "volume_type": None,
             "no_device": None, "tag": None, "volume_id": None, "image_id": None}
            for i, sid in enumerate(o["bdm"])])
    return doc


def _glance_visible(fake, o, query):
    """Glance's list rules for the fake's user: visibility, owner, os_hidden, member_status."""
    pid = fake.scenario.project_id
    owner = o.get("owner", o.get("project", pid))
    vis = o.get("visibility", "private")
    mine = owner == pid
    member = pid in (o.get("members") or {})
    if not (fake.admin or mine or vis in ("public", "community") or (vis == "shared" and member)):
        return False
    if "owner" in query and owner != query["owner"]:
        return False
    want_vis = query.get("visibility")
    if want_vis is None:
        # The default list leaves out community images the user does not own.
        if vis == "community" and not mine:
            return False
    elif want_vis != "all" and vis != want_vis:
        return False
    # os_hidden=false (the default) lists visible images only; true lists hidden ones only.
    if bool(o.get("hidden", False)) != (query.get("os_hidden", "false").lower() == "true"):
        return False
    if vis == "shared" and not mine:
        status = (o.get("members") or {}).get(pid, "")
        if query.get("member_status", "accepted") not in ("all", status):
            return False
    if o.get("status") in ("deleted", "pending_delete") and not fake.admin:
        return False
    return True


def _glance_images(fake, query, link):
    pid = fake.scenario.project_id
    with fake._lock:
        objs, order = fake._state["images"], fake._sorted["images"]
    ids = [i for i in order if _glance_visible(fake, objs[i], query)]
    page, limit, more = _page(ids, query, GLANCE_DEFAULT_LIMIT)
    doc = {"images": [_glance_image(i, objs[i], pid) for i in page],
           "first": "/v2/images", "schema": "/v2/schemas/images"}
    if more or link == "page_loop":
        doc["next"] = "/v2/images?" + _next_query(query, page, limit, link)
    return 200, {}, doc


def _glance_usage(fake):
    """/v2/info/usage counted as Glance counts (glance.db.sqlalchemy.api):

    image_count_total: the owner's images not killed, pending_delete or deleted,
    hidden ones included; image_size_total: size x live locations of those
    with size > 0, in MiB rounded down. The answer has the sample's shape.
    """
    if fake.usage_api == "missing":
        raise _HttpError(404, "The resource could not be found.")
    if fake.usage_api == "disabled":
        return 200, {}, {"usage": {}}
    pid = fake.scenario.project_id
    with fake._lock:
        mine = [o for o in fake._state["images"].values()
                if o.get("owner", o.get("project")) == pid]
    gone = ("killed", "pending_delete", "deleted")
    live = [o for o in mine if o.get("status", "active") not in gone]
    size = sum((o.get("size") or 0) * o.get("locations", 1) for o in live if (o.get("size") or 0) > 0)
    uploading = sum(1 for o in mine if o.get("status") in ("saving", "uploading", "importing"))
    limits = fake.scenario.limits or {}
    doc = sample("glance-usage-response.json")
    for name, used in (("image_count_total", len(live)), ("image_size_total", size // MIB),
                       ("image_stage_total", 0), ("image_count_uploading", uploading)):
        doc["usage"][name] = {"limit": limits.get(name, -1), "usage": used}
    return 200, {}, doc


# ---- Nova -----------------------------------------------------------------------

_ACTIONS_PATH = re.compile(r"^/v2\.1/servers/([^/]+)/os-instance-actions$")


def _microversion(fake, service) -> Tuple[int, int]:
    """The microversion a request asked for ("OpenStack-API-Version: compute 2.58"); 2.1 when none."""
    headers = getattr(fake._tls, "headers", None) or {}
    raw = headers.get("OpenStack-API-Version") or ""
    parts = raw.split()
    if len(parts) == 2 and parts[0] == service:
        major, minor = parts[1].split(".")
        return int(major), int(minor)
    return 2, 1


def _nova(fake, rest, query, base, link):
    if rest == "/v2.1/servers/detail":
        return _nova_servers(fake, query, base, link)
    m = _ACTIONS_PATH.match(rest)
    if m:
        return _nova_actions(fake, m.group(1), query)
    if rest == "/v2.1/limits":
        return 200, {}, {"limits": {"rate": [], "absolute": {
            "maxServerMeta": 128, "maxPersonality": 5, "maxPersonalitySize": 10240,
            "maxImageMeta": 128, "maxTotalInstances": 10, "maxTotalCores": 20,
            "maxTotalRAMSize": 51200, "maxServerGroups": 10, "maxServerGroupMembers": 10,
            "totalInstancesUsed": len(fake._state["servers"]), "totalCoresUsed": 0,
            "totalRAMUsed": 0, "totalServerGroupsUsed": 0}}}
    raise _HttpError(404)


def _nova_server(oid, o, base):
    """A server in the shape of Nova's api-ref sample (v2.96 servers-details-resp.json)."""
    doc = json.loads(json.dumps(sample("nova-v2.96-servers-details-resp.json")["servers"][0]))
    image = o.get("image", "")
    image_ref = {"id": image, "links": [{"rel": "bookmark", "href": f"{base}/compute/images/{image}"}]} \
        if image else ""      # boot from volume: Nova returns an empty string
    doc.update({"id": oid, "name": o.get("name"), "status": o.get("status", "ACTIVE"),
                "tenant_id": o["project"], "image": image_ref,
                "created": iso(o["created_at"]), "updated": iso(o["updated_at"]),
                "links": [{"rel": "self", "href": f"{base}/compute/v2.1/servers/{oid}"}],
                "OS-EXT-STS:task_state": o.get("task_state"),
                "OS-EXT-STS:vm_state": o.get("vm_state", "active"),
                "os-extended-volumes:volumes_attached": [
                    {"id": v, "delete_on_termination": False} for v in o.get("volumes", [])]})
    return doc


def _nova_servers(fake, query, base, link):
    with fake._lock:
        objs, order = fake._state["servers"], fake._sorted["servers"]
    ids = [i for i in order if _visible(fake, objs[i], query, "all_tenants")]
    page, limit, more = _page(ids, query, MAX_LIMIT)
    doc = {"servers": [_nova_server(i, objs[i], base) for i in page]}
    if more or link == "page_loop":
        href = f"{INTERNAL_HOST}/v2.1/servers/detail?" + _next_query(query, page, limit, link)
        doc["servers_links"] = [{"rel": "next", "href": href}]
    return 200, {}, doc


def _nova_actions(fake, server_id, query):
    """GET /servers/{id}/os-instance-actions as Nova answers it (v2.58 sample shape).

    Newest first; changes-since (2.58+) keeps actions updated at or after it.
    A server's ``actions`` are {"action", "start", "end", "error"} with times
    as offsets from the scenario's start. message is "Error" when an event
    of the action failed (nova.db action_event_finish).
    """
    version = _microversion(fake, "compute")
    top = tuple(int(x) for x in fake.nova_max_microversion.split("."))
    if version > top:
        raise _HttpError(406, f"Version {version[0]}.{version[1]} is not supported by the API.")
    with fake._lock:
        srv = fake._state["servers"].get(server_id)
    if srv is None or not _visible(fake, srv, {}, "all_tenants"):
        raise _HttpError(404, f"Instance {server_id} could not be found.")
    start = fake.scenario.start
    template = sample("nova-v2.58-instance-actions-list-resp.json")["instanceActions"][0]
    since = query.get("changes-since")
    if since is not None and version < (2, 58):
        raise _HttpError(400, "Additional properties are not allowed ('changes-since' was unexpected)")
    actions = []
    for i, a in enumerate(srv.get("actions") or ()):
        begun = start + parse_offset(a["start"])
        ended = start + parse_offset(a.get("end", a["start"]))
        if begun > fake.clock():
            continue
        doc = dict(template)
        doc.update({"action": a["action"], "instance_uuid": server_id, "project_id": srv["project"],
                    "request_id": f"req-{uuid.UUID(int=i + 1)}", "message": "Error" if a.get("error") else None,
                    "start_time": iso(begun, naive_micro=True), "updated_at": iso(ended, naive_micro=True)})
        if version < (2, 58):
            doc.pop("updated_at", None)
        if since is None or ended >= _parse_iso(since):
            actions.append((begun, doc))
    actions.sort(key=lambda t: t[0], reverse=True)
    return 200, {}, {"instanceActions": [d for _, d in actions]}


def _parse_iso(value):
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


# ---- Cinder ---------------------------------------------------------------------

def _cinder(fake, rest, query, base, link):
    pid = fake.scenario.project_id
    if rest == f"/v3/{pid}/snapshots/detail":
        return _cinder_snapshots(fake, query, base, link)
    raise _HttpError(404)


def _cinder_snapshot(oid, o):
    """A snapshot in the shape of Cinder's api-ref sample (v3.65 snapshots-list-detailed-response.json)."""
    doc = dict(sample("cinder-v3.65-snapshots-list-detailed-response.json")["snapshots"][0])
    doc.update({"id": oid, "name": o.get("name"), "description": None, "status": o.get("status", "available"),
                "size": o.get("size_gb", 10), "volume_id": o.get("volume", ""), "metadata": {},
                "created_at": iso(o["created_at"], naive_micro=True),
                "updated_at": iso(o["updated_at"], naive_micro=True),
                "os-extended-snapshot-attributes:progress": o.get("progress", "100%"),
                "os-extended-snapshot-attributes:project_id": o["project"]})
    return doc


def _cinder_snapshots(fake, query, base, link):
    with fake._lock:
        objs, order = fake._state["volume_snapshots"], fake._sorted["volume_snapshots"]
    ids = [i for i in order if _visible(fake, objs[i], query, "all_tenants")]
    if "status" in query:
        ids = [i for i in ids if objs[i].get("status", "available") == query["status"]]
    page, limit, more = _page(ids, query, MAX_LIMIT)
    doc = {"snapshots": [_cinder_snapshot(i, objs[i]) for i in page]}
    if more or link == "page_loop":
        pid = fake.scenario.project_id
        href = f"{INTERNAL_HOST}/v3/{pid}/snapshots/detail?" + _next_query(query, page, limit, link)
        doc["snapshots_links"] = [{"rel": "next", "href": href}]
    return 200, {}, doc
