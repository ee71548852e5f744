"""Listening sockets and TLS certificates for exporter.web, and the answer to
a socket refused before aiohttp sees it.

--web.listen-address is parsed and bound here (":9847" listens on IPv6 and
IPv4 at once, as Go's net.Listen does), and the TLS context is rebuilt when
a certificate, key or CA file changes on disk, so that certificates can be
renewed without a restart (exporter-toolkit's behaviour).
"""
from __future__ import annotations

import contextlib
import logging
import socket
import threading

from .errors import ConfigError

log = logging.getLogger(__name__)


def parse_listen_address(addr):
    """":9847" -> ("", 9847); "127.0.0.1:9847"; "[::1]:9847"."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--web.listen-address: {addr!r} is not host:port, for example \":9847\"")
    return host.strip("[]"), int(port)


class TLSContexts:
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


def _resolve(host, port, listen_address):
    if not host:
        return (socket.AF_INET6, ("::", port)) if socket.has_dualstack_ipv6() else (socket.AF_INET, ("", port))
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0,
                                                      socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise ConfigError(f"--web.listen-address: cannot resolve {listen_address}: {e.strerror}") from None
    return family, sockaddr


def listen(listen_address: str) -> socket.socket:
    host, port = parse_listen_address(listen_address)
    family, address = _resolve(host, port, listen_address)
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and not host:       # "::" also accepts IPv4
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(address)
        s.listen(1024)
        s.setblocking(False)
    except OSError as e:
        s.close()
        raise ConfigError(f"--web.listen-address: cannot listen on {listen_address}: "
                          f"{e.strerror or e}") from None
    return s


def send_and_close(sock, data: bytes) -> None:
    """Answer and close; the request already received is read first, or the
    close would reset the connection before the client reads the answer."""
    try:
        with contextlib.suppress(OSError):
            sock.recv(65536)
        if data:
            sock.send(data)
            sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        sock.close()
