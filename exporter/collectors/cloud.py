"""Cloud collector: images, quotas, jobs and servers from the pollers' snapshots.

Reads only the last good snapshot of each poller; it never calls an API.
All clouds go into one set of families so each name appears once.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from .spec import Families, gauge, histogram

C = ("cloud", "project")
IMG = C + ("image_id", "image_name", "server_id", "status")
JOB_KINDS = ("image", "backup", "volume_snapshot")

IMAGES = gauge("imaging_images", "The account's own images, by status.", *C, "status")
IMAGES_BYTES = gauge("imaging_images_bytes", "Total bytes of the account's own images.", *C)
IMAGE_SIZE = gauge("imaging_image_size_bytes", "Size of one image in bytes.", *IMG)
IMAGE_CREATED = gauge("imaging_image_created_timestamp_seconds", "When the image was created.", *IMG)
QUOTA_IMAGES = gauge("imaging_quota_images", "How many images the account may hold.", *C, "source")
QUOTA_BYTES = gauge("imaging_quota_bytes", "How many bytes of images the account may hold.", *C, "source")
MAX_IMAGE = gauge("imaging_image_max_size_bytes", "Largest image the cloud will take, in bytes.", *C, "source")
JOB_STARTED = gauge("imaging_job_started_timestamp_seconds",
                    "Start time of a running imaging, backup or volume snapshot job: the first start seen for its"
                    " job id, kept across restarts and re-queues.",
                    *C, "server_id", "server_name", "kind", "job_id", "phase")
JOBS_RUNNING = gauge("imaging_jobs_running", "Jobs running now.", *C, "kind")
JOB_FAILURES = gauge("imaging_job_failures", "Failed jobs of a server inside the lookback window.",
                     *C, "server_id", "kind")
CONSECUTIVE_FAILURES = gauge("imaging_job_consecutive_failures",
                             "Failed jobs of a server in a row, reset to 0 by a later successful job of that kind.",
                             *C, "server_id", "kind")
LAST_SUCCESS = gauge("imaging_job_last_success_timestamp_seconds", "When the server's last successful job finished.",
                     *C, "server_id", "kind")
LAST_FAILURE = gauge("imaging_job_last_failure_timestamp_seconds",
                     "When the server's last failed job inside the lookback window ended.", *C, "server_id", "kind")
LAST_DURATION = gauge("imaging_job_last_duration_seconds", "How long the server's last successful job took.",
                      *C, "server_id", "kind")
DURATION = histogram("imaging_job_duration_seconds", "Durations of completed jobs, each observed once.", *C, "kind")
BOOT_FROM_VOLUME = gauge("imaging_server_boot_from_volume",
                         "1 when the server boots from a block-storage volume, which its images do not contain.",
                         *C, "server_id", "server_name")
BACKUPS_ENABLED = gauge("imaging_backups_enabled", "1 when the provider's backup service is on for the server.",
                        *C, "server_id")
DISK = C + ("server_id", "server_name", "disk_id", "disk_label")
# Information only: image size limits apply to the data on a disk (host mode
# measures it), not to the disk's allocated size.
CLOUD_DISK_SIZE = gauge("imaging_cloud_disk_size_bytes",
                        "Allocated size of a server's disk as the cloud reports it (not its used bytes).", *DISK)

SPECS = (IMAGES, IMAGES_BYTES, IMAGE_SIZE, IMAGE_CREATED, QUOTA_IMAGES, QUOTA_BYTES, MAX_IMAGE, JOB_STARTED,
         JOBS_RUNNING, JOB_FAILURES, CONSECUTIVE_FAILURES, LAST_FAILURE, LAST_SUCCESS, LAST_DURATION, DURATION, BOOT_FROM_VOLUME, BACKUPS_ENABLED,
         CLOUD_DISK_SIZE)


def cloud_families(pollers: Iterable):
    fams = Families(SPECS)
    for p in pollers:
        snap = p.snapshot
        if snap is None:
            continue
        _add_snapshot(fams, snap, p.ledger)
    return fams


def _add_snapshot(fams: Families, snap, ledger):
    c = (snap.cloud, snap.project)
    by_status = Counter(img.status for img in snap.images)
    for status, n in sorted(by_status.items()):
        fams.add(IMAGES, c + (status,), n)
    fams.add(IMAGES_BYTES, c, sum(img.size_bytes or 0 for img in snap.images))
    for img in snap.images:
        labels = c + (img.image_id, img.name, img.server_id, img.status)
        if img.size_bytes is not None:
            fams.add(IMAGE_SIZE, labels, img.size_bytes)
        fams.add(IMAGE_CREATED, labels, img.created)

    q = snap.quota
    for spec, qv in ((QUOTA_IMAGES, q.images), (QUOTA_BYTES, q.bytes), (MAX_IMAGE, q.max_image_bytes)):
        if qv is not None:
            fams.add(spec, c + (qv.source,), qv.value)

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
        fams.add_histogram(DURATION, c + (kind,), buckets, total)

    for s in snap.servers:
        fams.add(BOOT_FROM_VOLUME, c + (s.server_id, s.name), 1 if s.boot_from_volume else 0)
        if s.backups_enabled is not None:
            fams.add(BACKUPS_ENABLED, c + (s.server_id,), 1 if s.backups_enabled else 0)

    for d in snap.disks:
        fams.add(CLOUD_DISK_SIZE, c + (d.server_id, d.server_name, d.disk_id, d.label), d.size_bytes)
