"""The Grafana dashboards: generated with grafana-foundation-sdk, decodable by its models, portable.

What Grafana would only show at import or render time is checked here without
Grafana (no Grafana package exists for this machine): the committed JSON is
what the generator writes; Grafana's own schema models (the SDK's) decode it
without losing a field; every panel and target goes through the `datasource`
variable; ids, grid, variables, units and runbook links are sound; thresholds
are the alerts'; every query uses only exported metrics and parses as PromQL
(promtool). tests/test_e2e.py runs every query against a real Prometheus
scraping real exporters (tests/dashboard_queries.py's checks);
tests/test_dashboards_fleet.py runs them against 300 servers of synthetic data.
"""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as sdk_dashboard

from conftest import ROOT, need_binary
from dashboard_queries import (DASH_DIR, FILES, PENDING_METRICS, VARIABLE_REFERENCE, alerts, dashboard_queries,
                               duration_seconds, load, load_module, metric_names, panels, variable_queries,
                               variables_used)

DS = {"type": "prometheus", "uid": "${datasource}"}
VARIABLES = ["datasource", "job", "cloud", "project", "server"]
# Grafana's own variables that the dashboards may use.
BUILTINS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms"}

generate = load_module("dashboards_generate", os.path.join(DASH_DIR, "generate.py"))


@pytest.fixture(params=FILES)
def dash(request):
    return load(request.param)


# ---- generated and current -------------------------------------------------------------

def test_committed_dashboards_are_what_the_code_generates():
    for name, build in generate.dashboards().items():
        with open(os.path.join(DASH_DIR, name), encoding="utf-8") as f:
            assert f.read() == generate.render(build), "run: python dashboards/generate.py"
    assert sorted(generate.dashboards()) == sorted(FILES)
    assert generate.main(["--check"]) == 0


def test_check_mode_reports_a_stale_dashboard(tmp_path, capsys):
    assert generate.main(["--check", "--output-dir", str(tmp_path)]) == 1
    assert generate.main(["--output-dir", str(tmp_path)]) == 0
    assert generate.main(["--check", "--output-dir", str(tmp_path)]) == 0
    (tmp_path / FILES[0]).write_text("{}")
    assert generate.main(["--check", "--output-dir", str(tmp_path)]) == 1
    assert FILES[0] in capsys.readouterr().err


def test_without_the_sdk_the_generator_says_what_to_install():
    """Only the generator needs the SDK: without it (python -S: no site-packages), one line and exit 2."""
    import sys
    r = subprocess.run([sys.executable, "-S", os.path.join(DASH_DIR, "generate.py"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "grafana-foundation-sdk is not installed: pip install -e '.[dashboards]'"], r.stderr


def test_the_sdk_pinned_is_the_grafana_build_the_docs_name():
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        pins = re.findall(r'"grafana-foundation-sdk==(\d+)!([\d.]+)"', f.read())
    assert pins and {v for _, v in pins} == {generate.GRAFANA_SCHEMA + ".0"}
    import tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert not [d for d in project["dependencies"] if "grafana" in d], "the exporter must not need the SDK"
    assert project["optional-dependencies"]["dashboards"] == ["grafana-foundation-sdk==%s!%s" % pins[0]]
    from importlib.metadata import version
    assert version("grafana-foundation-sdk").endswith("!" + generate.GRAFANA_SCHEMA + ".0")
    with open(os.path.join(ROOT, "docs", "setup.md"), encoding="utf-8") as f:
        assert "Grafana %s" % generate.GRAFANA_SCHEMA in f.read()


# ---- Grafana's schema models --------------------------------------------------------------

def test_the_sdk_models_decode_every_field(dash):
    """Dashboard.from_json with every panel and query plugin registered, then back: nothing lost."""
    register_default_plugins()
    model = sdk_dashboard.Dashboard.from_json(dash)
    assert json.loads(json.dumps(model, cls=JSONEncoder)) == dash
    assert model.schema_version == 39 and model.uid == dash["uid"]
    typed = 0
    for p in model.panels:
        if isinstance(p, sdk_dashboard.RowPanel):
            continue
        # Panel options and queries decode into the plugins' typed models, not untyped bags.
        assert type(p.options).__module__.endswith("." + p.type_val), (p.title, type(p.options))
        for t in p.targets:
            assert type(t).__module__.endswith(".prometheus"), (p.title, type(t))
        typed += 1
    assert typed >= 15


def test_importable_through_the_http_api_and_by_file(dash):
    """POST /api/dashboards/db takes {"dashboard": ..., "overwrite": true}: no numeric id (it would
    name another Grafana's row), a fixed uid, and no `__inputs` to fill in at import."""
    body = json.loads(json.dumps({"dashboard": dash, "overwrite": True}))
    assert body["dashboard"].get("id") is None and re.fullmatch(r"[a-z-]{8,40}", dash["uid"])
    assert "__inputs" not in dash and "__requires" not in dash
    with open(os.path.join(ROOT, "docs", "setup.md"), encoding="utf-8") as f:
        doc = f.read()
    assert "jq '{dashboard: ., overwrite: true}'" in doc and "/api/dashboards/db" in doc


# ---- the Grafana model -------------------------------------------------------------------

def test_dashboard_model(dash):
    assert dash["uid"] in ("imaging-overview", "imaging-server")
    assert dash["title"].startswith("Imaging / ")
    assert "imaging" in dash["tags"] and "id" not in dash
    assert dash["editable"] is True and dash["time"]["to"] == "now" and dash["refresh"]


def test_every_datasource_is_the_variable(dash):
    """No hard-coded datasource UID anywhere: every reference is ${datasource}."""
    def walk(node, path):
        if isinstance(node, dict):
            if "datasource" in node and not isinstance(node["datasource"], str):
                assert node["datasource"] == DS, (path, node["datasource"])
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
    uids = set(re.findall(r'"uid": "([^"]*)"', json.dumps(dash)))
    assert uids <= {"${datasource}", dash["uid"]}, uids


def test_variables(dash):
    by_name = {v["name"]: v for v in dash["templating"]["list"]}
    assert list(by_name) == VARIABLES
    for name, selector, label in variable_queries(dash):
        v = by_name[name]
        assert label == ("server_id" if name == "server" else name)
        assert v["datasource"] == DS and v["refresh"] == 2
        for used in variables_used(selector):
            assert VARIABLES.index(used) < VARIABLES.index(name), "%s depends on a later %s" % (name, used)
    # All must match an absent label (Linode has no project; host series have no cloud): `.*`.
    for name in ("cloud", "project"):
        assert by_name[name]["multi"] and by_name[name]["includeAll"] and by_name[name]["allValue"] == ".*"
    # All for job expands to the listed jobs: `.*` would also pick other exporters' `up`.
    assert "allValue" not in by_name["job"]
    server = by_name["server"]
    if dash["uid"] == "imaging-overview":
        assert server["multi"] and server["includeAll"] and server["allValue"] == ".*"
    else:
        assert not server["multi"] and not server["includeAll"]
    # Every variable a query, a legend or a link uses is defined, and each is used by panels.
    text = json.dumps(dash["panels"])
    used = variables_used(text) - BUILTINS - {"__value", "__url_time_range", "__data", "__field"}
    assert used <= set(by_name), used - set(by_name)
    for v in VARIABLES[1:]:
        assert v in used, "unused variable " + v


def test_host_and_cloud_panels_take_every_variable(dash):
    """Each query that reads host-mode or per-server cloud series filters on job, cloud, project and server."""
    host_metrics = {"imaging_headroom_ratio", "imaging_headroom_bytes", "imaging_filesystem_used_bytes",
                    "imaging_uncovered_bytes", "imaging_database_processes", "imaging_host_info"}
    server_metrics = {"imaging_job_started_timestamp_seconds", "imaging_job_failures", "imaging_backups_enabled",
                      "imaging_cloud_disk_size_bytes", "imaging_image_size_bytes"}
    checked = 0
    for p in panels(dash):
        for t in p.get("targets", []):
            names = metric_names(t["expr"])
            if names & (host_metrics | server_metrics):
                assert {"job", "cloud", "project", "server"} <= variables_used(t["expr"]), (p["title"], t["refId"])
                checked += 1
    assert checked > 10


def test_panel_ids_and_grid(dash):
    ids = [p["id"] for p in panels(dash)]
    assert ids == list(range(1, len(ids) + 1))
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
        assert p["title"] and len(p.get("description", "")) > 40, p["title"]
        assert not re.search(r"%[%sdg(]", p["title"] + p["description"]), "unformatted: " + p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)) and all(refs), p["title"]
        defaults = p["fieldConfig"]["defaults"]
        if p["type"] in ("timeseries", "bargauge"):
            assert defaults.get("unit"), p["title"]
        elif p["type"] == "stat":
            text_stat = p["options"]["reduceOptions"].get("fields", "").startswith("/^")
            assert text_stat or defaults.get("unit") or defaults.get("mappings"), p["title"]
        elif p["type"] == "heatmap":
            assert p["options"]["yAxis"]["unit"] == "s"
            assert all(t["format"] == "heatmap" for t in p["targets"])
        elif p["type"] == "table":
            assert all(t["instant"] and t["format"] == "table" for t in p["targets"]), p["title"]
            ids = [tr["id"] for tr in p["transformations"]]
            assert ids == (["merge"] if len(p["targets"]) > 1 else []) + ["filterFieldsByName", "organize"], p["title"]
            shown = p["transformations"][-2]["options"]["include"]["names"]
            assert shown == list(p["transformations"][-1]["options"]["renameByName"]), p["title"]
            renamed = p["transformations"][-1]["options"]["renameByName"]
            for sort in p["options"].get("sortBy", []):
                assert sort["displayName"] in renamed.values(), p["title"]
            for o in p["fieldConfig"]["overrides"]:
                assert o["matcher"]["options"] in renamed.values(), (p["title"], o["matcher"])
        else:
            pytest.fail("unexpected panel type %s" % p["type"])
        # Sizes in decimal units, as the providers write their limits ("GB" = 10^9 bytes).
        assert '"bytes"' not in json.dumps(p["fieldConfig"]), p["title"]


def test_every_alert_has_a_runbook_link_on_a_panel():
    """Panel links point at the runbook section of an alert that exists; together they cover every alert."""
    with open(os.path.join(ROOT, "docs", "runbooks.md"), encoding="utf-8") as f:
        anchors = {h.strip().lower() for h in re.findall(r"^## (\w+)\s*$", f.read(), re.M)}
    rules = [r for g in alerts.build()["groups"] for r in g["rules"] if "alert" in r]
    by_url = {r["annotations"]["runbook_url"]: r["alert"] for r in rules}
    linked = set()
    for name in FILES:
        for p in panels(load(name)):
            for link in p.get("links", []):
                assert link["url"] in by_url, (p["title"], link["url"])
                assert link["url"].rsplit("#", 1)[1] in anchors
                assert link["title"] == "Runbook: " + by_url[link["url"]]
                linked.add(by_url[link["url"]])
    assert linked == {r["alert"] for r in rules}
    firing = next(p for p in panels(load(FILES[0])) if p["title"] == "Firing imaging alerts")
    assert "ALERTS{" in firing["targets"][0]["expr"]
    for rule in rules:
        assert '"%s", "alertname", "%s")' % (rule["annotations"]["runbook_url"], rule["alert"]) \
            in firing["targets"][0]["expr"]


def test_thresholds_match_the_alert_rules():
    """A dashboard turns orange or red where the alerts fire (alerts/generate.py CONFIG, read here directly)."""
    c = alerts.CONFIG
    over, srv = load(FILES[0]), load(FILES[1])

    def panel(d, title):
        return next(p for p in panels(d) if p["title"] == title)

    def field(p, name):
        o = next(o for o in p["fieldConfig"]["overrides"] if o["matcher"]["options"] == name)
        return {prop["id"]: prop["value"] for prop in o["properties"]}

    def steps(thr):
        return [(s["color"], s["value"]) for s in thr["steps"]]

    soonest = panel(over, "Soonest to cross")
    assert steps(field(soonest, "Headroom %")["thresholds"]) == [
        ("red", None), ("orange", 0), ("green", c["headroomNearlyRatio"])]
    assert steps(field(soonest, "Time to limit")["thresholds"]) == [
        ("red", None), ("orange", duration_seconds(c["predictCriticalHorizon"])),
        ("green", duration_seconds(c["predictWarningHorizon"]))]
    assert soonest["options"]["sortBy"] == [{"displayName": "Time to limit", "desc": False}]
    accounts = panel(over, "Accounts")
    assert steps(field(accounts, "Images used")["thresholds"]) == [
        ("green", None), ("orange", c["quotaWarningRatio"]), ("red", 1)]
    for d in (over, srv):
        jobs = field(panel(d, "Running jobs"), "Running for")
        assert steps(jobs["thresholds"]) == [("green", None), ("orange", duration_seconds(c["jobLongAfter"])),
                                             ("red", duration_seconds(c["jobStuckAfter"]))]
        assert jobs["max"] == duration_seconds(c["jobStuckAfter"]) and jobs["custom.cellOptions"]["type"] == "gauge"
    assert steps(field(panel(over, "Failures"), "Failures")["thresholds"])[-1] == ("red", c["jobRepeatedFailures"])
    assert steps(field(panel(over, "Backups"), "Last successful backup")["thresholds"])[-1] == (
        "red", duration_seconds(c["backupMaxAge"]))
    assert "[%s]" % c["peakRange"] in soonest["targets"][0]["expr"]     # the warning's range over daily peaks


def test_time_to_limit_is_the_fill_up_alerts_prediction():
    """The alerts' predict_linear selector and range, with the dashboards' matchers, is what the table divides."""
    rule = next(r for g in alerts.build()["groups"] for r in g["rules"] if r.get("alert") == "ImagingSizeLimitFillingUp")
    series, rng = re.search(r"predict_linear\(([\w:]+)\{[^}]*\}(\[\w+\])", rule["expr"]).groups()
    expr = next(p for p in panels(load(FILES[0])) if p["title"] == "Soonest to cross")["targets"][0]["expr"]
    assert 'predict_linear(%s{job=~"$job"}%s, 0)' % (series, rng) in expr
    assert 'predict_linear(%s{job=~"$job"}%s, 1)' % (series, rng) in expr


def test_top_k_panels_rank_at_the_end_of_the_range(dash):
    """A range query of topk(k, x) draws every series that was in the top k at any step: the
    time series rank `x @ end()` instead (tests/test_dashboards_fleet.py counts the lines)."""
    ranked = 0
    for p in panels(dash):
        for t in p.get("targets", []):
            for m in re.finditer(r"\b(topk|bottomk)\(", t["expr"]):
                depth, i = 1, m.end()
                while depth:
                    depth += {"(": 1, ")": -1}.get(t["expr"][i], 0)
                    i += 1
                argument = t["expr"][m.end():i - 1]
                assert t["instant"] or "@ end()" in argument, (p["title"], t["refId"])
                ranked += not t["instant"]
    assert ranked >= (6 if dash["uid"] == "imaging-overview" else 0)


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


def test_metric_name_extraction():
    assert metric_names('sum by (le) (increase(imaging_job_duration_seconds_bucket{job=~"$job"}[$__interval]))') \
        == {"imaging_job_duration_seconds_bucket"}
    assert metric_names("clamp_max(a / clamp_min(-deriv(b[6h]), 1e-9), 31536000) or vector(0)") == {"a", "b"}
    assert metric_names('x * on (server_id) group_left () group by (server_id) (y{server_id!=""})') == {"x", "y"}
    assert metric_names('x and bottomk(10, x{a="b"} @ end())') == {"x"}


def test_queries_use_only_exported_metrics(dash):
    recorded = {r["record"] for g in alerts.build()["groups"] for r in g["rules"] if "record" in r}
    known = documented_metrics() | recorded | PENDING_METRICS | {"up", "ALERTS"}
    for p in panels(dash):
        for t in p.get("targets", []):
            names = metric_names(t["expr"])
            assert names, (p["title"], t["expr"])
            assert names <= known, (p["title"], names - known)


def test_queries_parse_as_promql(tmp_path):
    """promtool parses every query (as a recording rule), variables substituted as Grafana would."""
    promtool = need_binary("promtool")
    rules = []
    for name in FILES:
        d = load(name)
        values = {v: ".*" for v in VARIABLES[1:]}
        for title, ref, expr, _ in dashboard_queries(d, values):
            rules.append({"record": "dashboard:query_%d" % len(rules), "expr": expr})
        for var, selector, label in variable_queries(d):
            rules.append({"record": "dashboard:query_%d" % len(rules),
                          "expr": "group by (%s) (%s)" % (label, VARIABLE_REFERENCE.sub(".*", selector))})
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
    # Every panel is described in the doc by its title.
    for name in FILES:
        for p in panels(load(name)):
            assert "*%s*" % p["title"] in doc, "docs/setup.md does not describe panel %r" % p["title"]
