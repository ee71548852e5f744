"""Helpers for alerts/generate.py's rule builders: durations, the selector context, templates."""
from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> int:
    """'26h' -> 93600 (Prometheus duration, one unit)."""
    m = re.fullmatch(r"(\d+)([smhd])", duration)
    if not m:
        raise ValueError("duration must look like 30m, 6h or 1d: %r" % duration)
    return int(m.group(1)) * _UNITS[m.group(2)]


def words(duration: str) -> str:
    """'24h' -> '24 hours' for descriptions."""
    n, unit = int(duration[:-1]), duration[-1]
    name = {"s": "second", "m": "minute", "h": "hour", "d": "day"}[unit]
    return "%d %s%s" % (n, name, "" if n == 1 else "s")


def number(seconds_: int) -> str:
    """Seconds as readable PromQL arithmetic: 93600 -> '26 * 3600'."""
    for unit in (3600, 60):
        if seconds_ >= unit and seconds_ % unit == 0:
            return "%d * %d" % (seconds_ // unit, unit)
    return str(seconds_)


def pct(ratio: float) -> str:
    return ("%g" % (ratio * 100)) + "%"


class RuleWriter:
    """Writes rules with the config's selector, scrape-gap tolerance and runbook URL."""

    def __init__(self, c: dict):
        self.c = c

    def sel(self, *extra: str) -> str:
        parts = [p for p in (self.c["selector"],) + extra if p]
        return "{" + ", ".join(parts) + "}"

    def alert(self, name, expr, severity, summary, description, for_=None, keep_firing_for=None):
        """One alerting rule; the runbook anchor is the alert name in lower case (GitHub's slug)."""
        rule = {"alert": name, "expr": expr.strip() + "\n"}
        if for_:
            rule["for"] = for_
        if keep_firing_for:
            rule["keep_firing_for"] = keep_firing_for
        rule["labels"] = {"severity": severity}
        rule["annotations"] = {
            "summary": summary,
            "description": description,
            "runbook_url": self.c["runbookURL"] % name.lower(),
        }
        return rule

    def last(self, metric: str, *extra: str) -> str:
        """The metric's last sample within the scrape-gap tolerance (bridges a missed scrape)."""
        return "last_over_time(%s%s[%s])" % (metric, self.sel(*extra), self.c["scrapeGapTolerance"])


def _alternatives(values) -> str:
    return "|".join(re.escape(v) for v in values)


# Template snippets for descriptions. Sizes are decimal (GB = 10^9 bytes), as the providers write them.
WHERE_HOST = "{{ $labels.mountpoint }} on {{ $labels.instance }}"
# Linode accounts have no project: "linode", not "linode/".
WHERE_CLOUD = "{{ $labels.cloud }}{{ with $labels.project }}/{{ . }}{{ end }}"
NEVER_SHRINKS = (
    '{{ if eq $labels.limit "disk_usage" }} This limit counts the highest usage the disk has ever had:'
    " the virtual disk never shrinks, so deleting files does not give headroom back.{{ end }}"
)
BACKUPS_ON = "instance_job:imaging_backups_enabled:max"
