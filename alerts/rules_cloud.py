"""Cloud-mode and exporter rules of alerts/generate.py: quotas, jobs, backups, blindness."""
from __future__ import annotations

from rules_common import WHERE_CLOUD, WHERE_HOST, RuleWriter, number, seconds, words


def quota_records(writer: RuleWriter):
    """Usage and quota ratios; in the quota group, before its alerts, so an evaluation sees them current."""
    c = writer.c
    s = writer.sel()
    return [
        {
            # Glance's own usage (source="api") when the exporter has it, else the listing's count.
            "record": "cloud_project:imaging_images:sum",
            "expr": """
max without (source) (imaging_quota_images_used%(s)s)
or
sum without (status) (imaging_images%(si)s)
""".lstrip() % dict(s=s, si=writer.sel(c["imageCountSelector"])),
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


def quota_rules(writer: RuleWriter):
    c = writer.c
    warn = c["quotaWarningRatio"]
    # 1 while the quota is full: the page looks at how much of the last hour it was.
    rules = quota_records(writer) + [{"record": "%s_full:bool" % r, "expr": "%s:ratio >= bool 1\n" % r}
             for r in ("cloud_project:imaging_images_quota", "cloud_project:imaging_images_bytes_quota")]
    for name, record, what in (
        ("ImagingImageQuota", "cloud_project:imaging_images_quota", "image count quota"),
        ("ImagingImageStorageQuota", "cloud_project:imaging_images_bytes_quota", "image storage quota"),
    ):
        rules.append(writer.alert(
            name + "NearlyFull",
            "%s:ratio >= %g" % (record, warn),
            "warning",
            "A cloud account is close to its %s." % what,
            "Project {{ $labels.project }} in cloud {{ $labels.cloud }} uses {{ $value | humanizePercentage }}"
            " of its %s. Once it is full every new image request fails, scheduled ones included." % what,
            c["quotaWarningFor"],
        ))
        rules.append(writer.alert(
            name + "Full",
            "avg_over_time(%s_full:bool[%s]) >= %g" % (record, c["quotaFullWindow"], c["quotaFullShare"]),
            "critical",
            "A cloud account's %s is full: the next image request will fail." % what,
            "Project {{ $labels.project }} in cloud {{ $labels.cloud }} has had its %s full for"
            " {{ $value | humanizePercentage }} of the last %s: an image request made while it is full"
            " fails. Delete images that are no longer needed." % (what, words(c["quotaFullWindow"])),
            keep_firing_for=c["quotaFullKeepFiring"],
        ))
    rules.append(writer.alert(
        "ImagingImageTooLarge",
        """
imaging_image_size_bytes%(s)s
> ignoring (image_id, image_name, server_id, status, source) group_left
imaging_image_max_size_bytes%(s)s
""" % dict(s=writer.sel()),
        "warning",
        "An image is larger than the largest image the cloud accepts.",
        "Image {{ $labels.image_name }} ({{ $labels.image_id }}, status {{ $labels.status }}) of server"
        " {{ $labels.server_id }} in " + WHERE_CLOUD + " is {{ $value | humanize }}B, more than the"
        " maximum image size. An image that is still being created will fail.",
        c["imageSizeFor"],
    ))
    return rules


def job_rules(writer: RuleWriter):
    c = writer.c
    n = c["jobRepeatedFailures"]
    job = "{{ $labels.kind }} job {{ $labels.job_id }} of server {{ $labels.server_name }} ({{ $labels.server_id }}) in " + WHERE_CLOUD
    # The exporter publishes the first start it saw for the job id (a re-queued job keeps it);
    # the phase label changes while a job runs: drop it so one job is one alert.
    age = "time() - max without (phase) (%s)" % writer.last("imaging_job_started_timestamp_seconds")
    streak = writer.last("imaging_job_consecutive_failures")
    return [
        writer.alert(
            "ImagingJobRunningLong",
            "%s > %s" % (age, number(seconds(c["jobLongAfter"]))),
            "warning",
            "An imaging job has been running for more than %s." % words(c["jobLongAfter"]),
            "The " + job + " has been running for {{ $value | humanizeDuration }}. Imaging can take several"
            " hours and starts late when many images are requested at once; a job still running after %s"
            " is stuck." % words(c["jobStuckAfter"]),
        ),
        writer.alert(
            "ImagingJobStuck",
            "%s > %s" % (age, number(seconds(c["jobStuckAfter"]))),
            "critical",
            "An imaging job has been running for more than %s: it is stuck." % words(c["jobStuckAfter"]),
            "The " + job + " has been running for {{ $value | humanizeDuration }} since the exporter first saw"
            " it start, more than %s. It will not finish on its own: contact the provider's support."
            % words(c["jobStuckAfter"]),
        ),
        writer.alert(
            "ImagingJobFailed",
            "%s > 0 < %d" % (streak, n),
            "warning",
            "An imaging job failed.",
            "The last {{ $labels.kind }} job of server {{ $labels.server_id }} in " + WHERE_CLOUD + " failed."
            " A retry about %s after a failure often succeeds, once the provider has reclaimed freed space."
            " The alert clears when a later job of the server succeeds." % words(c["retryAfter"]),
        ),
        writer.alert(
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


def _longer_than_daily(s: str) -> str:
    """Servers whose backup schedule (Rackspace Cloud Backup) runs less often than daily are judged
    by their own schedule (ImagingBackupOverdue), not by the daily threshold."""
    return ("unless on (cloud, project, server_id)\n"
            "(min by (cloud, project, server_id) (imaging_backup_schedule_interval_seconds%s) > 24 * 3600)\n" % s)


def backup_rules(writer: RuleWriter):
    c = writer.c
    s = writer.sel()
    sb = writer.sel('kind="backup"')
    age = c["backupMaxAge"]
    return [
        writer.alert(
            "ImagingBackupTooOld",
            """
time() - imaging_job_last_success_timestamp_seconds%(sb)s > %(age)s
and ignoring (kind)
imaging_backups_enabled%(s)s == 1
%(weekly)s""" % dict(s=s, sb=sb, age=number(seconds(age)), weekly=_longer_than_daily(s)),
            "warning",
            "A server with backups enabled has had no successful backup for more than %s." % words(age),
            "The last successful backup of server {{ $labels.server_id }} in " + WHERE_CLOUD + " finished"
            " {{ $value | humanizeDuration }} ago, although backups are enabled.",
        ),
        writer.alert(
            # Enabled now and `age` ago, and no successful backup on record at all.
            "ImagingBackupMissing",
            """
imaging_backups_enabled%(s)s == 1
and
imaging_backups_enabled%(s)s offset %(age)s == 1
unless ignoring (kind)
imaging_job_last_success_timestamp_seconds%(sb)s
%(weekly)s""" % dict(s=s, sb=sb, age=age, weekly=_longer_than_daily(s)),
            "warning",
            "A server with backups enabled has no successful backup on record.",
            "Server {{ $labels.server_id }} in " + WHERE_CLOUD + " has had backups enabled for more than %s,"
            " but the exporter has no successful backup of it within its lookback window." % words(age),
        ),
        writer.alert(
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


def exporter_rules(writer: RuleWriter):
    c = writer.c
    s = writer.sel()
    src = "its {{ $labels.source }} source{{ with $labels.cloud }} for cloud {{ . }}{{ end }}"
    blind = c["blindPageAfter"]
    stale = """
time() - imaging_source_last_success_timestamp_seconds%(s)s
> %(n)d * (imaging_source_refresh_interval_seconds%(s)s > 0)
""" % dict(s=s, n=c["sourceStaleIntervals"])
    rules = []
    for sev, for_ in (("warning", c["exporterDownFor"]), ("critical", blind)):
        rules.append(writer.alert(
            "ImagingExporterDown",
            "up%s == 0" % s,
            sev,
            "Prometheus cannot scrape an imaging exporter.",
            "{{ $labels.job }}/{{ $labels.instance }} has been down for more than %s: no imaging alert can"
            " fire for what it watches." % words(for_),
            for_,
        ))
    for sev, for_ in (("warning", c["sourceDownFor"]), ("critical", blind)):
        rules.append(writer.alert(
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
        writer.alert(
            "ImagingSourceStale",
            stale,
            "warning",
            "The imaging exporter's data from a source is out of date.",
            "The exporter at {{ $labels.instance }} last refreshed " + src + " successfully"
            " {{ $value | humanizeDuration }} ago, more than %d refresh intervals. Alerts based on this"
            " source are out of date." % c["sourceStaleIntervals"],
        ),
        writer.alert(
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
        rules.append(writer.alert(
            "ImagingTextfileStale",
            "time() - imaging_textfile_timestamp_seconds%s > %s" % (s, number(seconds(age))),
            sev,
            "The imaging exporter's textfile output is out of date.",
            "imaging-exporter --once last wrote its output for {{ $labels.instance }}"
            " {{ $value | humanizeDuration }} ago, more than %s: the job that runs it has stopped, so the"
            " imaging alerts of this server are out of date." % words(age),
        ))
    rules += [
        writer.alert(
            "ImagingMountStatError",
            "imaging_filesystem_device_error%s > 0" % s,
            "warning",
            "The imaging exporter cannot read a filesystem's usage.",
            "Reading " + WHERE_HOST + " ({{ $labels.device }}, {{ $labels.fstype }}) has failed with"
            " {{ $labels.error }} for %s: its usage, and its headroom under image limits, are unknown."
            % words(c["mountErrorFor"]),
            c["mountErrorFor"],
        ),
        writer.alert(
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
