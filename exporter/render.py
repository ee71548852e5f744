"""Exposition text for the exporter's own families, written directly.

prometheus_client's encoders build a Sample with a label dict per series,
then validate and escape every metric and label name per line by regular
expression. Our names are constants, checked once in collectors/spec.py,
so here each family's line template (label names already sorted, as the
encoders sort them) is built once and a series costs one string format.
That is most of a host scrape's own time and 3-4x less rendering of a large
cloud account.

The output is byte-identical to prometheus_client's encoders for the
formats it handles (tests/test_render.py checks that); any other
negotiation (an escaping scheme that rewrites names, a newer OpenMetrics
version) is rendered by prometheus_client itself.
"""
from __future__ import annotations

import itertools
import math
import re
from functools import lru_cache
from typing import Callable, Iterable, Iterator, Optional, Tuple

from .pieces import Piece

# prometheus_client is imported where it is used (negotiation, the histogram, the
# encoders for tests): `--once` renders host metrics without it (issue 19: importing
# the library is most of a one-shot's cost).

TEXT, OPENMETRICS = "text", "openmetrics"
EOF = "# EOF\n"          # OpenMetrics' terminator: once, at the very end of a body

# Escaping schemes that leave names valid in the legacy character set, which
# all of ours are, unchanged; "dots" and "values" rewrite underscores.
_NAME_PRESERVING = ("underscores", "allow-utf-8")


class Format:
    """What a scrape asked for: the content type, ``kind`` (the format this module
    writes) and prometheus_client's encoder for it (imported when first asked)."""
    __slots__ = ("content_type", "kind")

    def __init__(self, content_type: str, kind: str):
        self.content_type, self.kind = content_type, kind

    @property
    def encoder(self) -> Callable:
        if self.kind == TEXT:
            from prometheus_client.exposition import generate_latest
            return generate_latest
        from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
        return openmetrics_latest

    def __repr__(self):
        return f"Format({self.content_type!r}, {self.kind!r})"


def _format(content_type: str) -> "Format":
    mime = content_type.split(";")[0]
    return Format(content_type, TEXT if mime == "text/plain" else OPENMETRICS)


# The only formats served, so the only cloud cache entries there can be.
FORMATS = {f.content_type: f for f in map(_format, (
    "text/plain; version=0.0.4; charset=utf-8",
    "text/plain; version=1.0.0; charset=utf-8; escaping=underscores",
    "text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8",
    "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores",
    "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8",
))}
DEFAULT_FORMAT = FORMATS["text/plain; version=0.0.4; charset=utf-8"]
_OPENMETRICS_FALLBACK = FORMATS["application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"]


@lru_cache(maxsize=64)
def negotiate(accept: Optional[str]) -> Format:
    """prometheus_client's content negotiation, mapped onto FORMATS.

    Whatever a client sends, the answer is one of FORMATS: an OpenMetrics
    version we do not write falls back to 1.0.0, an escaping scheme that
    would rewrite names (ours are all legacy names) or anything the library
    cannot parse falls back to the classic text format (OpenMetrics asked
    for with such a scheme: OpenMetrics 1.0.0, underscores). The Content-Type
    says what was served."""
    if not accept:
        return DEFAULT_FORMAT              # what choose_encoder("") gives, without importing it
    from prometheus_client.exposition import choose_encoder
    try:
        _, content_type = choose_encoder(accept or "")
    except Exception:  # noqa: BLE001 - e.g. "text/plain; version=x" raises TypeError inside the library
        return DEFAULT_FORMAT
    if content_type in FORMATS:
        return FORMATS[content_type]
    mime, *params = [p.strip() for p in content_type.split(";")]
    if mime == "application/openmetrics-text":
        return _OPENMETRICS_FALLBACK
    return DEFAULT_FORMAT


# Label values come from cloud APIs: any string must render as valid UTF-8
# exposition text. Lone surrogates (JSON "\ud800") cannot be encoded at all,
# control characters other than the escaped newline are replaced, and a
# value is cut at MAX_LABEL_VALUE characters.
MAX_LABEL_VALUE = 1024
_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f\ud800-\udfff]")


def clean_label_value(v: str) -> str:
    if len(v) > MAX_LABEL_VALUE:
        v = v[:MAX_LABEL_VALUE - 1] + "\u2026"
    return _UNSAFE.sub("\ufffd", v)


_INF, _MINUS_INF = float("inf"), float("-inf")


def floatToGoString(d) -> str:  # noqa: N802 - prometheus_client.utils' name and output
    """prometheus_client.utils.floatToGoString, here so that rendering needs no import of the
    library; tests/test_render.py checks the bodies byte for byte against its encoders."""
    d = float(d)
    if d == _INF:
        return "+Inf"
    if d == _MINUS_INF:
        return "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:        # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def _escape_value(v) -> str:
    # The same escaping for label values in both formats.
    v = str(v)
    if not (v.isascii() and v.isprintable()) or len(v) > MAX_LABEL_VALUE:
        v = clean_label_value(v)
    if "\\" in v or '"' in v or "\n" in v:
        v = v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return v


PREFIX_CACHE = 512       # series per family whose line prefix is kept


class FamilyText:
    """The HELP/TYPE header and the line template of one family in one format."""

    def __init__(self, spec, kind: str):
        name = spec.name
        # Counters: prometheus_client names the family without "_total"; the
        # text format puts "_total" back on HELP and TYPE, OpenMetrics does not.
        family = name[:-len("_total")] if spec.type == "counter" and name.endswith("_total") else name
        doc = spec.help.replace("\\", r"\\").replace("\n", r"\n")
        meta = name if kind == TEXT else family
        if kind == OPENMETRICS:           # OpenMetrics escapes quotes in HELP too
            doc = doc.replace('"', r'\"')
        self.header = f"# HELP {meta} {doc}\n# TYPE {meta} {spec.type}\n"
        self.order = sorted(range(len(spec.labels)), key=lambda i: spec.labels[i])
        if spec.labels:
            inner = ",".join(f'{spec.labels[i]}="%s"' for i in self.order)
            self.prefix_template = f"{name}{{{inner}}} "
        else:
            self.prefix_template = f"{name} "
        # label values -> the line up to its value: a host scrape writes the same few
        # series every time, and escaping their label values was most of its rendering.
        self._prefixes = {}
        # (rows, text) of the last render of a small family: limits, host_info, disk sizes,
        # database counts, build info repeat scrape after scrape (issue 19). Equal rows give
        # equal text, 0.0 and -0.0 aside (equal values to Prometheus too).
        self.last = None

    def lines(self, rows) -> Iterator[str]:
        prefixes, order, template = self._prefixes, self.order, self.prefix_template
        for labels, value in rows:
            try:
                prefix = prefixes[labels]
            except (KeyError, TypeError):      # not seen yet, or not hashable (a list)
                prefix = template % tuple([_escape_value(labels[i]) for i in order])
                # Bounded (a cloud family has 100k series: those are rendered once per refresh
                # anyway), and only all-string label values: 1 and 1.0 are equal keys.
                if (len(prefixes) < PREFIX_CACHE and type(labels) is tuple
                        and all(type(v) is str for v in labels)):
                    prefixes[labels] = prefix
            yield prefix + floatToGoString(value) + "\n"


@lru_cache(maxsize=None)
def family_text(spec, kind: str) -> FamilyText:
    return FamilyText(spec, kind)


class _One:
    """A registry of one prometheus_client family, for its encoder."""

    def __init__(self, family):
        self.family = family

    def collect(self):
        return [self.family]


CHUNK_LINES = 2048   # lines per chunk: a 50k-series family is never one string


def family_chunks(families: Iterable, kind: str) -> Iterator[str]:
    """The text of each non-empty family in chunks of at most CHUNK_LINES lines, without EOF.

    ``families`` are collectors.spec.FamilySet objects; a family that holds
    prometheus_client objects (the histogram) is rendered by the library.
    """
    for fams in families:
        for spec, rows in fams.rows():
            if isinstance(rows, list):
                ft = family_text(spec, kind)
                if len(rows) <= SAME_ROWS_MAX:
                    yield _small_family(ft, rows)
                    continue
                batches = _batches(ft.lines(rows))
                yield ft.header + next(batches, "")
                yield from batches
            elif kind == TEXT:
                from prometheus_client.exposition import generate_latest
                yield generate_latest(_One(rows)).decode("utf-8")
            else:
                from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
                yield openmetrics_latest(_One(rows))[:-len(EOF)].decode("utf-8")


def family_parts(families: Iterable, kind: str) -> Iterator[Tuple[str, Iterator]]:
    """For exporter.exposition.CloudCache: each family's HELP/TYPE header and its parts.

    A part is text (up to CHUNK_LINES rendered lines, never empty) or, for a
    Piece (exporter.pieces), a ((family name, piece key), make_text) pair
    whose text may be empty. The header goes before the first non-empty
    part; a family whose parts are all empty is not written. Written out,
    the parts are family_chunks' text.
    """
    for fams in families:
        for spec, rows, pieced in fams.segments():
            if not isinstance(rows, list):
                if rows.samples:           # the histogram: the library writes its own header
                    yield "", family_chunks([_Fixed(spec, rows)], kind)
                continue
            ft = family_text(spec, kind)
            yield ft.header, (_pieced_parts(ft, spec.name, rows) if pieced else _batches(ft.lines(rows)))


def _batches(lines: Iterator[str]) -> Iterator[str]:
    while chunk := "".join(itertools.islice(lines, CHUNK_LINES)):
        yield chunk


def _pieced_parts(ft: FamilyText, name: str, rows: list):
    start, n = 0, len(rows)
    while start < n:
        row = rows[start]
        if type(row) is Piece:
            yield (name, row.key), _piece_text(ft, row)
            start += 1
            continue
        end = start + 1
        while end < n and end - start < CHUNK_LINES and type(rows[end]) is not Piece:
            end += 1
        yield "".join(ft.lines(rows[start:end]))
        start = end


def _piece_text(ft: FamilyText, piece: Piece) -> Callable[[], str]:
    return lambda: "".join(ft.lines(piece.make()))


class _Fixed:
    """One family's rows as a FamilySet (for family_chunks)."""

    def __init__(self, spec, rows):
        self._spec, self._rows = spec, rows

    def rows(self):
        yield self._spec, self._rows


SAME_ROWS_MAX = 64       # a family of at most this many series keeps its last text


def _small_family(ft: FamilyText, rows: list) -> str:
    last = ft.last
    if last is not None and last[0] == rows:
        return last[1]
    text = ft.header + "".join(ft.lines(rows))
    # Only all-string label values: 1 and 1.0 are equal but written differently.
    if all(type(labels) is tuple and all(type(v) is str for v in labels) for labels, _ in rows):
        ft.last = (rows, text)
    return text


def render(families: Iterable, kind: str) -> bytes:
    return "".join(family_chunks(families, kind)).encode("utf-8")
