"""The Grafana dashboards: generated from dashboards/generate.py, well-formed, portable.

What Grafana would only show at import or render time is checked here without
Grafana: the committed JSON is what the code generates; every panel and target
goes through the `datasource` variable (no hard-coded UID); ids, grid positions,
variables and units are sound; every query uses only metrics of docs/metrics.md
(and `up`) and parses as PromQL (promtool). tests/test_e2e.py runs every query
against a real Prometheus scraping real exporters.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess

import pytest
import yaml

from conftest import ROOT, need_binary

DASH_DIR = os.path.join(ROOT, "dashboards")
FILES = ("imaging-overview.json", "imaging-server.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's own variables that the dashboards may use.
BUILTINS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms"}


def _load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


generate = _load_module("dashboards_generate", os.path.join(DASH_DIR, "generate.py"))


def load(name):
    with open(os.path.join(DASH_DIR, name), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(params=FILES)
def dash(request):
    return load(request.param)


def panels(d):
    """Every panel, rows' nested panels included."""
    for p in d["panels"]:
        yield p
        yield from p.get("panels", [])


# ---- query helpers, shared with tests/test_e2e.py ---------------------------------------

_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def variables_used(text):
    return {a or b or c for a, b, c in _VAR.findall(text)}


def substitute(expr, values, interval="15s", rate_interval="1m", range_="10m"):
    """The query as Grafana sends it, with template variables replaced by ``values``."""
    builtins = {"__rate_interval": rate_interval, "__interval": interval, "__range": range_,
                "__range_s": str(_seconds(range_)), "__range_ms": str(_seconds(range_) * 1000),
                "__interval_ms": str(_seconds(interval) * 1000)}

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in builtins:
            return builtins[name]
        if name not in values:
            raise KeyError("no value for $%s in %r" % (name, expr))
        return values[name]
    return _VAR.sub(repl, expr)


def _seconds(duration):
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
    """(variable name, label_values metric selector, label) of every query variable."""
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", v["query"]["query"])
            assert m, v["query"]
            yield v["name"], m.group(1), m.group(2)


# ---- generated and current -------------------------------------------------------------

def test_committed_dashboards_are_what_the_code_generates():
    for name, build in generate.DASHBOARDS.items():
        with open(os.path.join(DASH_DIR, name), encoding="utf-8") as f:
            assert f.read() == generate.render(build), "run: python dashboards/generate.py"
    assert sorted(generate.DASHBOARDS) == sorted(FILES)
    assert generate.main(["--check"]) == 0


def test_check_mode_reports_a_stale_dashboard(tmp_path, capsys):
    assert generate.main(["--check", "--output-dir", str(tmp_path)]) == 1
    assert generate.main(["--output-dir", str(tmp_path)]) == 0
    assert generate.main(["--check", "--output-dir", str(tmp_path)]) == 0
    (tmp_path / FILES[0]).write_text("{}")
    assert generate.main(["--check", "--output-dir", str(tmp_path)]) == 1
    assert FILES[0] in capsys.readouterr().err


# ---- the Grafana model -------------------------------------------------------------------

def test_dashboard_model(dash):
    assert dash["schemaVersion"] >= 39
    assert dash["uid"] in ("imaging-overview", "imaging-server")
    assert dash["title"].startswith("Imaging / ")
    assert "imaging" in dash["tags"] and dash["id"] is None
    assert dash["editable"] is True and dash["time"]["to"] == "now" and dash["refresh"]


def test_every_datasource_is_the_variable(dash):
    """No hard-coded datasource UID anywhere: every reference is ${datasource}."""
    def walk(node, path):
        if isinstance(node, dict):
            if "datasource" in node:
                ds = node["datasource"]
                builtin_annotation = ds == {"type": "grafana", "uid": "-- Grafana --"} and "builtIn" in node
                assert ds == DS or builtin_annotation, (path, ds)
            for k, v in node.items():
                walk(v, path + "/" + k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, "%s[%d]" % (path, i))
    walk(dash, "")
    for p in panels(dash):
        if p["type"] != "row":
            assert p["datasource"] == DS, p["title"]
            assert p["targets"], p["title"]
            for t in p["targets"]:
                assert t["datasource"] == DS
    ds_vars = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    assert len(ds_vars) == 1 and ds_vars[0]["name"] == "datasource" and ds_vars[0]["query"] == "prometheus"
    assert dash["templating"]["list"][0] is ds_vars[0], "the datasource variable comes first"
    text = json.dumps(dash)
    assert '"uid": "${datasource}"' in text
    uids = set(re.findall(r'"uid": "([^"]*)"', text))
    assert uids <= {"${datasource}", "-- Grafana --", dash["uid"]}, uids


def test_variables(dash):
    by_name = {v["name"]: v for v in dash["templating"]["list"]}
    wanted = {"imaging-overview": ["datasource", "job", "instance", "cloud", "project"],
              "imaging-server": ["datasource", "job", "instance"]}[dash["uid"]]
    assert list(by_name) == wanted
    for name, selector, label in variable_queries(dash):
        v = by_name[name]
        assert label == name and v["datasource"] == DS and v["refresh"] == 2
        assert v["definition"] == v["query"]["query"]
        for used in variables_used(selector):
            assert wanted.index(used) < wanted.index(name), "%s depends on a later variable %s" % (name, used)
    if dash["uid"] == "imaging-overview":
        for name in ("job", "instance", "cloud", "project"):
            assert by_name[name]["multi"] and by_name[name]["includeAll"]
        # `.*` for All also matches targets of other exporters on `up`: not for job.
        assert "allValue" not in by_name["job"]
    else:
        assert not by_name["instance"]["multi"] and not by_name["instance"]["includeAll"]
    # Every variable a query, a legend or a link uses is defined (or one of Grafana's).
    text = json.dumps(dash["panels"])
    used = variables_used(text) - BUILTINS - {"__value", "__url_time_range", "__data", "__field"}
    assert used <= set(by_name), used - set(by_name)
    for v in by_name.values():
        assert v["name"] == "datasource" or variables_used(text) & {v["name"]}, "unused variable " + v["name"]


def test_panel_ids_and_grid(dash):
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids))
    cells = {}
    for p in panels(dash):
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, "%r overlaps %r" % (p["title"], cells[(x, y)])
                cells[(x, y)] = p["title"]


def test_panels_are_described_and_have_units(dash):
    for p in panels(dash):
        if p["type"] == "row":
            continue
        assert p["title"] and p.get("description"), p["title"]
        assert not re.search(r"%[%sdg(]", p["title"] + p["description"]), "unformatted: " + p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        defaults = p["fieldConfig"]["defaults"]
        if p["type"] in ("timeseries", "bargauge"):
            assert defaults.get("unit"), p["title"]
        elif p["type"] == "stat":
            text_stat = p["options"]["reduceOptions"]["fields"].startswith("/^")
            assert text_stat or defaults.get("unit"), p["title"]
        elif p["type"] == "heatmap":
            assert p["options"]["yAxis"]["unit"] == "s"
            assert all(t["format"] == "heatmap" for t in p["targets"])
        elif p["type"] == "table":
            assert all(t["instant"] and t["format"] == "table" for t in p["targets"]), p["title"]
            if len(p["targets"]) > 1:
                ids = [tr["id"] for tr in p["transformations"]]
                assert ids[0] == "merge", p["title"]
            # Columns are renamed, and the renamed value columns get their unit from an override.
            organize = [tr for tr in p.get("transformations", []) if tr["id"] == "organize"]
            assert organize, p["title"]
            renamed = organize[0]["options"]["renameByName"]
            overridden = {o["matcher"]["options"] for o in p["fieldConfig"]["overrides"]}
            for sort in p["options"].get("sortBy", []):
                assert sort["displayName"] in renamed.values() or sort["displayName"] in overridden
        else:
            pytest.fail("unexpected panel type %s" % p["type"])


def test_units_and_thresholds_where_they_matter():
    over, srv = load(FILES[0]), load(FILES[1])

    def panel(d, title):
        return next(p for p in panels(d) if p["title"] == title)

    def field(p, name):
        o = next(o for o in p["fieldConfig"]["overrides"] if o["matcher"]["options"] == name)
        return {prop["id"]: prop["value"] for prop in o["properties"]}

    closest = panel(over, "Servers closest to an image limit")
    head = field(closest, "Headroom")
    assert head["unit"] == "percentunit"
    assert [(s["color"], s["value"]) for s in head["thresholds"]["steps"]] == [
        ("red", None), ("orange", 0), ("green", 0.1)]
    assert closest["options"]["sortBy"] == [{"desc": False, "displayName": "Headroom"}]
    assert field(closest, "Headroom (bytes)")["unit"] == "decbytes"
    for title in ("Image count quota used", "Image storage quota used"):
        p = panel(over, title)
        assert p["fieldConfig"]["defaults"]["unit"] == "percentunit"
        assert [s["value"] for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [None, 0.8, 1]
    jobs = panel(over, "Running jobs")
    assert field(jobs, "Started")["unit"] == "dateTimeAsIso"
    assert " * 1000" in jobs["targets"][1]["expr"], "Grafana's dateTime units take milliseconds"
    assert [s["value"] for s in field(jobs, "Running for")["thresholds"]["steps"]] == [None, 6 * 3600, 24 * 3600]
    assert panel(srv, "Bytes against image limits")["fieldConfig"]["defaults"]["unit"] == "decbytes"
    limit_line = panel(srv, "Bytes against image limits")["fieldConfig"]["overrides"][0]
    assert limit_line["matcher"] == {"id": "byFrameRefID", "options": "D"}
    assert "imaging_limit_bytes" in panel(srv, "Bytes against image limits")["targets"][3]["expr"]


def test_thresholds_match_the_alert_rules():
    """A dashboard turns red where the alerts fire (alerts/generate.py CONFIG)."""
    alerts = _load_module("alerts_generate", os.path.join(ROOT, "alerts", "generate.py")).CONFIG
    secs = _seconds
    c = generate.CONFIG
    assert c["headroomNearlyRatio"] == alerts["headroomNearlyRatio"]
    assert c["quotaWarningRatio"] == alerts["quotaWarningRatio"]
    assert c["jobLongAfter"] == secs(alerts["jobLongAfter"])
    assert c["jobStuckAfter"] == secs(alerts["jobStuckAfter"])
    assert c["jobRepeatedFailures"] == alerts["jobRepeatedFailures"]
    assert c["backupMaxAge"] == secs(alerts["backupMaxAge"])
    assert c["predictRange"] == alerts["predictRange"]
    assert c["predictWarningHorizon"] == secs(alerts["predictWarningHorizon"])
    assert c["predictCriticalHorizon"] == secs(alerts["predictCriticalHorizon"])


# ---- the queries ------------------------------------------------------------------------------

def documented_metrics():
    """Series names the exporter exports, from docs/metrics.md (generated from the collectors)."""
    with open(os.path.join(ROOT, "docs", "metrics.md"), encoding="utf-8") as f:
        rows = re.findall(r"^\| `(imaging_\w+)` \| (\w+) \|", f.read(), re.M)
    assert len(rows) > 30
    names = set()
    for name, kind in rows:
        names.add(name)
        if kind == "histogram":
            names |= {name + "_bucket", name + "_count", name + "_sum"}
    return names


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
             "offset", "inf", "nan"}


def metric_names(expr):
    """Metric names a PromQL expression selects (strings, label matchers and label lists removed)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\$\{?\w+\}?", "", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\s*(\()?", e):
        name, call = m.group(1), m.group(2)
        if not call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def test_metric_name_extraction():
    assert metric_names('sum by (le) (increase(imaging_job_duration_seconds_bucket{job=~"$job"}[$__interval]))') \
        == {"imaging_job_duration_seconds_bucket"}
    assert metric_names("clamp_max(a / clamp_min(-deriv(b[6h]), 1e-9), 31536000) or vector(0)") == {"a", "b"}
    assert metric_names('x * on (server_id) group_left () group by (server_id) (y{server_id!=""})') == {"x", "y"}


def test_queries_use_only_exported_metrics(dash):
    known = documented_metrics() | {"up"}
    used = set()
    for _, selector, _ in variable_queries(dash):
        used |= metric_names(selector)
    for p in panels(dash):
        for t in p.get("targets", []):
            names = metric_names(t["expr"])
            assert names, (p["title"], t["expr"])
            assert names <= known, (p["title"], names - known)
            used |= names
    assert used <= known


def test_queries_parse_as_promql(tmp_path):
    """promtool parses every query (as a recording rule), variables substituted as Grafana would."""
    promtool = need_binary("promtool")
    rules = []
    for name in FILES:
        d = load(name)
        values = {v: ".*" for v in ("job", "instance", "cloud", "project")}
        for title, ref, expr, _ in dashboard_queries(d, values):
            rules.append({"record": "dashboard:query_%d" % len(rules), "expr": expr})
        for var, selector, label in variable_queries(d):
            rules.append({"record": "dashboard:query_%d" % len(rules),
                          "expr": "group by (%s) (%s)" % (label, _VAR.sub(".*", selector))})
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: %d rules found" % len(rules) in r.stdout + r.stderr


# ---- docs/setup.md ---------------------------------------------------------------------------

def test_setup_doc_configs_are_valid(tmp_path):
    """The Prometheus and Grafana provisioning snippets of docs/setup.md work as written."""
    promtool = need_binary("promtool")
    with open(os.path.join(ROOT, "docs", "setup.md"), encoding="utf-8") as f:
        doc = f.read()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    scrape = [b for b in blocks if "job_name:" in b]
    rules = next(b for b in blocks if "rule_files:" in b)
    provisioning = yaml.safe_load(next(b for b in blocks if "providers:" in b))
    rules = rules.replace("/etc/prometheus/rules/imaging-rules.yml", os.path.join(ROOT, "alerts", "imaging-rules.yml"))
    config = yaml.safe_load(rules + "".join(scrape))
    assert [j["job_name"] for j in config["scrape_configs"]] == ["imaging-host", "imaging-cloud"]
    assert all(j["job_name"].startswith("imaging") for j in config["scrape_configs"]), "the rules select job=~imaging.*"
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    r = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert provisioning["apiVersion"] == 1 and provisioning["providers"][0]["type"] == "file"
    for name in FILES:
        assert "dashboards/" + name in doc
