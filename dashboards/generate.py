#!/usr/bin/env python3
"""Generate the Grafana dashboards of imaging-exporter.

    python dashboards/generate.py            # rewrite dashboards/*.json
    python dashboards/generate.py --check    # exit 1 if a committed dashboard is out of date

Mixin style without jsonnet or any other dependency: the dashboards are plain
Python data written as Grafana JSON models (schemaVersion 39, Grafana 10.x and
later). Everything a user may want to change is in CONFIG.

- imaging-overview.json  "Imaging / Overview": the fleet. Servers closest to an
  image limit, image quotas per account, running jobs and their age, job
  durations and failures, backup freshness, exporter and source health.
- imaging-server.json    "Imaging / Server": one host-mode server. Bytes and
  inodes against the limits, the high-water mark, predicted time to each limit,
  data that images do not contain, running databases, and the server's jobs as
  cloud mode sees them (joined on imaging_host_info's server_id).

Every query uses only the metrics of docs/metrics.md (plus Prometheus' `up`)
and goes through the `datasource` template variable: no datasource UID is
hard-coded, so the JSON imports into any Grafana with a Prometheus data
source, through the UI or provisioning (docs/setup.md).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

CONFIG = {
    "tags": ["imaging", "imaging-exporter"],
    "refresh": "1m",
    "timeFrom": "now-24h",
    # Label matchers on `job` picked by the job variable: the variable lists the jobs that
    # have an imaging exporter (imaging_build_info), so `up` never shows other targets.
    "jobVariableMetric": "imaging_build_info",
    # Thresholds, kept equal to the alert rules' (alerts/generate.py CONFIG); a test checks it.
    "headroomNearlyRatio": 0.10,      # headroom ratio: red below 0 (over), orange below this
    "quotaWarningRatio": 0.80,        # quota use: orange from this, red from 1 (full)
    "jobLongAfter": 6 * 3600,         # running job age: orange from this ...
    "jobStuckAfter": 24 * 3600,       # ... red from this (source 000: stuck after 24 hours)
    "jobRepeatedFailures": 2,         # failures of one server: red from this many
    "backupMaxAge": 30 * 3600,        # age of the last successful backup: orange from this ...
    "backupCriticalAge": 48 * 3600,   # ... red from this
    "predictRange": "6h",             # history for the time-to-limit prediction (the alerts' range)
    "predictWarningHorizon": 24 * 3600,   # time to limit: orange below this ...
    "predictCriticalHorizon": 4 * 3600,   # ... red below this
    "durationMinInterval": "30m",     # heatmap cell width for job durations (jobs take minutes to hours)
}

DS = {"type": "prometheus", "uid": "${datasource}"}
YEAR = 365 * 86400
OVERVIEW_UID = "imaging-overview"
SERVER_UID = "imaging-server"


# ---- PromQL helpers -------------------------------------------------------------

def sel(*matchers: str) -> str:
    parts = [m for m in matchers if m]
    return "{" + ", ".join(parts) + "}" if parts else ""


def time_to_limit(metric: str, s: str) -> str:
    """Seconds until a headroom series reaches 0 at its rate over the prediction range.

    0 when it is already over the limit; capped at one year when it is not
    shrinking (the panels map that to "not approaching").
    """
    x = metric + s
    return ("clamp_max(clamp_min(%s / clamp_min(-deriv(%s[%s]), 1e-9), 0), %d)"
            % (x, x, CONFIG["predictRange"], YEAR))


# ---- Grafana model helpers ------------------------------------------------------

def thresholds(base: str, *steps) -> dict:
    out = [{"color": base, "value": None}]
    out += [{"color": c, "value": v} for v, c in steps]
    return {"mode": "absolute", "steps": out}


def target(expr: str, ref: str = "A", legend: str = None, instant: bool = False, fmt: str = None,
           interval: str = None) -> dict:
    t = {"datasource": DS, "editorMode": "code", "expr": expr.strip()}
    t["format"] = fmt or ("table" if instant else "time_series")
    t["instant"] = instant
    if interval:
        t["interval"] = interval
    if legend is not None:
        t["legendFormat"] = legend
    t["range"] = not instant
    t["refId"] = ref
    return t


def override(name: str, **props) -> dict:
    return {"matcher": {"id": "byName", "options": name},
            "properties": [{"id": k.replace("__", "."), "value": v} for k, v in props.items()]}


def override_ref(ref: str, **props) -> dict:
    return {"matcher": {"id": "byFrameRefID", "options": ref},
            "properties": [{"id": k.replace("__", "."), "value": v} for k, v in props.items()]}


LIMIT_LINE = {"custom.lineStyle": {"dash": [10, 10], "fill": "dash"}, "custom.fillOpacity": 0,
              "custom.lineWidth": 2, "color": {"fixedColor": "red", "mode": "fixed"}}


def limit_line(ref: str) -> dict:
    return {"matcher": {"id": "byFrameRefID", "options": ref},
            "properties": [{"id": k, "value": v} for k, v in LIMIT_LINE.items()]}


def value_mappings(*items) -> list:
    """(value, text, color) for exact values, or ((from, to), text, color) for ranges."""
    out = []
    for i, (value, text, color) in enumerate(items):
        result = {"color": color, "index": i, "text": text}
        if isinstance(value, tuple):
            out.append({"type": "range", "options": {"from": value[0], "to": value[1], "result": result}})
        else:
            out.append({"type": "value", "options": {str(value): result}})
    return out


def time_to_limit_mappings() -> list:
    return value_mappings((0, "over the limit", "red"), ((YEAR, None), "not approaching", "green"))


def time_to_limit_thresholds() -> dict:
    return thresholds("red", (CONFIG["predictCriticalHorizon"], "orange"),
                      (CONFIG["predictWarningHorizon"], "green"))


def headroom_thresholds() -> dict:
    return thresholds("red", (0, "orange"), (CONFIG["headroomNearlyRatio"], "green"))


def quota_thresholds() -> dict:
    return thresholds("green", (CONFIG["quotaWarningRatio"], "orange"), (1, "red"))


def job_age_thresholds() -> dict:
    return thresholds("green", (CONFIG["jobLongAfter"], "orange"), (CONFIG["jobStuckAfter"], "red"))


def backup_age_thresholds() -> dict:
    return thresholds("green", (CONFIG["backupMaxAge"], "orange"), (CONFIG["backupCriticalAge"], "red"))


def failure_thresholds() -> dict:
    return thresholds("green", (1, "orange"), (CONFIG["jobRepeatedFailures"], "red"))


COLOR_BG = {"type": "color-background", "mode": "basic"}
COLOR_TEXT = {"type": "color-text"}


class Panel(dict):
    """A panel with its size; the layout assigns ids and positions."""

    def __init__(self, w: int, h: int, **model):
        super().__init__(model)
        self.w, self.h = w, h


def _base(kind, title, description, targets, w, h, unit=None, thr=None, mappings=None, overrides=None,
          custom=None, options=None, transformations=None, interval=None, maxDataPoints=None, **defaults):
    fd = {}
    if custom is not None:
        fd["custom"] = custom
    fd["mappings"] = mappings or []
    fd["thresholds"] = thr or thresholds("green")
    if unit:
        fd["unit"] = unit
    fd.update(defaults)
    p = Panel(w, h, datasource=DS, description=description,
              fieldConfig={"defaults": fd, "overrides": overrides or []})
    if interval:
        p["interval"] = interval
    if maxDataPoints:
        p["maxDataPoints"] = maxDataPoints
    p["options"] = options or {}
    p["targets"] = targets
    p["title"] = title
    if transformations:
        p["transformations"] = transformations
    p["type"] = kind
    return p


def stat(title, description, targets, w=3, h=4, unit="short", thr=None, mappings=None, color_mode="value",
         graph="none", fields="", text_mode="auto", **kw):
    opts = {"colorMode": color_mode, "graphMode": graph, "justifyMode": "auto", "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": fields, "values": False},
            "showPercentChange": False, "textMode": text_mode, "wideLayout": True}
    return _base("stat", title, description, targets, w, h, unit=unit, thr=thr, mappings=mappings,
                 options=opts, color={"mode": "thresholds"}, **kw)


def timeseries(title, description, targets, w=12, h=8, unit="short", thr=None, overrides=None, stack=False,
               fill=10, min_=None, max_=None, thresholds_style="off", draw="line", legend_calcs=("lastNotNull", "max"),
               legend_placement="bottom", interpolation="linear", **kw):
    custom = {
        "axisBorderShow": False, "axisCenteredZero": False, "axisColorMode": "text", "axisLabel": "",
        "axisPlacement": "auto", "barAlignment": 0, "drawStyle": draw, "fillOpacity": fill,
        "gradientMode": "none", "hideFrom": {"legend": False, "tooltip": False, "viz": False},
        "insertNulls": False, "lineInterpolation": interpolation, "lineWidth": 1, "pointSize": 5,
        "scaleDistribution": {"type": "linear"}, "showPoints": "never", "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
        "thresholdsStyle": {"mode": thresholds_style},
    }
    defaults = {"color": {"mode": "palette-classic"}}
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    opts = {"legend": {"calcs": list(legend_calcs), "displayMode": "table" if legend_calcs else "list",
                       "placement": legend_placement, "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"}}
    return _base("timeseries", title, description, targets, w, h, unit=unit, thr=thr, overrides=overrides,
                 custom=custom, options=opts, **defaults, **kw)


def table(title, description, targets, w=12, h=8, organize=None, overrides=None, sort_by=None, unit=None,
          thr=None, mappings=None, merge=True, **kw):
    custom = {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True, "inspect": False}
    opts = {"cellHeight": "sm", "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
            "showHeader": True}
    if sort_by:
        opts["sortBy"] = [{"desc": desc, "displayName": name} for name, desc in sort_by]
    transformations = []
    if merge and len(targets) > 1:
        transformations.append({"id": "merge", "options": {}})
    if organize:
        exclude, order, rename = organize
        transformations.append({"id": "organize", "options": {
            "excludeByName": {n: True for n in exclude},
            "includeByName": {},
            "indexByName": {n: i for i, n in enumerate(order)},
            "renameByName": rename}})
    return _base("table", title, description, targets, w, h, unit=unit, thr=thr, mappings=mappings,
                 overrides=overrides, custom=custom, options=opts, transformations=transformations,
                 color={"mode": "thresholds"}, **kw)


def bargauge(title, description, targets, w=8, h=8, unit="percentunit", thr=None, min_=0, max_=1, **kw):
    opts = {"displayMode": "gradient", "maxVizHeight": 300, "minVizHeight": 16, "minVizWidth": 8,
            "namePlacement": "auto", "orientation": "horizontal",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showUnfilled": True, "sizing": "auto", "valueMode": "color"}
    return _base("bargauge", title, description, targets, w, h, unit=unit, thr=thr, options=opts,
                 color={"mode": "thresholds"}, min=min_, max=max_, **kw)


def heatmap(title, description, targets, w=8, h=8, unit="s", **kw):
    custom = {"hideFrom": {"legend": False, "tooltip": False, "viz": False},
              "scaleDistribution": {"type": "linear"}}
    opts = {"calculate": False, "cellGap": 1, "cellValues": {"unit": "short"},
            "color": {"exponent": 0.5, "fill": "dark-orange", "mode": "scheme", "reverse": False,
                      "scale": "exponential", "scheme": "Oranges", "steps": 64},
            "exemplars": {"color": "rgba(255,0,255,0.7)"}, "filterValues": {"le": 1e-9},
            "legend": {"show": True}, "rowsFrame": {"layout": "auto", "value": "Jobs"},
            "showValue": "never",
            "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": False},
            "yAxis": {"axisPlacement": "left", "reverse": False, "unit": unit}}
    return _base("heatmap", title, description, targets, w, h, custom=custom, options=opts, **kw)


def row(title: str) -> Panel:
    return Panel(24, 1, collapsed=False, panels=[], title=title, type="row")


def layout(panels):
    """Flow panels left to right into a 24-column grid; a row starts a new line."""
    out, x, y, line_h = [], 0, 0, 0
    for i, p in enumerate(panels, start=1):
        if p["type"] == "row" or x + p.w > 24:
            y, x, line_h = y + line_h, 0, 0
        model = {"gridPos": {"h": p.h, "w": p.w, "x": x, "y": y}, "id": i}
        model.update(p)
        if p["type"] == "row":
            model = {"collapsed": p["collapsed"], "gridPos": model["gridPos"], "id": i, "panels": [],
                     "title": p["title"], "type": "row"}
        out.append(model)
        x += p.w
        line_h = max(line_h, p.h)
        if p["type"] == "row":
            y, x, line_h = y + 1, 0, 0
    return out


def datasource_variable() -> dict:
    return {"current": {}, "hide": 0, "includeAll": False, "label": "Data source", "multi": False,
            "name": "datasource", "options": [], "query": "prometheus", "refresh": 1, "regex": "",
            "skipUrlSync": False, "type": "datasource"}


def query_variable(name, label, query, multi=True, include_all=True, all_value=None, description=""):
    v = {"current": {}, "datasource": DS, "definition": query, "description": description, "hide": 0,
         "includeAll": include_all, "label": label, "multi": multi, "name": name, "options": [],
         "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
         "refresh": 2, "regex": "", "skipUrlSync": False, "sort": 1, "type": "query"}
    if all_value is not None:
        v["allValue"] = all_value
    return v


def dashboard(uid, title, description, panels, variables) -> dict:
    return {
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
            "type": "dashboard"}]},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [{"asDropdown": True, "icon": "external link", "includeVars": False, "keepTime": True,
                   "tags": ["imaging"], "targetBlank": False, "title": "Imaging dashboards", "tooltip": "",
                   "type": "dashboards", "url": ""}],
        "panels": layout(panels),
        "refresh": CONFIG["refresh"],
        "schemaVersion": 39,
        "tags": list(CONFIG["tags"]),
        "templating": {"list": variables},
        "time": {"from": CONFIG["timeFrom"], "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


SERVER_LINK = [{"targetBlank": False, "title": "Imaging / Server: ${__value.raw}",
                "url": "/d/%s/imaging-server?${datasource:queryparam}&var-instance=${__value.raw}"
                       "&${__url_time_range}" % SERVER_UID}]


# ---- Imaging / Overview -------------------------------------------------------------

def overview() -> dict:
    c = CONFIG
    H = ('job=~"$job"', 'instance=~"$instance"')
    C = H + ('cloud=~"$cloud"', 'project=~"$project"')
    h, cs = sel(*H), sel(*C)
    host_info = "imaging_host_info%s" % h
    with_host = " * on (job, instance) group_left (hostname, server_id, profile) %s" % host_info
    count_ratio = ("sum without (status) (imaging_images%s)\n/ ignoring (source)\n(imaging_quota_images%s > 0)"
                   % (cs, cs))
    bytes_ratio = "imaging_images_bytes%s\n/ ignoring (source)\n(imaging_quota_bytes%s > 0)" % (cs, cs)
    job_age = "time() - imaging_job_started_timestamp_seconds%s" % cs
    ttl = "(\n  %s\n  or\n  %s\n)" % (time_to_limit("imaging_headroom_bytes", h),
                                      time_to_limit("imaging_headroom_inodes", h))
    image_vs_max = ("imaging_image_size_bytes%s\n/ ignoring (image_id, image_name, server_id, status, source) "
                    "group_left\nimaging_image_max_size_bytes%s" % (cs, cs))

    panels = [
        row("Summary"),
        stat("Over an image limit",
             "Filesystems (host mode) whose measure is over one of the image limits in force: image requests "
             "of those servers fail now.",
             [target("count(imaging_headroom_ratio%s < 0) or vector(0)" % h, instant=True)],
             thr=thresholds("green", (1, "red")), color_mode="background"),
        stat("Under %d%% headroom" % round(c["headroomNearlyRatio"] * 100),
             "Filesystems (host mode) with less than %d%% of an image limit left." % round(
                 c["headroomNearlyRatio"] * 100),
             [target("count(imaging_headroom_ratio%s >= 0 < %g) or vector(0)" % (h, c["headroomNearlyRatio"]),
                     instant=True)],
             thr=thresholds("green", (1, "orange")), color_mode="background"),
        stat("Stuck jobs",
             "Imaging, backup and volume snapshot jobs running for more than %d hours: they will not finish "
             "on their own (source 000)." % (c["jobStuckAfter"] // 3600),
             [target("count(%s > %d) or vector(0)" % (job_age, c["jobStuckAfter"]), instant=True)],
             thr=thresholds("green", (1, "red")), color_mode="background"),
        stat("Failed jobs",
             "Failed jobs inside each exporter's lookback window (imaging_job_failures), all servers.",
             [target("sum(imaging_job_failures%s) or vector(0)" % cs, instant=True)],
             thr=thresholds("green", (1, "orange")), color_mode="background"),
        stat("Accounts near a quota",
             "Cloud accounts using at least %d%% of their image count or image storage quota."
             % round(c["quotaWarningRatio"] * 100),
             [target("count(\n  (%s >= %g)\n  or\n  (%s >= %g)\n) or vector(0)"
                     % (count_ratio.replace("\n", " "), c["quotaWarningRatio"],
                        bytes_ratio.replace("\n", " "), c["quotaWarningRatio"]), instant=True)],
             thr=thresholds("green", (1, "orange")), color_mode="background"),
        stat("Backups disabled",
             "Servers without the provider's backup service (Linode). Images are not a reliable backup of a "
             "running database; the backup service has no size or count limits.",
             [target("count(imaging_backups_enabled%s == 0) or vector(0)" % cs, instant=True)],
             thr=thresholds("green", (1, "blue")), color_mode="background"),
        stat("Boot from volume",
             "Servers booting from a block-storage volume: their images do not contain the boot volume "
             "(source 000). Snapshot the volume instead.",
             [target("count(imaging_server_boot_from_volume%s == 1) or vector(0)" % cs, instant=True)],
             thr=thresholds("green", (1, "blue")), color_mode="background"),
        stat("Down",
             "Exporters Prometheus cannot scrape (up == 0) plus sources the exporters cannot read "
             "(imaging_source_up == 0). Alerts cannot see what these watch.",
             [target("(count(up%s == 0) or vector(0))\n+\n(count(imaging_source_up%s == 0) or vector(0))"
                     % (h, h), instant=True)],
             thr=thresholds("green", (1, "red")), color_mode="background"),

        row("Image limits (host mode)"),
        table("Servers closest to an image limit",
              "Every limit in force on every filesystem, closest to its limit first. Headroom is the limit "
              "minus the measure (used bytes, used inodes, the high-water mark or the system disk size), as a "
              "share of the limit: red below 0 (over the limit: image requests fail), orange below %d%%. Time to limit "
              "is predicted from the rate of change over the last %s, as the alerts do. Click an instance for "
              "its server dashboard." % (round(c["headroomNearlyRatio"] * 100), c["predictRange"]),
              [target("imaging_headroom_ratio%s%s" % (h, with_host), "A", instant=True),
               target("imaging_headroom_bytes%s%s" % (h, with_host), "B", instant=True),
               target("imaging_headroom_inodes%s%s" % (h, with_host), "C", instant=True),
               target(ttl + with_host, "D", instant=True)],
              w=24, h=9,
              organize=(["Time", "job"],
                        ["hostname", "instance", "server_id", "profile", "limit", "mountpoint",
                         "Value #A", "Value #B", "Value #C", "Value #D"],
                        {"hostname": "Host", "instance": "Instance", "server_id": "Server ID",
                         "profile": "Profile", "limit": "Limit", "mountpoint": "Mount point",
                         "Value #A": "Headroom", "Value #B": "Headroom (bytes)",
                         "Value #C": "Headroom (inodes)", "Value #D": "Time to limit"}),
              overrides=[override("Headroom", unit="percentunit", decimals=1, thresholds=headroom_thresholds(),
                                  custom__cellOptions=COLOR_BG),
                         override("Headroom (bytes)", unit="decbytes", thresholds=thresholds("red", (0, "text")),
                                  custom__cellOptions=COLOR_TEXT),
                         override("Headroom (inodes)", unit="short", thresholds=thresholds("red", (0, "text")),
                                  custom__cellOptions=COLOR_TEXT),
                         override("Time to limit", unit="dtdurations", mappings=time_to_limit_mappings(),
                                  thresholds=time_to_limit_thresholds(), custom__cellOptions=COLOR_TEXT),
                         override("Instance", links=SERVER_LINK)],
              sort_by=[("Headroom", False)]),
        timeseries("Lowest headroom",
                   "The 10 filesystems with the least headroom under an image limit, as a share of the limit.",
                   [target("bottomk(10, imaging_headroom_ratio%s)" % h,
                           legend="{{instance}} {{mountpoint}} {{limit}}")],
                   w=12, h=8, unit="percentunit", thr=headroom_thresholds(), thresholds_style="line+area",
                   legend_calcs=("lastNotNull", "min"), legend_placement="right"),
        timeseries("Data not in images",
                   "Used bytes on data filesystems, which images of the server do not contain: that data needs "
                   "its own backup.",
                   [target("sum by (instance) (imaging_uncovered_bytes%s)" % h, legend="{{instance}}")],
                   w=12, h=8, unit="decbytes", min_=0, legend_placement="right"),

        row("Image quotas (cloud mode)"),
        bargauge("Image count quota used",
                 "Images the account holds over how many it may hold. At 100%% every new image request fails, "
                 "scheduled ones included. Orange from %d%%." % round(c["quotaWarningRatio"] * 100),
                 [target(count_ratio, legend="{{cloud}} {{project}}", instant=True, fmt="time_series")],
                 thr=quota_thresholds()),
        bargauge("Image storage quota used",
                 "Bytes of the account's images over the bytes it may hold (Linode: 150 GB; OpenStack: Glance "
                 "image_size_total).",
                 [target(bytes_ratio, legend="{{cloud}} {{project}}", instant=True, fmt="time_series")],
                 thr=quota_thresholds()),
        table("Accounts",
              "Each account's images and bytes against its quotas and the largest image the cloud takes. The "
              "quota's source is the cloud API, the exporter's config or the provider profile.",
              [target("sum without (status) (imaging_images%s)" % cs, "A", instant=True),
               target("max without (source) (imaging_quota_images%s)" % cs, "B", instant=True),
               target("max by (job, instance, cloud, project) (imaging_images_bytes%s)" % cs, "C", instant=True),
               target("max without (source) (imaging_quota_bytes%s)" % cs, "D", instant=True),
               target("max without (source) (imaging_image_max_size_bytes%s)" % cs, "E", instant=True)],
              w=8,
              organize=(["Time", "job", "instance"], ["cloud", "project"],
                        {"cloud": "Cloud", "project": "Project", "Value #A": "Images", "Value #B": "Quota",
                         "Value #C": "Bytes", "Value #D": "Bytes quota", "Value #E": "Largest image"}),
              overrides=[override(n, unit="decbytes") for n in ("Bytes", "Bytes quota", "Largest image")]),
        timeseries("Images against the quota",
                   "Images held per account (all statuses) and the account's image count quota (dashed).",
                   [target("sum without (status) (imaging_images%s)" % cs, "A", legend="{{cloud}} {{project}}"),
                    target("max without (source) (imaging_quota_images%s)" % cs, "B",
                           legend="quota {{cloud}} {{project}}")],
                   w=8, min_=0, overrides=[limit_line("B")]),
        timeseries("Image bytes against the quota",
                   "Total bytes of each account's images and the account's image storage quota (dashed).",
                   [target("imaging_images_bytes%s" % cs, "A", legend="{{cloud}} {{project}}"),
                    target("max without (source) (imaging_quota_bytes%s)" % cs, "B",
                           legend="quota {{cloud}} {{project}}")],
                   w=8, unit="decbytes", min_=0, overrides=[limit_line("B")]),
        timeseries("Images by status",
                   "The accounts' own images by the provider's status (saving, queued, creating, killed ...).",
                   [target("sum by (status) (imaging_images%s)" % cs, legend="{{status}}")],
                   w=8, stack=True, fill=30, min_=0),
        bargauge("Largest images against the maximum image size",
                 "The 10 largest images of each account's own as a share of the largest image the cloud accepts "
                 "(Linode: 6 GB; OpenStack: max_image_size in the config). An image still being created that "
                 "grows past 100% fails.",
                 [target("topk(10, %s)" % image_vs_max.replace("\n", " "), legend="{{cloud}} {{image_name}}",
                         instant=True, fmt="time_series")],
                 w=12, thr=quota_thresholds()),
        table("Server disks against the largest image",
              "Disks as the cloud reports them (Linode), allocated size: information only, the image size limit "
              "applies to the data on a disk (host mode measures it).",
              [target("max by (cloud, project, server_id, server_name, disk_id, disk_label) "
                      "(imaging_cloud_disk_size_bytes%s)" % cs, "A", instant=True),
               target("max by (cloud, project, server_id, server_name, disk_id, disk_label) "
                      "(imaging_cloud_disk_size_bytes%s)" % cs, "B", instant=True)],
              w=12, h=8,
              organize=(["Time", "disk_id"],
                        ["cloud", "project", "server_name", "server_id", "disk_label", "Value #B", "Value #A"],
                        {"cloud": "Cloud", "project": "Project", "server_name": "Server", "server_id": "Server ID",
                         "disk_label": "Disk", "Value #A": "Headroom", "Value #B": "Disk size"}),
              overrides=[override("Headroom", unit="decbytes", thresholds=thresholds("red", (0, "green")),
                                  custom__cellOptions=COLOR_BG),
                         override("Disk size", unit="decbytes")],
              sort_by=[("Headroom", False)]),

        row("Imaging and backup jobs (cloud mode)"),
        table("Running jobs",
              "Imaging, backup and volume snapshot jobs running now, longest first. Orange after %d hours "
              "(imaging can take hours and queues when many are requested); red after %d hours: the job is "
              "stuck and needs the provider's support." % (c["jobLongAfter"] // 3600, c["jobStuckAfter"] // 3600),
              [target(job_age, "A", instant=True),
               target("imaging_job_started_timestamp_seconds%s * 1000" % cs, "B", instant=True)],
              w=24, h=8,
              organize=(["Time", "job", "instance"],
                        ["cloud", "project", "server_name", "server_id", "kind", "phase", "job_id",
                         "Value #B", "Value #A"],
                        {"cloud": "Cloud", "project": "Project", "server_name": "Server", "server_id": "Server ID",
                         "kind": "Kind", "phase": "Phase", "job_id": "Job", "Value #A": "Running for",
                         "Value #B": "Started"}),
              overrides=[override("Running for", unit="dtdurations", thresholds=job_age_thresholds(),
                                  custom__cellOptions=COLOR_BG),
                         override("Started", unit="dateTimeAsIso")],
              sort_by=[("Running for", True)]),
        timeseries("Jobs running",
                   "Jobs running now, by kind. Imaging concurrency is limited, so a growing count means jobs "
                   "are queueing.",
                   [target("sum by (kind) (imaging_jobs_running%s)" % cs, legend="{{kind}}")],
                   w=8, min_=0, interpolation="stepAfter"),
        heatmap("Durations of completed jobs",
                "How long completed jobs took (imaging_job_duration_seconds, each job observed once when the "
                "exporter first sees it finished), all kinds. Cells are at least %s wide."
                % c["durationMinInterval"],
                [target("sum by (le) (increase(imaging_job_duration_seconds_bucket%s[$__interval]))" % cs,
                        legend="{{le}}", fmt="heatmap")],
                w=8, interval=c["durationMinInterval"]),
        table("Job durations in the time range",
              "Median and 90th percentile duration of the jobs completed in the dashboard's time range, by kind "
              "(estimated from the histogram buckets).",
              [target("sum by (kind) (increase(imaging_job_duration_seconds_count%s[$__range]))" % cs, "A",
                      instant=True),
               target("histogram_quantile(0.5, sum by (kind, le) "
                      "(increase(imaging_job_duration_seconds_bucket%s[$__range])))" % cs, "B", instant=True),
               target("histogram_quantile(0.9, sum by (kind, le) "
                      "(increase(imaging_job_duration_seconds_bucket%s[$__range])))" % cs, "C", instant=True)],
              w=8,
              organize=(["Time"], ["kind", "Value #A", "Value #B", "Value #C"],
                        {"kind": "Kind", "Value #A": "Completed", "Value #B": "Median", "Value #C": "90th pct"}),
              overrides=[override("Completed", unit="short", decimals=0),
                         override("Median", unit="dtdurations"), override("90th pct", unit="dtdurations")]),
        table("Failed jobs",
              "Servers whose jobs failed inside the exporter's lookback window. After one failure a retry about "
              "30 minutes later often succeeds; a server that failed %d times or more needs the provider's "
              "support (source 000)." % c["jobRepeatedFailures"],
              [target("imaging_job_failures%s" % cs, "A", instant=True)],
              w=12, h=8,
              organize=(["Time", "__name__", "job", "instance"], ["cloud", "project", "server_id", "kind", "Value"],
                        {"cloud": "Cloud", "project": "Project", "server_id": "Server ID", "kind": "Kind",
                         "Value": "Failures"}),
              overrides=[override("Failures", thresholds=failure_thresholds(), custom__cellOptions=COLOR_BG)],
              sort_by=[("Failures", True)]),
        table("Backup freshness",
              "Time since each server's last successful backup and how long it took, oldest first. Orange "
              "after %d hours (a daily schedule plus slack), red after %d hours."
              % (c["backupMaxAge"] // 3600, c["backupCriticalAge"] // 3600),
              [target("time() - max by (cloud, project, server_id) (imaging_job_last_success_timestamp_seconds%s)"
                      % sel(*C, 'kind="backup"'), "A", instant=True),
               target("max by (cloud, project, server_id) (imaging_job_last_duration_seconds%s)"
                      % sel(*C, 'kind="backup"'), "B", instant=True)],
              w=12, h=8,
              organize=(["Time"], ["cloud", "project", "server_id", "Value #A",
                                                              "Value #B"],
                        {"cloud": "Cloud", "project": "Project", "server_id": "Server ID",
                         "Value #A": "Last successful backup", "Value #B": "Took"}),
              overrides=[override("Last successful backup", unit="dtdurations", thresholds=backup_age_thresholds(),
                                  custom__cellOptions=COLOR_BG),
                         override("Took", unit="dtdurations")],
              sort_by=[("Last successful backup", True)]),

        row("Exporter health"),
        table("Sources",
              "Each source of each exporter: the host's filesystems (read at scrape time) and every cloud "
              "account (refreshed in the background; a scrape serves the last good snapshot). Data older than "
              "a few refresh intervals means the alerts on it are out of date.",
              [target("max by (instance, source, cloud) (imaging_source_up%s)" % h, "A", instant=True),
               target("time() - max by (instance, source, cloud) (imaging_source_last_success_timestamp_seconds%s)"
                      % h, "B", instant=True),
               target("max by (instance, source, cloud) (imaging_source_refresh_duration_seconds%s)" % h, "C",
                      instant=True),
               target("max by (instance, source, cloud) (imaging_source_refresh_interval_seconds%s)" % h, "D",
                      instant=True)],
              w=12, h=8,
              organize=(["Time"], ["instance", "source", "cloud", "Value #A", "Value #B", "Value #C",
                                          "Value #D"],
                        {"instance": "Instance", "source": "Source", "cloud": "Cloud", "Value #A": "State",
                         "Value #B": "Data age", "Value #C": "Refresh took", "Value #D": "Refresh interval"}),
              overrides=[override("State", mappings=value_mappings((1, "up", "green"), (0, "down", "red")),
                                  custom__cellOptions=COLOR_BG),
                         override("Data age", unit="dtdurations"), override("Refresh took", unit="s"),
                         override("Refresh interval", unit="dtdurations")],
              sort_by=[("State", False)]),
        timeseries("Refresh errors",
                   "Failed refreshes per second by reason (auth, timeout, rate_limited, http, malformed, ...). "
                   "The exporter keeps serving the last good snapshot meanwhile.",
                   [target("sum by (instance, cloud, reason) (rate(imaging_source_refresh_errors_total%s"
                           "[$__rate_interval]))" % h, legend="{{instance}} {{cloud}} {{reason}}")],
                   w=12, h=8, unit="short", min_=0, legend_calcs=("max",)),
        timeseries("Scrape targets up",
                   "Prometheus' `up` for the imaging exporters: 0 when a scrape fails.",
                   [target("up%s" % h, legend="{{job}} {{instance}}")],
                   w=12, h=7, min_=0, max_=1, interpolation="stepAfter", legend_calcs=("min",),
                   thr=thresholds("red", (1, "green"))),
        timeseries("Refresh and scrape duration",
                   "How long each source's last refresh took, and how long each collector took in the scrape. "
                   "Cloud refreshes run in the background; a scrape only reads their snapshot.",
                   [target("imaging_source_refresh_duration_seconds%s" % h, "A",
                           legend="refresh {{instance}} {{source}} {{cloud}}"),
                    target("imaging_scrape_duration_seconds%s" % h, "B",
                           legend="scrape {{instance}} {{collector}}")],
                   w=12, h=7, unit="s", min_=0),
    ]
    variables = [
        datasource_variable(),
        query_variable("job", "Job", "label_values(%s, job)" % c["jobVariableMetric"],
                       description="Prometheus jobs that scrape imaging exporters."),
        query_variable("instance", "Instance", "label_values(%s{job=~\"$job\"}, instance)" % c["jobVariableMetric"],
                       all_value=".*"),
        query_variable("cloud", "Cloud", 'label_values(imaging_jobs_running{job=~"$job"}, cloud)', all_value=".*",
                       description="The `name` of a cloud in the exporter's config."),
        query_variable("project", "Project",
                       'label_values(imaging_jobs_running{job=~"$job", cloud=~"$cloud"}, project)',
                       all_value=".*"),
    ]
    return dashboard(OVERVIEW_UID, "Imaging / Overview",
                     "Server images and backups across the fleet: image limits, image quotas, imaging and "
                     "backup jobs, and the exporters' health (imaging-exporter).", panels, variables)


# ---- Imaging / Server ------------------------------------------------------------------

def server() -> dict:
    c = CONFIG
    H = ('job=~"$job"', 'instance=~"$instance"')
    h = sel(*H)
    # Cloud-mode series of this server: joined on the server_id that host mode reports
    # in imaging_host_info (host.server_id in the exporter's config).
    joined = " * on (server_id) group_left () group by (server_id) (imaging_host_info%s)" % sel(
        *H, 'server_id!=""')
    ttl_bytes = time_to_limit("imaging_headroom_bytes", h)
    ttl_inodes = time_to_limit("imaging_headroom_inodes", h)
    predict_note = (" Predicted from the rate of change over the last %s (as the alerts do); 0 means over the "
                    "limit already." % c["predictRange"])

    def limit_table(title, unit, measured, limit_metric, headroom_metric, ttl, description):
        return table(
            title, description + predict_note,
            [target("%s%s - on (job, instance, limit) group_right %s%s" % (limit_metric, h, headroom_metric, h),
                    "A", instant=True),
             target("%s%s + on (job, instance, limit) group_right 0 * %s%s" % (limit_metric, h, headroom_metric, h),
                    "B", instant=True),
             target("max by (job, instance, limit, mountpoint) (%s%s)" % (headroom_metric, h), "C", instant=True),
             target("max by (job, instance, limit, mountpoint) (\n  imaging_headroom_ratio%s\n  and on (job, instance, "
                    "limit, mountpoint)\n  %s%s\n)" % (h, headroom_metric, h), "D", instant=True),
             target(ttl, "E", instant=True)],
            w=12, h=6,
            organize=(["Time", "job", "instance"], ["limit", "mountpoint", "Value #A", "Value #B", "Value #C",
                                                     "Value #D", "Value #E"],
                      {"limit": "Limit", "mountpoint": "Mount point", "Value #A": measured, "Value #B": "Limit value",
                       "Value #C": "Headroom", "Value #D": "Headroom %", "Value #E": "Time to limit"}),
            overrides=[override(measured, unit=unit), override("Limit value", unit=unit),
                       override("Headroom", unit=unit),
                       override("Headroom %", unit="percentunit", decimals=1, thresholds=headroom_thresholds(),
                                custom__cellOptions=COLOR_BG),
                       override("Time to limit", unit="dtdurations", mappings=time_to_limit_mappings(),
                                thresholds=time_to_limit_thresholds(), custom__cellOptions=COLOR_TEXT)],
            sort_by=[("Headroom %", False)])

    panels = [
        row("Image limits"),
        stat("Profile", "The limit profile in force (imaging-exporter --list-profiles shows each with its source).",
             [target("imaging_host_info%s" % h, instant=True)], w=4, fields="/^profile$/", text_mode="value",
             color_mode="none", unit=None),
        stat("Server ID", "The cloud's id of this server (host.server_id); it joins the cloud-mode panels below.",
             [target("imaging_host_info%s" % h, instant=True)], w=4, fields="/^server_id$/", text_mode="value",
             color_mode="none", unit=None),
        stat("Least headroom", "The smallest headroom under any image limit on this server, as a share of the limit.",
             [target("min(imaging_headroom_ratio%s)" % h, instant=True)], w=4, unit="percentunit", decimals=1,
             thr=headroom_thresholds(), color_mode="background"),
        stat("Time to nearest limit", "How long until the first limit is reached." + predict_note,
             [target("min(%s or %s)" % (ttl_bytes, ttl_inodes), instant=True)], w=4, unit="dtdurations",
             mappings=time_to_limit_mappings(), thr=time_to_limit_thresholds(), color_mode="background"),
        stat("Data not in images", "Used bytes on data filesystems; images capture the system disk only.",
             [target("sum(imaging_uncovered_bytes%s) or vector(0)" % h, instant=True)], w=4, unit="decbytes",
             thr=thresholds("green", (1, "blue")), color_mode="background"),
        stat("Databases running", "Database servers running here: an image of a running database is not a "
             "reliable backup of it (source 000).",
             [target("sum(imaging_database_processes%s)" % h, instant=True)], w=4,
             thr=thresholds("green", (1, "orange")), color_mode="background"),
        timeseries("Bytes against image limits",
                   "Used bytes of each filesystem, the high-water mark (a First-Generation Windows disk never "
                   "shrinks, so its limit counts the highest usage ever) and the system disk size, with every "
                   "size limit in force as a dashed red line. Each limit applies to one of these measures.",
                   [target("imaging_filesystem_used_bytes%s" % h, "A", legend="{{mountpoint}} used"),
                    target("imaging_filesystem_used_high_water_bytes%s" % h, "B",
                           legend="{{mountpoint}} high-water"),
                    target("imaging_disk_size_bytes%s" % sel(*H, 'role="system"'), "C",
                           legend="system disk {{device}}"),
                    target("imaging_limit_bytes%s" % h, "D", legend="limit {{limit}}")],
                   w=12, h=9, unit="decbytes", min_=0,
                   overrides=[limit_line("D"),
                              override_ref("B", custom__lineStyle={"dash": [0, 10], "fill": "dot"},
                                           custom__fillOpacity=0),
                              override_ref("C", custom__fillOpacity=0,
                                           color={"fixedColor": "text", "mode": "fixed"})]),
        timeseries("Inodes against image limits",
                   "Used inodes of each filesystem with every inode limit in force as a dashed red line. A "
                   "filesystem with too many files cannot be imaged even when it is small.",
                   [target("imaging_filesystem_inodes_used%s" % h, "A", legend="{{mountpoint}} used"),
                    target("imaging_limit_inodes%s" % h, "B", legend="limit {{limit}}")],
                   w=12, h=9, unit="short", min_=0, overrides=[limit_line("B")]),
        limit_table("Size limits", "decbytes", "Measured", "imaging_limit_bytes", "imaging_headroom_bytes",
                    ttl_bytes, "Each size limit on each filesystem it applies to: the measure, the limit, the "
                    "headroom left and when, at the current rate, it runs out."),
        limit_table("Inode limits", "short", "Used inodes", "imaging_limit_inodes", "imaging_headroom_inodes",
                    ttl_inodes, "Each inode limit on each filesystem it applies to."),
        timeseries("Headroom",
                   "Headroom under each limit as a share of the limit: red below 0 (over the limit), orange "
                   "below %d%%." % round(c["headroomNearlyRatio"] * 100),
                   [target("imaging_headroom_ratio%s" % h, legend="{{limit}} {{mountpoint}}")],
                   w=12, h=8, unit="percentunit", thr=headroom_thresholds(), thresholds_style="line+area",
                   legend_calcs=("lastNotNull", "min")),
        timeseries("Predicted time to limit",
                   "Time until each limit is reached at the current rate, capped at one year." + predict_note,
                   [target(ttl_bytes, "A", legend="{{limit}} {{mountpoint}}"),
                    target(ttl_inodes, "B", legend="{{limit}} {{mountpoint}}")],
                   w=12, h=8, unit="s", min_=0, thr=time_to_limit_thresholds(), thresholds_style="dashed",
                   legend_calcs=("lastNotNull", "min")),

        row("What images do not contain"),
        timeseries("Data not in images",
                   "Used bytes on data filesystems (role data): images capture the system disk only, so this "
                   "data needs its own backup. Attached block-storage volumes are never in an image either.",
                   [target("imaging_uncovered_bytes%s" % h, legend="{{mountpoint}} ({{reason}})")],
                   w=12, h=7, unit="decbytes", min_=0),
        timeseries("Database servers running",
                   "Running database servers by engine. Stop them, or back them up with their own tools, before "
                   "imaging: an image of a running database is not a reliable backup.",
                   [target("imaging_database_processes%s > 0" % h, legend="{{engine}}")],
                   w=12, h=7, min_=0, interpolation="stepAfter", legend_calcs=("lastNotNull",)),

        row("This server in the cloud (cloud mode, joined on server_id)"),
        table("Running jobs",
              "This server's imaging, backup and volume snapshot jobs running now, as the cloud-mode exporter "
              "sees them. Needs host.server_id in this exporter's config. Orange after %d hours, red (stuck) "
              "after %d hours." % (c["jobLongAfter"] // 3600, c["jobStuckAfter"] // 3600),
              [target("(time() - imaging_job_started_timestamp_seconds)" + joined, "A", instant=True),
               target("(imaging_job_started_timestamp_seconds * 1000)" + joined, "B", instant=True)],
              w=12, h=7,
              organize=(["Time", "job", "instance", "server_id"],
                        ["cloud", "project", "server_name", "kind", "phase", "job_id", "Value #B", "Value #A"],
                        {"cloud": "Cloud", "project": "Project", "server_name": "Server", "kind": "Kind",
                         "phase": "Phase", "job_id": "Job", "Value #A": "Running for", "Value #B": "Started"}),
              overrides=[override("Running for", unit="dtdurations", thresholds=job_age_thresholds(),
                                  custom__cellOptions=COLOR_BG),
                         override("Started", unit="dateTimeAsIso")],
              sort_by=[("Running for", True)]),
        table("Job history",
              "Per kind of job: failures inside the lookback window, time since the last success and how long "
              "it took. A server whose image failed %d times needs the provider's support." % c[
                  "jobRepeatedFailures"],
              [target("imaging_job_failures" + joined, "A", instant=True),
               target("(time() - imaging_job_last_success_timestamp_seconds)" + joined, "B", instant=True),
               target("imaging_job_last_duration_seconds" + joined, "C", instant=True)],
              w=12, h=7,
              organize=(["Time", "job", "instance", "server_id"],
                        ["cloud", "project", "kind", "Value #A", "Value #B", "Value #C"],
                        {"cloud": "Cloud", "project": "Project", "kind": "Kind", "Value #A": "Failures",
                         "Value #B": "Last success", "Value #C": "Took"}),
              overrides=[override("Failures", thresholds=failure_thresholds(), custom__cellOptions=COLOR_BG),
                         override("Last success", unit="dtdurations"), override("Took", unit="dtdurations")]),
        table("Images of this server",
              "The account's images taken from this server, newest first.",
              [target("(imaging_image_created_timestamp_seconds * 1000)" + joined, "A", instant=True),
               target("imaging_image_size_bytes" + joined, "B", instant=True)],
              w=12, h=7,
              organize=(["Time", "job", "instance", "server_id"],
                        ["cloud", "project", "image_name", "image_id", "status", "Value #A", "Value #B"],
                        {"cloud": "Cloud", "project": "Project", "image_name": "Image", "image_id": "Image ID",
                         "status": "Status", "Value #A": "Created", "Value #B": "Size"}),
              overrides=[override("Created", unit="dateTimeAsIso"), override("Size", unit="decbytes")],
              sort_by=[("Created", True)]),
        table("Server facts",
              "What the cloud says about this server: whether the provider's backup service is on (Linode), "
              "whether it boots from a volume (not in its images), and its disks against the largest image.",
              [target("max by (cloud, project, server_id) (imaging_backups_enabled%s)" % joined, "A", instant=True),
               target("max by (cloud, project, server_id) (imaging_server_boot_from_volume%s)" % joined, "B",
                      instant=True),
               target("min by (cloud, project, server_id) (imaging_cloud_disk_size_bytes%s)" % joined, "C",
                      instant=True)],
              w=12, h=7,
              organize=(["Time", "server_id"], ["cloud", "project", "Value #A", "Value #B", "Value #C"],
                        {"cloud": "Cloud", "project": "Project", "Value #A": "Backup service",
                         "Value #B": "Boots from volume", "Value #C": "Smallest disk"}),
              overrides=[override("Backup service",
                                  mappings=value_mappings((1, "enabled", "green"), (0, "disabled", "orange")),
                                  custom__cellOptions=COLOR_BG),
                         override("Boots from volume",
                                  mappings=value_mappings((1, "yes: not in images", "blue"), (0, "no", "green")),
                                  custom__cellOptions=COLOR_BG),
                         override("Smallest disk headroom", unit="decbytes", thresholds=thresholds("red", (0, "green")),
                                  custom__cellOptions=COLOR_BG)]),
    ]
    variables = [
        datasource_variable(),
        query_variable("job", "Job", "label_values(imaging_host_info, job)",
                       description="Prometheus jobs that scrape imaging exporters in host mode."),
        query_variable("instance", "Instance", 'label_values(imaging_host_info{job=~"$job"}, instance)',
                       multi=False, include_all=False, description="The host-mode exporter of one server."),
    ]
    return dashboard(SERVER_UID, "Imaging / Server",
                     "One server as the imaging exporter sees it: its filesystems against the image limits in "
                     "force, what its images will not contain, and its imaging and backup jobs "
                     "(imaging-exporter).", panels, variables)


DASHBOARDS = {"imaging-overview.json": overview, "imaging-server.json": server}


def render(build) -> str:
    return json.dumps(build(), indent=2) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="fail if a committed dashboard is out of date")
    p.add_argument("--output-dir", default=HERE)
    a = p.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = os.path.join(a.output_dir, name)
        text = render(build)
        if a.check:
            try:
                with open(path, encoding="utf-8") as f:
                    if f.read() == text:
                        continue
            except FileNotFoundError:
                pass
            stale.append(path)
            continue
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    for path in stale:
        print("%s is out of date: run python dashboards/generate.py" % path, file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
