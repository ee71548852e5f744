"""Metric specifications: one place for every name, type, help and label set.

Collectors build their families from these, describe() returns them so that
registration does not collect, and docs/metrics.md is generated from them.
"""
from __future__ import annotations

import re
from typing import NamedTuple, Tuple

from ..pieces import Piece, expand

# prometheus_client's families are built only for a registry, `name[]` and the
# histogram (imported there): `--once` renders rows without importing the library.


_LEGACY_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class MetricSpec(NamedTuple):
    name: str
    type: str                   # "gauge", "counter" or "histogram"
    help: str
    labels: Tuple[str, ...] = ()

    def family(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
        if self.type == "gauge":
            return GaugeMetricFamily(self.name, self.help, labels=self.labels)
        if self.type == "counter":
            return CounterMetricFamily(self.name, self.help, labels=self.labels)
        if self.type == "histogram":
            return HistogramMetricFamily(self.name, self.help, labels=self.labels)
        raise ValueError(self.type)


def _spec(name, type_, help_, labels) -> MetricSpec:
    # Names in the legacy character set: no escaping scheme changes them
    # except "dots"/"values" (exporter.render leaves those to the library).
    for n in (name,) + labels:
        if not _LEGACY_NAME.match(n) or n in ("le", "quantile"):
            raise ValueError(f"metric or label name {n!r} is not a plain legacy name")
    return MetricSpec(name, type_, help_, labels)


def gauge(name, help_, *labels):
    return _spec(name, "gauge", help_, labels)


def counter(name, help_, *labels):
    return _spec(name, "counter", help_, labels)


def histogram(name, help_, *labels):
    return _spec(name, "histogram", help_, labels)


class FamilySet:
    """The series of each family, in spec order, kept as rows.

    exporter.render writes the rows straight to text (the hot path); iterating
    gives prometheus_client families, for a registry, ``name[]`` filtering and
    formats we leave to the library. The histogram is kept as a
    prometheus_client family: a few series, rendered by the library.
    """

    def __init__(self, specs):
        self._specs = specs
        self._rows = {}          # spec name -> [(label values, value) or Piece] or a HistogramMetricFamily
        self._pieced = set()     # names of the families holding a Piece

    def add(self, spec, labels, value):
        rows = self._rows.get(spec.name)
        if rows is None:
            rows = self._rows[spec.name] = []
        rows.append((labels, value))

    def add_piece(self, spec, key, make_rows):
        """Rows that make_rows() builds from key alone: a renderer may reuse their text (exporter.pieces)."""
        rows = self._rows.get(spec.name)
        if rows is None:
            rows = self._rows[spec.name] = []
        rows.append(Piece(key, make_rows))
        self._pieced.add(spec.name)

    def add_histogram(self, spec, labels, buckets, sum_value):
        family = self._rows.get(spec.name)
        if family is None:
            family = self._rows[spec.name] = spec.family()
        family.add_metric([str(v) for v in labels], buckets, sum_value)

    def rows(self):
        """(spec, rows or a histogram family) of each non-empty family, in spec order."""
        pieced = self._pieced
        for spec in self._specs:
            rows = self._rows.get(spec.name)
            if pieced and rows is not None and spec.name in pieced:
                rows = expand(rows)
            if rows is not None and (rows if isinstance(rows, list) else rows.samples):
                yield spec, rows

    def segments(self):
        """(spec, rows or a histogram family, whether the rows hold Pieces) of each family added to,
        in spec order, with Pieces left in (so a family may turn out empty)."""
        for spec in self._specs:
            rows = self._rows.get(spec.name)
            if rows is not None:
                yield spec, rows, spec.name in self._pieced

    def __iter__(self):
        for spec, rows in self.rows():
            if isinstance(rows, list):
                family = spec.family()
                for labels, value in rows:
                    family.add_metric([str(v) for v in labels], value)
                yield family
            else:
                yield rows
