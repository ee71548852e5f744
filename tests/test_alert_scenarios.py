"""Replay realistic series through the shipped rules with `promtool test rules`.

Each scenario is a few days of what the exporter would publish (a log-rotation sawtooth, a
one-off copy, a scrape gap, a re-queued job, flapping quotas, daily backups, weekly cycles, a
Windows high-water mark, a quiet fleet...) and asserts, from the ALERTS series that promtool's
evaluation writes, when the first warning and the first page fire (as bounds before the time
the limit is crossed), that a page is one episode (it does not resolve and re-page), or that
nothing fires at all. All scenarios run in one promtool invocation (one file per evaluation
interval).

    python tests/test_alert_scenarios.py     # print the alerts/README.md table (measured)
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RULES = os.path.join(ROOT, "alerts", "imaging-rules.yml")
sys.path.insert(0, HERE)
from conftest import find_tool  # noqa: E402

GB = 10**9
H = 3600
D = 86400
LIMIT = 250 * GB
HOST = 'job="imaging-host", instance="%s:9847", limit="%s", mountpoint="%s"'
CLOUD = 'job="imaging-cloud", instance="exporter:9847", cloud="%s", project="acme"'


@dataclass
class Scenario:
    name: str
    step: int                          # seconds between samples and between evaluations
    duration: int                      # seconds replayed
    series: Dict[str, List[Optional[float]]]
    checks: List[Tuple[str, str, list]] = field(default_factory=list)   # (what, PromQL, exp_samples)
    crossing: Optional[int] = None     # when the limit is crossed (for the lead-time table)
    table: Optional[str] = None        # the row of alerts/README.md
    watch: Tuple[str, str] = ("Imaging.+", "Imaging.+")   # the table's (warning, page) alert names

    def values(self, f: Callable[[int], Optional[float]]) -> List[Optional[float]]:
        return [f(t) for t in range(0, self.duration + 1, self.step)]


def headroom(host, limit_name, mountpoint, values, limit=LIMIT):
    """The two host series of one limit row: bytes left and that over the limit."""
    sel = HOST % (host, limit_name, mountpoint)
    return {"imaging_headroom_bytes{%s}" % sel: values,
            "imaging_headroom_ratio{%s}" % sel: [None if v is None else v / limit for v in values]}


# ---- PromQL over the ALERTS series promtool writes --------------------------------------------

def alerts(sev, name="Imaging.+", extra=""):
    return 'ALERTS{alertname=~"%s", severity="%s", alertstate="firing"%s}' % (name, sev, extra)


def first(sc, sev, name="Imaging.+", extra=""):
    """Timestamp of the first evaluation at which such an alert fired."""
    return "min(min_over_time(timestamp(%s)[%ds:%ds]))" % (alerts(sev, name, extra), sc.duration + sc.step, sc.step)


def fires_between(sc, sev, lo, hi, name="Imaging.+", extra=""):
    """A check: the first such alert fires within [lo, hi] seconds of the start."""
    f = first(sc, sev, name, extra)
    return ("first %s between %s and %s" % (sev, lo, hi), "(%s >= bool %d) * (%s <= bool %d)" % (f, lo, f, hi),
            [{"labels": "{}", "value": 1}])


def one_episode(sc, sev, name="Imaging.+", extra=""):
    """A check: from its first firing to the end, the alert fired at every evaluation (no resolve, no re-page)."""
    a = alerts(sev, name, extra)
    expr = ("(%d - %s) / %d + 1 - sum(count_over_time(%s[%ds]))"
            % (sc.duration, first(sc, sev, name, extra), sc.step, a, sc.duration + sc.step))
    return ("one %s episode" % sev, "%s == bool 0" % expr, [{"labels": "{}", "value": 1}])


def never(sc, sev, name="Imaging.+", extra=""):
    return ("no %s" % sev, "count_over_time(%s[%ds])" % (alerts(sev, name, extra), sc.duration + sc.step), [])


# ---- the scenarios --------------------------------------------------------------------------

def sawtooth():
    """Logs grow 5 GB a day and rotation frees 4 GB at midnight: net +1 GB/day toward 250 GB."""
    sc = Scenario("log rotation sawtooth: +5 GB/day, -4 GB at midnight, toward 250 GB", 300, 0, {})
    # usage at day d, fraction f of the day: 235.5 + d + 5 f (GB); first crossed on day 10 at f = 0.9.
    sc.crossing = 10 * D + int(0.9 * D)
    sc.duration = sc.crossing - sc.crossing % sc.step
    sc.series = headroom("logs1", "volume_size", "/", sc.values(
        lambda t: LIMIT - (235.5 + t // D + 5 * (t % D) / D) * GB))
    sc.checks = [fires_between(sc, "warning", sc.crossing - 30 * H, sc.crossing - 16 * H, "ImagingSizeLimitFillingUp"),
                 one_episode(sc, "warning", "ImagingSizeLimitFillingUp"),
                 fires_between(sc, "critical", sc.crossing - 4 * H, sc.crossing),
                 one_episode(sc, "critical")]
    sc.table = "one warning about a day ahead, a page only when the trend really crosses within 4 h"
    sc.watch = ("ImagingSizeLimitFillingUp", "ImagingSizeLimitFillingUp")
    return sc


def linear():
    """1 GB/day toward 250 GB, with scrape noise: node-mixin's fill-up pair gives 22 h 50 m and 2 h 50 m."""
    # Scraped every minute: the last hour's trend has 60 samples, as a 1m scrape interval gives.
    sc = Scenario("steady growth: 1 GB/day toward 250 GB", 60, 0, {})
    sc.crossing = 3 * D
    sc.duration = sc.crossing
    noise = [((i * 7919) % 13 - 6) * 2e6 for i in range(sc.crossing // 60 + 1)]    # +-12 MB, deterministic
    sc.series = headroom("web1", "volume_size", "/", sc.values(
        lambda t: LIMIT - (247 + t / D) * GB + noise[t // 60]))
    # node-mixin's fill-up pair gives 22 h 50 m and 2 h 50 m on this series: not later than that.
    sc.checks = [fires_between(sc, "warning", 0, sc.crossing - 22 * H - 50 * 60, "ImagingSizeLimitFillingUp"),
                 fires_between(sc, "critical", 0, sc.crossing - 2 * H - 50 * 60, "ImagingSizeLimitFillingUp"),
                 fires_between(sc, "critical", sc.crossing - 6 * H, sc.crossing),
                 one_episode(sc, "critical")]
    sc.table = "warning at least 20 h and page at least 2 h before the limit"
    sc.watch = ("ImagingSizeLimitFillingUp", "ImagingSizeLimitFillingUp")
    return sc


def one_off_copy():
    """A 30 GB copy in 15 minutes leaves 15 GB of a 250 GB limit; the level then stays."""
    sc = Scenario("one-off 30 GB copy, 15 GB headroom left", 300, 3 * D, {})
    copy_at = D + 12 * H
    sc.series = headroom("files1", "volume_size", "/", sc.values(
        lambda t: 45 * GB - min(30 * GB, max(0, t - copy_at) * 30 * GB / 900)))
    sc.checks = [never(sc, "critical")]
    sc.table = "no page for a one-off step"
    sc.watch = ("ImagingSizeLimitFillingUp", "ImagingSizeLimitFillingUp")
    return sc


def step_then_rising():
    """The same copy, after which the level keeps rising by 2 GB an hour: that pages."""
    sc = Scenario("30 GB copy, then 2 GB/h more", 300, 0, {})
    copy_at = D + 12 * H
    sc.crossing = copy_at + 900 + int(15 * H / 2)
    sc.duration = sc.crossing
    sc.series = headroom("files2", "volume_size", "/", sc.values(
        lambda t: 45 * GB - min(30 * GB, max(0, t - copy_at) * 30 * GB / 900)
        - max(0, t - copy_at - 900) * 2 * GB / H))
    sc.checks = [fires_between(sc, "critical", copy_at, sc.crossing - 2 * H)]
    sc.table = "page only if the level keeps rising"
    sc.watch = ("ImagingSizeLimitFillingUp", "ImagingSizeLimitFillingUp")
    return sc


def exporter_gap():
    """10 GB/day toward the limit; the exporter is down 10 minutes while the page is pending on
    one host and while it is firing on another."""
    sc = Scenario("exporter down 10 minutes in a fill-up", 60, 0, {})
    sc.crossing = 30 * H
    sc.duration = sc.crossing
    fill = lambda t: 12.5 * GB - t * 10 * GB / D        # noqa: E731 - 12.5 GB left, 10 GB a day
    for host, gap in (("gap-pending", sc.crossing - 4 * H - 20 * 60), ("gap-firing", sc.crossing - 2 * H - 30 * 60)):
        sc.series.update(headroom(host, "volume_size", "/", sc.values(
            lambda t, gap=gap: None if gap <= t < gap + 600 else fill(t))))
        sc.series['up{job="imaging-host", instance="%s:9847"}' % host] = sc.values(
            lambda t, gap=gap: 0 if gap <= t < gap + 600 else 1)
    for host in ("gap-pending", "gap-firing"):
        extra = ', instance="%s:9847"' % host
        sc.checks += [fires_between(sc, "critical", sc.crossing - 4 * H, sc.crossing - 2 * H - 40 * 60,
                                    "ImagingSizeLimitFillingUp", extra),
                      one_episode(sc, "critical", "ImagingSizeLimitFillingUp", extra)]
    sc.checks.append(never(sc, "critical", "ImagingExporterDown"))
    sc.table = "short scrape gaps bridged; blindness itself is visible (ImagingExporterDown after 15 m)"
    sc.watch = ("ImagingSizeLimitFillingUp", "ImagingSizeLimitFillingUp")
    return sc


def requeued_job():
    """The provider re-queues an image job under the same id at 20 h; the exporter keeps the
    first start it saw, so the published start stays at 0 while the phase changes."""
    sc = Scenario("imaging job re-queued with the same job id", 300, 26 * H, {})
    sel = CLOUD % "rs-dfw" + ', server_id="s1", server_name="db1", kind="image", job_id="img-1", phase="%s"'
    sc.series["imaging_job_started_timestamp_seconds{%s}" % (sel % "saving")] = sc.values(
        lambda t: 0 if t < 20 * H else None)
    sc.series["imaging_job_started_timestamp_seconds{%s}" % (sel % "queued")] = sc.values(
        lambda t: 0 if 20 * H + 600 <= t else None)    # 10 minutes out of the listing
    sc.checks = [fires_between(sc, "critical", 24 * H, 24 * H + 600, "ImagingJobStuck"), one_episode(sc, "critical")]
    sc.table = "the 24 h page 24 h after the first start seen"
    return sc


def failures():
    """Server a: two failures, then a success. Server b: failure, success, failure."""
    sc = Scenario("two failures then a success; failure, success, failure", 300, 48 * H, {})
    streaks = {"a": lambda t: 1 if t < 2 * H else 2 if t < 6 * H else 0,
               "b": lambda t: 1 if t < 2 * H else 0 if t < 6 * H else 1}
    for server, f in streaks.items():
        sc.series["imaging_job_consecutive_failures{%s, server_id=\"%s\", kind=\"image\"}"
                  % (CLOUD % "rs-dfw", server)] = sc.values(f)
    sc.checks = [fires_between(sc, "critical", 2 * H, 2 * H + 300, "ImagingJobFailedRepeatedly", ', server_id="a"'),
                 ("the page clears at the success",
                  "count_over_time(%s[%ds])" % (alerts("critical", "ImagingJobFailedRepeatedly"), 42 * H), []),
                 never(sc, "critical", extra=', server_id="b"')]
    sc.table = "the page clears when a later image succeeds; failure, success, failure does not page"
    return sc


def quota_flapping():
    """24 <-> 25 of 25 for 3 hours (8 minutes full, 7 not); then 24."""
    sc = Scenario("quota flapping between 24 and 25 of 25 for 3 h", 60, 5 * H, {})
    sel = CLOUD % "lin-flap"
    sc.series['imaging_images{%s, status="available"}' % sel] = sc.values(
        lambda t: 25 if H <= t < 4 * H and (t - H) % 900 < 480 else 24)
    sc.series['imaging_quota_images{%s, source="profile"}' % sel] = sc.values(lambda t: 25)
    sc.duration = 4 * H
    sc.checks = [fires_between(sc, "critical", H, 2 * H, "ImagingImageQuotaFull"),
                 one_episode(sc, "critical", "ImagingImageQuotaFull")]
    sc.table = "one page, held while it flaps"
    return sc


def nightly_rotation():
    """An account at 24 of 25 whose nightly job creates an image (25 for 20 minutes) and then
    deletes the oldest, for 5 nights."""
    sc = Scenario("nightly create-then-delete rotation at 24 of 25", 300, 5 * D, {})
    sel = CLOUD % "lin-rot"
    sc.series['imaging_images{%s, status="available"}' % sel] = sc.values(
        lambda t: 25 if 2 * H <= t % D < 2 * H + 1200 else 24)
    sc.series['imaging_quota_images{%s, source="profile"}' % sel] = sc.values(lambda t: 25)
    sc.checks = [never(sc, "critical")]
    sc.table = "no page (the 96 % warning stays: a ticket to raise the quota)"
    return sc


def daily_backups():
    """Daily backups that start anywhere in a 01:00-03:00 window and take 20-60 minutes."""
    sc = Scenario("daily backups inside a 2-hour window, 5 days", 600, 5 * D, {})
    sel = CLOUD % "lin-bk" + ', server_id="7"'
    starts = [D * d + H + (d * 4513) % (2 * H) for d in range(6)]       # 01:00-03:00, varying
    ends = [s + 1200 + (d * 977) % 2400 for d, s in enumerate(starts)]

    def last_success(t):
        done = [e for e in ends if e <= t]
        return done[-1] if done else -6 * H            # the day before the replay: 18:00
    sc.series["imaging_backups_enabled{%s}" % sel] = sc.values(lambda t: 1)
    sc.series['imaging_job_last_success_timestamp_seconds{%s, kind="backup"}' % sel] = sc.values(last_success)
    sc.checks = [never(sc, "warning", "ImagingBackup.+")]
    sc.table = "no \"backup too old\" warning"
    return sc


def source_down_with_stuck_job():
    """A cloud source fails at 20 h while a job it saw start at 0 is still running: both fire
    (Alertmanager must not let the warning inhibit the page; tests/test_e2e.py shows it)."""
    sc = Scenario("a warning (source down) for a cloud with a stuck job", 300, 26 * H, {})
    cloud = CLOUD % "os-blind"
    sc.series['imaging_source_up{job="imaging-cloud", instance="exporter:9847", source="openstack", cloud="os-blind"}'] = \
        sc.values(lambda t: 1 if t < 20 * H else 0)
    sc.series['imaging_job_started_timestamp_seconds{%s, server_id="s9", server_name="legacy", kind="image", '
              'job_id="img-9", phase="saving"}' % cloud] = sc.values(lambda t: 0)
    sc.checks = [fires_between(sc, "warning", 20 * H, 21 * H, "ImagingSourceDown"),
                 fires_between(sc, "critical", 24 * H, 24 * H + 600, "ImagingJobStuck"),
                 fires_between(sc, "critical", 21 * H, 21 * H + 600, "ImagingSourceDown")]
    sc.table = "the stuck-job page fires while the cloud's warning fires; blind for 1 h pages"
    sc.watch = ("ImagingSourceDown", "ImagingJobStuck")
    return sc


def weekly_cycle():
    """Weekdays add 3 GB, the Sunday job frees 12 GB: the level wanders 20-35 GB under the limit."""
    sc = Scenario("weekly pattern: +3 GB per weekday, -12 GB on Sundays", 600, 14 * D, {})

    def used(t):
        day, f = t // D, (t % D) / D
        week, dow = day // 7, day % 7
        grown = 3 * min(dow, 5) + (3 * f if dow < 5 else 0)
        return 215 + week * 0.5 + grown - (12 if dow == 6 and f > 0.1 else 0)
    sc.series = headroom("batch1", "volume_size", "/", sc.values(lambda t: LIMIT - used(t) * GB))
    sc.checks = [never(sc, "critical")]
    sc.table = "no page: weekday growth that the weekend frees never crosses"
    return sc


def several_filesystems():
    """/, /var and /home on one system disk add up to one row under "/"; /srv has a limit of its
    own (1 TB) and is far from it. Only the system row, which crosses, alerts."""
    sc = Scenario("several filesystems on one disk, one limit row", 300, 0, {})
    sc.crossing = 2 * D
    sc.duration = sc.crossing
    sc.series = headroom("multi1", "volume_size", "/", sc.values(lambda t: 6 * GB - t * 3 * GB / D))
    sc.series.update(headroom("multi1", "srv_data", "/srv", sc.values(lambda t: 600 * GB), limit=1000 * GB))
    sc.checks = [fires_between(sc, "critical", sc.crossing - 4 * H, sc.crossing - 2 * H, extra=', mountpoint="/"'),
                 never(sc, "warning", extra=', mountpoint="/srv"'),
                 never(sc, "critical", extra=', mountpoint="/srv"')]
    sc.table = "the system row warns and pages; the data filesystem's own limit stays quiet"
    sc.watch = ("ImagingSizeLimitFillingUp", "ImagingSizeLimitFillingUp")
    return sc


def windows_high_water():
    """A Windows First-Generation disk whose high-water mark reached 242 GB; files deleted later
    do not give it back. At 245 GB (under 3 % left) it pages: the disk never shrinks."""
    sc = Scenario("Windows high-water mark near 250 GB", 300, 2 * D, {})
    grow_at = D
    sc.series = headroom("win1", "disk_usage", "C:\\\\", sc.values(
        lambda t: (8 if t < grow_at else 8 - min(3, (t - grow_at) * 3 / (2 * H))) * GB))
    sc.checks = [fires_between(sc, "warning", 30 * 60, 40 * 60, "ImagingSizeLimitNearlyReached"),
                 fires_between(sc, "critical", grow_at + 30 * 60, grow_at + 3 * H, "ImagingSizeLimitNearlyReached")]
    sc.table = "warning at 10 % left, page at 3 % left (the mark never goes down)"
    sc.watch = ("ImagingSizeLimitNearlyReached", "ImagingSizeLimitNearlyReached")
    return sc


def quiet_fleet():
    """A fleet far from every limit, with daily cycles and noise, jobs that finish, fresh
    backups, sources up: nothing fires."""
    sc = Scenario("quiet fleet", 300, 3 * D, {})
    for i in range(5):
        sc.series.update(headroom("quiet%d" % i, "volume_size", "/", sc.values(
            lambda t, i=i: (120 + 10 * i - 3 * math.sin(2 * math.pi * t / D)) * GB)))
        sc.series['up{job="imaging-host", instance="quiet%d:9847"}' % i] = sc.values(lambda t: 1)
    sel = CLOUD % "os-quiet"
    sc.series['imaging_images{%s, status="active"}' % sel] = sc.values(lambda t: 12 + (t // D))
    sc.series['imaging_quota_images{%s, source="api"}' % sel] = sc.values(lambda t: 100)
    sc.series['imaging_source_up{job="imaging-cloud", instance="exporter:9847", source="openstack", cloud="os-quiet"}'] = \
        sc.values(lambda t: 1)
    sc.series['imaging_job_consecutive_failures{%s, server_id="q1", kind="image"}' % sel] = sc.values(lambda t: 0)
    sc.checks = [never(sc, "critical"), never(sc, "warning")]
    sc.table = "nothing"
    return sc


SCENARIOS = [sawtooth, linear, one_off_copy, step_then_rising, exporter_gap, requeued_job, failures,
             quota_flapping, nightly_rotation, daily_backups, source_down_with_stuck_job, weekly_cycle,
             several_filesystems, windows_high_water, quiet_fleet]


# ---- promtool files -------------------------------------------------------------------------

def _values(vals: List[Optional[float]]) -> str:
    return " ".join("_" if v is None else repr(float(v)) for v in vals)


def _duration(seconds: int) -> str:
    return "%ds" % seconds


def build(scenarios, rules_path, table=False) -> Dict[int, dict]:
    """{evaluation step: promtool test document}; ``table`` asks for the first-alert times instead."""
    docs: Dict[int, dict] = {}
    for i, sc in enumerate(scenarios):
        doc = docs.setdefault(sc.step, {"rule_files": [rules_path], "evaluation_interval": _duration(sc.step),
                                         "tests": []})
        if table:
            # Expected empty on purpose: promtool prints what it got, labelled with the scenario.
            tests = [{"expr": 'label_replace(%s, "scenario", "%d %s", "", "")' % (first(sc, sev, name), i, sev),
                      "eval_time": _duration(sc.duration), "exp_samples": []}
                     for sev, name in zip(("warning", "critical"), sc.watch)]
        else:
            tests = [{"expr": expr, "eval_time": _duration(sc.duration), "exp_samples": exp}
                     for _, expr, exp in sc.checks]
        doc["tests"].append({
            "name": sc.name, "interval": _duration(sc.step),
            "input_series": [{"series": s, "values": _values(v)} for s, v in sc.series.items()],
            "promql_expr_test": tests})
    return docs


def run_promtool(tmp, scenarios, table=False):
    promtool = find_tool("promtool")
    if not promtool:
        pytest.fail("promtool not found: install Debian's prometheus package (the test command does this)")
    files = []
    for step, doc in sorted(build(scenarios, RULES, table).items()):
        path = os.path.join(tmp, "scenarios-%ds.yml" % step)
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(doc, f, sort_keys=False, width=1 << 20)
        files.append(path)
    return subprocess.run([promtool, "test", "rules", *files], capture_output=True, text=True, timeout=600)


def test_every_scenario_behaves_as_an_on_call_engineer_needs(tmp_path):
    scenarios = [make() for make in SCENARIOS]
    assert all(sc.checks for sc in scenarios)
    res = run_promtool(str(tmp_path), scenarios)
    assert res.returncode == 0, "\n".join(_failures(res.stdout + res.stderr, scenarios)) or res.stdout + res.stderr


def _failures(out, scenarios):
    """promtool's failures with the check they belong to, readable."""
    checks = {expr: (sc.name, what) for sc in scenarios for what, expr, _ in sc.checks}
    lines = []
    for m in re.finditer(r'expr: "(.*?)", time: .*?\n\s+exp: (.*?)\n\s+got: (.*?)\n', out, re.S):
        expr = m.group(1).replace('\\"', '"')
        name, what = checks.get(expr, ("?", expr))
        lines.append("%s: %s: expected %s, got %s" % (name, what, m.group(2), m.group(3)))
    return lines


def table(tmp):
    """(scenario, first warning, first page, lead time before the limit) measured by promtool."""
    scenarios = [make() for make in SCENARIOS]
    res = run_promtool(tmp, scenarios, table=True)
    got = {}
    for m in re.finditer(r'got: \{scenario="(\d+) (\w+)"\} (\S+)', res.stdout + res.stderr):
        got[(scenarios[int(m.group(1))].name, m.group(2))] = float(m.group(3))

    def when(t, crossing):
        if t is None:
            return "none"
        text = "%dh%02dm" % (t // 3600, t % 3600 // 60)
        if crossing is not None:
            lead = crossing - t
            text += " (%dh%02dm before)" % (lead // 3600, lead % 3600 // 60) if lead >= 0 else " (after)"
        return text
    rows = ["| scenario | first warning | first page | expected |", "| --- | --- | --- | --- |"]
    for sc in scenarios:
        rows.append("| %s | %s | %s | %s |" % (sc.name, when(got.get((sc.name, "warning")), sc.crossing),
                                               when(got.get((sc.name, "critical")), sc.crossing), sc.table))
    return "\n".join(rows)


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        print(table(d))
