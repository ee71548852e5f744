"""What the dashboards take from the alert rules: thresholds, the fill-up prediction, runbooks.

The one place that reads alerts/generate.py. The dashboards colour a cell where
an alert fires, predict the time to a limit with the expression the fill-up
alerts use, and link each panel to the runbook of its alerts; all of it comes
from the alerts' CONFIG and generated rules, never a copy.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import re
from dataclasses import dataclass

ALERTS_GENERATOR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "alerts", "generate.py")


@functools.lru_cache(maxsize=None)
def _alerts():
    spec = importlib.util.spec_from_file_location("imaging_alerts_generate", ALERTS_GENERATOR)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@dataclass(frozen=True)
class Thresholds:
    headroom_nearly_ratio: float      # headroom share: red below 0, orange below this
    quota_warning_ratio: float        # quota use: orange from this, red from 1
    job_long_after: int               # running job age (s): orange from this ...
    job_stuck_after: int              # ... red (stuck) from this
    job_repeated_failures: int        # failures of one server: red from this many
    backup_max_age: int               # age (s) of the last successful backup: orange from this
    predict_range: str                # history the fill-up prediction looks at
    predict_warning_horizon: int      # predicted time to a limit (s): orange below this ...
    predict_critical_horizon: int     # ... red below this


@functools.lru_cache(maxsize=None)
def thresholds() -> Thresholds:
    a = _alerts()
    c, s = a.CONFIG, a.seconds
    return Thresholds(
        headroom_nearly_ratio=c["headroomNearlyRatio"],
        quota_warning_ratio=c["quotaWarningRatio"],
        job_long_after=s(c["jobLongAfter"]),
        job_stuck_after=s(c["jobStuckAfter"]),
        job_repeated_failures=c["jobRepeatedFailures"],
        backup_max_age=s(c["backupMaxAge"]),
        predict_range=c["peakRange"],     # the warning projects the daily peaks over this range
        predict_warning_horizon=s(c["predictWarningHorizon"]),
        predict_critical_horizon=s(c["predictCriticalHorizon"]),
    )


@functools.lru_cache(maxsize=None)
def _rules() -> dict:
    """{alert name: [rule, ...]} of the rules the alerts' generator writes."""
    out = {}
    for group in _alerts().build()["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                out.setdefault(rule["alert"], []).append(rule)
    return out


def alert_names() -> list:
    return sorted(_rules())


def runbook_url(alert: str) -> str:
    if alert not in _rules():
        raise KeyError("no alert %r in alerts/generate.py" % alert)
    return _rules()[alert][0]["annotations"]["runbook_url"]


# The series may be a recording of the metric (limit_mountpoint:imaging_headroom_bytes:min1d: the daily peaks).
_PREDICT = re.compile(r"predict_linear\((?P<series>[\w:]+)\{[^}]*\}(?P<range>\[\w+\]), (?P<horizon>[^)]+)\)")


def fill_up_prediction(metric: str, selector: str, at: str = "0") -> str:
    """The fill-up alerts' predict_linear of ``metric``, with the dashboard's selector.

    Taken from the warning rule that predicts ``metric`` (ImagingSizeLimitFillingUp
    for bytes, ImagingInodeLimitFillingUp for inodes), horizon replaced by ``at``
    seconds: at 0 it is the fitted headroom now, the intercept the alert extends.
    """
    for rules in _rules().values():
        for rule in rules:
            m = _PREDICT.search(rule["expr"])
            if m and metric in m.group("series").split(":"):
                return "predict_linear(%s%s%s, %s)" % (m.group("series"), selector, m.group("range"), at)
    raise KeyError("no fill-up alert predicts %s in alerts/generate.py" % metric)


def time_to_limit(metric: str, selector: str) -> str:
    """Seconds until the fitted headroom reaches 0: where the alerts' line crosses the limit.

    The alert fires when predict_linear(h[r], horizon) < 0, i.e. when this is below
    the horizon. Only shrinking headroom has a time; 0 when already over the limit.
    """
    now = fill_up_prediction(metric, selector)
    slope = fill_up_prediction(metric, selector, "1") + " - " + now
    return "clamp_min(\n  %s\n  /\n  -(%s < 0),\n  0\n)" % (now, slope)
