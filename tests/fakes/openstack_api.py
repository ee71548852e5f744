"""A fake OpenStack cloud (Keystone v3, Glance v2, Nova v2.1, Cinder v3) on 127.0.0.1.

It speaks the real wire format closely enough that unpatched openstacksdk and
keystoneauth work against it through a clouds.yaml: version discovery, the
token POST with its service catalog, marker/limit pagination with each
service's own "next" link shape, and the error bodies.

A *scenario* (tests/fakes/scenario.py; files in tests/fixtures/openstack/) is
a project's servers, images and volume_snapshots at a start and a timeline of
changes; goto()/step() move the fake and its clock from one step to the next,
so a test can walk an image from queued to active across refreshes. The
services live in openstack_identity, _image, _compute and _block_storage.
*Faults* are switched on at run time with add_fault(Fault(...)) or
set_fault(mode, path), in the vocabulary of tests/fakes/faults.py (the modes
of SERVES), and apply to the requests whose path they match: error statuses,
slow, hung and stalled answers, malformed JSON, next links that loop or
overlap, refused connections; stop() refuses further connections, refuse() does so until
accept(). Every request is recorded in ``requests``; every token issued in
``tokens_issued``.

live=True is for tests of the exporter as a process, whose clock is the real
one: each goto() moves the scenario so that the step's time is the real time
now, and clock() is the wall clock.

Only the standard library (plus PyYAML for scenario files) is used.
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlsplit

from . import openstack_block_storage as block_storage
from . import openstack_compute as compute
from . import openstack_identity as identity
from . import openstack_image as image
from .faults import Fault, Faults, Request
from .openstack_compute import NOVA_MAX_MICROVERSION
from .openstack_scenarios import KINDS, PROJECT_ID, STAMPS, TIME_FIELDS, project_scenario
from .openstack_wire import ERROR_TITLES, HttpError
from .scenario import Scenario, parse_offset

SERVES = ("error", "rate_limited", "slow", "hang", "stall", "malformed_json", "page_loop", "page_overlap", "refused")


# ---- the server --------------------------------------------------------------

class FakeOpenStack:
    """One project on one fake cloud.

        fake = FakeOpenStack(load_scenario("project")).start()
        fake.url, fake.now, fake.step(), fake.add_fault(Fault("error", "/v2/images", 503))
        fake.requests -> [(method, path, query, headers), ...]
        fake.stop()
    """

    def __init__(self, scenario: Optional[Scenario] = None, *, user: str = "imaging",
                 password: str = "s3cret-Passw0rd", admin: bool = False,
                 services: Tuple[str, ...] = ("image", "compute", "block-storage"), live: bool = False,
                 api_key: str = "", nova_max_microversion: str = NOVA_MAX_MICROVERSION):
        self.scenario = scenario or project_scenario()
        project = self.scenario.header.get("project") or {}
        self.project_id = str(project.get("id", PROJECT_ID))
        self.project_name = project.get("name", "demo")
        self.domain = project.get("domain", "Default")
        self.limits: Optional[Dict[str, int]] = self.scenario.header.get("limits")   # None: Glance without them
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
        self.usage_api = "limits" if self.limits is not None else "disabled"
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
        """Move the project (and the clock) to step `step`: 0 is the start, k after the k-th change."""
        if self.live:
            at = parse_offset(self.scenario.steps[step - 1].get("at", 0)) if step else 0.0
            self.scenario = self.scenario.rebased(float(round(time.time())) - at)
        state = {kind: {str(oid): dict(obj, project=obj.get("project", self.project_id))
                        for oid, obj in objs.items()}
                 for kind, objs in self.scenario.state(step, TIME_FIELDS, STAMPS).items()}
        state = {kind: state.get(kind, {}) for kind in KINDS}
        with self._lock:
            self.step_index = step
            self.now = self.scenario.times()[step]
            self._state = state
            self._sorted = {kind: _newest_first(objs) for kind, objs in state.items()}

    def step(self) -> None:
        """Move the scenario (and its clock) to the next step."""
        if self.step_index >= len(self.scenario.steps):
            raise IndexError("the scenario has no more steps")
        self.goto(self.step_index + 1)

    def listing(self, kind: str) -> Tuple[Dict[str, dict], List[str]]:
        """A kind's objects by id, and their ids in the APIs' default order (newest first)."""
        with self._lock:
            return self._state[kind], self._sorted[kind]

    def request_headers(self):
        """The headers of the request this handler thread serves."""
        return getattr(self._tls, "headers", None) or {}

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

    def issue_token(self, token: str) -> None:
        with self._lock:
            self.tokens_issued.append(token)
            self._valid_tokens.add(token)

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
        fake.record(Request(method, path, query, dict(self.headers.items())))
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
                raise HttpError(fault.status, fault.message)
            if kind == "rate_limited":
                raise HttpError(429, fault.message or "Rate limit exceeded")
            status, headers, doc = self._route(method, path, query, body, link=kind)
        except HttpError as e:
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
            raise HttpError(401, "The request you have made requires authentication.")

    def _route(self, method, path, query, body, link=""):
        base = self.fake.url
        if path.startswith("/identity"):
            return identity.serve(self.fake, method, path[len("/identity"):] or "/", body, base)
        if method != "GET":
            raise HttpError(405, "This fake serves read-only requests only.")
        for prefix, service, versions, api in (
                ("/image", "image", image.versions, image.serve),
                ("/compute", "compute", compute.versions, compute.serve),
                ("/volume", "block-storage", block_storage.versions, block_storage.serve)):
            if path == prefix or path.startswith(prefix + "/"):
                if service not in self.fake.services:
                    raise HttpError(404)
                rest = path[len(prefix):] or "/"
                doc = versions(rest, base, self.fake)
                if doc is not None:
                    return doc
                self._authorized()
                return api(self.fake, rest, query, base, link)
        raise HttpError(404)


def _error_body(status, message, path):
    """Keystone's {"error": {...}}; Nova's and Cinder's {"itemNotFound": {...}} style."""
    title = ERROR_TITLES.get(status, "Error")
    if path.startswith("/identity"):
        return {"error": {"code": status, "title": title, "message": message}}
    key = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
           429: "overLimit"}.get(status, "computeFault")
    return {key: {"code": status, "message": message}}
