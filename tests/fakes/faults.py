"""What every fake cloud API shares: one fault vocabulary, one Fault, one loopback server.

A test switches a fault on the same way on every fake:

    api.set_fault("error", path="/images", status=503)        # replaces the faults on
    api.add_fault(Fault("error", r"/v2/images$", 429, skip=1)) # adds one more
    api.clear_faults()

`path` is a regular expression searched in the request's path as the fake
routes it (Linode: after /v4; Cloud Backup: after the tenant; OpenStack: the
full path). Each fake serves the modes of VOCABULARY it can speak in its
API's wire format (its SERVES); asking one for another mode is a ValueError.
"""
from __future__ import annotations

import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Tuple, Union
from urllib.parse import parse_qsl, urlsplit

from requests.structures import CaseInsensitiveDict

VOCABULARY = {
    "error": "answer HTTP `status` (default 500) with the API's error body; `message` replaces its text, "
             "`headers` are sent too",
    "rate_limited": "answer 429 with Retry-After: `retry_after` (default 30) seconds",
    "slow": "wait `delay` seconds, then answer normally",
    "hang": "never answer, until the faults are cleared or the server stops",
    "stall": "send the headers and the first bytes of the body, then nothing until the server stops",
    "malformed_json": "answer 200 with a truncated JSON body",
    "missing_data": "answer 200 with a JSON value that lacks the expected keys",
    "page_loop": "paginated listings serve (or link back to) their first page again from page 2 on",
    "page_overlap": "the next link marks the page's first item instead of its last, so pages repeat items",
    "pages_grow": "claim one more page than the one asked for, from page 2 on",
    "short_page": "serve half the items a page should hold, from page 2 on (totals unchanged)",
    "auth_mid_pagination": "answer 401 from page 2 on",
    "auth_rejected": "the identity service answers 401 to every token request (revoked credentials)",
    "refused": "close the listening socket and open connections, so connections are refused",
}


@dataclass
class Fault:
    """Misbehaviour for requests whose path matches ``path`` (searched; "" matches every path).

    ``skip`` lets that many matching requests through first; ``times`` limits
    how often it fires (None: forever).
    """
    mode: str
    path: str = ""
    status: int = 500
    delay: float = 0.0
    headers: Dict[str, str] = field(default_factory=dict)
    skip: int = 0
    times: Optional[int] = None
    message: str = ""
    retry_after: Union[float, str] = 30      # a string is sent as it is (hostile values)
    seen: int = 0
    fired: int = 0
    released: Optional[threading.Event] = field(default=None, repr=False, compare=False)   # set on clear

    def __post_init__(self):
        if self.mode not in VOCABULARY:
            raise ValueError(f"unknown fault {self.mode!r}; known: {', '.join(VOCABULARY)}")

    def take(self, path: str) -> bool:
        if not re.search(self.path, path):
            return False
        self.seen += 1
        if self.seen <= self.skip or (self.times is not None and self.fired >= self.times):
            return False
        self.fired += 1
        return True


class Faults:
    """The faults switched on in one fake, thread-safe."""

    def __init__(self, serves: Iterable[str]):
        self.serves: FrozenSet[str] = frozenset(serves)
        unknown = self.serves - set(VOCABULARY)
        if unknown:
            raise ValueError(f"not in the fault vocabulary: {', '.join(sorted(unknown))}")
        self._on: List[Fault] = []
        self._lock = threading.Lock()
        self.release = threading.Event()       # set when the faults are cleared: wakes "hang"

    def add(self, fault: Fault) -> Fault:
        if fault.mode not in self.serves:
            raise ValueError(f"this fake does not serve fault {fault.mode!r}; it serves {', '.join(sorted(self.serves))}")
        with self._lock:
            fault.released = self.release
            self._on.append(fault)
        return fault

    def clear(self) -> List[Fault]:
        with self._lock:
            cleared, self._on = self._on, []
            self.release.set()
            self.release = threading.Event()
        return cleared

    def match(self, path: str) -> Optional[Fault]:
        with self._lock:
            for f in self._on:
                if f.take(path):
                    return f
        return None


class Request(NamedTuple):
    """One request a fake received, as every fake records it."""
    method: str
    path: str                 # without the query
    query: Dict[str, str]
    headers: Dict[str, str]   # looked up case-insensitively, as HTTP reads them


class ApiError(Exception):
    """An error answer in the API's own shape: status, body, extra headers."""

    def __init__(self, status: int, body, headers: Optional[Dict[str, str]] = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"      # keep-alive, as the real APIs
    disable_nagle_algorithm = True     # headers and body are two writes; don't wait for an ACK between them

    def setup(self):
        super().setup()
        self.server.api._connections.add(self.connection)

    def finish(self):
        self.server.api._connections.discard(self.connection)
        super().finish()

    def do_GET(self):
        self.server.api._handle(self)

    do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, *args):      # keep test output clean
        pass


class LoopbackAPI:
    """A fake API's server on 127.0.0.1 with the shared fault controls.

    A subclass sets SERVES (the modes it speaks) and NAME, and implements
    respond(request, body, fault) -> (answer, headers), raising ApiError for
    error answers; every request is recorded in .requests, and "refused",
    "slow" and "hang" are served here.
    """
    SERVES: Iterable[str] = ()
    NAME = "fake-api"

    def __init__(self):
        self.faults = Faults(self.SERVES)
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._port = 0
        self._connections: set = set()      # open keep-alive connections, cut on "refused"
        self.requests: List[Request] = []
        self._requests_lock = threading.Lock()

    def start(self):
        self._listen(self._port)
        return self

    def stop(self) -> None:
        self.faults.release.set()
        self._close_listener()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def set_fault(self, mode: str, path: Optional[str] = None, **params) -> Fault:
        """Clear the faults on, then switch one on for every request or for paths starting with `path`."""
        self.clear_faults()
        return self.add_fault(Fault(mode, "^" + re.escape(path) if path else "", **params))

    def add_fault(self, fault: Fault) -> Fault:
        self.faults.add(fault)
        if fault.mode == "refused":
            # A server that is down drops its kept-alive connections too.
            self._close_listener()
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        return fault

    def clear_faults(self) -> None:
        if any(f.mode == "refused" for f in self.faults.clear()):
            self._listen(self._port)

    def _listen(self, port):
        handler = type("Handler", (_Handler,), {"server_version": f"{self.NAME}/1.0"})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self._server.api = self
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.NAME, daemon=True)
        self._thread.start()

    def _close_listener(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def paths(self) -> List[str]:
        return [r.path for r in self.requests]

    # ---- serving a request ------------------------------------------------------------------

    def fault_path(self, path: str) -> str:
        """The path faults are matched against (the part after the API's prefix)."""
        return path

    def respond(self, request: Request, body: bytes, fault: Optional[Fault]) -> Tuple[object, Dict[str, str]]:
        raise NotImplementedError

    def encode(self, answer) -> bytes:
        return json.dumps(answer).encode()

    def before_answer(self) -> None:
        """Called before every answer (a benchmark's added latency)."""

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        request = Request(h.command, url.path, dict(parse_qsl(url.query)), CaseInsensitiveDict(h.headers.items()))
        with self._requests_lock:
            self.requests.append(request)
        fault = self.faults.match(self.fault_path(url.path))
        self.before_answer()
        if self._wait_if_hanging(fault):
            return
        try:
            status, (answer, headers) = 200, self.respond(request, body, fault)
        except ApiError as e:
            status, answer, headers = e.status, e.body, e.headers
        raw = answer if isinstance(answer, bytes) else self.encode(answer)
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

    def _wait_if_hanging(self, fault: Optional[Fault]) -> bool:
        """Serve "slow" and "hang"; True when the request must go unanswered."""
        if fault is None:
            return False
        if fault.mode == "slow":
            fault.released.wait(fault.delay)
        if fault.mode == "hang":
            fault.released.wait(timeout=60)
            return True
        return False
