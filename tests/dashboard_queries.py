"""The shipped dashboards and their queries as Grafana sends them, for the tests that run them.

tests/test_dashboards.py checks the dashboards themselves; tests/test_e2e.py
runs every query against a real Prometheus scraping real exporters
(check_queries_return_data, check_server_dashboard); tests/test_dashboards_fleet.py
runs them against 300 servers of synthetic data.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re

import pytest

from conftest import ROOT

DASH_DIR = os.path.join(ROOT, "dashboards")
FILES = ("imaging-overview.json", "imaging-server.json")

# Queries that draw only what is wrong; the e2e clouds refresh without errors. The fleet scenario
# (tests/test_dashboards_fleet.py) has data for every query, these included.
EMPTY_WHEN_HEALTHY = {("imaging-overview", "Refresh errors", "A")}

# Metrics the end-to-end stack (Linux host mode, the OpenStack and Linode fakes) cannot produce: the
# Windows reader's, and Rackspace Cloud Backup's (tests/test_rackspace_backup_e2e.py has its own stack).
# The fleet scenario (tests/test_dashboards_fleet.py) carries them all, so their panels return data there.
PENDING_METRICS = {"imaging_host_domain_controller",
                   "imaging_backup_agent_online", "imaging_backup_agent_heartbeat_timestamp_seconds",
                   "imaging_backup_schedule_interval_seconds"}


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


alerts = load_module("alerts_generate_for_dashboards", os.path.join(ROOT, "alerts", "generate.py"))


def load(name):
    with open(os.path.join(DASH_DIR, name), encoding="utf-8") as f:
        return json.load(f)


def panels(d):
    """Every panel, rows' nested panels included."""
    for p in d["panels"]:
        yield p
        yield from p.get("panels", [])


# ---- queries as Grafana sends them -------------------------------------------------------------

VARIABLE_REFERENCE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def variables_used(text):
    return {a or b or c for a, b, c in VARIABLE_REFERENCE.findall(text)}


def substitute(expr, values, interval="15s", rate_interval="1m", range_="10m"):
    """The query as Grafana sends it, with template variables replaced by ``values``."""
    builtins = {"__rate_interval": rate_interval, "__interval": interval, "__range": range_,
                "__range_s": str(duration_seconds(range_)), "__range_ms": str(duration_seconds(range_) * 1000),
                "__interval_ms": str(duration_seconds(interval) * 1000)}

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in builtins:
            return builtins[name]
        if name not in values:
            raise KeyError("no value for $%s in %r" % (name, expr))
        return values[name]
    return VARIABLE_REFERENCE.sub(repl, expr)


def duration_seconds(duration):
    n, unit = re.fullmatch(r"(\d+)([smhd])", duration).groups()
    return int(n) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def dashboard_queries(d, values, **kw):
    """(panel title, refId, PromQL, instant) of every target, variables substituted."""
    for p in panels(d):
        for t in p.get("targets", []):
            interval = p.get("interval") or kw.get("interval", "15s")
            expr = substitute(t["expr"], values, **{**kw, "interval": interval})
            yield p["title"], t["refId"], expr, bool(t.get("instant"))


def variable_queries(d):
    """(variable name, label_values series selector, label) of every query variable."""
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", v["query"]["query"])
            assert m, v["query"]
            yield v["name"], m.group(1), m.group(2)


def needs_pending_metric(expr):
    """True when the query reads a metric that another branch adds (it may be empty until then)."""
    return bool(metric_names(expr) & PENDING_METRICS)


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
             "offset", "inf", "nan", "end", "start"}


def metric_names(expr):
    """Metric names a PromQL expression selects (strings, label matchers and label lists removed)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"@ (end|start)\(\)", "", e)
    e = re.sub(r"\$\{?\w+\}?", "", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\s*(\()?", e):
        name, call = m.group(1), m.group(2)
        if not call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


# ---- against a real Prometheus: tests/test_e2e.py calls these with its stack -------------------


def check_queries_return_data(stack, host_server_id):
    """Each query of each panel, variables as Grafana fills them, returns series from the e2e stack
    (queries reading another branch's metric may be empty until it merges)."""
    jobs = "(imaging-host|imaging-cloud)"
    runs = [
        (load(FILES[0]), {"job": jobs, "cloud": ".*", "project": ".*", "server": ".*"}),
        (load(FILES[1]), {"job": jobs, "cloud": ".*", "project": ".*", "server": host_server_id}),
    ]
    empty, checked = [], 0
    for d, values in runs:
        for title, ref, expr, instant in dashboard_queries(d, values):
            result = stack.query(expr) if instant else stack.query_range(expr)
            checked += 1
            if not result and not needs_pending_metric(expr) and (d["uid"], title, ref) not in EMPTY_WHEN_HEALTHY:
                empty.append((d["uid"], title, ref, expr))
        for name, selector, label in variable_queries(d):
            sel = re.sub(r"\$(\w+)", lambda m: values[m.group(1)], selector)
            series = stack.api("/api/v1/series", **{"match[]": sel})
            if not [s for s in series if s.get(label)]:
                empty.append((d["uid"], "variable " + name, "", sel))
    assert checked > 80
    assert not empty, "queries without data:\n" + "\n".join(map(str, empty))


def check_server_dashboard(stack, host_server_id, cloud_of_host, other_cloud, cloud_only_server):
    """One server from both sides (joined on server_id), a cloud-only server, and the cloud
    variable filtering host panels the same way as cloud panels."""
    d = load(FILES[1])

    def queries(**values):
        base = {"job": "(imaging-host|imaging-cloud)", "cloud": ".*", "project": ".*", "server": host_server_id}
        return {(t, r): e for t, r, e, _ in dashboard_queries(d, {**base, **values})}

    both = queries()
    jobs = stack.query(both[("Running jobs", "A")])
    assert {(s["metric"]["kind"]) for s in jobs} == {"image", "backup"}
    backup_age = [float(s["value"][1]) for s in jobs if s["metric"]["kind"] == "backup"]
    assert backup_age[0] == pytest.approx(25 * 3600, abs=300)
    assert {s["metric"]["kind"]: float(s["value"][1]) for s in stack.query(both[("Job history", "A")])} == {"image": 2}
    # /srv is over the e2e host's own 1 MB limit: time to limit 0 ("over the limit").
    ttl = {(s["metric"]["limit"], s["metric"]["mountpoint"]): float(s["value"][1])
           for s in stack.query(both[("Limits", "F")])}
    assert ttl[("app_data", "/srv")] == 0 and ttl[("volume_size", "/")] > 0
    limit = {s["metric"]["limit"]: float(s["value"][1]) for s in stack.query(both[("Limits", "C")])}
    assert limit["app_data"] == 10**6 and limit["volume_size"] == 250 * 10**9
    assert stack.query(both[("Host", "A")])[0]["metric"]["server_id"] == host_server_id
    # The cloud variable filters the host panels as it filters the cloud panels.
    mine, other = queries(cloud=cloud_of_host), queries(cloud=other_cloud)
    for title, ref in (("Limits", "F"), ("Running jobs", "A"), ("Host", "A")):
        assert stack.query(mine[(title, ref)]), title
        assert not stack.query(other[(title, ref)]), title
    # A server only the cloud knows: cloud panels, no host panels.
    cloud_only = queries(server=cloud_only_server)
    assert stack.query(cloud_only[("In the cloud", "A")])
    assert stack.query(cloud_only[("Running jobs", "A")])
    assert not stack.query(cloud_only[("Limits", "E")])
    # The overview's server variable lists both.
    name, selector, label = [v for v in variable_queries(d) if v[0] == "server"][0]
    sel = substitute(selector, {"job": "(imaging-host|imaging-cloud)", "cloud": ".*", "project": ".*"})
    ids = {s[label] for s in stack.api("/api/v1/series", **{"match[]": sel})}
    assert {host_server_id, cloud_only_server} <= ids
