"""The /metrics body: host and health metrics rendered per scrape, cloud
metrics rendered once per refresh and served from a cache.

A large cloud account is tens of thousands of series (two per image);
formatting them takes prometheus_client most of a second, and they only
change when a poller refreshes. So the poller thread renders them, in each
exposition format that has been asked for, right after a refresh, and a
scrape only joins bytes. Gzip members concatenate (RFC 1952), so the cloud
part is compressed once too.
"""
from __future__ import annotations

import gzip
import logging
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector

from .collectors import cloud as cloud_mod

log = logging.getLogger(__name__)

_EOF = b"# EOF\n"        # OpenMetrics' terminator: only once, at the very end
_GZIP_LEVEL = 6          # level 9 costs twice the time for a few per cent


class CloudCollector(Collector):
    def __init__(self, pollers):
        self.pollers = pollers

    def describe(self):
        return [spec.family() for spec in cloud_mod.SPECS]

    def collect(self):
        return cloud_mod.cloud_families(self.pollers)


class CloudCache:
    """Rendered cloud metrics per content type, refreshed by the pollers."""

    def __init__(self, pollers):
        self.collector = CloudCollector(pollers)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self._formats: Dict[str, Callable] = {}                 # content type -> encoder
        self._cache: Dict[str, Tuple[bytes, Optional[bytes]]] = {}
        self._lock = threading.Lock()          # guards the dicts
        self._render_lock = threading.Lock()   # one render at a time
        self.last_duration = 0.0
        self.ok = True

    def _render(self, encoder) -> Tuple[bytes, bytes]:
        body = encoder(self.registry)
        return body, gzip.compress(body, _GZIP_LEVEL)

    def refresh(self) -> None:
        """Re-render every format asked for so far (called after a successful refresh)."""
        with self._render_lock:
            with self._lock:
                formats = dict(self._formats)
            started = time.perf_counter()
            try:
                rendered = {ct: self._render(enc) for ct, enc in formats.items()}
            except Exception:  # noqa: BLE001 - keep serving the previous rendering
                log.exception("rendering the cloud metrics failed; serving the previous rendering")
                self.ok = False
                return
            self.last_duration, self.ok = time.perf_counter() - started, True
            with self._lock:
                self._cache.update(rendered)

    def get(self, encoder, content_type) -> Tuple[bytes, bytes]:
        with self._lock:
            hit = self._cache.get(content_type)
        if hit is not None:
            return hit
        # First scrape in this format: render now, and after every refresh from now on.
        with self._render_lock:
            with self._lock:
                hit = self._cache.get(content_type)
                if hit is not None:
                    return hit
                self._formats[content_type] = encoder
            rendered = self._render(encoder)
            with self._lock:
                self._cache[content_type] = rendered
            return rendered


class Exposition:
    """Builds the /metrics response from the per-scrape registry and the cloud cache."""

    def __init__(self, collector: Collector, cloud: Optional[CloudCache]):
        self.collector = collector           # host and health: rendered per scrape
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(collector)
        self.cloud = cloud

    def render(self, accept: Optional[str] = None, accept_encoding: Optional[str] = None,
               query: str = "") -> Tuple[list, List[bytes]]:
        """(headers, body chunks). The chunks are written one after the other:
        joining them would copy the cached cloud part (megabytes) per scrape."""
        encoder, content_type = choose_encoder(accept)
        params = parse_qs(query or "")
        want_gzip = gzip_accepted(accept_encoding or "")
        headers = [("Content-Type", content_type)]
        if want_gzip:
            headers.append(("Content-Encoding", "gzip"))
        if "name[]" in params:
            # A filtered scrape (rare, for debugging): render everything it asks for now.
            combined = CollectorRegistry(auto_describe=True)
            for c in [self.collector] + ([self.cloud.collector] if self.cloud else []):
                combined.register(c)
            body = encoder(combined.restricted_registry(params["name[]"]))
            return headers, [gzip.compress(body, _GZIP_LEVEL) if want_gzip else body]
        dynamic = encoder(self.registry)
        if self.cloud is None:
            return headers, [gzip.compress(dynamic, _GZIP_LEVEL) if want_gzip else dynamic]
        cloud_body, cloud_gz = self.cloud.get(encoder, content_type)
        if dynamic.endswith(_EOF) and cloud_body.endswith(_EOF):
            dynamic = dynamic[:-len(_EOF)]
        if want_gzip:
            return headers, [gzip.compress(dynamic, _GZIP_LEVEL), cloud_gz]
        return headers, [dynamic, cloud_body]

    def raw(self, accept: Optional[str] = None, accept_encoding: Optional[str] = None, query: str = "") -> bytes:
        """The whole body as one bytes object (for --once, tests and benchmarks)."""
        return b"".join(self.render(accept, accept_encoding, query)[1])

    def wsgi_app(self):
        def app(environ, start_response):
            method = environ.get("REQUEST_METHOD", "GET")
            if method == "OPTIONS":
                start_response("200 OK", [("Allow", "OPTIONS,GET")])
                return [b""]
            if method not in ("GET", "HEAD"):
                start_response("405 Method Not Allowed", [("Allow", "OPTIONS,GET")])
                return [f"# HTTP 405 Method Not Allowed: {method}; use OPTIONS or GET\n".encode()]
            headers, body = self.render(environ.get("HTTP_ACCEPT"), environ.get("HTTP_ACCEPT_ENCODING"),
                                        environ.get("QUERY_STRING", ""))
            length = sum(len(chunk) for chunk in body)
            start_response("200 OK", headers + [("Content-Length", str(length))])
            return body
        return app
