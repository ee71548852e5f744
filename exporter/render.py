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
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable, Iterator, Optional

from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.utils import floatToGoString

TEXT, OPENMETRICS = "text", "openmetrics"
EOF = "# EOF\n"          # OpenMetrics' terminator: once, at the very end of a body

# Escaping schemes that leave names valid in the legacy character set, which
# all of ours are, unchanged; "dots" and "values" rewrite underscores.
_NAME_PRESERVING = ("underscores", "allow-utf-8")


@dataclass(frozen=True)
class Format:
    """What a scrape asked for: the content type, prometheus_client's encoder
    for it, and ``kind`` when this module renders it (None: the encoder does)."""
    content_type: str
    encoder: Callable
    kind: Optional[str]


@lru_cache(maxsize=64)
def negotiate(accept: Optional[str]) -> Format:
    """prometheus_client's content negotiation, plus whether we render the result."""
    encoder, content_type = choose_encoder(accept or "")
    mime, *params = [p.strip() for p in content_type.split(";")]
    opts = dict(p.split("=", 1) for p in params if "=" in p)
    kind = None
    if opts.get("escaping", "underscores") in _NAME_PRESERVING:
        if mime == "text/plain" and opts.get("version") in ("0.0.4", "1.0.0"):
            kind = TEXT
        elif mime == "application/openmetrics-text" and opts.get("version") == "1.0.0":
            kind = OPENMETRICS
    return Format(content_type, encoder, kind)


def _escape_value(v) -> str:
    # The same escaping for label values in both formats.
    v = str(v)
    if "\\" in v or '"' in v or "\n" in v:
        v = v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return v


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
            self.template = f"{name}{{{inner}}} %s\n"
        else:
            self.template = f"{name} %s\n"

    def lines(self, rows) -> Iterator[str]:
        template, order = self.template, self.order
        for labels, value in rows:
            yield template % (*[_escape_value(labels[i]) for i in order], floatToGoString(value))


@lru_cache(maxsize=None)
def family_text(spec, kind: str) -> FamilyText:
    return FamilyText(spec, kind)


class _One:
    """A registry of one prometheus_client family, for its encoder."""

    def __init__(self, family):
        self.family = family

    def collect(self):
        return [self.family]


_BATCH = 2048        # lines per chunk: a 50k-series family is never one string


def family_chunks(families: Iterable, kind: str) -> Iterator[str]:
    """The text of each non-empty family in chunks of at most _BATCH lines, without EOF.

    ``families`` are collectors.spec.Families; a family that holds
    prometheus_client objects (the histogram) is rendered by the library.
    """
    for fams in families:
        for spec, rows in fams.rows():
            if isinstance(rows, list):
                ft = family_text(spec, kind)
                lines = ft.lines(rows)
                yield ft.header + "".join(itertools.islice(lines, _BATCH))
                while chunk := "".join(itertools.islice(lines, _BATCH)):
                    yield chunk
            elif kind == TEXT:
                yield generate_latest(_One(rows)).decode("utf-8")
            else:
                yield openmetrics.generate_latest(_One(rows))[:-len(EOF)].decode("utf-8")


def render(families: Iterable, kind: str) -> bytes:
    return "".join(family_chunks(families, kind)).encode("utf-8")
