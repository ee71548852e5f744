"""Host collector: filesystems, disks, limits and headroom of this server."""
from __future__ import annotations

import logging
import time

from .. import limits as limits_mod
from ..models import HostSnapshot
from ..sources.databases import DATABASE_ENGINES
from .spec import FamilySet, gauge

log = logging.getLogger(__name__)

FILESYSTEM_LABELS = ("device", "mountpoint", "fstype", "role")

FS_SIZE = gauge("imaging_filesystem_size_bytes", "Filesystem size in bytes.", *FILESYSTEM_LABELS)
FS_FREE = gauge("imaging_filesystem_free_bytes", "Filesystem free space in bytes.", *FILESYSTEM_LABELS)
FS_AVAIL = gauge("imaging_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.",
                 *FILESYSTEM_LABELS)
FS_USED = gauge("imaging_filesystem_used_bytes", "Filesystem used space in bytes (size minus free).",
                *FILESYSTEM_LABELS)
FS_INODES = gauge("imaging_filesystem_inodes", "Filesystem total inodes.", *FILESYSTEM_LABELS)
FS_INODES_USED = gauge("imaging_filesystem_inodes_used", "Filesystem used inodes.", *FILESYSTEM_LABELS)
FS_ERROR = gauge("imaging_filesystem_device_error",
                 "1 when the filesystem could not be read (error: errno name, timeout or stuck).",
                 "device", "mountpoint", "fstype", "error")
DISK_SIZE = gauge("imaging_disk_size_bytes", "Size of the block device (virtual disk) in bytes.", "device", "role")
HIGH_WATER = gauge("imaging_filesystem_used_high_water_bytes",
                   "Highest used bytes ever seen on the filesystem, kept across restarts.", "device", "mountpoint")
LIMIT_BYTES = gauge("imaging_limit_bytes", "Imaging size limit in force, in bytes.", "limit")
LIMIT_INODES = gauge("imaging_limit_inodes", "Imaging inode limit in force.", "limit")
LIMIT_IMAGES = gauge("imaging_limit_images", "Image count limit of the profile in force.", "limit")
HEADROOM_BYTES = gauge("imaging_headroom_bytes", "Limit minus measured bytes; negative when over.", "limit", "mountpoint")
HEADROOM_INODES = gauge("imaging_headroom_inodes", "Limit minus used inodes; negative when over.", "limit", "mountpoint")
HEADROOM_RATIO = gauge("imaging_headroom_ratio", "Headroom divided by the limit (0-1; negative when over).",
                       "limit", "mountpoint")
UNCOVERED = gauge("imaging_uncovered_bytes", "Used bytes that an image of this server will not contain.",
                  "mountpoint", "reason")
DATABASES = gauge("imaging_database_processes",
                  "Running database servers; an image of a running database is not a consistent backup.", "engine")
DOMAIN_CONTROLLER = gauge(
    "imaging_host_domain_controller",
    "Windows: 1 when the server is an Active Directory domain controller (the NTDS service runs), else 0;"
    " an image of a domain controller cannot be restored. Absent on Linux.")
HOST_INFO = gauge("imaging_host_info", "Host mode information; server_id joins host and cloud series.",
                  "profile", "server_id", "hostname")

ENGINES = sorted({e for e in DATABASE_ENGINES.values() if e})

SPECS = (FS_SIZE, FS_FREE, FS_AVAIL, FS_USED, FS_INODES, FS_INODES_USED, FS_ERROR, DISK_SIZE, HIGH_WATER,
         LIMIT_BYTES, LIMIT_INODES, LIMIT_IMAGES, HEADROOM_BYTES, HEADROOM_INODES, HEADROOM_RATIO,
         UNCOVERED, DATABASES, DOMAIN_CONTROLLER, HOST_INFO)


def host_families(snap: HostSnapshot, limits, profile: str, server_id: str):
    """The families (a collectors.spec.FamilySet) of one host snapshot."""
    fams = FamilySet(SPECS)
    for fs in snap.filesystems:
        labels = (fs.device, fs.mountpoint, fs.fstype, fs.role)
        fams.add(FS_SIZE, labels, fs.size_bytes)
        fams.add(FS_FREE, labels, fs.free_bytes)
        fams.add(FS_AVAIL, labels, fs.avail_bytes)
        fams.add(FS_USED, labels, fs.used_bytes)
        if fs.inodes is not None:             # NTFS has no inode counts: no series, not 0
            fams.add(FS_INODES, labels, fs.inodes)
            fams.add(FS_INODES_USED, labels, fs.inodes_used)
        if fs.role == "data":
            fams.add(UNCOVERED, (fs.mountpoint, "data_filesystem"), fs.used_bytes)
    high_water = {}
    for device, mountpoint, peak in snap.high_water:
        high_water[(device, mountpoint)] = peak
        fams.add(HIGH_WATER, (device, mountpoint), peak)
    for err in snap.errors:
        fams.add(FS_ERROR, (err.device, err.mountpoint, err.fstype, err.error), 1)
    for disk in snap.disks:
        fams.add(DISK_SIZE, (disk.device, disk.role), disk.size_bytes)
    not_applicable = limits_mod.not_applicable(limits, snap)
    for limit in limits:
        if limit.name in not_applicable:      # e.g. an inode limit on NTFS: no value rather than 0
            continue
        spec = {"bytes": LIMIT_BYTES, "inodes": LIMIT_INODES, "images": LIMIT_IMAGES}[limit.unit]
        fams.add(spec, (limit.name,), limit.value)
    for h in limits_mod.evaluate(limits, snap, high_water):
        spec = HEADROOM_BYTES if h.unit == "bytes" else HEADROOM_INODES
        fams.add(spec, (h.limit, h.mountpoint), h.headroom)
        fams.add(HEADROOM_RATIO, (h.limit, h.mountpoint), h.ratio)
    # Every known engine, zeros included, so "no database" is a value, not an absence.
    counts = dict(snap.database_processes)
    for engine in ENGINES:
        fams.add(DATABASES, (engine,), counts.get(engine, 0))
    if snap.domain_controller is not None:
        fams.add(DOMAIN_CONTROLLER, (), 1 if snap.domain_controller else 0)
    fams.add(HOST_INFO, (profile, server_id, snap.hostname), 1)
    return fams


class HostCollector:
    """Host mode: reads the host at scrape time (a sources.high_water.HighWaterSource in the app)
    and turns the snapshot into families; up, last success and duration are for the health collector."""

    def __init__(self, source, limits, profile, server_id):
        self.source, self.limits = source, limits
        self.profile, self.server_id = profile, server_id
        self.up = False
        self.last_success = 0.0
        self.last_duration = 0.0
        self.not_applicable = {}

    def families(self):
        started = time.monotonic()
        self.up = False
        snap = self.source.read()
        not_applicable = limits_mod.not_applicable(self.limits, snap)
        if not_applicable != self.not_applicable:
            for name, why in sorted(not_applicable.items()):
                log.info("limit %s of profile %s: %s; it is left out", name, self.profile, why)
            self.not_applicable = not_applicable
        fams = host_families(snap, self.limits, self.profile, self.server_id)
        self.up, self.last_success, self.last_duration = True, time.time(), time.monotonic() - started
        return fams
