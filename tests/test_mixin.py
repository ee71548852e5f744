"""The jsonnet mixin (mixin/): Debian's jsonnet evaluates it, it holds exactly the shipped rules
and dashboards, `promtool check rules` accepts its output, and its _config selector override
reaches every rule (textfile mode)."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from conftest import ROOT, need_binary

RULES = os.path.join(ROOT, "alerts", "imaging-rules.yml")
TEXTFILE_SELECTOR = 'job=~"imaging.*|node"'


def jsonnet(expr: str):
    res = subprocess.run([need_binary("jsonnet"), "-J", ROOT, "-e", expr], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def mixin(override: str = ""):
    return jsonnet('local m = (import "mixin/mixin.libsonnet")%s; '
                   '{alerts: m.prometheusAlerts, rules: m.prometheusRules, dashboards: m.grafanaDashboards}'
                   % override)


def by_name(groups):
    return {g["name"]: g for g in groups}


@pytest.fixture(scope="module")
def default():
    return mixin()


def test_the_mixin_holds_exactly_the_shipped_rules(default):
    with open(RULES, encoding="utf-8") as f:
        shipped = yaml.safe_load(f)["groups"]
    got = default["alerts"]["groups"] + default["rules"]["groups"]
    assert by_name(got) == by_name(shipped)
    assert len(got) == len(shipped)
    assert all(any("alert" in r for r in g["rules"]) for g in default["alerts"]["groups"])
    assert all(all("record" in r for r in g["rules"]) for g in default["rules"]["groups"])


def test_the_mixin_holds_the_shipped_dashboards(default):
    for name in ("imaging-overview.json", "imaging-server.json"):
        with open(os.path.join(ROOT, "dashboards", name), encoding="utf-8") as f:
            assert default["dashboards"][name] == json.load(f)


def test_generated_mixin_files_are_up_to_date():
    res = subprocess.run([os.sys.executable, os.path.join(ROOT, "alerts", "generate.py"), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_selector_override_reaches_every_rule_and_passes_promtool(tmp_path):
    m = mixin(' + { _config+:: { imagingSelector: %s } }' % json.dumps(TEXTFILE_SELECTOR))
    groups = m["alerts"]["groups"] + m["rules"]["groups"]
    exprs = [r["expr"] for g in groups for r in g["rules"]]
    assert sum(e.count(TEXTFILE_SELECTOR) for e in exprs) > 50
    assert not [e for e in exprs if 'job=~"imaging.*"' in e or "__IMAGING_SELECTOR__" in e]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    res = subprocess.run([need_binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: %d rules found" % len(exprs) in res.stdout
