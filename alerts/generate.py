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
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
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


class Ctx:
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


def recording_rules(x: Ctx):
    c = x.c
    s = x.sel()
    return [
        {
            # Host-mode series carry the host target's instance/job; imaging_host_info
            # gives them the cloud's server_id so they can be joined with cloud series.
            "record": "server_id_engine:imaging_database_processes:sum",
            "expr": """
sum by (server_id, engine, instance, job) (
  (imaging_database_processes%(s)s > 0)
  * on (instance, job) group_left (server_id)
  imaging_host_info%(h)s
)
""".lstrip() % dict(s=s, h=x.sel('server_id!=""')),
        },
        {
            # Host targets (instance, job) whose server has the provider's Backup Service on.
            "record": BACKUPS_ON,
            "expr": """
max by (instance, job, server_id) (
  imaging_host_info%(h)s
  * on (server_id) group_left ()
  max by (server_id) (imaging_backups_enabled%(s)s == 1)
)
""".lstrip() % dict(s=s, h=x.sel('server_id!=""')),
        },
    ]


def peak_rules(x: Ctx):
    """The lowest headroom of each rolling day: the daily peaks of usage, what a limit is crossed at."""
    c = x.c
    return [{
        "record": "limit_mountpoint:%s:min1d" % metric,
        "expr": "min_over_time(%s%s[%s])\n" % (metric, x.sel(), c["peakWindow"]),
    } for metric in ("imaging_headroom_bytes", "imaging_headroom_inodes")]


def headroom_rules(x: Ctx):
    c = x.c
    warn_only = _alternatives(c["warningOnlyLimits"])
    paging = 'limit!~"%s"' % warn_only
    bypass = c["backupBypassLimits"]

    def unless_backups(expr):
        """Drop the bypass limits' series of servers whose Backup Service is on."""
        if not bypass:
            return expr
        right = "\nor\n".join('label_replace(%s, "limit", "%s", "", "")' % (BACKUPS_ON, v) for v in bypass)
        return "(\n%s\n)\nunless on (instance, job, limit)\n(\n%s\n)" % (expr.strip(), right)

    def only_backups(expr):
        """Keep only the bypass limits' series of servers whose Backup Service is on."""
        right = "\nor\n".join('label_replace(%s, "limit", "%s", "", "")' % (BACKUPS_ON, v) for v in bypass)
        return "(\n%s\n)\nand on (instance, job, limit)\n(\n%s\n)" % (expr.strip(), right)

    def nearly(metric, ratio, extra=""):
        return """
%(h)s >= 0
and
%(r)s < %(ratio)g
""" % dict(h=x.last(metric, extra), r=x.last("imaging_headroom_ratio", extra), ratio=ratio)

    def exceeded(metric, extra=""):
        return "-%s > 0" % x.last(metric, extra)

    def filling_warning(metric):
        return """
%(r)s < %(ratio)g
and
predict_linear(limit_mountpoint:%(m)s:min1d%(s)s[%(rng)s], %(h)s) < 0
""" % dict(r=x.last("imaging_headroom_ratio"), ratio=c["predictWarningRatio"], m=metric, s=x.sel(),
           rng=c["peakRange"], h=number(seconds(c["predictWarningHorizon"])))

    def filling_critical(metric):
        s = x.sel(paging)
        h = number(seconds(c["predictCriticalHorizon"]))
        horizon = seconds(c["predictCriticalHorizon"])
        day = seconds(c["peakWindow"])
        return """
(
  %(r)s < %(ratio)g
and
  predict_linear(%(m)s%(s)s[%(rng)s], %(h)s) < 0
and
  predict_linear(%(m)s%(s)s[%(recent)s], %(h)s) < 0
)
unless
(
  # the same hours yesterday freed space, and repeating that keeps the peak under the limit
  min_over_time(%(m)s%(s)s[%(hz)s] offset %(back)s) + (%(last)s - %(m)s%(s)s offset %(day)s) > 0
and
  max_over_time(imaging_headroom_ratio%(s)s[%(hz)s] offset %(back)s) - imaging_headroom_ratio%(s)s offset %(day)s > %(rise)g
)
""" % dict(r=x.last("imaging_headroom_ratio", paging), ratio=c["predictCriticalRatio"], m=metric, s=s,
           rng=c["predictRange"], recent=c["predictRecentRange"], h=h, hz="%ds" % horizon if horizon % 3600
           else "%dh" % (horizon // 3600), back="%dh" % ((day - horizon) // 3600), day=c["peakWindow"],
           last=x.last(metric, paging), rise=c["cycleMinRise"])

    def filling_pair(name, metric, what, after=""):
        return [x.alert(
            name, filling_warning(metric), "warning",
            "A filesystem is predicted to cross %s for server images within the next %s."
            % (what, words(c["predictWarningHorizon"])),
            WHERE_HOST + " has {{ $value | humanizePercentage }} of the {{ $labels.limit }} image limit left"
            " and its daily peaks, over the last %s, cross the limit within %s."
            % (words(c["peakRange"]), words(c["predictWarningHorizon"])) + after,
            c["predictFor"], c["predictKeepFiring"],
        ), x.alert(
            name, unless_backups(filling_critical(metric)), "critical",
            "A filesystem is predicted to cross %s for server images within the next %s."
            % (what, words(c["predictCriticalHorizon"])),
            WHERE_HOST + " has {{ $value | humanizePercentage }} of the {{ $labels.limit }} image limit left"
            " and, at the rate of the last %s and of the last %s, will cross it within %s."
            % (words(c["predictRange"]), words(c["predictRecentRange"]), words(c["predictCriticalHorizon"]))
            + after,
            c["predictFor"], c["predictKeepFiring"],
        )]

    over_size = (
        '{{ if eq $labels.limit "disk_usage" }} This limit counts the highest usage the disk has ever had'
        " and the virtual disk cannot shrink: deleting files will not make images of this server work again."
        "{{ else }} Image requests fail until usage is back under the limit.{{ end }}")
    rules = [x.alert(
        "ImagingSizeLimitNearlyReached", nearly("imaging_headroom_bytes", c["headroomNearlyRatio"]), "warning",
        "A filesystem is close to a size limit for server images.",
        WHERE_HOST + " has {{ $value | humanize }}B of headroom left under the {{ $labels.limit }}"
        " image limit, less than %s of the limit. Image requests fail once it is crossed."
        % pct(c["headroomNearlyRatio"]) + NEVER_SHRINKS,
        c["headroomNearlyFor"],
    ), x.alert(
        "ImagingSizeLimitNearlyReached",
        nearly("imaging_headroom_bytes", c["headroomCriticalRatio"],
               'limit=~"%s"' % _alternatives(c["headroomCriticalLimits"])), "critical",
        "A filesystem is about to reach a size limit for server images.",
        WHERE_HOST + " has only {{ $value | humanize }}B of headroom left under the {{ $labels.limit }}"
        " image limit, less than %s of the limit: the next growth makes image requests fail."
        % pct(c["headroomCriticalRatio"]) + NEVER_SHRINKS,
        c["headroomCriticalFor"],
    ), x.alert(
        "ImagingSizeLimitExceeded", unless_backups(exceeded("imaging_headroom_bytes", paging)), "critical",
        "A filesystem is over a size limit for server images: image requests will fail.",
        WHERE_HOST + " is {{ $value | humanize }}B over the {{ $labels.limit }} image limit." + over_size,
        c["headroomExceededFor"],
    ), x.alert(
        "ImagingSizeLimitExceeded",
        "\nor\n".join([exceeded("imaging_headroom_bytes", 'limit=~"%s"' % warn_only)]
                       + ([only_backups(exceeded("imaging_headroom_bytes"))] if bypass else [])),
        "warning",
        "A server is over a size limit that does not stop its images being taken.",
        WHERE_HOST + " is {{ $value | humanize }}B over the {{ $labels.limit }} image limit."
        '{{ if eq $labels.limit "system_volume" }} The system disk is larger than General Purpose and'
        " I/O servers can be built from: images can still be taken, but not used to build one."
        " Turn the limit off in the exporter's config if you never build servers from them."
        "{{ else }} The server's Backup Service is on, and backups are not held to this limit:"
        " take images through the Backup Service.{{ end }}",
        c["headroomExceededFor"],
    )]
    rules += filling_pair("ImagingSizeLimitFillingUp", "imaging_headroom_bytes", "a size limit",
                          after='{{ if eq $labels.limit "disk_usage" }} The virtual disk never shrinks: once the'
                          " limit is crossed, images of this server fail for good.{{ end }}")

    rules += [x.alert(
        "ImagingInodeLimitNearlyReached", nearly("imaging_headroom_inodes", c["headroomNearlyRatio"]), "warning",
        "A filesystem is close to an inode limit for server images.",
        WHERE_HOST + " has {{ $value | humanize }} inodes left under the {{ $labels.limit }} image limit,"
        " less than %s of the limit. Image requests fail once it is crossed." % pct(c["headroomNearlyRatio"]),
        c["headroomNearlyFor"],
    ), x.alert(
        "ImagingInodeLimitExceeded", exceeded("imaging_headroom_inodes"), "critical",
        "A filesystem uses more inodes than server images allow: image requests will fail.",
        WHERE_HOST + " uses {{ $value | humanize }} inodes more than the {{ $labels.limit }} image limit"
        " allows. Image requests fail until the file count is back under the limit; the provider can"
        " often help to work around it.",
        c["headroomExceededFor"],
    )]
    rules += filling_pair("ImagingInodeLimitFillingUp", "imaging_headroom_inodes", "an inode limit")
    return rules


def quota_records(x: Ctx):
    """Usage and quota ratios; in the quota group, before its alerts, so an evaluation sees them current."""
    c = x.c
    s = x.sel()
    return [
        {
            # Glance's own usage (source="api") when the exporter has it, else the listing's count.
            "record": "cloud_project:imaging_images:sum",
            "expr": """
max without (source) (imaging_quota_images_used%(s)s)
or
sum without (status) (imaging_images%(si)s)
""".lstrip() % dict(s=s, si=x.sel(c["imageCountSelector"])),
        },
        {
            "record": "cloud_project:imaging_images_bytes:sum",
            "expr": """
max without (source) (imaging_quota_bytes_used%(s)s)
or
imaging_images_bytes%(s)s
""".lstrip() % dict(s=s),
        },
        {
            "record": "cloud_project:imaging_images_quota:ratio",
            "expr": """
cloud_project:imaging_images:sum
/ ignoring (source)
(imaging_quota_images%(s)s > 0)
""".lstrip() % dict(s=s),
        },
        {
            "record": "cloud_project:imaging_images_bytes_quota:ratio",
            "expr": """
cloud_project:imaging_images_bytes:sum
/ ignoring (source)
(imaging_quota_bytes%(s)s > 0)
""".lstrip() % dict(s=s),
        },
    ]


def quota_rules(x: Ctx):
    c = x.c
    warn = c["quotaWarningRatio"]
    # 1 while the quota is full: the page looks at how much of the last hour it was.
    rules = quota_records(x) + [{"record": "%s_full:bool" % r, "expr": "%s:ratio >= bool 1\n" % r}
             for r in ("cloud_project:imaging_images_quota", "cloud_project:imaging_images_bytes_quota")]
    for name, record, what in (
        ("ImagingImageQuota", "cloud_project:imaging_images_quota", "image count quota"),
        ("ImagingImageStorageQuota", "cloud_project:imaging_images_bytes_quota", "image storage quota"),
    ):
        rules.append(x.alert(
            name + "NearlyFull",
            "%s:ratio >= %g" % (record, warn),
            "warning",
            "A cloud account is close to its %s." % what,
            "Project {{ $labels.project }} in cloud {{ $labels.cloud }} uses {{ $value | humanizePercentage }}"
            " of its %s. Once it is full every new image request fails, scheduled ones included." % what,
            c["quotaWarningFor"],
        ))
        rules.append(x.alert(
            name + "Full",
            "avg_over_time(%s_full:bool[%s]) >= %g" % (record, c["quotaFullWindow"], c["quotaFullShare"]),
            "critical",
            "A cloud account's %s is full: the next image request will fail." % what,
            "Project {{ $labels.project }} in cloud {{ $labels.cloud }} has had its %s full for"
            " {{ $value | humanizePercentage }} of the last %s: an image request made while it is full"
            " fails. Delete images that are no longer needed." % (what, words(c["quotaFullWindow"])),
            keep_firing_for=c["quotaFullKeepFiring"],
        ))
    rules.append(x.alert(
        "ImagingImageTooLarge",
        """
imaging_image_size_bytes%(s)s
> ignoring (image_id, image_name, server_id, status, source) group_left
imaging_image_max_size_bytes%(s)s
""" % dict(s=x.sel()),
        "warning",
        "An image is larger than the largest image the cloud accepts.",
        "Image {{ $labels.image_name }} ({{ $labels.image_id }}, status {{ $labels.status }}) of server"
        " {{ $labels.server_id }} in " + WHERE_CLOUD + " is {{ $value | humanize }}B, more than the"
        " maximum image size. An image that is still being created will fail.",
        c["imageSizeFor"],
    ))
    return rules


def job_rules(x: Ctx):
    c = x.c
    n = c["jobRepeatedFailures"]
    job = "{{ $labels.kind }} job {{ $labels.job_id }} of server {{ $labels.server_name }} ({{ $labels.server_id }}) in " + WHERE_CLOUD
    # The exporter publishes the first start it saw for the job id (a re-queued job keeps it);
    # the phase label changes while a job runs: drop it so one job is one alert.
    age = "time() - max without (phase) (%s)" % x.last("imaging_job_started_timestamp_seconds")
    streak = x.last("imaging_job_consecutive_failures")
    return [
        x.alert(
            "ImagingJobRunningLong",
            "%s > %s" % (age, number(seconds(c["jobLongAfter"]))),
            "warning",
            "An imaging job has been running for more than %s." % words(c["jobLongAfter"]),
            "The " + job + " has been running for {{ $value | humanizeDuration }}. Imaging can take several"
            " hours and starts late when many images are requested at once; a job still running after %s"
            " is stuck." % words(c["jobStuckAfter"]),
        ),
        x.alert(
            "ImagingJobStuck",
            "%s > %s" % (age, number(seconds(c["jobStuckAfter"]))),
            "critical",
            "An imaging job has been running for more than %s: it is stuck." % words(c["jobStuckAfter"]),
            "The " + job + " has been running for {{ $value | humanizeDuration }} since the exporter first saw"
            " it start, more than %s. It will not finish on its own: contact the provider's support."
            % words(c["jobStuckAfter"]),
        ),
        x.alert(
            "ImagingJobFailed",
            "%s > 0 < %d" % (streak, n),
            "warning",
            "An imaging job failed.",
            "The last {{ $labels.kind }} job of server {{ $labels.server_id }} in " + WHERE_CLOUD + " failed."
            " A retry about %s after a failure often succeeds, once the provider has reclaimed freed space."
            " The alert clears when a later job of the server succeeds." % words(c["retryAfter"]),
        ),
        x.alert(
            "ImagingJobFailedRepeatedly",
            "%s >= %d" % (streak, n),
            "critical",
            "Imaging jobs of one server failed %d times in a row." % n,
            "The last {{ $value }} {{ $labels.kind }} jobs of server {{ $labels.server_id }} in " + WHERE_CLOUD
            + " failed, with no success in between. If the server is within the image limits, contact the"
            " provider's support: their admins may succeed where the automated process does not. The alert"
            " clears when a later job of the server succeeds.",
        ),
    ]


def backup_rules(x: Ctx):
    c = x.c
    s = x.sel()
    sb = x.sel('kind="backup"')
    age = c["backupMaxAge"]
    return [
        x.alert(
            "ImagingBackupTooOld",
            """
time() - imaging_job_last_success_timestamp_seconds%(sb)s > %(age)s
and ignoring (kind)
imaging_backups_enabled%(s)s == 1
""" % dict(s=s, sb=sb, age=number(seconds(age))),
            "warning",
            "A server with backups enabled has had no successful backup for more than %s." % words(age),
            "The last successful backup of server {{ $labels.server_id }} in " + WHERE_CLOUD + " finished"
            " {{ $value | humanizeDuration }} ago, although backups are enabled.",
        ),
        x.alert(
            # Enabled now and `age` ago, and no successful backup on record at all.
            "ImagingBackupMissing",
            """
imaging_backups_enabled%(s)s == 1
and
imaging_backups_enabled%(s)s offset %(age)s == 1
unless ignoring (kind)
imaging_job_last_success_timestamp_seconds%(sb)s
""" % dict(s=s, sb=sb, age=age),
            "warning",
            "A server with backups enabled has no successful backup on record.",
            "Server {{ $labels.server_id }} in " + WHERE_CLOUD + " has had backups enabled for more than %s,"
            " but the exporter has no successful backup of it within its lookback window." % words(age),
        ),
        x.alert(
            "ImagingBackupsDisabled",
            "imaging_backups_enabled%s == 0" % s,
            "info",
            "A server has no scheduled backups.",
            "Server {{ $labels.server_id }} in " + WHERE_CLOUD + " has backups disabled. Images have size"
            " and count limits and are not a reliable copy of a running database; the backup service has"
            " neither problem.",
            c["backupsDisabledFor"],
        ),
    ]


def coverage_rules(x: Ctx):
    c = x.c
    s = x.sel()
    return [
        x.alert(
            "ImagingDataNotInImage",
            "imaging_uncovered_bytes%s > 0" % s,
            "info",
            "Data on a server is not contained in its images.",
            "{{ $value | humanize }}B used on " + WHERE_HOST + " is on a data disk. Images of this server"
            " capture the system disk only: this data is not in them and needs its own backup.",
            c["coverageFor"],
        ),
        x.alert(
            "ImagingServerBootsFromVolume",
            "imaging_server_boot_from_volume%s == 1" % s,
            "info",
            "A server boots from a block-storage volume that its images do not contain.",
            "Server {{ $labels.server_name }} ({{ $labels.server_id }}) in " + WHERE_CLOUD + " boots from a"
            " block-storage volume. Images do not include block-storage volumes, not even the boot volume:"
            " snapshot the volume instead.",
            c["coverageFor"],
        ),
        x.alert(
            # Host side (per engine, with the server_id from imaging_host_info) times the
            # running image jobs of the same server, one series per server (group by).
            "ImagingDatabaseRunningDuringImage",
            """
server_id_engine:imaging_database_processes:sum
* on (server_id) group_left (cloud, project, server_name)
group by (server_id, cloud, project, server_name) (
  imaging_job_started_timestamp_seconds%(sj)s
)
""" % dict(sj=x.sel(c["databaseJobSelector"])),
            "warning",
            "A database is running on a server while an image of the server is being taken.",
            "{{ $value }} {{ $labels.engine }} server(s) running on {{ $labels.instance }} while an image of"
            " server {{ $labels.server_name }} ({{ $labels.server_id }}) is being taken in " + WHERE_CLOUD
            + ". An image of a running database is not a reliable backup of it.",
        ),
    ]


def exporter_rules(x: Ctx):
    c = x.c
    s = x.sel()
    src = "its {{ $labels.source }} source{{ with $labels.cloud }} for cloud {{ . }}{{ end }}"
    blind = c["blindPageAfter"]
    stale = """
time() - imaging_source_last_success_timestamp_seconds%(s)s
> %(n)d * (imaging_source_refresh_interval_seconds%(s)s > 0)
""" % dict(s=s, n=c["sourceStaleIntervals"])
    rules = []
    for sev, for_ in (("warning", c["exporterDownFor"]), ("critical", blind)):
        rules.append(x.alert(
            "ImagingExporterDown",
            "up%s == 0" % s,
            sev,
            "Prometheus cannot scrape an imaging exporter.",
            "{{ $labels.job }}/{{ $labels.instance }} has been down for more than %s: no imaging alert can"
            " fire for what it watches." % words(for_),
            for_,
        ))
    for sev, for_ in (("warning", c["sourceDownFor"]), ("critical", blind)):
        rules.append(x.alert(
            "ImagingSourceDown",
            "imaging_source_up%s == 0" % s,
            sev,
            "The imaging exporter cannot read one of its sources.",
            "The exporter at {{ $labels.instance }} has failed to read " + src + " for %s."
            '{{ if eq $labels.source "host" }} This server\'s filesystem metrics are missing or incomplete,'
            " so its headroom alerts may not fire.{{ else }} It keeps serving the last good data, so"
            " alerts based on this cloud may be out of date.{{ end }}" % words(for_),
            for_,
        ))
    rules += [
        x.alert(
            "ImagingSourceStale",
            stale,
            "warning",
            "The imaging exporter's data from a source is out of date.",
            "The exporter at {{ $labels.instance }} last refreshed " + src + " successfully"
            " {{ $value | humanizeDuration }} ago, more than %d refresh intervals. Alerts based on this"
            " source are out of date." % c["sourceStaleIntervals"],
        ),
        x.alert(
            "ImagingSourceStale",
            "(%s)\nand\ntime() - imaging_source_last_success_timestamp_seconds%s > %s"
            % (stale.strip(), s, number(seconds(blind))),
            "critical",
            "The imaging exporter has been blind to a source for more than %s." % words(blind),
            "The exporter at {{ $labels.instance }} last refreshed " + src + " successfully"
            " {{ $value | humanizeDuration }} ago: for more than %s no alert based on it is current."
            % words(blind),
        ),
    ]
    for sev, age in (("warning", c["textfileMaxAge"]), ("critical", blind)):
        rules.append(x.alert(
            "ImagingTextfileStale",
            "time() - imaging_textfile_timestamp_seconds%s > %s" % (s, number(seconds(age))),
            sev,
            "The imaging exporter's textfile output is out of date.",
            "imaging-exporter --once last wrote its output for {{ $labels.instance }}"
            " {{ $value | humanizeDuration }} ago, more than %s: the job that runs it has stopped, so the"
            " imaging alerts of this server are out of date." % words(age),
        ))
    rules += [
        x.alert(
            "ImagingMountStatError",
            "imaging_filesystem_device_error%s > 0" % s,
            "warning",
            "The imaging exporter cannot read a filesystem's usage.",
            "Reading " + WHERE_HOST + " ({{ $labels.device }}, {{ $labels.fstype }}) has failed with"
            " {{ $labels.error }} for %s: its usage, and its headroom under image limits, are unknown."
            % words(c["mountErrorFor"]),
            c["mountErrorFor"],
        ),
        x.alert(
            "ImagingCollectorFailed",
            "imaging_scrape_collector_success%s == 0" % s,
            "warning",
            "An imaging exporter collector is failing.",
            "The {{ $labels.collector }} collector of {{ $labels.instance }} has failed for %s: its metrics"
            " are missing and alerts based on them cannot fire." % words(c["collectorFailedFor"]),
            c["collectorFailedFor"],
        ),
    ]
    return rules


def build(c: dict = CONFIG) -> dict:
    x = Ctx(c)
    return {"groups": [
        {"name": "imaging.rules", "rules": recording_rules(x)},
        {"name": "imaging-peaks.rules", "interval": c["peakRecordInterval"], "rules": peak_rules(x)},
        {"name": "imaging-headroom", "rules": headroom_rules(x)},
        {"name": "imaging-quota", "rules": quota_rules(x)},
        {"name": "imaging-jobs", "rules": job_rules(x)},
        {"name": "imaging-backups", "rules": backup_rules(x)},
        {"name": "imaging-coverage", "rules": coverage_rules(x)},
        {"name": "imaging-exporter", "rules": exporter_rules(x)},
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
    outputs = _outputs(a)
    if a.check:
        stale = []
        for path, text in outputs.items():
            try:
                with open(path, encoding="utf-8") as f:
                    current = f.read()
            except FileNotFoundError:
                current = None
            if current != text:
                stale.append(path)
        if stale:
            print("%s out of date: run python alerts/generate.py" % ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    for path, text in outputs.items():
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
