"""Imaging / Overview: the fleet, for the operator who answers for all of it.

Tables where a fleet has hundreds of rows (sorted, worst first), time series
only where the number of lines is bounded: by kind, status or reason, or the k
worst ranked at the end of the range (selectors.at_end_top).
"""
from __future__ import annotations

from dashboards import alerting
from dashboards import panels as P
from dashboards.panels import query as q
from dashboards.selectors import (CLOUD, JOB, PROJECT, SERVER, account, at_end_top, cloud_server, host,
                                  hosts_in_scope, in_scope, sel, with_server)

SERVER_UID = "imaging-server"
SERVER_LINK = [{"title": "Imaging / Server: ${__value.raw}", "targetBlank": False,
                "url": "/d/%s/imaging-server?${datasource:queryparam}&var-server=${__value.raw}&${__url_time_range}"
                       % SERVER_UID}]
TOP = 10


def pct(ratio: float) -> str:
    return "%g%%" % (ratio * 100)


def hours(seconds: int) -> str:
    return "%g h" % (seconds / 3600)


def soonest_to_cross_expr() -> str:
    """Per host limit: 0 when over it, else the alerts' predicted time to it, else one year."""
    h = host()
    return ("(imaging_headroom_ratio%(h)s < 0) * 0\nor\n%(b)s\nor\n%(i)s\nor\nimaging_headroom_ratio%(h)s * 0 + %(y)d"
            % dict(h=h, b=alerting.time_to_limit("imaging_headroom_bytes", h),
                   i=alerting.time_to_limit("imaging_headroom_inodes", h), y=P.YEAR))


def quota_used(kind: str) -> str:
    """Images (or bytes) the account holds: the provider's own count when the exporter has it."""
    own, listed = {"images": ("imaging_quota_images_used", "sum without (status) (imaging_images%s)"),
                   "bytes": ("imaging_quota_bytes_used", "imaging_images_bytes%s")}[kind]
    return ("max by (job, instance, cloud, project) (%s%s)\nor\nmax by (job, instance, cloud, project) (%s)"
            % (own, account(), listed % account()))


def quota_ratio(kind: str) -> str:
    limit = {"images": "imaging_quota_images", "bytes": "imaging_quota_bytes"}[kind]
    return "(\n%s\n)\n/\nmax by (job, instance, cloud, project) (%s%s > 0)" % (quota_used(kind), limit, account())


def firing_alerts() -> str:
    """Firing imaging alerts in scope, each with the URL of its runbook section in a `runbook` label."""
    base = 'alertstate="firing", alertname=~"Imaging.+"'
    expr = ("ALERTS%s\nor\n(ALERTS%s and on (job, instance) %s)"
            % (sel(base, JOB, CLOUD, PROJECT, SERVER), sel(base, JOB, 'cloud=""'), hosts_in_scope()))
    for name in alerting.alert_names():
        expr = 'label_replace(%s, "runbook", "%s", "alertname", "%s")' % (expr, alerting.runbook_url(name), name)
    return expr


def servers_in_scope() -> str:
    """How many servers: those the clouds in scope list, plus host exporters of servers they do not list."""
    listed = "imaging_server_boot_from_volume" + cloud_server()
    return ("(count(group by (server_id) (%s)) or vector(0))\n+\n(count(\n%s\nunless on (server_id)\n%s\n)"
            " or vector(0))" % (listed, hosts_in_scope(), listed))


def summary():
    t = alerting.thresholds()
    h = host()
    job_age = "time() - max without (phase) (imaging_job_started_timestamp_seconds%s)" % cloud_server()
    return [
        P.row("Now"),
        P.stat("Over an image limit", "Image limits crossed now on host filesystems (each limit on each "
               "filesystem counts once): image requests of those servers fail.",
               [q("count(%s) or vector(0)" % in_scope("imaging_headroom_ratio%s < 0" % h), instant=True)],
               thr=P.thresholds("green", (1, "red")), runbooks=("ImagingSizeLimitExceeded", "ImagingInodeLimitExceeded")),
        P.stat("Crossing within %s" % hours(t.predict_warning_horizon),
               "Host limits that the fill-up warning's prediction (the daily peaks of the last %s) crosses within %s."
               % (t.predict_range, hours(t.predict_warning_horizon)),
               [q("count(%s < %d) or vector(0)" % (in_scope(soonest_to_cross_expr()), t.predict_warning_horizon),
                  instant=True)],
               thr=P.thresholds("green", (1, "orange")), runbooks=("ImagingSizeLimitFillingUp",)),
        P.stat("Stuck jobs", "Imaging, backup and volume snapshot jobs running for more than %s: they will not "
               "finish on their own." % hours(t.job_stuck_after),
               [q("count(%s > %d) or vector(0)" % (job_age, t.job_stuck_after), instant=True)],
               thr=P.thresholds("green", (1, "red")), runbooks=("ImagingJobStuck",)),
        P.stat("Failed repeatedly", "Servers whose jobs of one kind failed %d times or more in the lookback window."
               % t.job_repeated_failures,
               [q("count(imaging_job_failures%s >= %d) or vector(0)" % (cloud_server(), t.job_repeated_failures),
                  instant=True)],
               thr=P.thresholds("green", (1, "red")), runbooks=("ImagingJobFailedRepeatedly",)),
        P.stat("Accounts near a quota", "Cloud accounts using %s or more of their image count or image storage "
               "quota." % pct(t.quota_warning_ratio),
               [q("count(\n  (%s) >= %g\n  or\n  (%s) >= %g\n) or vector(0)"
                  % (quota_ratio("images"), t.quota_warning_ratio, quota_ratio("bytes"), t.quota_warning_ratio),
                  instant=True)],
               thr=P.thresholds("green", (1, "orange")),
               runbooks=("ImagingImageQuotaNearlyFull", "ImagingImageStorageQuotaNearlyFull")),
        P.stat("Stale backups", "Servers with backups enabled whose last successful backup is older than %s."
               % hours(t.backup_max_age),
               [q("count(\n  time() - imaging_job_last_success_timestamp_seconds%s > %d\n  and ignoring (kind)\n"
                  "  imaging_backups_enabled%s == 1\n) or vector(0)"
                  % (cloud_server('kind="backup"'), t.backup_max_age, cloud_server()), instant=True)],
               thr=P.thresholds("green", (1, "orange")), runbooks=("ImagingBackupTooOld",)),
        P.stat("Down", "Exporter targets Prometheus cannot scrape plus sources an exporter cannot read: nothing "
               "they watch can alert.",
               [q("(count(up%s == 0) or vector(0))\n+\n(count(imaging_source_up%s == 0) or vector(0))"
                  % (sel(JOB), sel(JOB, CLOUD)), instant=True)],
               thr=P.thresholds("green", (1, "red")), runbooks=("ImagingExporterDown", "ImagingSourceDown")),
        P.stat("Servers", "Servers in scope: those the clouds list, plus host exporters of servers no cloud in "
               "scope lists (each host exporter without a server_id counts as one).",
               [q(servers_in_scope(), instant=True)], thr=P.thresholds("blue")),
        P.table("Firing imaging alerts",
                "Imaging alerts firing now in Prometheus (the ALERTS series), worst severity first; the runbook "
                "column opens the alert's section of docs/runbooks.md.",
                [q(firing_alerts(), instant=True)],
                {"alertname": "Alert", "severity": "Severity", "cloud": "Cloud", "project": "Project",
                 "server_id": "Server ID", "instance": "Instance", "mountpoint": "Mount point", "limit": "Limit",
                 "kind": "Kind", "runbook": "Runbook"},
                w=24, h=7, sort_by=[("Severity", False)])
        .override_by_name("Runbook", [P.model.DynamicConfigValue(
            id_val="links", value=[{"title": "Runbook", "url": "${__value.raw}", "targetBlank": True}])]),
    ]


def limits():
    t = alerting.thresholds()
    h = host()
    p = P.table(
        "Soonest to cross",
        "Every image limit on every host filesystem, the one predicted to be crossed first on top. Time to limit "
        "is where the fill-up warning's line (predict_linear over the daily peaks of the last %s) reaches the limit: "
        "0 means over it "
        "now, orange under %s, red under %s (when the alerts fire). Headroom is the limit minus the measure, "
        "in decimal units as the providers write their limits (GB = 10^9 bytes)."
        % (t.predict_range, hours(t.predict_warning_horizon), hours(t.predict_critical_horizon)),
        [q(with_server(soonest_to_cross_expr()), "A", instant=True),
         q(with_server("imaging_headroom_ratio%s" % h), "B", instant=True),
         q(with_server("imaging_headroom_bytes%s" % h), "C", instant=True),
         q(with_server("imaging_headroom_inodes%s" % h), "D", instant=True)],
        {"hostname": "Server", "server_id": "Server ID", "instance": "Instance", "limit": "Limit",
         "mountpoint": "Mount point", "Value #A": "Time to limit", "Value #B": "Headroom %",
         "Value #C": "Headroom (bytes)", "Value #D": "Headroom (inodes)"},
        w=24, h=10, sort_by=[("Time to limit", False)],
        runbooks=("ImagingSizeLimitFillingUp", "ImagingInodeLimitFillingUp", "ImagingSizeLimitExceeded"))
    p = P.override(p, "Time to limit", unit="dtdurations", thresholds=P.time_to_limit_thresholds().build().to_json(),
                   mappings=P.mappings_json((0, "over the limit", "red"), ((P.YEAR, None), "not approaching", "green")),
                   custom__cellOptions=P.COLOR_BACKGROUND)
    p = P.override(p, "Headroom %", unit="percentunit", decimals=1,
                   thresholds=P.headroom_thresholds().build().to_json(), custom__cellOptions=P.COLOR_TEXT)
    p = P.override(p, "Headroom (bytes)", unit="decbytes")
    p = P.override(p, "Headroom (inodes)", unit="short")
    p = P.override(p, "Server ID", links=SERVER_LINK)
    ratio = in_scope("imaging_headroom_ratio%s" % h)
    uncovered = in_scope("sum by (job, instance) (imaging_uncovered_bytes%s)" % h)
    return [
        P.row("Image limits (host mode)"),
        p,
        P.timeseries("Lowest headroom (%d)" % TOP,
                     "The %d host filesystems with the least headroom under an image limit at the end of the "
                     "time range, as a share of the limit, over the range." % TOP,
                     [q(at_end_top("bottomk", TOP, ratio), legend="{{instance}} {{mountpoint}} {{limit}}")],
                     unit="percentunit", thr=P.headroom_thresholds(), thresholds_style="line+area",
                     legend_calcs=("lastNotNull", "min"), legend_right=True,
                     runbooks=("ImagingSizeLimitNearlyReached", "ImagingInodeLimitNearlyReached")),
        P.timeseries("Most data not in images (%d)" % TOP,
                     "The %d servers with the most used bytes on data filesystems, which their images do not "
                     "contain." % TOP,
                     [q(at_end_top("topk", TOP, uncovered), legend="{{instance}}")],
                     unit="decbytes", min_=0, legend_right=True, runbooks=("ImagingDataNotInImage",)),
    ]


def quotas():
    t = alerting.thresholds()
    a = account()
    image_vs_max = ("imaging_image_size_bytes%s\n/ ignoring (image_id, image_name, server_id, status, source) "
                    "group_left\nimaging_image_max_size_bytes%s" % (cloud_server(), a))
    accounts = P.table(
        "Accounts",
        "Each account's images and bytes against its quotas and the largest image the cloud takes. Used counts "
        "are the provider's own usage where the exporter reads it, else the images it lists. Quota use is "
        "orange from %s and red when full." % pct(t.quota_warning_ratio),
        [q(quota_used("images"), "A", instant=True),
         q("max by (job, instance, cloud, project) (imaging_quota_images%s)" % a, "B", instant=True),
         q(quota_ratio("images"), "C", instant=True),
         q(quota_used("bytes"), "D", instant=True),
         q("max by (job, instance, cloud, project) (imaging_quota_bytes%s)" % a, "E", instant=True),
         q(quota_ratio("bytes"), "F", instant=True),
         q("max by (job, instance, cloud, project) (imaging_image_max_size_bytes%s)" % a, "G", instant=True)],
        {"cloud": "Cloud", "project": "Project", "Value #A": "Images", "Value #B": "Image quota",
         "Value #C": "Images used", "Value #D": "Bytes", "Value #E": "Bytes quota", "Value #F": "Bytes used",
         "Value #G": "Largest image"},
        w=24, h=6, sort_by=[("Images used", True)],
        runbooks=("ImagingImageQuotaFull", "ImagingImageStorageQuotaFull"))
    for col in ("Images used", "Bytes used"):
        accounts = P.override(accounts, col, unit="percentunit", decimals=1,
                              thresholds=P.quota_thresholds().build().to_json(), custom__cellOptions=P.GAUGE,
                              min=0, max=1)
    for col in ("Bytes", "Bytes quota", "Largest image"):
        accounts = P.override(accounts, col, unit="decbytes")
    disks = P.table(
        "Server disks",
        "Server disks as the cloud reports them (Linode), largest first: their allocated size, for "
        "information. The image size limit applies to the data on a disk, which only host mode measures "
        "(the Image limits row above).",
        [q("imaging_cloud_disk_size_bytes%s" % cloud_server(), "A", instant=True)],
        {"cloud": "Cloud", "project": "Project", "server_name": "Server", "server_id": "Server ID",
         "disk_label": "Disk", "Value #A": "Disk size"},
        w=24, h=8, sort_by=[("Disk size", True)])
    disks = P.override(P.override(disks, "Disk size", unit="decbytes"), "Server ID", links=SERVER_LINK)
    return [
        P.row("Image quotas (cloud mode)"),
        accounts,
        P.timeseries("Fullest accounts (%d)" % TOP,
                     "Image count and image storage quota use of the %d accounts closest to a quota at the end "
                     "of the range." % TOP,
                     [q(at_end_top("topk", TOP, quota_ratio("images")), "A", legend="{{cloud}} {{project}} images"),
                      q(at_end_top("topk", TOP, quota_ratio("bytes")), "B", legend="{{cloud}} {{project}} bytes")],
                     w=8, unit="percentunit", min_=0, thr=P.quota_thresholds(), thresholds_style="dashed",
                     runbooks=("ImagingImageQuotaNearlyFull", "ImagingImageStorageQuotaNearlyFull")),
        P.timeseries("Images by status", "The accounts' own images by the provider's status (active, saving, "
                     "queued, killed ...), all accounts in scope.",
                     [q("sum by (status) (imaging_images%s)" % a, legend="{{status}}")],
                     w=8, stack=True, fill=30, min_=0),
        P.bargauge("Largest images against the maximum size (%d)" % TOP,
                   "The %d largest images as a share of the largest image the cloud accepts (Linode: 6 GB; "
                   "OpenStack: max_image_size in the config). An image still being created fails past 100%%."
                   % TOP,
                   [q("topk(%d, %s)" % (TOP, image_vs_max.replace("\n", " ")), legend="{{cloud}} {{image_name}}",
                      instant=True, fmt="time_series")],
                   w=8, thr=P.quota_thresholds(), runbooks=("ImagingImageTooLarge",)),
        disks,
    ]


def jobs():
    t = alerting.thresholds()
    c = cloud_server()
    running = P.table(
        "Running jobs",
        "Imaging, backup and volume snapshot jobs running now, longest first, their age drawn against %s: "
        "orange after %s (imaging can take hours and queues), full and red at %s: stuck, it needs the "
        "provider's support." % (hours(t.job_stuck_after), hours(t.job_long_after), hours(t.job_stuck_after)),
        [q("time() - imaging_job_started_timestamp_seconds%s" % c, "A", instant=True),
         q("imaging_job_started_timestamp_seconds%s * 1000" % c, "B", instant=True)],
        {"cloud": "Cloud", "project": "Project", "server_name": "Server", "server_id": "Server ID", "kind": "Kind",
         "phase": "Phase", "job_id": "Job", "Value #B": "Started", "Value #A": "Running for"},
        w=24, h=8, sort_by=[("Running for", True)], runbooks=("ImagingJobRunningLong", "ImagingJobStuck"))
    running = P.override(running, "Running for", unit="dtdurations", min=0, max=t.job_stuck_after,
                         thresholds=P.job_age_thresholds().build().to_json(), custom__cellOptions=P.GAUGE)
    running = P.override(P.override(running, "Started", unit="dateTimeAsIso"), "Server ID", links=SERVER_LINK)
    failures = P.table(
        "Failures",
        "Servers whose jobs failed inside the exporter's lookback window, and how many of their latest jobs "
        "failed in a row. A retry about 30 minutes after one failure often succeeds; %d failures need the "
        "provider's support." % t.job_repeated_failures,
        [q("imaging_job_failures%s > 0" % c, "A", instant=True),
         q("imaging_job_consecutive_failures%s" % c, "B", instant=True),
         q("time() - imaging_job_last_failure_timestamp_seconds%s" % c, "C", instant=True)],
        {"cloud": "Cloud", "project": "Project", "server_id": "Server ID", "kind": "Kind",
         "Value #A": "Failures", "Value #B": "In a row", "Value #C": "Last failure"},
        w=12, h=8, sort_by=[("Failures", True)], runbooks=("ImagingJobFailed", "ImagingJobFailedRepeatedly"))
    for col in ("Failures", "In a row"):
        failures = P.override(failures, col, thresholds=P.failure_thresholds().build().to_json(),
                              custom__cellOptions=P.COLOR_BACKGROUND)
    failures = P.override(P.override(failures, "Last failure", unit="dtdurations"), "Server ID", links=SERVER_LINK)
    backup = cloud_server('kind="backup"')
    backups = P.table(
        "Backups",
        "Servers with the provider's backup service, the oldest last successful backup first: red after %s "
        "(a daily schedule plus slack). Images are not a reliable copy of a running database; the backup "
        "service has no size or count limit." % hours(t.backup_max_age),
        [q("imaging_backups_enabled%s" % c, "A", instant=True),
         q("time() - max by (job, instance, cloud, project, server_id) "
           "(imaging_job_last_success_timestamp_seconds%s)" % backup, "B", instant=True),
         q("max by (job, instance, cloud, project, server_id) (imaging_job_last_duration_seconds%s)" % backup,
           "C", instant=True)],
        {"cloud": "Cloud", "project": "Project", "server_id": "Server ID", "Value #A": "Backup service",
         "Value #B": "Last successful backup", "Value #C": "Took"},
        w=12, h=8, sort_by=[("Last successful backup", True)],
        runbooks=("ImagingBackupTooOld", "ImagingBackupMissing", "ImagingBackupsDisabled"))
    backups = P.override(backups, "Backup service", mappings=P.mappings_json((1, "enabled", "green"),
                                                                             (0, "disabled", "blue")),
                         custom__cellOptions=P.COLOR_TEXT)
    backups = P.override(backups, "Last successful backup", unit="dtdurations",
                         thresholds=P.backup_age_thresholds().build().to_json(), custom__cellOptions=P.COLOR_TEXT)
    backups = P.override(P.override(backups, "Took", unit="dtdurations"), "Server ID", links=SERVER_LINK)
    agents = backup_agents(c)
    a = account()
    return [
        P.row("Imaging and backup jobs (cloud mode)"),
        running,
        P.timeseries("Jobs running", "Jobs running by kind, all accounts in scope. Imaging concurrency is "
                     "limited, so a count that keeps growing means jobs are queueing.",
                     [q("sum by (kind) (imaging_jobs_running%s)" % a, legend="{{kind}}")],
                     w=8, min_=0, step_after=True, legend_calcs=("lastNotNull", "max")),
        P.timeseries("Failed jobs by account (%d)" % TOP,
                     "Failed jobs in the lookback window per account and kind, the %d accounts with most at the "
                     "end of the range." % TOP,
                     [q(at_end_top("topk", TOP, "sum by (cloud, project, kind) (imaging_job_failures%s)" % c),
                        legend="{{cloud}} {{project}} {{kind}}")],
                     w=8, min_=0, step_after=True, runbooks=("ImagingJobFailed",)),
        P.heatmap("Durations of completed jobs",
                  "How long completed jobs took (imaging_job_duration_seconds, each job observed once), all kinds; "
                  "cells at least 30 minutes wide.",
                  [q("sum by (le) (increase(imaging_job_duration_seconds_bucket%s[$__interval]))" % a,
                     legend="{{le}}", fmt="heatmap")], interval="30m"),
        failures,
        backups,
        agents,
    ]


def backup_agents(c):
    """Rackspace Cloud Backup: each server's agent and its enabled configurations, beside the images."""
    by = "(job, instance, cloud, project, server_id)"
    agents = P.table(
        "Backup agents (Rackspace Cloud Backup)",
        "Each server's Cloud Backup agent: online or not, the time since the exporter last saw it online, "
        "how many enabled backup configurations cover the server and the shortest schedule among them. "
        "A database or data disk without a configuration is not backed up: images do not hold them reliably.",
        [q("max by %s (imaging_backup_agent_online%s)" % (by, c), "A", instant=True),
         q("time() - max by %s (imaging_backup_agent_heartbeat_timestamp_seconds%s)" % (by, c), "B", instant=True),
         q("count by %s (imaging_backup_schedule_interval_seconds%s)" % (by, c), "C", instant=True),
         q("min by %s (imaging_backup_schedule_interval_seconds%s)" % (by, c), "D", instant=True)],
        {"cloud": "Cloud", "project": "Project", "server_id": "Server ID", "Value #A": "Agent",
         "Value #B": "Last seen online", "Value #C": "Configurations", "Value #D": "Runs every"},
        w=24, h=8, sort_by=[("Agent", False)],
        runbooks=("ImagingBackupAgentOffline", "ImagingBackupOverdue", "ImagingDatabaseWithoutBackup",
                  "ImagingUncoveredDataWithoutBackup"))
    agents = P.override(agents, "Agent", mappings=P.mappings_json((1, "online", "green"), (0, "offline", "red")),
                        custom__cellOptions=P.COLOR_BACKGROUND)
    agents = P.override(P.override(agents, "Last seen online", unit="dtdurations"), "Runs every",
                        unit="dtdurations")
    return P.override(agents, "Server ID", links=SERVER_LINK)


def health():
    j = sel(JOB)
    srcs = sel(JOB, CLOUD)
    by = "max by (job, instance, source, cloud)"
    sources = P.table(
        "Sources",
        "Each source of each exporter: a host's filesystems and every cloud account. A target Prometheus cannot "
        "scrape shows its sources down (red) for a day rather than vanishing; data age is the time since the "
        "last good read. A host source shows while no cloud is picked. In textfile mode (--once --output under "
        "node_exporter) the data age is the age of the file.",
        [q("min by (job, instance, source, cloud) (\n  last_over_time(imaging_source_up%s[1d])\n  * on (job, "
           "instance) group_left ()\n  up%s\n)\nor on (job, instance)\nlabel_replace(up%s == 0, \"source\", "
           "\"unreachable\", \"\", \"\")" % (srcs, j, j), "A", instant=True),
         q("time() - %s (last_over_time(imaging_source_last_success_timestamp_seconds%s[1d]))" % (by, srcs), "B",
           instant=True),
         q("%s (imaging_source_refresh_duration_seconds%s)" % (by, srcs), "C", instant=True),
         q("%s (imaging_source_refresh_interval_seconds%s)" % (by, srcs), "D", instant=True)],
        {"instance": "Instance", "source": "Source", "cloud": "Cloud", "Value #A": "State",
         "Value #B": "Data age", "Value #C": "Refresh took", "Value #D": "Refresh interval"},
        w=12, h=8, sort_by=[("State", False)],
        runbooks=("ImagingExporterDown", "ImagingSourceDown", "ImagingSourceStale", "ImagingCollectorFailed",
                  "ImagingTextfileStale"))
    sources = P.override(sources, "State", mappings=P.mappings_json(*P.UP_DOWN), custom__cellOptions=P.COLOR_BACKGROUND)
    sources = P.override(sources, "Data age", unit="dtdurations")
    sources = P.override(P.override(sources, "Refresh took", unit="s"), "Refresh interval", unit="dtdurations")
    return [
        P.row("Exporter health"),
        sources,
        P.timeseries("Refresh errors", "Failed refreshes per second by reason (auth, timeout, rate_limited, http, "
                     "malformed ...), only while there are any. The exporter keeps serving the last good data.",
                     [q("sum by (reason) (rate(imaging_source_refresh_errors_total%s[$__rate_interval])) > 0" % srcs,
                        legend="{{reason}}")],
                     unit="short", min_=0, legend_calcs=("max",), runbooks=("ImagingSourceStale",)),
        P.timeseries("Targets up", "Imaging exporter targets Prometheus scrapes, and how many of them are up, "
                     "by job.",
                     [q("sum by (job) (up%s)" % j, "A", legend="{{job}} up"),
                      q("count by (job) (up%s)" % j, "B", legend="{{job}} targets")],
                     min_=0, step_after=True, legend_calcs=("lastNotNull", "min"), runbooks=("ImagingExporterDown",)),
        P.timeseries("Slowest refreshes and scrapes (%d each)" % TOP,
                     "The %d slowest source refreshes (cloud refreshes run in the background) and the %d slowest "
                     "collectors in a scrape, at the end of the range." % (TOP, TOP),
                     [q(at_end_top("topk", TOP, "imaging_source_refresh_duration_seconds%s" % srcs), "A",
                        legend="refresh {{instance}} {{source}} {{cloud}}"),
                      q(at_end_top("topk", TOP, "imaging_scrape_duration_seconds%s" % j), "B",
                        legend="scrape {{instance}} {{collector}}")],
                     unit="s", min_=0, legend_right=True),
    ]


def variables():
    from dashboards.variables import cloud_variables
    return cloud_variables(server_multi=True)


def build():
    from dashboards.variables import dashboard
    return dashboard("imaging-overview", "Imaging / Overview",
                     "Server images and backups across the fleet: what crosses a limit soonest, firing alerts, "
                     "quotas, imaging and backup jobs, and the exporters' health (imaging-exporter).",
                     summary() + limits() + quotas() + jobs() + health(), variables())
