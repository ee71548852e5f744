"""A fleet's day of imaging-exporter series as OpenMetrics, for `promtool tsdb create-blocks-from openmetrics`.

300 servers in 3 cloud accounts (two OpenStack projects and a Linode account)
seen by one cloud-mode exporter; 280 of them, and 20 servers no cloud knows,
run a host-mode exporter. Values move so that rankings change during the day
(headroom waves with phases of their own, a tenth of the servers filling up
toward their limit), two host exporters go down two hours before the end, and a
cloud refresh fails now and then. Series that range queries read are written for
the whole 30 hours (6 hours of history before the 24 h range, for the fill-up
prediction); those read only by instant queries, for the last 45 minutes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

STEP = 900                      # seconds between samples (and the query step)
HISTORY = 30 * 3600
RECENT = 3 * STEP
ACCOUNTS = (("os-east", "ops", "openstack"), ("os-west", "web", "openstack"), ("linode", "", "linode"))
SERVERS = 300
HOST_ONLY = 20
DOWN = (3, 4)                   # host exporters unreachable for the last two hours
KINDS = ("image", "backup", "volume_snapshot")
LE = ("60", "300", "900", "1800", "3600", "7200", "14400", "21600", "43200", "86400", "172800", "+Inf")
VOLUME_LIMIT, INODE_LIMIT = 250e9, 3e6
# The server the server dashboard is checked on: a host exporter and a Linode account, every kind of series.
FULL = 2
HOST_JOB, CLOUD_JOB, CLOUD_INSTANCE = "imaging-host", "imaging-cloud", "cloud-1.example.net:9847"


@dataclass
class Fleet:
    end: int
    start: int = 0
    series: dict = field(default_factory=dict)      # name -> [(labels, [(t, v)])]

    def __post_init__(self):
        self.start = self.end - HISTORY

    def times(self, recent=False, until=None, since=None):
        first = self.end - RECENT if recent else self.start
        return [t for t in range(first, self.end + 1, STEP)
                if (until is None or t <= until) and (since is None or t >= since)]

    def add(self, name, labels, fn, recent=False, until=None, since=None):
        """One series; an empty label value is no label, as Prometheus stores it."""
        self.series.setdefault(name, []).append(
            ({k: v for k, v in labels.items() if v != ""}, [(t, fn(t)) for t in self.times(recent, until, since)]))

    def openmetrics(self) -> str:
        out = []
        for name, items in self.series.items():
            for labels, samples in items:
                lbl = "{" + ",".join('%s="%s"' % kv for kv in sorted(labels.items())) + "}"
                out.extend("%s%s %s %d\n" % (name, lbl, repr(float(v)), t) for t, v in samples)
        out.append("# EOF\n")
        return "".join(out)


def account_of(i):
    return ACCOUNTS[i % 3]


def cloud_only(i):
    return i % 15 == 14


def server_id(i):
    return "s%03d" % i


def host_instance(i):
    return "srv-%03d.example.net:9847" % i


def filling_up(i):
    return i % 10 == 0


def headroom(fleet, i, kind):
    """Headroom ratio over time: a wave of its own, or a steady fill toward the limit."""
    phase = (i * 2.399 + (1.1 if kind == "inodes" else 0)) % (2 * math.pi)
    if filling_up(i) and kind == "bytes":
        return lambda t: 0.3 - 0.3 * (t - fleet.start) / (40 * 3600) + 0.002 * math.sin(t / 5000 + phase)
    base = 0.3 + 0.5 * ((i * 37) % 100) / 100
    return lambda t: base + 0.25 * math.sin(2 * math.pi * (t - fleet.start) / 86400 + phase)


def build(end: int) -> Fleet:
    f = Fleet(end)
    hosts = [(i, server_id(i)) for i in range(SERVERS) if not cloud_only(i)]
    hosts += [(SERVERS + k, "") for k in range(HOST_ONLY)]
    for i, sid in hosts:
        _host(f, i, sid)
    _cloud(f)
    return f


def _host(f, i, sid):
    base = {"job": HOST_JOB, "instance": host_instance(i)}
    until = f.end - 2 * 3600 if i in DOWN else None
    f.add("up", base, lambda t: 0 if until and t > until else 1)
    f.add("imaging_host_info", dict(base, profile="rackspace-firstgen-linux", server_id=sid,
                                    hostname="srv-%03d" % i), lambda t: 1, until=until)
    f.add("imaging_source_up", dict(base, source="host"), lambda t: 1, until=until)
    f.add("imaging_scrape_duration_seconds", dict(base, collector="host"),
          lambda t: 0.001 + 0.0005 * (1 + math.sin(t / 3000 + i)), until=until)
    hb, hi = headroom(f, i, "bytes"), headroom(f, i, "inodes")
    for limit, ratio, metric, size in (("volume_size", hb, "imaging_headroom_bytes", VOLUME_LIMIT),
                                       ("inode_usage", hi, "imaging_headroom_inodes", INODE_LIMIT)):
        lbl = dict(base, limit=limit, mountpoint="/")
        f.add("imaging_headroom_ratio", lbl, ratio, until=until)
        f.add(metric, lbl, lambda t, r=ratio, s=size: r(t) * s, until=until)
        # What the shipped recording rule (alerts: peak_rules) records from it: the lowest headroom
        # of the rolling day, which the fill-up warning and the dashboards' time to a limit project.
        f.add("limit_mountpoint:%s:min1d" % metric, lbl,
              lambda t, r=ratio, s=size: s * min(r(u) for u in range(max(f.start, t - 86400), t + 1, 3600)),
              until=until)
    if i % 4 == 0 or i == FULL:
        f.add("imaging_uncovered_bytes", dict(base, mountpoint="/srv", reason="data_filesystem"),
              lambda t: 1e9 * (5 + 4 * math.sin(2 * math.pi * (t - f.start) / 86400 + i)), until=until)
    if filling_up(i) and i < 60:
        f.add("ALERTS", dict(base, alertname="ImagingSizeLimitFillingUp", alertstate="firing", severity="warning",
                             limit="volume_size", mountpoint="/"), lambda t: 1, recent=True)
    if i in DOWN:
        return
    full = i == FULL
    fs = dict(base, device="/dev/vda1", mountpoint="/", fstype="ext4", role="system")
    f.add("imaging_filesystem_size_bytes", fs, lambda t: 320e9, recent=not full)
    f.add("imaging_filesystem_used_bytes", fs, lambda t: (1 - hb(t)) * VOLUME_LIMIT, recent=not full)
    f.add("imaging_filesystem_inodes", fs, lambda t: 2e7, recent=not full)
    f.add("imaging_filesystem_inodes_used", fs, lambda t: (1 - hi(t)) * INODE_LIMIT, recent=not full)
    f.add("imaging_filesystem_used_high_water_bytes", dict(base, device="/dev/vda1", mountpoint="/"),
          lambda t: (1 - hb(f.start)) * VOLUME_LIMIT + 1e9, recent=not full)
    f.add("imaging_disk_size_bytes", dict(base, device="vda", role="system"), lambda t: 320e9, recent=not full)
    f.add("imaging_limit_bytes", dict(base, limit="volume_size"), lambda t: VOLUME_LIMIT, recent=not full)
    f.add("imaging_limit_inodes", dict(base, limit="inode_usage"), lambda t: INODE_LIMIT, recent=not full)
    f.add("imaging_database_processes", dict(base, engine="mysql"), lambda t: 1 if i % 5 == 0 or full else 0,
          recent=not full)
    f.add("imaging_host_domain_controller", base, lambda t: 1 if i % 50 == 0 or full else 0, recent=not full)
    f.add("imaging_source_last_success_timestamp_seconds", dict(base, source="host"), lambda t: t, recent=True)
    f.add("imaging_build_info", dict(base, version="0.1.0"), lambda t: 1, recent=True)


def _cloud(f):
    base = {"job": CLOUD_JOB, "instance": CLOUD_INSTANCE}
    f.add("up", base, lambda t: 1)
    f.add("imaging_build_info", dict(base, version="0.1.0"), lambda t: 1, recent=True)
    f.add("imaging_scrape_duration_seconds", dict(base, collector="cloud"), lambda t: 0.0002)
    for n, (cloud, project, provider) in enumerate(ACCOUNTS):
        src = dict(base, source=provider, cloud=cloud)
        acc = dict(base, cloud=cloud, project=project)
        f.add("imaging_source_up", src, lambda t: 1)
        f.add("imaging_source_last_success_timestamp_seconds", src, lambda t: t - 60)
        f.add("imaging_source_refresh_duration_seconds", src, lambda t, n=n: 1.5 + n + math.sin(t / 7000))
        f.add("imaging_source_refresh_interval_seconds", src, lambda t: 300)
        for r, reason in enumerate(("timeout", "http", "rate_limited")):
            # A failure every few hours, at times of its own.
            f.add("imaging_source_refresh_errors_total", dict(src, reason=reason),
                  lambda t, k=n * 3 + r: ((t - f.start) // 3600 + k) // 5)
        quota = 100 if provider == "openstack" else 25
        held = lambda t, n=n, q=quota: round(q * (0.55 + 0.1 * n + 0.2 * (t - f.start) / HISTORY))
        f.add("imaging_images", dict(acc, status="active"), held)
        f.add("imaging_images", dict(acc, status="saving"), lambda t: 1 + (t // STEP) % 3)
        f.add("imaging_images_bytes", acc, lambda t, h=held: h(t) * 4e9)
        f.add("imaging_quota_images", dict(acc, source="api"), lambda t, q=quota: q)
        f.add("imaging_quota_bytes", dict(acc, source="api"), lambda t: 150e9 * 4)
        f.add("imaging_quota_images_used", dict(acc, source="api"), held)
        f.add("imaging_quota_bytes_used", dict(acc, source="api"), lambda t, h=held: h(t) * 4e9)
        f.add("imaging_image_max_size_bytes", dict(acc, source="profile"), lambda t: 6e9)
        for kind in KINDS:
            f.add("imaging_jobs_running", dict(acc, kind=kind), lambda t: (t // 3600) % 4)
            done = lambda t: (t - f.start) // 1800
            for k, le in enumerate(LE):
                f.add("imaging_job_duration_seconds_bucket", dict(acc, kind=kind, le=le),
                      lambda t, k=k: done(t) * min(1.0, (k + 1) / 8))
            f.add("imaging_job_duration_seconds_count", dict(acc, kind=kind), done)
            f.add("imaging_job_duration_seconds_sum", dict(acc, kind=kind), lambda t: done(t) * 1200)
    for i in range(SERVERS):
        _cloud_server(f, base, i)


def _cloud_server(f, base, i):
    cloud, project, provider = account_of(i)
    sid, name = server_id(i), "srv-%03d" % i
    s = dict(base, cloud=cloud, project=project, server_id=sid)
    f.add("imaging_server_boot_from_volume", dict(s, server_name=name), lambda t: 1 if i % 9 == 0 else 0)
    if i % 7 == 0 or i == FULL:
        image = dict(s, kind="image")
        f.add("imaging_job_failures", image, lambda t: 1 + ((t - f.start) // 7200 + i) % 3)
        f.add("imaging_job_consecutive_failures", image, lambda t: 1 + i % 3, recent=True)
        f.add("imaging_job_last_failure_timestamp_seconds", image, lambda t: f.end - 3600 * (i % 5), recent=True)
    if i % 20 == 0 or i == FULL:
        started = f.end - 3600 * (1 + i % 30)
        f.add("imaging_job_started_timestamp_seconds",
              dict(s, server_name=name, kind="image", job_id="job-%03d" % i, phase="saving"),
              lambda t: started, since=started)
        f.add("ALERTS", dict(s, alertname="ImagingJobRunningLong", alertstate="firing", severity="warning",
                             server_name=name, kind="image", job_id="job-%03d" % i), lambda t: 1, recent=True)
    if provider == "linode":
        f.add("imaging_backups_enabled", s, lambda t: 0 if i % 11 == 0 else 1, recent=True)
        backup = dict(s, kind="backup")
        f.add("imaging_job_last_success_timestamp_seconds", backup, lambda t: f.end - 3600 * (1 + i % 40),
              recent=True)
        f.add("imaging_job_last_duration_seconds", backup, lambda t: 600 + i, recent=True)
        disk = dict(s, server_name=name, disk_id="d%03d" % i, disk_label="system")
        f.add("imaging_cloud_disk_size_bytes", disk, lambda t: (4 + i % 5) * 1e9, recent=True)
    if provider != "linode" and i % 4 == 1:         # a Rackspace Cloud Backup agent on some servers
        agent = dict(s, agent_id="agent-%03d" % i)
        f.add("imaging_backup_agent_online", agent, lambda t: 0 if i % 13 == 1 else 1, recent=True)
        f.add("imaging_backup_agent_heartbeat_timestamp_seconds", agent, lambda t: t - 300 * (i % 13 == 1),
              recent=True)
        f.add("imaging_backup_schedule_interval_seconds", dict(s, configuration_id="cfg-%03d" % i),
              lambda t: 86400, recent=True)
    img = dict(s, image_id="img-%03d" % i, image_name="%s-nightly" % name, status="active")
    f.add("imaging_image_size_bytes", img, lambda t: (1 + i % 7) * 1e9, recent=True)
    f.add("imaging_image_created_timestamp_seconds", img, lambda t: f.end - 3600 * (i % 48), recent=True)
