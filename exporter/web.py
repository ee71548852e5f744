"""HTTP serving on aiohttp, with the exporter-toolkit --web.config.file
features (TLS, client certificates, basic auth with bcrypt, extra response
headers; see exporter/web_config.py) and limits against hostile clients.

Why aiohttp (docs/architecture.md has the measurements): every connection
is a small object on one event loop, not a thread, so thousands of slow or
idle clients cost memory, not threads; aiohttp's C parser frames requests
(bodies read off the connection, HEAD without a body, keep-alive). The WSGI
app (landing page, health, /metrics) runs on a bounded thread pool, or on
the loop when it says it cannot wait (exporter/web_handler.py).

What is ours, around it:
- a cap on open connections derived from RLIMIT_NOFILE; past it, the
  connection that has waited longest for a request head is closed to make
  room (a scrape sends its head at once, a slow-loris client never does);
  EMFILE pauses accepting (asyncio's accept loop does, for a second) with
  one log line a minute at most;
- a deadline for a whole request head (HEAD_TIMEOUT from its first byte);
- --web.max-requests: requests being answered at once, 503 past it;
- TLS: the first byte tells a TLS ClientHello from plain HTTP, which gets
  Go's "400 Client sent an HTTP request to an HTTPS server." like
  node_exporter; certificates are reloaded when their files change
  (exporter/web_listen.py, with the listening sockets).
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import resource
import socket
import ssl
import threading
import time
from typing import Dict, List, Optional, Sequence, Union

from aiohttp import web_protocol, web_server

from .errors import ConfigError
from .web_auth import BasicAuth
from .web_handler import Handler
from .web_listen import TLSContexts, listen, parse_listen_address, send_and_close  # noqa: F401 - parse_listen_address: exporter.web's API

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0     # seconds for a TLS handshake
HEAD_TIMEOUT = 10.0          # seconds from the first byte of a request head to its end
FIRST_REQUEST_TIMEOUT = 10.0  # seconds a new connection may stay silent
# How long a kept-alive connection may wait for its next request: longer than
# Go's idle-connection timeout (90 s), so Prometheus closes first and never
# sends a scrape on a connection we are closing.
KEEPALIVE_TIMEOUT = 120.0
# node_exporter's --web.max-requests defaults to 40; 64 here so that 50
# concurrent scrapers (bench/load.py) are all answered.
DEFAULT_MAX_REQUESTS = 64
FD_RESERVE = 64              # descriptors kept for state, cloud APIs, mounts
EMFILE_PAUSE = 0.5           # seconds without accepting after EMFILE
# Deadlines are checked when the earliest one is due, at most this often (and this often
# while a request runs); an idle exporter's loop does not wake at all (issue 19: a wake
# every 2 s was most of host mode's CPU at a 15 s scrape interval).
SWEEP_INTERVAL = 2.0
# With this few connections open, the sweep timer moves to the earliest deadline left after
# each request: the head deadline a scrape met would otherwise wake the loop 10 s after
# every scrape (~0.2 ms of CPU a wake, issue 19). Past it, sweeps run as they fall due.
SETTLE_CONNECTIONS = 16
_NO_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_PLAIN_TO_TLS = (b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 b"Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
_FULL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
         b"Content-Length: 33\r\nConnection: close\r\n\r\nToo many open connections; retry\n")


def max_connections() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 65536
    return max(16, soft - FD_RESERVE)


class _Connection(web_protocol.RequestHandler):
    """aiohttp's protocol, noting when this connection began to wait and
    when a request head began to arrive, for the sweep and the cap."""

    def __init__(self, manager, serving, **kwargs):
        super().__init__(manager, **kwargs)
        self.serving = serving
        self.waiting_since = serving.loop.time()
        self.head_since: Optional[float] = None
        self.busy = 0
        self.served = 0

    def connection_made(self, transport):
        super().connection_made(transport)
        self.serving.connected(self)

    def connection_lost(self, exc):
        self.serving.conns.discard(self)
        super().connection_lost(exc)

    def data_received(self, data):
        # The first bytes of a head start its deadline; the handler clears it
        # (Handler.handle) once aiohttp has parsed the whole head.
        if self.head_since is None and not self.busy:
            self.head_since = self.serving.loop.time()
            self.serving.deadline_at(self.head_since + HEAD_TIMEOUT)
        super().data_received(data)

    def since(self) -> float:
        return self.head_since if self.head_since is not None else self.waiting_since

    def drop(self):
        # Out of the count at once: connection_lost comes a loop turn later.
        self.serving.conns.discard(self)
        if self.transport is not None:
            self.transport.abort()


class _Pending:
    """An accepted socket not yet handed to aiohttp (TLS sniff or handshake)."""

    def __init__(self, serving, sock, since):
        self.serving, self.sock, self.waiting_since, self.task, self.busy = serving, sock, since, None, 0

    def since(self):
        return self.waiting_since

    def drop(self):
        self.serving.pending.pop(self.sock, None)
        if self.task is not None:
            self.task.cancel()
        else:
            with contextlib.suppress(ValueError, OSError):
                self.serving.loop.remove_reader(self.sock.fileno())
            self.sock.close()


class Server:
    """Listens on one or more addresses; serve_forever() runs the event loop
    in the calling thread, shutdown() (from any thread) ends it."""

    def __init__(self, sockets: List[socket.socket], app, web_config=None,
                 max_requests: int = DEFAULT_MAX_REQUESTS):
        self.sockets = sockets
        self.server_addresses = [s.getsockname() for s in sockets]
        self.server_address = self.server_addresses[0]
        self.tls = TLSContexts(web_config.tls) if web_config is not None and web_config.tls else None
        auth = BasicAuth(web_config.users) if web_config is not None and web_config.users else None
        headers = {k: v for k, v in (web_config.headers.items() if web_config is not None and web_config.headers
                                     else ()) if v}       # blank means unset
        self.handler = Handler(app, auth=auth, headers=headers, max_requests=max_requests,
                               scheme="https" if self.tls else "http")
        self.max_connections = max_connections()
        self.conns = set()
        self.pending: Dict[socket.socket, _Pending] = {}
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopped: Optional[asyncio.Event] = None
        self._shutdown_requested = threading.Event()
        self._running = threading.Event()
        self._start_lock = threading.Lock()   # serve_forever starts, or shutdown came first: not both
        self._done = threading.Event()
        self._no_fds_logged = float("-inf")
        self._factory = None
        self._sweep_timer: Optional[asyncio.TimerHandle] = None

    # -- the loop ----------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:   # poll_interval: socketserver's signature
        with self._start_lock:
            if self._shutdown_requested.is_set():   # shut down before it started: the sockets may be closed
                return
            self._running.set()
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(loop))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._done.set()

    async def _serve(self, loop):
        self.loop, self._stopped = loop, asyncio.Event()
        loop.set_exception_handler(self._loop_error)
        manager = web_server.Server(self.handler.handle, loop=loop)
        self._factory = lambda: _Connection(manager, self, loop=loop, keepalive_timeout=KEEPALIVE_TIMEOUT,
                                            access_log=None, lingering_time=2.0, max_field_size=16384)
        servers = []
        for s in self.sockets:
            if self.tls is None:
                # asyncio's own accept loop: it pauses a second on EMFILE (reported
                # to _loop_error); the cap is applied in connected().
                servers.append(await loop.create_server(self._factory, sock=s, backlog=1024))
            else:
                loop.add_reader(s.fileno(), self._accept, s)
        if self._shutdown_requested.is_set():
            self._stopped.set()
        await self._stopped.wait()
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
        for server in servers:
            server.close()
        if self.tls is not None:
            for s in self.sockets:
                loop.remove_reader(s.fileno())
        for c in list(self.conns) + list(self.pending.values()):
            c.drop()
        await asyncio.sleep(0)
        self.handler.close()

    def shutdown(self) -> None:
        """Stop serve_forever and wait for it to end (as socketserver's shutdown does)."""
        with self._start_lock:
            self._shutdown_requested.set()
        loop, stopped = self.loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopped.set)
            except RuntimeError:          # the loop closed meanwhile
                pass
        if self._running.is_set():
            self._done.wait(10)

    def server_close(self) -> None:
        for s in self.sockets:
            s.close()

    # -- accepting ---------------------------------------------------------------

    def _accept(self, lsock):
        for _ in range(64):               # a burst at a time, then let the loop run
            try:
                sock, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in _NO_FDS:
                    self._out_of_descriptors(lsock, e)
                elif e.errno not in (errno.ECONNABORTED, errno.EPROTO):
                    log.debug("accept failed: %s", e)
                return
            sock.setblocking(False)
            if len(self.conns) + len(self.pending) >= self.max_connections and not self._evict_one():
                send_and_close(sock, _FULL)
                continue
            self._start(sock)

    def _out_of_descriptors_logged(self, e):
        now = time.monotonic()
        if now - self._no_fds_logged >= 60.0:          # one line a minute at most
            log.warning("out of file descriptors (%s) with %d connections open: closing the longest-waiting "
                        "one and pausing new connections; raise LimitNOFILE", e.strerror,
                        len(self.conns) + len(self.pending))
            self._no_fds_logged = now

    def _out_of_descriptors(self, lsock, e):
        self._out_of_descriptors_logged(e)
        self._evict_one()
        self.loop.remove_reader(lsock.fileno())
        self.loop.call_later(EMFILE_PAUSE, self._resume, lsock)

    def _resume(self, lsock):
        if not self._stopped.is_set() and lsock.fileno() >= 0:
            self.loop.add_reader(lsock.fileno(), self._accept, lsock)

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest for a request; False if all are busy."""
        idle = [c for c in list(self.conns) + list(self.pending.values()) if not c.busy]
        if not idle:
            return False
        min(idle, key=lambda c: c.since()).drop()
        return True

    def _start(self, sock):
        p = _Pending(self, sock, self.loop.time())
        self.pending[sock] = p
        self.deadline_at(p.waiting_since + HANDSHAKE_TIMEOUT)
        if self.tls is None:
            self._hand_over(p, None)
        else:
            self.loop.add_reader(sock.fileno(), self._sniff, p)

    def _sniff(self, p):
        """TLS listener: a ClientHello starts with 0x16; anything else is plain HTTP."""
        self.loop.remove_reader(p.sock.fileno())
        try:
            first = p.sock.recv(1, socket.MSG_PEEK)
        except OSError:
            first = b""
        if first != b"\x16":
            self.pending.pop(p.sock, None)
            send_and_close(p.sock, _PLAIN_TO_TLS if first else b"")
            return
        self._hand_over(p, self.tls.get())

    def _hand_over(self, p, context):
        async def connect():
            try:
                await self.loop.connect_accepted_socket(
                    self._factory, p.sock, ssl=context,
                    ssl_handshake_timeout=HANDSHAKE_TIMEOUT if context else None)
            except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError) as e:
                log.debug("connection failed before its first request: %s", e)
                p.sock.close()
            except asyncio.CancelledError:
                p.sock.close()
            finally:
                self.pending.pop(p.sock, None)
        p.task = self.loop.create_task(connect())

    def connected(self, conn):
        if len(self.conns) + len(self.pending) >= self.max_connections and not self._evict_one():
            conn.transport.write(_FULL)
            conn.transport.close()
            return
        self.conns.add(conn)
        self.deadline_at(conn.waiting_since + FIRST_REQUEST_TIMEOUT)

    def _loop_error(self, loop, context):
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _NO_FDS:
            self._out_of_descriptors_logged(exc)
            self._evict_one()
            return
        log.debug("event loop: %s: %s", context.get("message"), exc)

    # -- deadlines -----------------------------------------------------------------

    def deadline_at(self, when: float) -> None:
        """A deadline begins (on the loop's thread): sweep by then if no sweep is due sooner."""
        timer = self._sweep_timer
        if self.loop is None or (timer is not None and timer.when() <= when):
            return
        if timer is not None:
            timer.cancel()
        self._sweep_timer = self.loop.call_at(when, self._sweep)

    def request_done(self) -> None:
        """A request was answered (on the loop's thread): its head's deadline is no longer due."""
        timer = self._sweep_timer
        if timer is not None and len(self.conns) + len(self.pending) <= SETTLE_CONNECTIONS:
            timer.cancel()
            self._sweep()

    def _sweep(self):
        """Close connections past a deadline: a head not finished in HEAD_TIMEOUT,
        a new connection silent for FIRST_REQUEST_TIMEOUT, a TLS client that has not
        started its handshake by then; then wait for the earliest deadline left."""
        self._sweep_timer = None
        now = self.loop.time()
        due = math.inf
        for c in list(self.conns):
            if c.busy:
                due = min(due, now + SWEEP_INTERVAL)     # its next wait starts when the answer is sent
                continue
            if c.head_since is not None:
                deadline = c.head_since + HEAD_TIMEOUT
            else:
                deadline = c.waiting_since + (KEEPALIVE_TIMEOUT if c.served else FIRST_REQUEST_TIMEOUT)
            if now >= deadline:
                c.drop()
            else:
                due = min(due, deadline)
        for p in list(self.pending.values()):
            if p.task is not None:                      # handed to aiohttp: its handshake has a timeout
                continue
            if now >= p.waiting_since + HANDSHAKE_TIMEOUT:   # TLS, no ClientHello
                self.loop.remove_reader(p.sock.fileno())
                self.pending.pop(p.sock, None)
                p.sock.close()
            else:
                due = min(due, p.waiting_since + HANDSHAKE_TIMEOUT)
        if due < math.inf:
            self.deadline_at(max(due, now + SWEEP_INTERVAL))


def make_server(listen_addresses: Union[str, Sequence[str]], app, web_config=None,
                max_requests: int = DEFAULT_MAX_REQUESTS) -> Server:
    """A server for the WSGI ``app`` on every address, with the web config applied.

    Returns an object with serve_forever(), shutdown(), server_close() and
    server_address. Raises ConfigError if an address is bad or in use.
    """
    if isinstance(listen_addresses, str):
        listen_addresses = [listen_addresses]
    sockets: List[socket.socket] = []
    try:
        for addr in listen_addresses:
            sockets.append(listen(addr))
    except ConfigError:
        for s in sockets:
            s.close()
        raise
    return Server(sockets, app, web_config, max_requests)
