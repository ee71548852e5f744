"""Metric specifications: one place for every name, type, help and label set.

Collectors build their families from these, describe() returns them so that
registration does not collect, and docs/metrics.md is generated from them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: str                   # "gauge", "counter" or "histogram"
    help: str
    labels: Tuple[str, ...] = ()

    def family(self):
        if self.type == "gauge":
            return GaugeMetricFamily(self.name, self.help, labels=self.labels)
        if self.type == "counter":
            return CounterMetricFamily(self.name, self.help, labels=self.labels)
        if self.type == "histogram":
            return HistogramMetricFamily(self.name, self.help, labels=self.labels)
        raise ValueError(self.type)


def gauge(name, help_, *labels):
    return MetricSpec(name, "gauge", help_, tuple(labels))


def counter(name, help_, *labels):
    return MetricSpec(name, "counter", help_, tuple(labels))


def histogram(name, help_, *labels):
    return MetricSpec(name, "histogram", help_, tuple(labels))


class Families:
    """Builds each family once per scrape, in spec order, and yields the non-empty ones."""

    def __init__(self, specs):
        self._specs = specs
        self._families = {}

    def __getitem__(self, spec):
        f = self._families.get(spec.name)
        if f is None:
            f = self._families[spec.name] = spec.family()
        return f

    def add(self, spec, labels, value, **kw):
        self[spec].add_metric([str(v) for v in labels], value, **kw)

    def __iter__(self):
        for spec in self._specs:
            f = self._families.get(spec.name)
            if f is not None and f.samples:
                yield f
