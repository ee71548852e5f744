"""Immutable snapshots that sources return and collectors read.

Sources do the I/O and build these; collectors only turn them into metric
families. Timestamps are Unix seconds (float), sizes are bytes.

Host models are here; the cloud ones are in exporter.cloud_models, and
importing them from here still works: the module is loaded then (PEP 562),
so a host-mode `--once` defines no cloud dataclasses (issue 19). The host
models are NamedTuples, not frozen dataclasses: a frozen dataclass costs
0.5-0.9 ms to define (its methods are compiled at import) against 0.08 ms,
and the dataclasses module ~5 ms more to import (it imports inspect), paid by
every `--once` from cron (docs/performance.md, "--once, third pass").
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple


# ---- host mode -------------------------------------------------------------

class Filesystem(NamedTuple):
    device: str
    mountpoint: str
    fstype: str
    role: str                 # "system" (captured by an image) or "data"
    size_bytes: int
    free_bytes: int
    avail_bytes: int
    inodes: Optional[int]     # None: the filesystem has no inode counts (NTFS, ReFS)
    inodes_free: Optional[int]

    @property
    def used_bytes(self) -> int:
        return self.size_bytes - self.free_bytes

    @property
    def inodes_used(self) -> Optional[int]:
        return None if self.inodes is None else self.inodes - self.inodes_free


class DeviceError(NamedTuple):
    device: str
    mountpoint: str
    fstype: str
    error: str                # "timeout", "stuck" or the errno name


class BlockDevice(NamedTuple):
    device: str               # kernel name, e.g. "vda"
    role: str                 # "system" or "data"
    size_bytes: int


class HostSnapshot(NamedTuple):
    filesystems: Tuple[Filesystem, ...]
    errors: Tuple[DeviceError, ...] = ()
    disks: Tuple[BlockDevice, ...] = ()
    database_processes: Tuple[Tuple[str, int], ...] = ()   # (engine, count)
    hostname: str = ""
    # Windows: whether the server is an Active Directory domain controller
    # (its image cannot be restored). None: not Windows, or unknown.
    domain_controller: Optional[bool] = None
    # (device, mountpoint, highest used bytes ever seen), recorded by the read
    # (exporter.sources.high_water); empty when the reader keeps no state.
    high_water: Tuple[Tuple[str, str, int], ...] = ()


# ---- the exporter's own work -------------------------------------------------

class RenderStats:
    """How the last rendering of the cloud metrics went: updated by the cache that renders
    them (exporter.exposition), read by the health collector, which never sees the cache."""
    __slots__ = ("last_duration", "ok")

    def __init__(self, last_duration: float = 0.0, ok: bool = True):
        self.last_duration = last_duration     # seconds
        self.ok = ok

    def __repr__(self):
        return f"RenderStats(last_duration={self.last_duration!r}, ok={self.ok!r})"


_CLOUD_MODELS = frozenset({"Image", "RunningJob", "FinishedJob", "Server", "Disk", "BackupAgent",
                           "BackupConfiguration", "BackupFailures", "QuotaValue", "Quota", "CloudSnapshot"})


def __getattr__(name):
    if name in _CLOUD_MODELS:
        from . import cloud_models
        return getattr(cloud_models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
