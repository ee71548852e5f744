"""The dashboards on a fleet: 300 servers in 3 accounts, a day of data, in Debian's Prometheus.

tests/fleet_series.py writes the series as OpenMetrics; `promtool tsdb
create-blocks-from openmetrics` turns them into blocks of a Prometheus data
directory and a real Prometheus serves them. Every query runs as Grafana would
run it over the last 24 hours (range queries at a 15 minute step, instant
queries at the end): each returns data, a top-k panel draws at most k series,
no time series panel draws more than 20, the cloud variable filters host
panels at fleet scale, and the time to a limit agrees with the fill-up alerts.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

import fleet_series as fleet
from conftest import die_with_parent, free_port, need_binary, stop_process, wait_until
from dashboard_queries import FILES, alerts, dashboard_queries, load, panels, substitute

MAX_SERIES = 20
JOBS = "(imaging-host|imaging-cloud)"
ALL = {"job": JOBS, "cloud": ".*", "project": ".*", "server": ".*"}
QUERY = dict(interval="15m", rate_interval="1h", range_="24h")


class Prometheus:
    def __init__(self, tmp):
        end = int(time.time()) // fleet.STEP * fleet.STEP - fleet.STEP
        self.data = fleet.build(end)
        self.end, self.start = end, end - 24 * 3600
        om = tmp / "fleet.om"
        om.write_text(self.data.openmetrics())
        promtool = need_binary("promtool")
        r = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(tmp / "data")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        om.unlink()
        (tmp / "prometheus.yml").write_text("global: {}\n")
        port = free_port()
        self.url = "http://127.0.0.1:%d" % port
        self.log = open(tmp / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [need_binary("prometheus"), "--config.file=%s" % (tmp / "prometheus.yml"),
             "--storage.tsdb.path=%s" % (tmp / "data"), "--storage.tsdb.retention.time=30d",
             "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        wait_until(lambda: self.proc.poll() is None and self.query("up")[0], 60, 0.2, "Prometheus with the fleet")

    def api(self, path, **params):
        req = urllib.request.Request(self.url + path, data=urllib.parse.urlencode(params).encode())
        with urllib.request.urlopen(req, timeout=60) as r:
            doc = json.load(r)
        assert doc["status"] == "success", doc
        return doc["data"]["result"]

    def query(self, expr):
        return self.api("/api/v1/query", query=expr, time=self.end)

    def query_range(self, expr):
        return self.api("/api/v1/query_range", query=expr, start=self.start, end=self.end, step=fleet.STEP)

    def stop(self):
        stop_process(self.proc)
        self.log.close()


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    started = time.monotonic()
    p = Prometheus(tmp_path_factory.mktemp("fleet"))
    print("\nfleet loaded in %.1fs" % (time.monotonic() - started))
    yield p
    p.stop()


def server_values():
    return dict(ALL, server=fleet.server_id(fleet.FULL))


def runs():
    return ((load(FILES[0]), ALL), (load(FILES[1]), server_values()))


def test_the_fleet_is_fleet_sized(prom):
    assert int(prom.query("count(imaging_server_boot_from_volume)")[0]["value"][1]) == fleet.SERVERS
    assert len(prom.query("count by (cloud) (imaging_server_boot_from_volume)")) == 3
    assert int(prom.query("count(imaging_host_info)")[0]["value"][1]) >= 290


def test_every_query_returns_data(prom):
    empty = []
    for d, values in runs():
        for title, ref, expr, instant in dashboard_queries(d, values, **QUERY):
            if not (prom.query(expr) if instant else prom.query_range(expr)):
                empty.append((d["uid"], title, ref))
    assert not empty, empty


def test_top_k_panels_draw_k_series_and_time_series_at_most_20(prom):
    # Without `@ end()` the day's ranking changes draw far more than k lines: the data is a real test.
    assert len(prom.query_range('bottomk(10, imaging_headroom_ratio{job="imaging-host"})')) > 20
    checked_top, checked_panels = 0, 0
    for d, values in runs():
        for p in panels(d):
            if p["type"] not in ("timeseries", "bargauge"):
                continue
            drawn = 0
            for t in p["targets"]:
                expr = substitute(t["expr"], values, **QUERY)
                result = prom.query(expr) if t["instant"] else prom.query_range(expr)
                drawn += len(result)
                k = re.search(r"\b(?:topk|bottomk)\((\d+),", expr)
                if k:
                    assert 0 < len(result) <= int(k.group(1)), (p["title"], t["refId"], len(result))
                    checked_top += 1
            if p["type"] == "timeseries":
                assert drawn <= MAX_SERIES, (d["uid"], p["title"], drawn)
                checked_panels += 1
    assert checked_top >= 7 and checked_panels >= 15
    lowest = next(p for p in panels(load(FILES[0])) if p["title"].startswith("Lowest headroom"))
    assert len(prom.query_range(substitute(lowest["targets"][0]["expr"], ALL, **QUERY))) == 10


def test_the_cloud_variable_filters_host_panels(prom):
    d = load(FILES[0])
    servers = {(t, r): e for t, r, e, _ in dashboard_queries(d, ALL, **QUERY)}[("Servers", "A")]
    assert float(prom.query(servers)[0]["value"][1]) == fleet.SERVERS + fleet.HOST_ONLY
    linode = {(t, r): e for t, r, e, _ in dashboard_queries(d, dict(ALL, cloud="linode"), **QUERY)}
    assert float(prom.query(linode[("Servers", "A")])[0]["value"][1]) == fleet.SERVERS // 3
    for cloud, project, _ in fleet.ACCOUNTS:
        values = dict(ALL, cloud=cloud, project=project or ".*")
        soonest = {(t, r): e for t, r, e, _ in dashboard_queries(d, values, **QUERY)}[("Soonest to cross", "A")]
        rows = prom.query(soonest)
        want = {fleet.server_id(i) for i in range(fleet.SERVERS)
                if fleet.account_of(i)[0] == cloud and not fleet.cloud_only(i) and i not in fleet.DOWN}
        assert {r["metric"]["server_id"] for r in rows} == want
        assert len(rows) == 2 * len(want)           # a bytes and an inode limit each
    every = {(t, r): e for t, r, e, _ in dashboard_queries(d, ALL, **QUERY)}[("Soonest to cross", "A")]
    hosts = {r["metric"]["instance"] for r in prom.query(every)}
    assert len(hosts) == fleet.SERVERS - 20 + fleet.HOST_ONLY - len(fleet.DOWN)   # host-only servers too


def test_time_to_limit_agrees_with_the_fill_up_alert(prom):
    """Under the warning horizon exactly where the alert's predict_linear(..., horizon) < 0."""
    rule = next(r for g in alerts.build()["groups"] for r in g["rules"]
                if r.get("alert") == "ImagingSizeLimitFillingUp" and r["labels"]["severity"] == "warning")
    predicted = re.search(r"predict_linear\([^)]*\) < 0", rule["expr"]).group(0)
    horizon = alerts.seconds(alerts.CONFIG["predictWarningHorizon"])
    # The alert still sees a down exporter's last 6 hours; the dashboard shows reporting hosts only.
    alerting = {r["metric"]["instance"] for r in prom.query(predicted)} - {fleet.host_instance(i) for i in fleet.DOWN}
    d = load(FILES[0])
    soonest = {(t, r): e for t, r, e, _ in dashboard_queries(d, ALL, **QUERY)}[("Soonest to cross", "A")]
    rows = [r for r in prom.query(soonest) if r["metric"]["limit"] == "volume_size"]
    soon = {r["metric"]["instance"] for r in rows if float(r["value"][1]) < horizon}
    assert soon == alerting
    # Every steadily filling server is among them (waves heading down may be too).
    assert {fleet.host_instance(i) for i in range(fleet.SERVERS)
            if fleet.filling_up(i) and not fleet.cloud_only(i) and i not in fleet.DOWN} <= soon


def test_a_down_exporter_shows_red_in_sources(prom):
    d = load(FILES[0])
    state = {(t, r): e for t, r, e, _ in dashboard_queries(d, ALL, **QUERY)}[("Sources", "A")]
    down = {r["metric"]["instance"] for r in prom.query(state) if float(r["value"][1]) == 0}
    assert down == {fleet.host_instance(i) for i in fleet.DOWN}
