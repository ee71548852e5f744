"""Immutable snapshots of clouds that sources return and collectors read.

Timestamps are Unix seconds (float), sizes are bytes. exporter.models
re-exports these names (host mode imports only that module's own).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple


# slots: a snapshot holds up to 50k images and 20k servers (and Linode disks); without a __dict__
# each is ~50 bytes smaller (docs/performance.md, "Memory at 50k, again").
@dataclass(frozen=True, slots=True)
class Image:
    image_id: str
    name: str
    status: str               # the provider's own status (active, saving, available, ...)
    size_bytes: Optional[int]
    created: float
    server_id: str = ""       # the server it was taken from, "" when unknown
    # Bytes the image occupies in storage when that differs from size_bytes
    # (Linode's total_size: every region it is replicated to); None: size_bytes.
    stored_bytes: Optional[int] = None


@dataclass(frozen=True)
class RunningJob:
    job_id: str
    kind: str                 # "image", "backup" or "volume_snapshot"
    server_id: str
    server_name: str
    phase: str                # the provider's own state (queued, saving, pending, running, ...)
    started: float


@dataclass(frozen=True)
class FinishedJob:
    job_id: str
    kind: str
    server_id: str
    started: float
    finished: float
    succeeded: bool

    @property
    def duration(self) -> float:
        return max(0.0, self.finished - self.started)


@dataclass(frozen=True, slots=True)
class Server:
    server_id: str
    name: str
    boot_from_volume: Optional[bool] = False   # None: the source cannot tell (Cloud Backup)
    backups_enabled: Optional[bool] = None   # None: the provider has no backup service
    # The provider's own record of the last good backup (Linode's
    # backups.last_successful); it may predate the lookback window.
    last_backup_success: Optional[float] = None


@dataclass(frozen=True, slots=True)
class Disk:
    """A server's disk as the cloud API reports it (Linode)."""
    server_id: str
    server_name: str
    disk_id: str
    label: str
    size_bytes: int


@dataclass(frozen=True)
class BackupAgent:
    """A backup agent installed on a server (Rackspace Cloud Backup)."""
    agent_id: str
    server_id: str            # the cloud server it runs on, "" when the API does not say
    server_name: str
    online: bool
    last_heartbeat: Optional[float] = None   # last refresh that found it online


@dataclass(frozen=True)
class BackupConfiguration:
    """An enabled backup configuration: what it covers and how often it runs."""
    configuration_id: str
    name: str
    agent_id: str
    server_id: str
    frequency: str            # the provider's own word (Manually, Hourly, Daily, Weekly)
    interval: Optional[float] # seconds between scheduled runs; None when run by hand
    paths: Tuple[Tuple[str, str], ...] = ()   # (path, item type: Folder, File, ...)


@dataclass(frozen=True)
class BackupFailures:
    """Backups of a server that did not succeed inside the lookback, by the API's reason."""
    server_id: str
    reason: str               # failed, skipped, missed
    count: int


@dataclass(frozen=True)
class QuotaValue:
    value: int
    source: str               # "api", "config" or "profile"


@dataclass(frozen=True)
class Quota:
    images: Optional[QuotaValue] = None
    bytes: Optional[QuotaValue] = None
    max_image_bytes: Optional[QuotaValue] = None
    # What the cloud itself counts against its limits (Glance's /v2/info/usage),
    # None when it does not say; it can differ from a count of the listing.
    images_used: Optional[int] = None
    bytes_used: Optional[int] = None


@dataclass(frozen=True)
class CloudSnapshot:
    cloud: str                # the configured name of the cloud
    project: str              # project / account the credentials see
    taken_at: float
    images: Tuple[Image, ...] = ()
    running_jobs: Tuple[RunningJob, ...] = ()
    finished_jobs: Tuple[FinishedJob, ...] = ()   # inside the lookback window
    servers: Tuple[Server, ...] = ()
    disks: Tuple[Disk, ...] = ()
    quota: Quota = field(default_factory=Quota)
    backup_agents: Tuple[BackupAgent, ...] = ()
    backup_configurations: Tuple[BackupConfiguration, ...] = ()   # enabled ones only
    backup_failures: Tuple[BackupFailures, ...] = ()
    # Optional parts of a refresh, (part, read): a part that could not be read
    # (e.g. Cinder's volume snapshots) is skipped without failing the refresh.
    parts: Tuple[Tuple[str, bool], ...] = ()
    # Servers whose per-server details were due but not read this refresh (out of
    # request budget); they keep their last data. None: the source reads none.
    details_pending: Optional[int] = None
