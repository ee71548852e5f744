"""One request on aiohttp: headers, basic auth, --web.max-requests, then the
WSGI app (landing page, health, /metrics) on a bounded thread pool.

The app stays WSGI: it is small, synchronous (a host scrape may wait on a
slow mount for up to mount_timeout) and tested on its own; here it is called
with a minimal environ and its chunks are written one after the other (the
cached cloud part is megabytes: never joined per scrape).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import io
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Optional

from aiohttp import web

from .web_auth import REALM, BasicAuth, basic_credentials

log = logging.getLogger(__name__)

QUICK = 0.002            # seconds the event loop waits in place for the app (see Handler._run)
WRITE_TIMEOUT = 60.0       # seconds to write one response to a client that does not read
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}
_ONE_WRITE = 256 * 1024


def _abort(request):
    transport = request.transport
    if transport is not None:
        transport.abort()


class Handler:
    def __init__(self, app, auth: Optional[BasicAuth] = None, headers: Optional[Dict[str, str]] = None,
                 max_requests: int = 64, scheme: str = "http"):
        self.app, self.auth, self.headers, self.scheme = app, auth, dict(headers or {}), scheme
        self.max_requests = max_requests          # 0: no limit
        self.in_flight = 0
        self.quick = getattr(app, "quick", None)
        # Rendering is CPU-bound under the GIL: more threads than this only add switching.
        self.pool = ThreadPoolExecutor(min(max_requests or 32, 32), thread_name_prefix="http")

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.auth is not None:
            self.auth.close()

    def _plain(self, status: int, text: str, **extra) -> web.Response:
        resp = web.Response(status=status, text=text, content_type="text/plain", charset="utf-8")
        resp.headers.update(extra)
        resp.headers.update(self.headers)
        return resp

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        conn = request.protocol
        conn.head_since = None           # the head is complete: its deadline is met
        conn.busy += 1
        try:
            return await self._handle(request)
        finally:
            conn.busy -= 1
            conn.served += 1
            conn.waiting_since = conn.serving.loop.time()
            conn.serving.request_done()

    async def _handle(self, request):
        if self.auth is not None:
            denied = await self._authenticate(request)
            if denied is not None:
                return denied
        if self.max_requests and self.in_flight >= self.max_requests:
            return self._plain(503, f"Too many concurrent requests ({self.max_requests}, --web.max-requests); "
                                    "retry\n", **{"Retry-After": "1"})
        self.in_flight += 1
        try:
            try:
                status, headers, chunks = await self._run(_environ(request, self.scheme))
            except Exception as e:  # noqa: BLE001 - one line per failed request, the traceback at debug
                log.error("error serving %s %s: %s: %s", request.method, request.path, type(e).__name__, e)
                log.debug("traceback", exc_info=True)
                resp = self._plain(500, "Internal Server Error\n")
                resp.force_close()
                return resp
            code, _, reason = status.partition(" ")
            length = sum(len(c) for c in chunks)
            if length <= _ONE_WRITE:       # host mode, health, landing: headers and body in one write
                resp = web.Response(status=int(code), reason=reason or None,
                                    body=chunks[0] if len(chunks) == 1 else b"".join(chunks))
            else:                          # the cached cloud part: megabytes, never joined
                resp = web.StreamResponse(status=int(code), reason=reason or None)
                resp.content_length = length
            for k, v in headers:
                if k.lower() not in _HOP_BY_HOP:
                    resp.headers.add(k, v)
            resp.headers.update(self.headers)
            if isinstance(resp, web.Response):
                return resp
            # A client that does not read is cut off after WRITE_TIMEOUT (a timer, not
            # wait_for: that would cost a task per response).
            timer = request.protocol.serving.loop.call_later(WRITE_TIMEOUT, _abort, request)
            try:
                await resp.prepare(request)
                if request.method != "HEAD":
                    for chunk in chunks:
                        await resp.write(chunk)
                await resp.write_eof()
            finally:
                timer.cancel()
            return resp
        finally:
            self.in_flight -= 1

    async def _run(self, environ):
        """The app on the pool. A typical scrape takes well under a millisecond: the loop
        waits up to QUICK for it in place, which saves the wake-up through the event
        loop's self-pipe (about 0.1 ms a scrape, docs/performance.md); a slower call
        (a stuck mount, a big first render) is awaited without blocking the loop.

        An app whose ``quick(environ)`` says the call cannot wait on anything (host
        mode with only local block-device filesystems) is called on the loop itself:
        the hand-off to a pool thread and back was ~0.17 ms of CPU a scrape at a 15 s
        interval, more than the scrape's own work (issue 19)."""
        if self.quick is not None and self.quick(environ):
            return self._call(environ)
        fut = self.pool.submit(self._call, environ)
        try:
            return fut.result(timeout=QUICK)
        except concurrent.futures.TimeoutError:
            return await asyncio.wrap_future(fut)

    async def _authenticate(self, request) -> Optional[web.Response]:
        creds = basic_credentials(request.headers.get("Authorization"))
        if creds is not None and self.auth.remembered(*creds):
            return None
        if creds is not None:
            if not self.auth.try_reserve():
                return self._plain(503, "Too many logins being checked; retry\n", **{"Retry-After": "1"})
            try:
                ok = await asyncio.get_running_loop().run_in_executor(self.auth.pool, self.auth.check_slow, *creds)
            finally:
                self.auth.release()
            if ok:
                return None
        return self._plain(401, "Unauthorized\n", **{"WWW-Authenticate": f'Basic realm="{REALM}"'})

    def _call(self, environ):
        out = {}

        def start_response(status, headers, exc_info=None):
            out["status"], out["headers"] = status, headers
            return out.setdefault("written", []).append
        result = self.app(environ, start_response)
        try:
            chunks = out.get("written", []) + [c for c in result if c]
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return out["status"], out["headers"], chunks


def _environ(request, scheme: str) -> dict:
    host, port = (request.transport.get_extra_info("sockname") or ("", 0))[:2]
    env = {
        "REQUEST_METHOD": request.method,
        "PATH_INFO": request.path,
        "QUERY_STRING": request.raw_path.partition("?")[2],      # raw, as WSGI wants it
        "SERVER_PROTOCOL": f"HTTP/{request.version.major}.{request.version.minor}",
        "SERVER_NAME": str(host), "SERVER_PORT": str(port),
        "REMOTE_ADDR": request.remote or "",
        "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        "CONTENT_LENGTH": "",
        "wsgi.version": (1, 0), "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(b""),      # no endpoint takes a body; aiohttp discards it
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for k, v in request.headers.items():
        key = "HTTP_" + k.upper().replace("-", "_")
        if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            continue
        env[key] = f"{env[key]},{v}" if key in env else v
    return env
