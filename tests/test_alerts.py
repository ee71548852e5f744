"""Shipped alert rules, runbooks and Alertmanager routing, checked with the real tools.

- alerts/imaging-rules.yml is exactly what alerts/generate.py produces from its CONFIG;
- `promtool check rules` is clean and `promtool test rules tests/rules/*.yml` passes;
- every alert (every severity of it) has a promtool firing case with exact labels and
  annotations, and a quiet case; a runbook section in docs/runbooks.md with a quoted source;
- the rules use only metric names of the exporter's contract, each through the one selector
  in CONFIG;
- `amtool check-config` accepts alerts/alertmanager.yml and `amtool config routes test` sends
  critical to the pager, warning to the ticket receiver and info to the non-paging one;
- the inhibitions work in a real Alertmanager (API v2 reports the target alerts as inhibited,
  and leaves alone the ones they must not touch).

The binaries come from Debian's prometheus and prometheus-alertmanager packages; the test
command installs them. A missing binary is a failure, not a skip.
"""
from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import yaml

from exporter.metricsdoc import all_specs
from conftest import find_tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALERTS_DIR = os.path.join(ROOT, "alerts")
RULES_FILE = os.path.join(ALERTS_DIR, "imaging-rules.yml")
GENERATOR = os.path.join(ALERTS_DIR, "generate.py")
AM_CONFIG = os.path.join(ALERTS_DIR, "alertmanager.yml")
RUNBOOKS = os.path.join(ROOT, "docs", "runbooks.md")
TEST_DIR = os.path.join(ROOT, "tests", "rules")

RUNBOOK_BASE = "https://github.com/imaging-exporter/imaging-exporter/blob/main/docs/runbooks.md#"
SEVERITIES = {"critical", "warning", "info"}
RECEIVER_FOR = {"critical": "imaging-pager", "warning": "imaging-ticket", "info": "imaging-info"}

# Every name the exporter exports, from the collectors' own specifications
# (histograms add their _bucket/_sum/_count series, counters their _total).
def _exported_names():
    names = {"up"}
    for spec in all_specs():
        if spec.type == "histogram":
            names |= {spec.name + s for s in ("_bucket", "_sum", "_count")}
        elif spec.type == "counter":
            names.add(spec.name if spec.name.endswith("_total") else spec.name + "_total")
        else:
            names.add(spec.name)
    return names


# Glance's own usage (source="api"), which the quota recording rules prefer over the count of
# the listing when the exporter publishes it (the rules fall back to the listing without it;
# tests/rules/paging.yml checks both).
PREFERRED_USAGE = {"imaging_quota_images_used", "imaging_quota_bytes_used"}
KNOWN_METRICS = _exported_names() | PREFERRED_USAGE


# ---------------------------------------------------------------- helpers

def _bin(*names: str) -> str:
    for name in names:
        path = find_tool(name)
        if path:
            return path
    pytest.fail("%s not found on PATH: install Debian's prometheus / prometheus-alertmanager "
                "packages (the test command does this)" % " or ".join(names))


def _run(args, **kw):
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, **kw)


def _load_generator():
    spec = importlib.util.spec_from_file_location("imaging_alerts_generate", GENERATOR)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rules(doc=None):
    if doc is None:
        with open(RULES_FILE, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    return [r for g in doc["groups"] for r in g["rules"]]


def _alerts():
    return [r for r in _rules() if "alert" in r]


def _test_files():
    files = sorted(glob.glob(os.path.join(TEST_DIR, "*.yml")))
    assert files, "no promtool test files in tests/rules/"
    return files


def _unit_tests():
    """(file, test group, alert_rule_test entry) for every promtool alert test."""
    out = []
    for path in _test_files():
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        for group in doc.get("tests") or []:
            for case in group.get("alert_rule_test") or []:
                out.append((path, group, case))
    return out


def _github_slug(heading: str) -> str:
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _runbook_sections():
    with open(RUNBOOKS, encoding="utf-8") as f:
        text = f.read()
    sections = {}
    for chunk in re.split(r"(?m)^## ", text)[1:]:
        heading, _, body = chunk.partition("\n")
        sections[_github_slug(heading)] = body
    return sections


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def _metric_tokens(expr: str):
    return _IDENT.findall(_STRING.sub('""', expr))


# ---------------------------------------------------------------- generated file

def test_committed_rules_equal_generator_output():
    gen = _load_generator()
    with open(RULES_FILE, encoding="utf-8") as f:
        committed = f.read()
    assert committed == gen.render(), (
        "alerts/imaging-rules.yml differs from what alerts/generate.py produces: "
        "edit CONFIG in generate.py and run `python alerts/generate.py`, never the YAML")


def test_selector_and_thresholds_are_changed_in_one_place():
    """Every raw metric selector goes through CONFIG['selector']; thresholds come from CONFIG."""
    gen = _load_generator()
    cfg = dict(gen.CONFIG, selector='job="changed-by-test"', headroomNearlyRatio=0.15,
               jobStuckAfter="30h", backupMaxAge="50h")
    text = gen.render(cfg)
    rules = _rules(yaml.safe_load(text))
    nearly = [r for r in rules if r.get("alert") == "ImagingSizeLimitNearlyReached"][0]
    assert "< 0.15" in nearly["expr"] and "less than 15% of the limit" in nearly["annotations"]["description"]
    stuck = [r for r in rules if r.get("alert") == "ImagingJobStuck"][0]
    assert "> 30 * 3600" in stuck["expr"] and "more than 30 hours" in stuck["annotations"]["description"]
    missing = [r for r in rules if r.get("alert") == "ImagingBackupMissing"][0]
    assert "offset 50h" in missing["expr"]
    for rule in rules:
        expr = rule["expr"]
        for m in re.finditer(r"(?<![\w:])(imaging_[a-z0-9_]+|up)(?![\w:])", expr):
            rest = expr[m.end():]
            assert rest.startswith('{job="changed-by-test"'), (
                "%s: %s is not selected through CONFIG['selector']: %r"
                % (rule.get("alert") or rule.get("record"), m.group(1), expr))


# ---------------------------------------------------------------- promtool

def test_promtool_check_rules_is_clean():
    res = _run([_bin("promtool"), "check", "rules", "--lint=all", "--lint-fatal", RULES_FILE])
    assert res.returncode == 0, res.stdout + res.stderr
    n = len(_rules())
    assert "SUCCESS: %d rules found" % n in res.stdout, res.stdout + res.stderr


def test_promtool_unit_tests_pass():
    res = _run([_bin("promtool"), "test", "rules"] + _test_files())
    assert res.returncode == 0, res.stdout + res.stderr
    assert "FAILED" not in res.stdout


def test_unit_test_files_load_the_shipped_rules():
    for path in _test_files():
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        files = [os.path.normpath(os.path.join(os.path.dirname(path), p)) for p in doc["rule_files"]]
        assert files == [os.path.normpath(RULES_FILE)], path


# ---------------------------------------------------------------- shape of the rules

def test_every_alert_has_severity_and_annotations():
    names = {}
    for rule in _alerts():
        name = rule["alert"]
        assert re.fullmatch(r"Imaging[A-Z][A-Za-z]+", name), name
        assert rule["labels"].get("severity") in SEVERITIES, name
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, name
        assert rule["annotations"]["runbook_url"] == RUNBOOK_BASE + name.lower(), name
        assert "{{" not in rule["annotations"]["summary"], "%s: keep summaries static" % name
        assert "$labels" in rule["annotations"]["description"], name
        sev = rule["labels"]["severity"]
        assert sev not in names.setdefault(name, set()), "%s defined twice for %s" % (name, sev)
        names[name].add(sev)


def test_rules_use_only_known_metrics():
    recorded = {r["record"] for r in _rules() if "record" in r}
    for rule in _rules():
        for tok in _metric_tokens(rule["expr"]):
            if ":" in tok:
                assert tok in recorded, "%s uses undefined recorded series %s" % (
                    rule.get("alert") or rule.get("record"), tok)
            elif tok.startswith("imaging_"):
                assert tok in KNOWN_METRICS, "%s uses %s, which is not in the exporter's contract" % (
                    rule.get("alert") or rule.get("record"), tok)
    for name in recorded:
        level, metric, ops = name.split(":")
        assert metric.startswith("imaging_") and level and ops, name


def test_every_alert_has_a_firing_and_a_quiet_promtool_case():
    tests = _unit_tests()
    missing = []
    for rule in _alerts():
        name, sev = rule["alert"], rule["labels"]["severity"]
        firing = [
            a for _, _, case in tests if case["alertname"] == name
            for a in case.get("exp_alerts") or []
            if (a.get("exp_labels") or {}).get("severity") == sev
        ]
        if not firing:
            missing.append("%s (%s): no firing case" % (name, sev))
        for a in firing:
            ann = a.get("exp_annotations") or {}
            if set(ann) != {"summary", "description", "runbook_url"}:
                missing.append("%s (%s): firing case without all annotations" % (name, sev))
            elif ann["runbook_url"] != rule["annotations"]["runbook_url"]:
                missing.append("%s (%s): firing case with another runbook_url" % (name, sev))
            if len(a["exp_labels"]) < 2:
                missing.append("%s (%s): firing case without the alert's labels" % (name, sev))
    # A quiet case: a test group with input series in which the alert is expected at no
    # evaluation, checked at least once after the rule's `for:` has elapsed (so it is not
    # merely pending).
    for name, hold in sorted(_longest_for().items()):
        quiet = False
        for _, group, _case in tests:
            cases = [c for c in group.get("alert_rule_test") or [] if c["alertname"] == name]
            if (cases and group.get("input_series")
                    and all(not c.get("exp_alerts") for c in cases)
                    and max(_seconds(c["eval_time"]) for c in cases) > hold):
                quiet = True
        if not quiet:
            missing.append("%s: no quiet case (a test group where it never fires, evaluated after"
                           " its for: duration)" % name)
    assert not missing, "\n".join(missing)


def _seconds(duration) -> int:
    parts = re.findall(r"(\d+)([dhms])", str(duration))
    assert parts and "".join(n + u for n, u in parts) == str(duration), duration
    return sum(int(n) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def _longest_for():
    out = {}
    for rule in _alerts():
        out[rule["alert"]] = max(out.get(rule["alert"], 0), _seconds(rule.get("for", "0s")))
    return out


def test_every_alert_has_a_runbook_section_with_a_quoted_source():
    sections = _runbook_sections()
    names = {r["alert"] for r in _alerts()}
    for name in sorted(names):
        anchor = name.lower()
        assert anchor in sections, "docs/runbooks.md has no section '## %s'" % name
        body = sections[anchor]
        assert re.search(r"(?m)^> \S", body), "runbook %s quotes no source" % name
        for part in ("**Meaning.**", "**Source.**", "**Check.**", "**Do.**"):
            assert part in body, "runbook %s has no %s part" % (name, part)
    orphans = set(sections) - {n.lower() for n in names}
    assert not orphans, "runbook sections for alerts that do not exist: %s" % sorted(orphans)


# ---------------------------------------------------------------- Alertmanager config

def test_amtool_check_config():
    res = _run([_bin("amtool"), "check-config", AM_CONFIG])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


@pytest.mark.parametrize("severity", sorted(RECEIVER_FOR))
def test_amtool_routes_by_severity(severity):
    res = _run([_bin("amtool"), "config", "routes", "test", "--config.file=" + AM_CONFIG,
                "alertname=ImagingTest", "cloud=c1", "instance=i1", "severity=" + severity])
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == [RECEIVER_FOR[severity]], res.stdout


def test_every_shipped_alert_routes_to_its_severity_receiver():
    amtool = _bin("amtool")
    for rule in _alerts():
        sev = rule["labels"]["severity"]
        res = _run([amtool, "config", "routes", "test", "--config.file=" + AM_CONFIG,
                    "alertname=" + rule["alert"], "severity=" + sev])
        assert res.stdout.split() == [RECEIVER_FOR[sev]], (rule["alert"], res.stdout)


def test_info_receiver_does_not_page():
    with open(AM_CONFIG, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    receivers = {r["name"]: r for r in cfg["receivers"]}
    pager = receivers["imaging-pager"]["webhook_configs"][0]["url"]
    info = receivers["imaging-info"]
    assert set(info) == {"name", "webhook_configs"}
    assert all(w["url"] != pager for w in info["webhook_configs"])
    for r in receivers.values():
        for w in r.get("webhook_configs", []):
            assert w["url"].startswith("http://127.0.0.1:"), w["url"]
    assert cfg["route"]["group_by"] == ["alertname", "cloud", "instance"]


def test_inhibit_rules_name_existing_alerts():
    with open(AM_CONFIG, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    names = {r["alert"] for r in _alerts()}
    for rule in cfg["inhibit_rules"]:
        for side in ("source_matchers", "target_matchers"):
            for m in rule[side]:
                mm = re.fullmatch(r'alertname(=~|=|!=)"(.*)"', m)
                if not mm or mm.group(1) == "!=":
                    continue
                pat = mm.group(2) if mm.group(1) == "=~" else re.escape(mm.group(2))
                assert any(re.fullmatch(pat, n) for n in names), "%s matches no alert: %s" % (side, m)


def _severities(matchers):
    """Severities of the shipped alerts that a list of Alertmanager matchers can select."""
    out = set()
    for rule in _alerts():
        labels = dict(rule["labels"], alertname=rule["alert"])
        ok = True
        for m in matchers:
            name, op, value = re.fullmatch(r'(\w+)(=~|!=|=)"(.*)"', m).groups()
            if name not in ("alertname", "severity"):
                continue                  # labels of the series, not of the rule
            v = labels[name]
            hit = re.fullmatch(value, v) if op == "=~" else v == value
            ok = ok and (not hit if op == "!=" else bool(hit))
        if ok:
            out.add(labels["severity"])
    return out


def test_no_warning_inhibits_a_critical_alert():
    """An inhibition whose source can be a warning never targets critical alerts."""
    with open(AM_CONFIG, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    checked = 0
    for rule in cfg["inhibit_rules"]:
        if "warning" in _severities(rule["source_matchers"]):
            checked += 1
            assert "critical" not in _severities(rule["target_matchers"]), rule
    assert checked >= 4


# ---------------------------------------------------------------- inhibitions in a real Alertmanager

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(url, data=None):
    req = urllib.request.Request(url, data=None if data is None else json.dumps(data).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        body = r.read()
    return json.loads(body) if body else None


@pytest.fixture()
def alertmanager(tmp_path):
    binary = _bin("prometheus-alertmanager", "alertmanager")
    port = _free_port()
    log = open(tmp_path / "alertmanager.log", "w")
    proc = subprocess.Popen(
        [binary, "--config.file=" + AM_CONFIG, "--storage.path=" + str(tmp_path / "data"),
         "--web.listen-address=127.0.0.1:%d" % port, "--cluster.listen-address=",
         "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT)
    base = "http://127.0.0.1:%d" % port
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/-/ready", timeout=1).close()
                break
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.time() > deadline:
                    log.close()
                    pytest.fail("alertmanager did not start:\n" + (tmp_path / "alertmanager.log").read_text())
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


HOST = {"job": "imaging-host"}
CLOUD = {"job": "imaging-cloud", "instance": "exporter:9847", "project": "acme"}

# (name of the case, labels, inhibited?)
INHIBITION_CASES = [
    # limit exceeded hides nearly reached / filling up of the same filesystem and limit
    ("size exceeded", dict(HOST, alertname="ImagingSizeLimitExceeded", severity="critical",
                           instance="h1", mountpoint="/", limit="volume_size"), False),
    ("size nearly, same fs", dict(HOST, alertname="ImagingSizeLimitNearlyReached", severity="warning",
                                  instance="h1", mountpoint="/", limit="volume_size"), True),
    ("size filling, same fs", dict(HOST, alertname="ImagingSizeLimitFillingUp", severity="warning",
                                   instance="h1", mountpoint="/", limit="volume_size"), True),
    ("size nearly, other fs", dict(HOST, alertname="ImagingSizeLimitNearlyReached", severity="warning",
                                   instance="h1", mountpoint="/srv", limit="volume_size"), False),
    ("inode nearly, same fs", dict(HOST, alertname="ImagingInodeLimitNearlyReached", severity="warning",
                                   instance="h1", mountpoint="/", limit="inode_usage"), False),
    # filling up within 4h hides filling up within 24h
    ("filling 4h", dict(HOST, alertname="ImagingInodeLimitFillingUp", severity="critical",
                        instance="h2", mountpoint="/", limit="inode_usage"), False),
    ("filling 24h, same fs", dict(HOST, alertname="ImagingInodeLimitFillingUp", severity="warning",
                                  instance="h2", mountpoint="/", limit="inode_usage"), True),
    ("filling 24h, other fs", dict(HOST, alertname="ImagingInodeLimitFillingUp", severity="warning",
                                   instance="h2", mountpoint="/var", limit="inode_usage"), False),
    # quota full hides nearly full of the same quota only
    ("quota full", dict(CLOUD, alertname="ImagingImageQuotaFull", severity="critical", cloud="q1"), False),
    ("quota nearly", dict(CLOUD, alertname="ImagingImageQuotaNearlyFull", severity="warning", cloud="q1"), True),
    ("storage nearly", dict(CLOUD, alertname="ImagingImageStorageQuotaNearlyFull", severity="warning",
                            cloud="q1"), False),
    # a stuck job hides its own "running long"
    ("job stuck", dict(CLOUD, alertname="ImagingJobStuck", severity="critical", cloud="j1",
                       server_id="s1", kind="image", job_id="img-1"), False),
    ("job long, same job", dict(CLOUD, alertname="ImagingJobRunningLong", severity="warning", cloud="j1",
                                server_id="s1", kind="image", job_id="img-1"), True),
    ("job long, other job", dict(CLOUD, alertname="ImagingJobRunningLong", severity="warning", cloud="j1",
                                 server_id="s2", kind="image", job_id="img-2"), False),
    # a cloud source down hides that cloud's alerts (even critical ones), nothing else
    ("cloud source down", dict(CLOUD, alertname="ImagingSourceDown", severity="warning",
                               source="openstack", cloud="c1"), False),
    ("source stale, same source", dict(CLOUD, alertname="ImagingSourceStale", severity="warning",
                                       source="openstack", cloud="c1"), True),
    # ... but a warning never silences a page: a real stuck job must reach someone
    ("stuck job in c1", dict(CLOUD, alertname="ImagingJobStuck", severity="critical", cloud="c1",
                             server_id="s9", kind="image", job_id="img-9"), False),
    ("quota full in c1", dict(CLOUD, alertname="ImagingImageQuotaFull", severity="critical", cloud="c1"), False),
    ("job long in c1", dict(CLOUD, alertname="ImagingJobRunningLong", severity="warning", cloud="c1",
                            server_id="s9", kind="image", job_id="img-10"), True),
    ("backup too old in c1", dict(CLOUD, alertname="ImagingBackupTooOld", severity="warning", cloud="c1",
                                  server_id="s9", kind="backup"), True),
    ("db during image in c1", dict(HOST, alertname="ImagingDatabaseRunningDuringImage", severity="warning",
                                   instance="db1", cloud="c1", server_id="s9", engine="mysql"), True),
    ("stuck job in c2", dict(CLOUD, alertname="ImagingJobStuck", severity="critical", cloud="c2",
                             server_id="s8", kind="image", job_id="img-8"), False),
    ("host alert during cloud outage", dict(HOST, alertname="ImagingSizeLimitExceeded", severity="critical",
                                            instance="h3", mountpoint="/", limit="volume_size"), False),
    # a host source down hides that host's host-mode alerts only
    ("host source down", dict(HOST, alertname="ImagingSourceDown", severity="warning", instance="h4",
                              source="host"), False),
    ("size exceeded on h4", dict(HOST, alertname="ImagingSizeLimitExceeded", severity="critical",
                                 instance="h4", mountpoint="/", limit="volume_size"), False),
    ("size nearly on h4", dict(HOST, alertname="ImagingSizeLimitNearlyReached", severity="warning",
                               instance="h4", mountpoint="/", limit="inode_usage"), True),
    ("mount error on h4", dict(HOST, alertname="ImagingMountStatError", severity="warning", instance="h4",
                               mountpoint="/mnt/nfs", device="nfs:/x", fstype="nfs", error="timeout"), False),
    ("size exceeded on h5", dict(HOST, alertname="ImagingSizeLimitExceeded", severity="critical",
                                 instance="h5", mountpoint="/", limit="volume_size"), False),
    ("cloud alert during host outage", dict(CLOUD, alertname="ImagingJobStuck", severity="critical",
                                            cloud="c3", server_id="s7", kind="image", job_id="img-7"), False),
    # the exporter target down hides the rest from that target
    ("exporter down", dict(HOST, alertname="ImagingExporterDown", severity="warning", instance="h6"), False),
    ("mount error on h6", dict(HOST, alertname="ImagingMountStatError", severity="warning", instance="h6",
                               mountpoint="/mnt/nfs", device="nfs:/x", fstype="nfs", error="timeout"), True),
    ("collector failed on h6", dict(HOST, alertname="ImagingCollectorFailed", severity="warning",
                                    instance="h6", collector="filesystem"), True),
    ("size exceeded on h6", dict(HOST, alertname="ImagingSizeLimitExceeded", severity="critical",
                                 instance="h6", mountpoint="/", limit="volume_size"), False),
    # a blind exporter pages once: its page hides its own warning
    ("exporter blind", dict(HOST, alertname="ImagingExporterDown", severity="critical", instance="h8"), False),
    ("exporter down, paged", dict(HOST, alertname="ImagingExporterDown", severity="warning", instance="h8"), True),
    ("mount error on h7", dict(HOST, alertname="ImagingMountStatError", severity="warning", instance="h7",
                               mountpoint="/mnt/nfs", device="nfs:/x", fstype="nfs", error="timeout"), False),
]


def test_inhibitions_in_alertmanager(alertmanager):
    names = {r["alert"] for r in _alerts()}
    for case, labels, _ in INHIBITION_CASES:
        assert labels["alertname"] in names, case
    _http(alertmanager + "/api/v2/alerts", [{"labels": labels} for _, labels, _ in INHIBITION_CASES])

    def key(labels):
        return tuple(sorted(labels.items()))

    expected = {key(labels): (case, inhibited) for case, labels, inhibited in INHIBITION_CASES}
    deadline = time.time() + 20
    while True:
        got = {key(a["labels"]): bool(a["status"]["inhibitedBy"])
               for a in _http(alertmanager + "/api/v2/alerts")}
        wrong = ["%s: expected %s, got %s" % (case, "inhibited" if inh else "not inhibited",
                                               "inhibited" if got.get(k) else "not inhibited"
                                               if k in got else "missing")
                 for k, (case, inh) in expected.items() if got.get(k) != inh]
        if not wrong:
            break
        if time.time() > deadline:
            pytest.fail("inhibitions in Alertmanager:\n" + "\n".join(wrong))
        time.sleep(0.5)
