"""HTTP serving: a WSGI app behind a threading server, with the
exporter-toolkit --web.config.file features (TLS, client certificates, basic
auth with bcrypt, extra response headers); see exporter/web_config.py.

Each connection gets its own thread; the TLS handshake happens there, under a
timeout, so a slow or silent client never blocks the accept loop. Plain HTTP
sent to a TLS listener fails the handshake and the connection is closed.
HTTP/1.1 connections are kept alive between requests, as Prometheus expects.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import socket
import socketserver
import threading
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

import bcrypt

from .errors import ConfigError
from .threads import CachedThreads

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0     # seconds for a TLS handshake
IO_TIMEOUT = 60.0            # seconds for any single read or write of a request
# How long a kept-alive connection may wait for its next request: longer than
# Go's idle-connection timeout (90 s), so Prometheus closes first and never
# sends a scrape on a connection we are closing.
KEEPALIVE_TIMEOUT = 120.0
REALM = "imaging-exporter"
# bcrypt of a random password: unknown users cost as much as known ones,
# so response times do not reveal which user names exist (as in the toolkit).
_DUMMY_HASH = b"$2b$10$m8uXsyd.27qqnQ..0MJi.ecH.mkohtyCKM1v9Pi/fj8496DYCVOQ6"


def parse_listen_address(addr):
    """":9847" -> ("", 9847); "127.0.0.1:9847"; "[::1]:9847"."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--web.listen-address: {addr!r} is not host:port, for example \":9847\"")
    return host.strip("[]"), int(port)


# ---- WSGI middleware ----------------------------------------------------------

class BasicAuth:
    """401 unless the request carries a configured user and its password.

    A bcrypt check is slow on purpose, so one success per user is remembered
    as an HMAC of the password under a per-process key (never the password
    itself) and compared in constant time; at most one bcrypt runs at a time.
    """

    def __init__(self, app, users):
        self.app, self.users = app, dict(users)
        self._key = os.urandom(32)
        self._verified = {}               # user -> HMAC of the last good password
        self._bcrypt = threading.Lock()

    def check(self, user, password):
        digest = hmac.new(self._key, password, hashlib.sha256).digest()
        known = self._verified.get(user)
        if known is not None and hmac.compare_digest(known, digest):
            return True
        hashed = self.users.get(user)
        with self._bcrypt:
            try:
                ok = bcrypt.checkpw(password, hashed or _DUMMY_HASH) and hashed is not None
            except ValueError:            # e.g. a password over bcrypt's 72 bytes
                ok = False
        if ok:
            self._verified[user] = digest
        return ok

    def __call__(self, environ, start_response):
        creds = _basic_credentials(environ.get("HTTP_AUTHORIZATION", ""))
        if creds is not None and self.check(*creds):
            return self.app(environ, start_response)
        start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                            ("WWW-Authenticate", f'Basic realm="{REALM}"')])
        return [b"Unauthorized\n"]


def _basic_credentials(header):
    """'Basic dXNlcjpwdw==' -> ("user", b"pw"); None if absent or malformed."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).partition(b":")
        return (user.decode("utf-8"), password) if sep else None
    except ValueError:                   # bad base64, non-ASCII, not UTF-8
        return None


def with_headers(app, headers):
    """Set the configured headers on every response, 401s included."""
    names = {name.lower() for name in headers}

    def wrapped(environ, start_response):
        def start(status, response_headers, exc_info=None):
            kept = [(k, v) for k, v in response_headers if k.lower() not in names]
            return start_response(status, kept + list(headers.items()), exc_info)
        return app(environ, start)
    return wrapped


# ---- server -------------------------------------------------------------------

class _TLSContexts:
    """The SSLContext, rebuilt when a certificate, key or CA file changes."""

    def __init__(self, tls):
        self.tls, self._lock = tls, threading.Lock()
        self._signature, self._context = tls.signature(), tls.context()

    def get(self):
        with self._lock:
            signature = self.tls.signature()
            if signature != self._signature:
                self._signature = signature
                try:
                    self._context = self.tls.context()
                    log.info("Reloaded TLS certificates")
                except ConfigError as e:
                    log.error("Keeping the previous TLS certificates: %s", e)
            return self._context


class _Response(ServerHandler):
    """wsgiref's response writer, speaking HTTP/1.1 and saying when it closes."""
    http_version = "1.1"
    keep_alive = False

    def cleanup_headers(self):
        super().cleanup_headers()
        # Without a length the body ends where the connection does.
        self.keep_alive = self.keep_alive and "Content-Length" in self.headers
        if not self.keep_alive:
            self.headers["Connection"] = "close"

    def handle_error(self):
        self.keep_alive = False          # the response may be cut short
        super().handle_error()


class _Handler(WSGIRequestHandler):
    """wsgiref's handler, looped while an HTTP/1.1 client keeps the connection.

    Prometheus keeps its connection to a target between scrapes; answering
    each scrape on it saves the connect, a thread and the close.
    """
    protocol_version = "HTTP/1.1"      # parse_request keeps 1.1 connections open unless asked to close
    disable_nagle_algorithm = True     # or a kept-alive response waits ~40 ms for a delayed ACK
    wbufsize = 64 * 1024               # status line and headers in one segment with the body
    timeout = IO_TIMEOUT

    def handle(self):
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection:
            self.connection.settimeout(KEEPALIVE_TIMEOUT)
            self.handle_one_request()

    def handle_one_request(self):
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except OSError:                  # an idle connection timed out, or the client went away
            self.close_connection = True
            return
        self.connection.settimeout(IO_TIMEOUT)
        if len(self.raw_requestline) > 65536:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(414)
            self.close_connection = True
            return
        if not self.parse_request():     # an error was sent, or the client closed
            self.close_connection = True
            return
        response = _Response(self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=False)
        response.request_handler = self  # wsgiref logs through it
        # HEAD: wsgiref writes the body anyway, so the connection cannot carry another request.
        response.keep_alive = (not self.close_connection and self.request_version == "HTTP/1.1"
                               and self.command != "HEAD")
        response.run(self.server.get_app())
        self.wfile.flush()
        if not response.keep_alive:
            self.close_connection = True

    def handle_expect_100(self):
        ok = super().handle_expect_100()
        self.wfile.flush()               # the client waits for the 100 before its body
        return ok

    def log_message(self, fmt, *args):   # access logs only at debug level
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", self.address_string(), fmt % args)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops connections when several
    # Prometheus servers (or a burst of scrapers) connect at once.
    request_queue_size = 128

    def __init__(self, address, family, app, tls_contexts=None):
        self.address_family, self.tls = family, tls_contexts
        self._connection_threads = CachedThreads("http")
        super().__init__(address, _Handler)
        self.set_app(app)

    def process_request(self, request, client_address):
        # A thread per connection as ThreadingMixIn does, but reused: a new
        # thread costs about a tenth of a scrape.
        self._connection_threads.run(self.process_request_thread, request, client_address)

    def server_bind(self):
        if self.address_family == socket.AF_INET6:     # "::" also accepts IPv4
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        socketserver.TCPServer.server_bind(self)
        # HTTPServer.server_bind would resolve the host name (a DNS lookup at startup).
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]
        self.setup_environ()

    def finish_request(self, request, client_address):
        """Runs in the connection's own thread: the TLS handshake belongs here."""
        if self.tls is None:
            return super().finish_request(request, client_address)
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            conn = self.tls.get().wrap_socket(request, server_side=True)
        except (OSError, ValueError) as e:   # ssl.SSLError is an OSError
            log.debug("TLS handshake with %s failed: %s", client_address[0], e)
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            self.shutdown_request(conn)

    def handle_error(self, request, client_address):
        # A client that goes away mid-request is not worth a traceback on stderr.
        log.debug("Error serving %s", client_address[0], exc_info=True)


def _resolve(host, port, listen_address):
    if not host:
        return (socket.AF_INET6, ("::", port)) if socket.has_dualstack_ipv6() else (socket.AF_INET, ("", port))
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0,
                                                      socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise ConfigError(f"--web.listen-address: cannot resolve {listen_address}: {e.strerror}") from None
    return family, sockaddr


def make_server(listen_address, app, web_config=None):
    """A threading WSGI server for ``app`` with the web config applied.

    Returns an object with serve_forever(), shutdown(), server_close() and
    server_address. Raises ConfigError if the address is bad or in use.
    """
    host, port = parse_listen_address(listen_address)
    tls = None
    if web_config is not None:
        if web_config.users:
            app = BasicAuth(app, web_config.users)
        if web_config.headers:
            app = with_headers(app, web_config.headers)
        if web_config.tls is not None:
            tls = _TLSContexts(web_config.tls)
    family, address = _resolve(host, port, listen_address)
    try:
        return _Server(address, family, app, tls)
    except OSError as e:
        raise ConfigError(f"--web.listen-address: cannot listen on {listen_address}: "
                          f"{e.strerror or e}") from None
