"""HTTP serving: prometheus_client's WSGI app behind a threading server.

The exporter-toolkit --web.config.file (TLS, client certificates, basic auth)
plugs in here.
"""
from __future__ import annotations

import logging
import socketserver
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server as _make_server

from .errors import ConfigError

log = logging.getLogger(__name__)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, fmt, *args):   # access logs only at debug level
        log.debug("%s %s", self.address_string(), fmt % args)


def parse_listen_address(addr):
    """":9847" -> ("", 9847); "127.0.0.1:9847"; "[::1]:9847"."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--web.listen-address: {addr!r} is not host:port, for example \":9847\"")
    return host.strip("[]"), int(port)


def make_server(listen_address, app, web_config=None):
    host, port = parse_listen_address(listen_address)
    try:
        return _make_server(host or "0.0.0.0", port, app,
                            server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    except OSError as e:
        raise ConfigError(f"--web.listen-address: cannot listen on {listen_address}: {e.strerror}") from None
