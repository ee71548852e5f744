"""Cloud collector: images, quotas, jobs and servers from the pollers' snapshots.

Reads only the last good snapshot of each poller; it never calls an API.
All clouds go into one set of families so each name appears once.
"""
from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Iterable

from ..pieces import runs
from ..render import floatToGoString     # the library's function, without importing the library (--once)
from .spec import FamilySet, gauge, histogram

CLOUD_LABELS = ("cloud", "project")
IMAGE_LABELS = CLOUD_LABELS + ("image_id", "image_name", "server_id", "status")
JOB_KINDS = ("image", "backup", "volume_snapshot")

IMAGES = gauge("imaging_images", "The account's own images, by status.", *CLOUD_LABELS, "status")
IMAGES_BYTES = gauge("imaging_images_bytes", "Total bytes of the account's own images.", *CLOUD_LABELS)
IMAGE_SIZE = gauge("imaging_image_size_bytes", "Size of one image in bytes.", *IMAGE_LABELS)
IMAGE_CREATED = gauge("imaging_image_created_timestamp_seconds", "When the image was created.", *IMAGE_LABELS)
QUOTA_IMAGES = gauge("imaging_quota_images", "How many images the account may hold.", *CLOUD_LABELS, "source")
QUOTA_BYTES = gauge("imaging_quota_bytes", "How many bytes of images the account may hold.", *CLOUD_LABELS, "source")
QUOTA_IMAGES_USED = gauge("imaging_quota_images_used",
                          "Images the cloud itself counts against imaging_quota_images (Glance's own usage).",
                          *CLOUD_LABELS, "source")
QUOTA_BYTES_USED = gauge("imaging_quota_bytes_used",
                         "Bytes the cloud itself counts against imaging_quota_bytes (Glance's own usage).",
                         *CLOUD_LABELS, "source")
MAX_IMAGE = gauge("imaging_image_max_size_bytes", "Largest image the cloud will take, in bytes.",
                  *CLOUD_LABELS, "source")
JOB_STARTED = gauge("imaging_job_started_timestamp_seconds",
                    "Start time of a running imaging, backup or volume snapshot job: the first start seen for its"
                    " job id, kept across restarts and re-queues.",
                    *CLOUD_LABELS, "server_id", "server_name", "kind", "job_id", "phase")
JOBS_RUNNING = gauge("imaging_jobs_running", "Jobs running now.", *CLOUD_LABELS, "kind")
JOB_FAILURES = gauge("imaging_job_failures", "Failed jobs of a server inside the lookback window.",
                     *CLOUD_LABELS, "server_id", "kind")
CONSECUTIVE_FAILURES = gauge("imaging_job_consecutive_failures",
                             "Failed jobs of a server in a row, reset to 0 by a later successful job of that kind.",
                             *CLOUD_LABELS, "server_id", "kind")
LAST_SUCCESS = gauge("imaging_job_last_success_timestamp_seconds", "When the server's last successful job finished.",
                     *CLOUD_LABELS, "server_id", "kind")
LAST_FAILURE = gauge("imaging_job_last_failure_timestamp_seconds",
                     "When the server's last failed job inside the lookback window ended.",
                     *CLOUD_LABELS, "server_id", "kind")
LAST_DURATION = gauge("imaging_job_last_duration_seconds", "How long the server's last successful job took.",
                      *CLOUD_LABELS, "server_id", "kind")
DURATION = histogram("imaging_job_duration_seconds", "Durations of completed jobs, each observed once.",
                     *CLOUD_LABELS, "kind")
BOOT_FROM_VOLUME = gauge("imaging_server_boot_from_volume",
                         "1 when the server boots from a block-storage volume, which its images do not contain.",
                         *CLOUD_LABELS, "server_id", "server_name")
BACKUPS_ENABLED = gauge("imaging_backups_enabled", "1 when the provider's backup service is on for the server.",
                        *CLOUD_LABELS, "server_id")
DISK_LABELS = CLOUD_LABELS + ("server_id", "server_name", "disk_id", "disk_label")
# Information only: image size limits apply to the data on a disk (host mode
# measures it), not to the disk's allocated size.
CLOUD_DISK_SIZE = gauge("imaging_cloud_disk_size_bytes",
                        "Allocated size of a server's disk as the cloud reports it (not its used bytes).", *DISK_LABELS)
PART_UP = gauge("imaging_source_part_up",
                "1 when an optional part of the cloud's last good refresh was read, 0 when it was skipped.",
                *CLOUD_LABELS, "part")
DETAILS_PENDING = gauge("imaging_source_details_pending_servers",
                        "Servers whose disks or backups were due for a re-read that the last refresh left for "
                        "later (out of request budget); they keep their last data.", *CLOUD_LABELS)

AGENT_LABELS = CLOUD_LABELS + ("server_id", "agent_id")
BACKUP_AGENT_ONLINE = gauge("imaging_backup_agent_online", "1 when the server's backup agent is online.", *AGENT_LABELS)
BACKUP_AGENT_HEARTBEAT = gauge("imaging_backup_agent_heartbeat_timestamp_seconds",
                               "Last refresh at which the API reported the backup agent online.", *AGENT_LABELS)
BACKUP_CONFIGURATION = gauge("imaging_backup_configuration_info",
                             "1 for each enabled backup configuration of a server.",
                             *AGENT_LABELS, "configuration_id", "configuration_name", "frequency")
BACKUP_INTERVAL = gauge("imaging_backup_schedule_interval_seconds",
                        "Seconds between the scheduled runs of an enabled backup configuration.",
                        *CLOUD_LABELS, "server_id", "configuration_id")
BACKUP_PATH = gauge("imaging_backup_covered_path_info", "1 for each path an enabled backup configuration includes.",
                    *CLOUD_LABELS, "server_id", "configuration_id", "path", "item_type")
BACKUP_FAILURES = gauge("imaging_backup_failures",
                        "Backups of a server inside the lookback window that did not succeed, by the API's reason.",
                        *CLOUD_LABELS, "server_id", "reason")

SPECS = (IMAGES, IMAGES_BYTES, IMAGE_SIZE, IMAGE_CREATED, QUOTA_IMAGES, QUOTA_BYTES, QUOTA_IMAGES_USED,
         QUOTA_BYTES_USED, MAX_IMAGE, JOB_STARTED, JOBS_RUNNING, JOB_FAILURES, CONSECUTIVE_FAILURES, LAST_FAILURE,
         LAST_SUCCESS, LAST_DURATION, DURATION, BOOT_FROM_VOLUME, BACKUPS_ENABLED, CLOUD_DISK_SIZE, PART_UP,
         DETAILS_PENDING, BACKUP_AGENT_ONLINE, BACKUP_AGENT_HEARTBEAT, BACKUP_CONFIGURATION, BACKUP_INTERVAL,
         BACKUP_PATH, BACKUP_FAILURES)


class CloudCollector:           # a prometheus_client collector (describe, collect)
    """The cloud families of the pollers' last good snapshots (exporter.exposition caches them)."""

    def __init__(self, pollers):
        self.pollers = pollers

    def describe(self):
        return [spec.family() for spec in SPECS]

    def families(self):
        return cloud_families(self.pollers)

    def collect(self):
        return iter(self.families())


def cloud_families(pollers: Iterable):
    fams = FamilySet(SPECS)
    for p in pollers:
        snap = p.snapshot
        if snap is None:
            continue
        _add_snapshot(fams, snap, p.ledger)
    return fams


def _add_snapshot(fams: FamilySet, snap, ledger):
    c = (snap.cloud, snap.project)
    by_status = Counter(img.status for img in snap.images)
    for status, n in sorted(by_status.items()):
        fams.add(IMAGES, c + (status,), n)
    # Stored bytes: a replicated image occupies its size in every region.
    fams.add(IMAGES_BYTES, c, sum((img.size_bytes or 0) if img.stored_bytes is None else img.stored_bytes
                                  for img in snap.images))
    # Images, servers and disks go in as runs (exporter.pieces): the cache renders only runs that changed.
    for run in runs(snap.images, _image_id):
        fams.add_piece(IMAGE_SIZE, (c, run), partial(_image_sizes, c, run.items))
        fams.add_piece(IMAGE_CREATED, (c, run), partial(_images_created, c, run.items))

    q = snap.quota
    for spec, qv in ((QUOTA_IMAGES, q.images), (QUOTA_BYTES, q.bytes), (MAX_IMAGE, q.max_image_bytes)):
        if qv is not None:
            fams.add(spec, c + (qv.source,), qv.value)
    # Only a cloud's own count is published: a count of the listing is what
    # the rules fall back to (imaging_images), not a second opinion here.
    for spec, used in ((QUOTA_IMAGES_USED, q.images_used), (QUOTA_BYTES_USED, q.bytes_used)):
        if used is not None:
            fams.add(spec, c + ("api",), used)
    for part, read in snap.parts:
        fams.add(PART_UP, c + (part,), 1 if read else 0)
    if snap.details_pending is not None:
        fams.add(DETAILS_PENDING, c, snap.details_pending)

    running = Counter()
    for job in snap.running_jobs:
        running[job.kind] += 1
        fams.add(JOB_STARTED, c + (job.server_id, job.server_name, job.kind, job.job_id, job.phase),
                 ledger.first_start(job.kind, job.job_id, job.started))
    for kind in JOB_KINDS:
        fams.add(JOBS_RUNNING, c + (kind,), running[kind])

    # Failures, successes and durations come from the ledger: it has seen every
    # finished job of this snapshot and kept those of earlier lives.
    for (server_id, kind), (n, last_end) in sorted(ledger.failures(snap.taken_at).items()):
        fams.add(JOB_FAILURES, c + (server_id, kind), n)
        fams.add(LAST_FAILURE, c + (server_id, kind), last_end)
    for (server_id, kind), n in sorted(ledger.consecutive_failures().items()):
        fams.add(CONSECUTIVE_FAILURES, c + (server_id, kind), n)

    last = dict(ledger.last_success())
    for s in snap.servers:
        # The provider's record counts when it is newer than any job we saw finish.
        if s.last_backup_success and s.last_backup_success > last.get((s.server_id, "backup"), (0.0,))[0]:
            last[(s.server_id, "backup")] = (s.last_backup_success, None)
    for (server_id, kind), (finished, duration) in sorted(last.items()):
        fams.add(LAST_SUCCESS, c + (server_id, kind), finished)
        if duration is not None:
            fams.add(LAST_DURATION, c + (server_id, kind), duration)
    for kind, (buckets, count, total) in sorted(ledger.histogram().items()):
        fams.add_histogram(DURATION, c + (kind,), [(floatToGoString(le), n) for le, n in buckets], total)

    for run in runs(snap.servers, _server_id):
        fams.add_piece(BOOT_FROM_VOLUME, (c, run), partial(_boot_from_volume, c, run.items))
        fams.add_piece(BACKUPS_ENABLED, (c, run), partial(_backups_enabled, c, run.items))

    _add_backup_service(fams, snap, c)

    for run in runs(snap.disks, _disk_id):
        fams.add_piece(CLOUD_DISK_SIZE, (c, run), partial(_disk_sizes, c, run.items))


# The rows of one run: functions of (c, the run's objects) alone, as a Piece's must be.

def _image_id(img):
    return img.image_id


def _server_id(s):
    return s.server_id


def _disk_id(d):
    return d.disk_id


def _image_sizes(c, images):
    return [(c + (i.image_id, i.name, i.server_id, i.status), i.size_bytes) for i in images
            if i.size_bytes is not None]


def _images_created(c, images):
    return [(c + (i.image_id, i.name, i.server_id, i.status), i.created) for i in images]


def _boot_from_volume(c, servers):
    return [(c + (s.server_id, s.name), 1 if s.boot_from_volume else 0) for s in servers
            if s.boot_from_volume is not None]


def _backups_enabled(c, servers):
    return [(c + (s.server_id,), 1 if s.backups_enabled else 0) for s in servers if s.backups_enabled is not None]


def _disk_sizes(c, disks):
    return [(c + (d.server_id, d.server_name, d.disk_id, d.label), d.size_bytes) for d in disks]


def _add_backup_service(fams: FamilySet, snap, c):
    """Agents, enabled configurations and failures of a backup service (Rackspace Cloud Backup)."""
    for a in snap.backup_agents:
        fams.add(BACKUP_AGENT_ONLINE, c + (a.server_id, a.agent_id), 1 if a.online else 0)
        if a.last_heartbeat is not None:
            fams.add(BACKUP_AGENT_HEARTBEAT, c + (a.server_id, a.agent_id), a.last_heartbeat)
    for b in snap.backup_configurations:
        fams.add(BACKUP_CONFIGURATION, c + (b.server_id, b.agent_id, b.configuration_id, b.name, b.frequency), 1)
        if b.interval is not None:
            fams.add(BACKUP_INTERVAL, c + (b.server_id, b.configuration_id), b.interval)
        for path, item_type in b.paths:
            fams.add(BACKUP_PATH, c + (b.server_id, b.configuration_id, path, item_type), 1)
    for f in snap.backup_failures:
        fams.add(BACKUP_FAILURES, c + (f.server_id, f.reason), f.count)
