"""The /metrics body: host and health metrics rendered per scrape, cloud
metrics rendered once per refresh and served from a cache.

A large cloud account is tens of thousands of series (two per image);
writing them takes up to a second, and they only change when a poller
refreshes. So the poller thread renders them, in each
exposition format that has been asked for, right after a refresh, and a
scrape only writes bytes. Gzip members concatenate (RFC 1952), so the cloud
part is compressed once too. Text comes from exporter.render.
"""
from __future__ import annotations

import logging
import threading
import time
import zlib
from functools import lru_cache
from typing import Dict, List, NamedTuple, Optional, Tuple

# prometheus_client is imported where used: a `--once` host render never needs it.

from .models import RenderStats
from .render import EOF, OPENMETRICS, Format, family_parts, negotiate, render

log = logging.getLogger(__name__)

_GZIP_LEVEL = 6          # level 9 costs twice the time for a few per cent
# A plain body is re-rendered after refreshes only while plain scrapes keep
# coming: one curl must not make the exporter hold 23 MiB more for good.
PLAIN_KEEP_SECONDS = 600.0


# A piece's plain text (while plain is kept, else None) and its gzip member: a slice of the
# last gzip body, so the members are not a second copy of it.
_Entry = Tuple[Optional[bytes], "bytes | memoryview"]


def _gzip_member(data: bytes) -> bytes:
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)    # 31: gzip framing
    return compressor.compress(data) + compressor.flush()


class _Body:
    """A cloud body as it is written: gzip members of new text, pieces' members between them.

    ``header`` is the current family's HELP/TYPE, written before its first
    non-empty text or piece (a family whose pieces are all empty is not written)."""

    def __init__(self, plain: bool):
        self.plain = plain
        self.header = ""
        self.gz: list = []
        self.kept: List[bytes] = []
        self.placed: List[Tuple[object, int, int]] = []     # (piece key, offset in the body, length)
        self._size = 0
        self._compressor = None

    def text(self, text: str) -> None:
        if text:
            if self.header:
                self._write(self.header)
                self.header = ""
            self._write(text)

    def piece(self, key, entry: "_Entry") -> None:
        if entry[1]:
            if self.header:
                self._write(self.header)
                self.header = ""
            self._end_member()
            self.placed.append((key, self._size, len(entry[1])))
            self._append(entry[1])
            if self.plain:
                self.kept.append(entry[0])

    def _append(self, data) -> None:
        self.gz.append(data)
        self._size += len(data)

    def _write(self, text: str) -> None:
        data = text.encode("utf-8")
        if self._compressor is None:
            self._compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)    # 31: gzip framing
        self._append(self._compressor.compress(data))
        if self.plain:
            self.kept.append(data)

    def _end_member(self) -> None:
        if self._compressor is not None:
            self._append(self._compressor.flush())
            self._compressor = None

    def finish(self, entries: Dict[object, "_Entry"]) -> Tuple[Optional[Tuple[bytes, ...]], bytes]:
        """The body (plain chunks or None, gzip); each placed piece's entry now points into it."""
        self._end_member()
        gz = b"".join(self.gz)
        view = memoryview(gz)
        for key, offset, length in self.placed:
            entries[key] = (entries[key][0], view[offset:offset + length])
        # The plain body stays in chunks: joined, it would exist twice while joining.
        return (tuple(self.kept) if self.plain else None), gz


class Held(NamedTuple):
    """What CloudCache keeps for one content type."""
    plain: Optional[bytes]      # the plain body, or None while only gzip is asked for
    gzip: bytes
    pieces: int                 # reusable pieces (exporter.pieces) kept for the next render
    pieces_with_plain: int      # of those, how many keep their plain text too


class CloudCache:
    """Rendered cloud metrics per content type, refreshed by the pollers.

    Prometheus asks for gzip, so only the gzip body is kept unless a client
    has asked for the same format uncompressed in the last PLAIN_KEEP_SECONDS:
    at 50k images the plain text is 23 MiB and its gzip about 1. The render
    goes family by family into the compressor, so the whole text never exists
    at once. Pieces of families (runs of images, servers, disks: exporter.pieces)
    are kept by key, text and gzip member each, and only those whose key
    changed since the last refresh are rendered again; the gzip body is the
    members one after the other (RFC 1952 lets members concatenate).
    """

    def __init__(self, pollers, clock=time.monotonic):
        from .collectors.cloud import CloudCollector    # not imported by host mode (--once)
        self.collector = CloudCollector(pollers)
        self._wanted: Dict[str, Tuple[Format, bool]] = {}       # content type -> (format, plain asked)
        self._plain_asked: Dict[str, float] = {}               # content type -> last plain scrape
        self._clock = clock
        # content type -> (plain body as chunks or None, gzip body)
        self._cache: Dict[str, Tuple[Optional[Tuple[bytes, ...]], bytes]] = {}
        self._lock = threading.Lock()          # guards the dicts
        self._render_lock = threading.Lock()   # one render at a time
        self.stats = RenderStats()             # for the health collector
        # per content type: (family name, piece key) -> its text as rendered last time, only
        # under _render_lock. reuse=False renders everything (bench/cloud_refresh.py's "before").
        self._pieces: Dict[str, Dict[object, _Entry]] = {}
        self.reuse = True
        self.pieces_rendered: Dict[str, Tuple[int, int]] = {}   # content type -> (rendered, of) last time

    def _render(self, fmt: Format, plain: bool, families=None) -> Tuple[Optional[Tuple[bytes, ...]], bytes]:
        """The cloud part in one format; pieces whose key came back are not rendered again."""
        families = self.collector.families() if families is None else families
        old = self._pieces.get(fmt.content_type, {})
        new: Dict[object, _Entry] = {}
        rendered = 0
        body = _Body(plain)
        for header, parts in family_parts([families], fmt.kind):
            body.header = header
            for part in parts:
                if type(part) is str:
                    body.text(part)
                    continue
                key, make_text = part
                if not self.reuse:                      # everything rendered, one gzip stream, as before
                    body.text(make_text())
                    continue
                entry = new.get(key) or old.get(key)
                if entry is None or (plain and entry[0] is None):
                    rendered += 1
                    data = make_text().encode("utf-8")
                    entry = (data if plain else None, _gzip_member(data) if data else b"")
                elif not plain and entry[0] is not None:
                    entry = (None, entry[1])            # plain scrapes stopped: the text goes
                new[key] = entry
                body.piece(key, entry)
        body.header = ""
        if fmt.kind == OPENMETRICS:
            body.text(EOF)
        out = body.finish(new)
        self._pieces[fmt.content_type] = new
        self.pieces_rendered[fmt.content_type] = (rendered, len(new))
        return out

    def refresh(self) -> None:
        """Re-render every format asked for so far (called after a successful refresh)."""
        with self._render_lock:
            with self._lock:
                now = self._clock()
                for content_type, (fmt, plain) in list(self._wanted.items()):
                    if plain and now - self._plain_asked.get(content_type, now) > PLAIN_KEEP_SECONDS:
                        self._wanted[content_type] = (fmt, False)
                wanted = dict(self._wanted)
            started = time.perf_counter()
            try:
                families = self.collector.families()
                for content_type, (fmt, plain) in wanted.items():
                    rendered = self._render(fmt, plain, families)
                    with self._lock:
                        self._cache[content_type] = rendered
            except Exception:  # noqa: BLE001 - keep serving the previous rendering, and say so
                log.error("rendering the cloud metrics failed; serving the previous rendering")
                self.stats.ok = False
                raise
            self.stats.last_duration, self.stats.ok = time.perf_counter() - started, True

    def get(self, fmt: Format, want_gzip: bool) -> Tuple[bytes, ...]:
        """The cloud part's chunks in this format, gzipped or plain."""
        if not want_gzip:
            self._plain_asked[fmt.content_type] = self._clock()
        hit = self._lookup(fmt, want_gzip)
        if hit is not None:
            return hit
        # First scrape in this format (or first without gzip): render now, and
        # after every refresh from now on.
        with self._render_lock:
            hit = self._lookup(fmt, want_gzip)
            if hit is not None:
                return hit
            with self._lock:
                _, plain = self._wanted.get(fmt.content_type, (fmt, False))
                self._wanted[fmt.content_type] = (fmt, plain or not want_gzip)
                plain = plain or not want_gzip
            rendered = self._render(fmt, plain)
            with self._lock:
                self._cache[fmt.content_type] = rendered
            return (rendered[1],) if want_gzip else rendered[0]

    def held(self) -> Dict[str, "Held"]:
        """What the cache keeps in memory, per content type (read-only; for tests and debugging)."""
        with self._lock:
            cache = dict(self._cache)
        with self._render_lock:
            pieces = {ct: sum(1 for e in entries.values() if e[0] is not None) for ct, entries in self._pieces.items()}
            counts = {ct: len(entries) for ct, entries in self._pieces.items()}
        return {ct: Held(b"".join(plain) if plain is not None else None, gz, counts.get(ct, 0), pieces.get(ct, 0))
                for ct, (plain, gz) in cache.items()}

    def holds_gzip(self, fmt: Format) -> bool:
        """Whether a gzip scrape in ``fmt`` is answered from what is held, rendering nothing
        and waiting on no render: once a format is rendered, each refresh replaces its gzip
        body and none is ever dropped (plain text is, PLAIN_KEEP_SECONDS after its last ask)."""
        return self._lookup(fmt, True) is not None

    def _lookup(self, fmt: Format, want_gzip: bool) -> Optional[Tuple[bytes, ...]]:
        with self._lock:
            hit = self._cache.get(fmt.content_type)
        if hit is None:
            return None
        return (hit[1],) if want_gzip else hit[0]


MAX_NAMES = 64       # name[] parameters honoured in one scrape
SMALL_BODY = 32 * 1024   # a host-only body up to this size is not gzipped (issue 19)


class _Only:
    """The families of one FamilySet that a name[] scrape asked for."""

    def __init__(self, families, names):
        self.families, self.names = families, names

    def rows(self):
        for spec, rows in self.families.rows():
            # A prometheus_client family (process_*) has no spec: it carries its own name,
            # without the "_total" of a counter.
            name = spec.name if spec is not None else rows.name
            wanted = {name, name[:-len("_total")] if name.endswith("_total") else name + "_total",
                      name + "_bucket", name + "_count", name + "_sum"}
            if wanted & self.names:
                yield spec, rows


@lru_cache(maxsize=64)      # asked twice a scrape (Exporter.wsgi_app's quick(), then render), same few headers
def _gzip_accepted(accept_encoding: Optional[str]) -> bool:
    if not accept_encoding:
        return False
    from prometheus_client.exposition import gzip_accepted
    return gzip_accepted(accept_encoding)


class Exposition:
    """Builds the /metrics response from the per-scrape collector and the cloud cache."""

    def __init__(self, collector, cloud: Optional[CloudCache]):
        self.collector = collector           # host and health: rendered per scrape
        self.cloud = cloud

    def render(self, accept: Optional[str] = None, accept_encoding: Optional[str] = None,
               query: str = "") -> Tuple[list, List[bytes]]:
        """(headers, body chunks). The chunks are written one after the other:
        joining them would copy the cached cloud part (megabytes) per scrape."""
        fmt = negotiate(accept)
        if query:
            from urllib.parse import parse_qs       # a query is rare (name[]); --once never has one
            params = parse_qs(query)
        else:
            params = {}
        want_gzip = _gzip_accepted(accept_encoding)
        headers = [("Content-Type", fmt.content_type)]
        if want_gzip:
            headers.append(("Content-Encoding", "gzip"))

        def packed(body: bytes) -> bytes:
            return _gzip_member(body) if want_gzip else body

        if "name[]" in params:
            # A filtered scrape (rare, for debugging): the same renderer over the
            # families asked for, at most MAX_NAMES of them.
            names = frozenset(params["name[]"][:MAX_NAMES])
            parts = list(self.collector.family_sets()) + ([self.cloud.collector.families()] if self.cloud else [])
            body = render([_Only(p, names) for p in parts], fmt.kind)
            return headers, [packed(body + (EOF.encode() if fmt.kind == OPENMETRICS else b""))]
        dynamic = render(self.collector.family_sets(), fmt.kind)
        if fmt.kind == OPENMETRICS and self.cloud is None:
            dynamic += EOF.encode()
        if self.cloud is None:
            if want_gzip and len(dynamic) <= SMALL_BODY:
                # Sent as it is: compressing a host body cost more CPU at a 15 s interval (zlib's
                # 256 KiB state, cold) than the rest of the answer; a few KiB more on the wire.
                return headers[:1], [dynamic]
            return headers, [packed(dynamic)]
        return headers, [packed(dynamic), *self.cloud.get(fmt, want_gzip)]

    def answered_from_held(self, accept: Optional[str], accept_encoding: Optional[str], query: str) -> bool:
        """Whether answering renders only the per-scrape part (host, health) and reads the cloud
        part as held: no cloud, or a gzip scrape (as Prometheus sends) of a format rendered already,
        without a name[] filter (which renders the cloud families)."""
        if self.cloud is None:
            return True
        return not query and _gzip_accepted(accept_encoding) and self.cloud.holds_gzip(negotiate(accept))

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
