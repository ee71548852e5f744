"""A deadline for a whole HTTP response, for the cloud SDKs' requests sessions.

requests' timeout is per socket read: an API that drips one byte a second
never times out, and the refresh stalls while imaging_source_up stays 1.
DeadlineAdapter is a requests transport adapter (mounted on the Session the
SDK already uses; nothing in the SDK is patched) that:
- reads the body inside send(), so headers and body share one deadline;
- keeps the sockets its connections open (urllib3's ConnectionCls hook);
- when the deadline passes, shuts those sockets down, which ends the
  blocked read at once, and raises requests' ReadTimeout, which both SDK
  wrappers (keystoneauth, linode_api4's callers) report as a timeout.
One source uses one session from one thread, so every socket of the
adapter belongs to the request in progress.

It also bounds each answer's size (MAX_RESPONSE_BYTES): the largest real
page (1,000 Glance images or Nova servers) is a few MB, and a 100 MB
answer would otherwise be held and decoded whole (311 MB peak).
"""
from __future__ import annotations

import _socket
import socket
import threading
import weakref

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .api import Malformed


MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class ResponseTooLarge(requests.exceptions.ConnectionError, Malformed):
    """An answer past MAX_RESPONSE_BYTES; the connection is dropped (a ConnectionError,
    so both SDKs' wrappers treat it as a failed request, not a bug; Malformed, so
    exporter.sources.api reports it as such for every provider)."""


class DeadlineAdapter(HTTPAdapter):
    def __init__(self, *args, deadline: float = 30.0, **kwargs):
        self.deadline = deadline
        self._sockets: "weakref.WeakSet[socket.socket]" = weakref.WeakSet()
        super().__init__(*args, **kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        sockets = self._sockets

        class Conn(HTTPConnection):
            def connect(self):
                super().connect()
                sockets.add(self.sock)

        class TLSConn(HTTPSConnection):
            def connect(self):
                super().connect()
                sockets.add(self.sock)

        class Pool(HTTPConnectionPool):
            ConnectionCls = Conn

        class TLSPool(HTTPSConnectionPool):
            ConnectionCls = TLSConn

        self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": TLSPool}

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_sockets", None)
        return state

    def __setstate__(self, state):
        self._sockets = weakref.WeakSet()
        super().__setstate__(state)

    def _expire(self, expired: threading.Event):
        expired.set()
        for s in list(self._sockets):
            try:
                # The plain socket's shutdown, also under TLS: the SSL object stays
                # intact for the reading thread, which sees the connection end.
                _socket.socket.shutdown(s, socket.SHUT_RDWR)
            except (OSError, TypeError, ValueError):
                pass

    def send(self, request, stream=False, timeout=None, **kwargs):
        expired = threading.Event()
        timer = threading.Timer(self.deadline, self._expire, (expired,))
        timer.daemon = True
        timer.start()
        try:
            response = super().send(request, stream=True, timeout=timeout, **kwargs)
            if not stream:
                _read_bounded(response, request)    # the body, under the same deadline
            return response
        except Exception:
            if expired.is_set():
                raise requests.exceptions.ReadTimeout(
                    f"no complete answer within {self.deadline:g}s", request=request) from None
            raise
        finally:
            timer.cancel()


def _read_bounded(response, request) -> None:
    """Read the body now, at most MAX_RESPONSE_BYTES, as requests' ``content`` would."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        response.close()
        raise ResponseTooLarge(f"the answer is {int(declared):,} bytes, more than {MAX_RESPONSE_BYTES:,}",
                               request=request)
    chunks, total = [], 0
    for chunk in response.iter_content(1 << 20):
        total += len(chunk)
        if total > MAX_RESPONSE_BYTES:
            response.close()
            raise ResponseTooLarge(f"the answer is more than {MAX_RESPONSE_BYTES:,} bytes", request=request)
        chunks.append(chunk)
    # What Response.content stores once read (requests has no public setter).
    response._content = b"".join(chunks)
