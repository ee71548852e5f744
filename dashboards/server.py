"""Imaging / Server: one server, for its owner.

Works with what there is for the server: host-mode series (its exporter's
imaging_host_info carries the server_id), cloud-mode series (labelled with the
server_id), or both. Host panels select the host through selectors.in_scope,
cloud panels by label, so the same `server` value drives both.
"""
from __future__ import annotations

from dashboards import alerting
from dashboards import panels as P
from dashboards.overview import hours, soonest_to_cross_expr
from dashboards.panels import query as q
from dashboards.selectors import cloud_server, host, in_scope, sel, JOB

LIMIT_JOIN = "on (job, instance, limit) group_right"


def identity():
    c = cloud_server()
    info = in_scope("imaging_host_info%s" % host())
    return [
        P.row("This server"),
        P.stat("Host", "The hostname its host-mode exporter reports (empty without a host exporter).",
               [q(info, instant=True)], text_field="hostname"),
        P.stat("Profile", "The limit profile in force on the host (imaging-exporter --list-profiles shows each "
               "limit with its source).", [q(info, instant=True)], text_field="profile"),
        P.stat("In the cloud", "The server's name in its cloud account (empty without a cloud-mode exporter).",
               [q("imaging_server_boot_from_volume%s" % c, instant=True)], text_field="server_name"),
        P.stat("Domain controller", "Whether the host is a Windows domain controller: Rackspace cannot restore "
               "an image of a domain controller; demote it before imaging, and back the directory up with its "
               "own tools.",
               [q(in_scope("imaging_host_domain_controller%s" % host()), instant=True)],
               mappings=((1, "yes", "orange"), (0, "no", "green")), runbooks=("ImagingDomainControllerImage",)),
        P.stat("Least headroom", "The smallest headroom under any image limit on this host, as a share of the "
               "limit.", [q("min(%s)" % in_scope("imaging_headroom_ratio%s" % host()), instant=True)],
               unit="percentunit", decimals=1, thr=P.headroom_thresholds(),
               runbooks=("ImagingSizeLimitNearlyReached",)),
        P.stat("Time to nearest limit", "When the first limit is crossed at the rate the fill-up alerts use.",
               [q("min(%s)" % in_scope(soonest_to_cross_expr()), instant=True)], unit="dtdurations",
               thr=P.time_to_limit_thresholds(),
               mappings=((0, "over the limit", "red"), ((P.YEAR, None), "not approaching", "green")),
               runbooks=("ImagingSizeLimitFillingUp",)),
        P.stat("Databases running", "Database servers running on the host: an image of a running database is not "
               "a reliable backup of it.",
               [q("sum(%s) or vector(0)" % in_scope("imaging_database_processes%s" % host()), instant=True)],
               thr=P.thresholds("green", (1, "orange")), runbooks=("ImagingDatabaseRunningDuringImage",)),
        P.stat("Boots from volume", "Whether the server boots from a block-storage volume, which its images do "
               "not contain.", [q("max(imaging_server_boot_from_volume%s)" % c, instant=True)],
               mappings=((1, "yes: not in images", "blue"), (0, "no", "green")),
               runbooks=("ImagingServerBootsFromVolume",)),
    ]


def limits():
    t = alerting.thresholds()
    h = host()

    def scoped(metric, *extra):
        return in_scope("%s%s" % (metric, sel(JOB, *extra)))

    bytes_panel = P.timeseries(
        "Bytes against image limits",
        "Used bytes of the system filesystems (those an image captures), the high-water mark (a First-Generation "
        "Windows disk never shrinks, so its limit counts the highest use ever) and the system disk size, with "
        "each size limit in force as a dashed red line. Decimal units, as the providers write limits.",
        [q(scoped("imaging_filesystem_used_bytes", 'role="system"'), "A", legend="{{mountpoint}} used"),
         q(scoped("imaging_filesystem_used_high_water_bytes"), "B", legend="{{mountpoint}} high-water"),
         q(scoped("imaging_disk_size_bytes", 'role="system"'), "C", legend="system disk {{device}}"),
         q(scoped("imaging_limit_bytes"), "D", legend="limit {{limit}}")],
        h=9, unit="decbytes", min_=0, runbooks=("ImagingSizeLimitNearlyReached", "ImagingSizeLimitExceeded"))
    inodes_panel = P.timeseries(
        "Inodes against image limits",
        "Used inodes of the system filesystems with each inode limit as a dashed red line: a filesystem with too "
        "many files cannot be imaged even when it is small.",
        [q(scoped("imaging_filesystem_inodes_used", 'role="system"'), "A", legend="{{mountpoint}} used"),
         q(scoped("imaging_limit_inodes"), "B", legend="limit {{limit}}")],
        h=9, min_=0, runbooks=("ImagingInodeLimitNearlyReached", "ImagingInodeLimitExceeded"))
    limits_table = P.table(
        "Limits",
        "Each limit on each filesystem it applies to: what is measured, the limit, the headroom left and when "
        "the fill-up warning's line (the daily peaks of the last %s) crosses it; red under %s." % (t.predict_range,
                                                                          hours(t.predict_critical_horizon)),
        [q(in_scope("imaging_limit_bytes%s - %s imaging_headroom_bytes%s" % (h, LIMIT_JOIN, h)), "A", instant=True),
         q(in_scope("imaging_limit_inodes%s - %s imaging_headroom_inodes%s" % (h, LIMIT_JOIN, h)), "B",
           instant=True),
         q(in_scope("imaging_limit_bytes%s + %s 0 * imaging_headroom_bytes%s" % (h, LIMIT_JOIN, h)), "C",
           instant=True),
         q(in_scope("imaging_limit_inodes%s + %s 0 * imaging_headroom_inodes%s" % (h, LIMIT_JOIN, h)), "D",
           instant=True),
         q(in_scope("imaging_headroom_ratio%s" % h), "E", instant=True),
         q(in_scope(soonest_to_cross_expr()), "F", instant=True)],
        {"limit": "Limit", "mountpoint": "Mount point", "Value #A": "Measured bytes", "Value #C": "Limit bytes",
         "Value #B": "Measured inodes", "Value #D": "Limit inodes", "Value #E": "Headroom %",
         "Value #F": "Time to limit"},
        w=24, h=6, sort_by=[("Time to limit", False)], runbooks=("ImagingSizeLimitFillingUp",))
    for col in ("Measured bytes", "Limit bytes"):
        limits_table = P.override(limits_table, col, unit="decbytes")
    limits_table = P.override(limits_table, "Headroom %", unit="percentunit", decimals=1,
                              thresholds=P.headroom_thresholds().build().to_json(), custom__cellOptions=P.COLOR_TEXT)
    limits_table = P.override(
        limits_table, "Time to limit", unit="dtdurations", thresholds=P.time_to_limit_thresholds().build().to_json(),
        mappings=P.mappings_json((0, "over the limit", "red"), ((P.YEAR, None), "not approaching", "green")),
        custom__cellOptions=P.COLOR_BACKGROUND)
    filesystems = P.table(
        "Filesystems and disks",
        "Every filesystem the exporter reads: its role (system filesystems are in the image, data ones are "
        "not), size, use and inodes; and the size of each disk.",
        [q(scoped("imaging_filesystem_size_bytes"), "A", instant=True),
         q(scoped("imaging_filesystem_used_bytes"), "B", instant=True),
         q(scoped("imaging_filesystem_inodes"), "C", instant=True),
         q(scoped("imaging_filesystem_inodes_used"), "D", instant=True),
         q(scoped("imaging_disk_size_bytes"), "E", instant=True)],
        {"mountpoint": "Mount point", "device": "Device", "fstype": "Type", "role": "Role", "Value #A": "Size",
         "Value #B": "Used", "Value #C": "Inodes", "Value #D": "Inodes used", "Value #E": "Disk size"},
        w=12, h=7, runbooks=("ImagingMountStatError",))
    for col in ("Size", "Used", "Disk size"):
        filesystems = P.override(filesystems, col, unit="decbytes")
    return [
        P.row("Image limits (host mode)"),
        P.limit_line(bytes_panel, "D"),
        P.limit_line(inodes_panel, "B"),
        limits_table,
        filesystems,
        P.timeseries("Headroom", "Headroom under each limit as a share of the limit: red below 0 (over), orange "
                     "below %s." % ("%g%%" % (t.headroom_nearly_ratio * 100)),
                     [q(in_scope("imaging_headroom_ratio%s" % h), legend="{{limit}} {{mountpoint}}")],
                     unit="percentunit", thr=P.headroom_thresholds(), thresholds_style="line+area",
                     legend_calcs=("lastNotNull", "min")),
        P.timeseries("Data not in images", "Used bytes on data filesystems: images capture the system disk only, "
                     "so this data needs its own backup.",
                     [q(in_scope("imaging_uncovered_bytes%s" % h), "A", legend="{{mountpoint}} ({{reason}})")],
                     unit="decbytes", min_=0, runbooks=("ImagingDataNotInImage",)),
        P.timeseries("Database servers running", "Running database servers by engine: stop them, or back them "
                     "up with their own tools, before imaging.",
                     [q(in_scope("imaging_database_processes%s > 0" % h), legend="{{engine}}")],
                     min_=0, step_after=True, legend_calcs=("lastNotNull",),
                     runbooks=("ImagingDatabaseRunningDuringImage",)),
    ]


def cloud():
    t = alerting.thresholds()
    c = cloud_server()
    running = P.table(
        "Running jobs",
        "This server's imaging, backup and volume snapshot jobs running now, their age against %s: orange "
        "after %s, red (stuck) at %s." % (hours(t.job_stuck_after), hours(t.job_long_after), hours(t.job_stuck_after)),
        [q("time() - imaging_job_started_timestamp_seconds%s" % c, "A", instant=True),
         q("imaging_job_started_timestamp_seconds%s * 1000" % c, "B", instant=True)],
        {"cloud": "Cloud", "project": "Project", "kind": "Kind", "phase": "Phase", "job_id": "Job",
         "Value #B": "Started", "Value #A": "Running for"},
        w=12, h=6, sort_by=[("Running for", True)], runbooks=("ImagingJobRunningLong", "ImagingJobStuck"))
    running = P.override(running, "Running for", unit="dtdurations", min=0, max=t.job_stuck_after,
                         thresholds=P.job_age_thresholds().build().to_json(), custom__cellOptions=P.GAUGE)
    running = P.override(running, "Started", unit="dateTimeAsIso")
    history = P.table(
        "Job history",
        "Per kind of job: failures in the lookback window, how many of the latest failed in a row, and the last "
        "success with how long it took. %d failures need the provider's support." % t.job_repeated_failures,
        [q("imaging_job_failures%s" % c, "A", instant=True),
         q("imaging_job_consecutive_failures%s" % c, "B", instant=True),
         q("time() - imaging_job_last_success_timestamp_seconds%s" % c, "C", instant=True),
         q("imaging_job_last_duration_seconds%s" % c, "D", instant=True)],
        {"cloud": "Cloud", "project": "Project", "kind": "Kind", "Value #A": "Failures", "Value #B": "In a row",
         "Value #C": "Last success", "Value #D": "Took"},
        w=12, h=6, runbooks=("ImagingJobFailed", "ImagingJobFailedRepeatedly", "ImagingBackupTooOld"))
    for col in ("Failures", "In a row"):
        history = P.override(history, col, thresholds=P.failure_thresholds().build().to_json(),
                             custom__cellOptions=P.COLOR_BACKGROUND)
    history = P.override(P.override(history, "Last success", unit="dtdurations"), "Took", unit="dtdurations")
    images = P.table(
        "Images of this server", "The account's images taken from this server, newest first.",
        [q("imaging_image_created_timestamp_seconds%s * 1000" % c, "A", instant=True),
         q("imaging_image_size_bytes%s" % c, "B", instant=True)],
        {"image_name": "Image", "image_id": "Image ID", "status": "Status", "Value #A": "Created",
         "Value #B": "Size"},
        w=12, h=7, sort_by=[("Created", True)], runbooks=("ImagingImageTooLarge",))
    images = P.override(P.override(images, "Created", unit="dateTimeAsIso"), "Size", unit="decbytes")
    facts = P.table(
        "Backups and disks",
        "Whether the provider's backup service is on and when it last succeeded, and each disk's allocated "
        "size as the cloud reports it (information: image limits apply to the data on it, which host mode "
        "measures).",
        [q("imaging_backups_enabled%s" % c, "A", instant=True),
         q("time() - imaging_job_last_success_timestamp_seconds%s" % cloud_server('kind="backup"'), "B",
           instant=True),
         q("imaging_cloud_disk_size_bytes%s" % c, "C", instant=True)],
        {"cloud": "Cloud", "disk_label": "Disk", "Value #A": "Backup service", "Value #B": "Last backup",
         "Value #C": "Disk size"},
        w=12, h=7, runbooks=("ImagingBackupsDisabled", "ImagingBackupTooOld"))
    facts = P.override(facts, "Backup service", mappings=P.mappings_json((1, "enabled", "green"),
                                                                         (0, "disabled", "blue")),
                       custom__cellOptions=P.COLOR_TEXT)
    facts = P.override(facts, "Last backup", unit="dtdurations", thresholds=P.backup_age_thresholds().build().to_json(),
                       custom__cellOptions=P.COLOR_TEXT)
    facts = P.override(facts, "Disk size", unit="decbytes")
    return [
        P.row("Jobs, images and backups (cloud mode)"),
        running,
        history,
        P.timeseries("Jobs over time", "How long this server's running jobs had been running (by kind), and its "
                     "failures in the lookback window, over the time range: a saw-tooth is a schedule, a line "
                     "that keeps rising is a stuck job.",
                     [q("max by (kind) (time() - imaging_job_started_timestamp_seconds%s)" % c, "A",
                        legend="{{kind}} running for"),
                      q("max by (kind) (imaging_job_failures%s)" % c, "B", legend="{{kind}} failures")],
                     w=24, h=7, unit="s", min_=0, step_after=True,
                     runbooks=("ImagingJobStuck", "ImagingJobFailed"))
        .override_by_query("B", [P.model.DynamicConfigValue(id_val="unit", value="short"),
                                 P.model.DynamicConfigValue(id_val="custom.axisPlacement", value="right")]),
        images,
        facts,
    ]


def build():
    from dashboards.variables import cloud_variables, dashboard
    return dashboard("imaging-server", "Imaging / Server",
                     "One server as the imaging exporter sees it, from its host exporter, its cloud account or "
                     "both: headroom under each image limit, what its images do not contain, and its imaging "
                     "and backup jobs (imaging-exporter).",
                     identity() + limits() + cloud(), cloud_variables(server_multi=False))
