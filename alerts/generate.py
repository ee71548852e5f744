#!/usr/bin/env python3
"""Generate alerts/imaging-rules.yml, the imaging exporter's recording and alerting rules.

Mixin style without jsonnet: everything a user may want to change (which targets the
rules look at, thresholds, `for:` durations) is in CONFIG below, in one place.

    python alerts/generate.py            # rewrite alerts/imaging-rules.yml
    python alerts/generate.py --check    # exit 1 if the committed file is out of date

The rules use only the exporter's metric contract (docs/metrics.md),
in base units. Every alert has a severity label (critical pages, warning makes a ticket,
info never pages; see alerts/alertmanager.yml) and summary, description and runbook_url
annotations; the runbook sections are in docs/runbooks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import yaml

# The rule builders live next to this file (alerts/rules_*.py); this file is run as a script
# and loaded by path (tests, dashboards/generate.py), so its directory goes on the path.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rules_cloud import backup_rules, exporter_rules, job_rules, quota_rules  # noqa: E402
from rules_common import RuleWriter, number, pct, seconds, words  # noqa: E402,F401 - re-exported for importers
from rules_backup import cloud_backup_rules  # noqa: E402
from rules_host import coverage_rules, headroom_rules, peak_rules, recording_rules  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:      # exporter.generated, from a checkout too
    sys.path.insert(0, ROOT)
PROFILES = os.path.join(ROOT, "exporter", "profiles.yaml")


def _common_facts(path: str = PROFILES) -> dict:
    """The facts every profile shares (exporter/profiles.yaml `common:`), as the rules use them."""
    with open(path, encoding="utf-8") as f:
        common = yaml.safe_load(f)["common"]
    return {"job_stuck_after": str(common["job_stuck_after"]),
            "repeated_failures": int(common["repeated_failures"]),
            "retry_after": str(common["retry_after"])}


COMMON = _common_facts()

# The one place for every threshold, selector and duration of the shipped rules, the
# Alertmanager example and the mixin. Plain data: str durations in Prometheus syntax
# ("30m", "24h"), ratios as floats 0-1, counts as ints, lists of `limit` label values.
# dashboards/generate.py reads the same keys.
CONFIG = {
    # Label matchers added to every selector: they pick the imaging exporter's series (host and
    # cloud mode alike), including `up` for the target-down alert. Textfile mode (`--once` into
    # node_exporter's textfile directory): the series carry node_exporter's job, e.g.
    # 'job=~"imaging.*|node"'.
    "selector": 'job=~"imaging.*"',
    "runbookURL": "https://github.com/imaging-exporter/imaging-exporter/blob/main/docs/runbooks.md#%s",
    # Host alerts read the last sample within this window, so a scrape gap this long (an
    # exporter restart, a lost scrape) neither resolves them nor restarts their `for:`.
    "scrapeGapTolerance": "15m",

    # Headroom under an image limit on a host (imaging_headroom_*: limit minus measure).
    "headroomNearlyRatio": 0.10,      # warn below this share of the limit left ...
    "headroomNearlyFor": "30m",       # ... for this long
    "headroomCriticalRatio": 0.03,    # page below this share left (node-mixin's static 3 %) ...
    "headroomCriticalFor": "30m",     # ... for this long ...
    # ... on limits whose measure never goes down (the Windows high-water mark): there, close is
    # as bad as over. Elsewhere a sawtooth sits within 3 % for days; the filling-up page decides.
    "headroomCriticalLimits": ["disk_usage"],
    "headroomExceededFor": "15m",     # over the limit for this long
    # Filling up, warning: the daily peaks (lowest headroom of each rolling day, recorded every
    # peakRecordInterval) crossing within predictWarningHorizon, predicted over peakRange. A
    # sawtooth (logs growing all day, rotated at midnight) is one warning about a day ahead.
    "peakWindow": "1d",
    "peakRange": "2d",
    "peakRecordInterval": "5m",
    "predictWarningHorizon": "24h",
    "predictWarningRatio": 0.40,      # ... and already under this headroom ratio
    # Filling up, page: the last predictRange (node-mixin's 6 h) and the last predictRecentRange
    # both cross within predictCriticalHorizon (a one-off copy stops trending within the hour),
    # unless the same hours yesterday freed space that keeps the daily peak under the limit.
    "predictRange": "6h",
    "predictRecentRange": "1h",
    "predictCriticalHorizon": "4h",
    "predictCriticalRatio": 0.20,     # ... and already under this headroom ratio
    "predictFor": "1h",
    "predictKeepFiring": "30m",       # a noisy trend does not resolve and re-page
    "cycleMinRise": 0.005,            # a rise of this share of the limit yesterday is a clean-up cycle
    # Limits whose breach does not make an image request fail: warnings, never pages.
    # system_volume: General Purpose / I/O servers cannot be *built from* such an image.
    "warningOnlyLimits": ["system_volume"],
    # Limits the provider's backup service bypasses: no page for a server whose Backup Service
    # is on (imaging_backups_enabled, joined through imaging_host_info's server_id).
    "backupBypassLimits": ["custom_image_size"],

    # Image quotas of a cloud account (count and bytes) and the largest image size.
    "imageCountSelector": "",         # which images count against the quota, e.g. 'status!="killed"'
    "quotaWarningRatio": 0.80,
    "quotaWarningFor": "15m",
    "quotaFullWindow": "1h",          # page when full for quotaFullShare of this window ...
    "quotaFullShare": 0.5,            # ... (a nightly create-then-delete rotation is not)
    "quotaFullKeepFiring": "1h",      # ... and hold the page while it flaps
    "imageSizeFor": "15m",

    # Imaging jobs. The stuck and repeated-failure thresholds are the profiles' common facts.
    "jobLongAfter": "6h",
    "jobStuckAfter": COMMON["job_stuck_after"],
    "jobRepeatedFailures": COMMON["repeated_failures"],
    "retryAfter": COMMON["retry_after"],
    "databaseJobSelector": 'kind="image"',  # jobs during which a running database is a problem

    # Backups: a daily schedule runs inside a 2-hour window, and takes a while.
    "backupMaxAge": "30h",
    "backupsDisabledFor": "1h",

    # What images do not contain (info).
    "coverageFor": "1h",

    # The exporter itself.
    "exporterDownFor": "15m",
    "sourceDownFor": "15m",
    "sourceStaleIntervals": 3,
    "blindPageAfter": "1h",           # a target, source or textfile blind this long pages
    "textfileMaxAge": "15m",          # --once output older than this warns
    "mountErrorFor": "15m",
    "collectorFailedFor": "15m",

    # Windows: a domain controller's image cannot be restored (demote it first).
    "domainControllerFor": "15m",

    # Rackspace Cloud Backup (the rackspace_backup provider).
    "cloudBackup": {
        "rackspaceHosts": 'profile=~"rackspace.*"',  # host-mode servers at Rackspace (imaging_host_info)
        "databaseFor": "30m",
        "uncoveredFor": "1h",
        "agentOfflineFor": "24h",
        "scheduleRuns": 2,       # a last success older than this many scheduled intervals is overdue
    },
}

OUTPUT = os.path.join(HERE, "imaging-rules.yml")
MIXIN = os.path.join(ROOT, "mixin")
# The mixin's rules carry this token where the selector goes; mixin.libsonnet puts
# _config.imagingSelector in its place.
SELECTOR_TOKEN = "__IMAGING_SELECTOR__"

HEADER = """\
# Recording and alerting rules for imaging-exporter.
#
# GENERATED by alerts/generate.py from its CONFIG: do not edit by hand. To change the
# target selector, a threshold or a `for:` duration, edit CONFIG and run
#     python alerts/generate.py
# Runbooks: docs/runbooks.md. Example routing and inhibitions: alerts/alertmanager.yml.
"""


def build(c: dict = CONFIG) -> dict:
    writer = RuleWriter(c)
    return {"groups": [
        {"name": "imaging.rules", "rules": recording_rules(writer)},
        {"name": "imaging-peaks.rules", "interval": c["peakRecordInterval"], "rules": peak_rules(writer)},
        {"name": "imaging-headroom", "rules": headroom_rules(writer)},
        {"name": "imaging-quota", "rules": quota_rules(writer)},
        {"name": "imaging-jobs", "rules": job_rules(writer)},
        {"name": "imaging-backups", "rules": backup_rules(writer)},
        {"name": "imaging-coverage", "rules": coverage_rules(writer)},
        {"name": "imaging-exporter", "rules": exporter_rules(writer)},
        {"name": "imaging-cloud-backup", "rules": cloud_backup_rules(writer)},
    ]}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper, data):
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def render(c: dict = CONFIG) -> str:
    body = yaml.dump(build(c), Dumper=_Dumper, sort_keys=False, width=float("inf"), allow_unicode=True,
                     default_flow_style=False)
    return HEADER + body


def mixin_files(c: dict = CONFIG) -> dict:
    """{path: text} of the generated part of the jsonnet mixin (mixin/): the same rules as
    imaging-rules.yml, with the selector as a token, and the default _config."""
    groups = build(dict(c, selector=SELECTOR_TOKEN))["groups"]
    config = ("// GENERATED by alerts/generate.py from its CONFIG: do not edit by hand.\n"
              "{\n  _config+:: {\n"
              "    // Label matchers that pick the imaging exporter's series in every rule\n"
              "    // (textfile mode: 'job=~\"imaging.*|node\"'). Must not be empty.\n"
              "    imagingSelector: %s,\n  },\n}\n" % json.dumps(c["selector"]))
    return {
        os.path.join(MIXIN, "rules.json"): json.dumps({"groups": groups}, indent=1, sort_keys=False) + "\n",
        os.path.join(MIXIN, "config.libsonnet"): config,
    }


def _outputs(a) -> dict:
    out = {a.output: render()}
    if a.output == OUTPUT:
        out.update(mixin_files())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="fail if %s or the mixin is out of date" % OUTPUT)
    p.add_argument("--output", default=OUTPUT)
    a = p.parse_args(argv)
    from exporter.generated import write_or_check
    return write_or_check(_outputs(a), a.check, "python alerts/generate.py")


if __name__ == "__main__":
    sys.exit(main())
