"""Host-mode rules of alerts/generate.py: headroom under image limits, coverage, joins to the cloud."""
from __future__ import annotations

from rules_common import (BACKUPS_ON, NEVER_SHRINKS, WHERE_CLOUD, WHERE_HOST, RuleWriter, _alternatives, number, pct,
                          seconds, words)


def recording_rules(writer: RuleWriter):
    c = writer.c
    s = writer.sel()
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
""".lstrip() % dict(s=s, h=writer.sel('server_id!=""')),
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
""".lstrip() % dict(s=s, h=writer.sel('server_id!=""')),
        },
    ]


def peak_rules(writer: RuleWriter):
    """The lowest headroom of each rolling day: the daily peaks of usage, what a limit is crossed at."""
    c = writer.c
    return [{
        "record": "limit_mountpoint:%s:min1d" % metric,
        "expr": "min_over_time(%s%s[%s])\n" % (metric, writer.sel(), c["peakWindow"]),
    } for metric in ("imaging_headroom_bytes", "imaging_headroom_inodes")]


def headroom_rules(writer: RuleWriter):
    c = writer.c
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
""" % dict(h=writer.last(metric, extra), r=writer.last("imaging_headroom_ratio", extra), ratio=ratio)

    def exceeded(metric, extra=""):
        return "-%s > 0" % writer.last(metric, extra)

    def filling_warning(metric):
        return """
%(r)s < %(ratio)g
and
predict_linear(limit_mountpoint:%(m)s:min1d%(s)s[%(rng)s], %(h)s) < 0
""" % dict(r=writer.last("imaging_headroom_ratio"), ratio=c["predictWarningRatio"], m=metric, s=writer.sel(),
           rng=c["peakRange"], h=number(seconds(c["predictWarningHorizon"])))

    def filling_critical(metric):
        s = writer.sel(paging)
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
""" % dict(r=writer.last("imaging_headroom_ratio", paging), ratio=c["predictCriticalRatio"], m=metric, s=s,
           rng=c["predictRange"], recent=c["predictRecentRange"], h=h, hz="%ds" % horizon if horizon % 3600
           else "%dh" % (horizon // 3600), back="%dh" % ((day - horizon) // 3600), day=c["peakWindow"],
           last=writer.last(metric, paging), rise=c["cycleMinRise"])

    def filling_pair(name, metric, what, after=""):
        return [writer.alert(
            name, filling_warning(metric), "warning",
            "A filesystem is predicted to cross %s for server images within the next %s."
            % (what, words(c["predictWarningHorizon"])),
            WHERE_HOST + " has {{ $value | humanizePercentage }} of the {{ $labels.limit }} image limit left"
            " and its daily peaks, over the last %s, cross the limit within %s."
            % (words(c["peakRange"]), words(c["predictWarningHorizon"])) + after,
            c["predictFor"], c["predictKeepFiring"],
        ), writer.alert(
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
    rules = [writer.alert(
        "ImagingSizeLimitNearlyReached", nearly("imaging_headroom_bytes", c["headroomNearlyRatio"]), "warning",
        "A filesystem is close to a size limit for server images.",
        WHERE_HOST + " has {{ $value | humanize }}B of headroom left under the {{ $labels.limit }}"
        " image limit, less than %s of the limit. Image requests fail once it is crossed."
        % pct(c["headroomNearlyRatio"]) + NEVER_SHRINKS,
        c["headroomNearlyFor"],
    ), writer.alert(
        "ImagingSizeLimitNearlyReached",
        nearly("imaging_headroom_bytes", c["headroomCriticalRatio"],
               'limit=~"%s"' % _alternatives(c["headroomCriticalLimits"])), "critical",
        "A filesystem is about to reach a size limit for server images.",
        WHERE_HOST + " has only {{ $value | humanize }}B of headroom left under the {{ $labels.limit }}"
        " image limit, less than %s of the limit: the next growth makes image requests fail."
        % pct(c["headroomCriticalRatio"]) + NEVER_SHRINKS,
        c["headroomCriticalFor"],
    ), writer.alert(
        "ImagingSizeLimitExceeded", unless_backups(exceeded("imaging_headroom_bytes", paging)), "critical",
        "A filesystem is over a size limit for server images: image requests will fail.",
        WHERE_HOST + " is {{ $value | humanize }}B over the {{ $labels.limit }} image limit." + over_size,
        c["headroomExceededFor"],
    ), writer.alert(
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

    rules += [writer.alert(
        "ImagingInodeLimitNearlyReached", nearly("imaging_headroom_inodes", c["headroomNearlyRatio"]), "warning",
        "A filesystem is close to an inode limit for server images.",
        WHERE_HOST + " has {{ $value | humanize }} inodes left under the {{ $labels.limit }} image limit,"
        " less than %s of the limit. Image requests fail once it is crossed." % pct(c["headroomNearlyRatio"]),
        c["headroomNearlyFor"],
    ), writer.alert(
        "ImagingInodeLimitExceeded", exceeded("imaging_headroom_inodes"), "critical",
        "A filesystem uses more inodes than server images allow: image requests will fail.",
        WHERE_HOST + " uses {{ $value | humanize }} inodes more than the {{ $labels.limit }} image limit"
        " allows. Image requests fail until the file count is back under the limit; the provider can"
        " often help to work around it.",
        c["headroomExceededFor"],
    )]
    rules += filling_pair("ImagingInodeLimitFillingUp", "imaging_headroom_inodes", "an inode limit")

    # Windows domain controller: Rackspace cannot restore an image of one (demote it first).
    rules.append(writer.alert(
        "ImagingDomainControllerImage",
        "imaging_host_domain_controller%s == 1" % writer.sel(),
        "warning",
        "A Windows server is a domain controller: an image of it cannot be restored.",
        "{{ $labels.instance }} runs Active Directory Domain Services. The provider's build system needs the"
        " local Administrator account, which a domain controller disables, so a server cannot be restored"
        " from an image of it. Demote it before imaging it, and back it up another way.",
        c["domainControllerFor"],
    ))
    return rules


def coverage_rules(writer: RuleWriter):
    c = writer.c
    s = writer.sel()
    return [
        writer.alert(
            "ImagingDataNotInImage",
            "imaging_uncovered_bytes%s > 0" % s,
            "info",
            "Data on a server is not contained in its images.",
            "{{ $value | humanize }}B used on " + WHERE_HOST + " is on a data disk. Images of this server"
            " capture the system disk only: this data is not in them and needs its own backup.",
            c["coverageFor"],
        ),
        writer.alert(
            "ImagingServerBootsFromVolume",
            "imaging_server_boot_from_volume%s == 1" % s,
            "info",
            "A server boots from a block-storage volume that its images do not contain.",
            "Server {{ $labels.server_name }} ({{ $labels.server_id }}) in " + WHERE_CLOUD + " boots from a"
            " block-storage volume. Images do not include block-storage volumes, not even the boot volume:"
            " snapshot the volume instead.",
            c["coverageFor"],
        ),
        writer.alert(
            # Host side (per engine, with the server_id from imaging_host_info) times the
            # running image jobs of the same server, one series per server (group by).
            "ImagingDatabaseRunningDuringImage",
            """
server_id_engine:imaging_database_processes:sum
* on (server_id) group_left (cloud, project, server_name)
group by (server_id, cloud, project, server_name) (
  imaging_job_started_timestamp_seconds%(sj)s
)
""" % dict(sj=writer.sel(c["databaseJobSelector"])),
            "warning",
            "A database is running on a server while an image of the server is being taken.",
            "{{ $value }} {{ $labels.engine }} server(s) running on {{ $labels.instance }} while an image of"
            " server {{ $labels.server_name }} ({{ $labels.server_id }}) is being taken in " + WHERE_CLOUD
            + ". An image of a running database is not a reliable backup of it.",
        ),
    ]
