"""Rackspace Cloud Backup (the rackspace_backup provider): what images cannot hold must be backed up."""
from __future__ import annotations

from rules_common import WHERE_CLOUD, RuleWriter, words

IMAGE_LIMITATIONS = ('Rackspace, "Cloud Server Image Limitations":'
                     " images \"are not a reliable way to back up a dynamic database\"")


def cloud_backup_rules(writer: RuleWriter):
    cb = writer.c["cloudBackup"]
    s = writer.sel()
    hosts = writer.sel('server_id!=""', cb["rackspaceHosts"])
    enabled = "(imaging_backups_enabled%s == 1)" % s
    return [
        writer.alert(
            "ImagingDatabaseWithoutBackup",
            """
server_id_engine:imaging_database_processes:sum
and on (instance, job) imaging_host_info%(h)s
unless on (server_id) %(e)s
""" % dict(h=hosts, e=enabled),
            "warning",
            "A database runs on a Rackspace server that no Cloud Backup configuration backs up.",
            "{{ $value }} {{ $labels.engine }} server(s) run on {{ $labels.instance }} (server"
            " {{ $labels.server_id }}), which has no enabled Cloud Backup configuration. " + IMAGE_LIMITATIONS
            + ": back the database up with Cloud Backup or the database's own tools.",
            cb["databaseFor"],
        ),
        writer.alert(
            "ImagingUncoveredDataWithoutBackup",
            """
(imaging_uncovered_bytes%(s)s > 0)
* on (instance, job) group_left (server_id)
imaging_host_info%(h)s
unless on (server_id) %(e)s
""" % dict(s=s, h=hosts, e=enabled),
            "warning",
            "Data that images do not contain is on a Rackspace server with no Cloud Backup configuration.",
            "{{ $value | humanize }}B on {{ $labels.mountpoint }} of {{ $labels.instance }} (server"
            " {{ $labels.server_id }}, {{ $labels.reason }}) is not in the server's images, and no enabled Cloud"
            " Backup configuration backs the server up: nothing keeps a copy of this data.",
            cb["uncoveredFor"],
        ),
        writer.alert(
            "ImagingBackupAgentOffline",
            "imaging_backup_agent_online%s == 0" % s,
            "warning",
            "A Cloud Backup agent has been offline for more than %s." % words(cb["agentOfflineFor"]),
            "The Cloud Backup agent {{ $labels.agent_id }} of server {{ $labels.server_id }} in " + WHERE_CLOUD
            + " has been offline for more than %s: scheduled backups of the server cannot run."
            % words(cb["agentOfflineFor"]),
            cb["agentOfflineFor"],
        ),
        writer.alert(
            "ImagingBackupOverdue",
            """
time() - max by (cloud, project, server_id) (imaging_job_last_success_timestamp_seconds%(sb)s)
> on (cloud, project, server_id)
%(n)d * min by (cloud, project, server_id) (imaging_backup_schedule_interval_seconds%(s)s)
""" % dict(s=s, sb=writer.sel('kind="backup"'), n=cb["scheduleRuns"]),
            "warning",
            "A server's last successful backup is older than its backup schedule allows.",
            "The last successful backup of server {{ $labels.server_id }} in " + WHERE_CLOUD + " finished"
            " {{ $value | humanizeDuration }} ago, more than %d runs of its most frequent enabled backup"
            " schedule." % cb["scheduleRuns"],
        ),
    ]
