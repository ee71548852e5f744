"""Limit evaluation: limits in force against a host snapshot. Pure; no I/O."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Tuple

from .models import HostSnapshot
from .profiles import Limit


@dataclass(frozen=True)
class Headroom:
    limit: str
    mountpoint: str
    unit: str          # "bytes" or "inodes"
    limit_value: int
    measured: int

    @property
    def headroom(self) -> int:
        return self.limit_value - self.measured

    @property
    def ratio(self) -> float:
        return self.headroom / self.limit_value


def _targets(limit: Limit, snap: HostSnapshot):
    """The filesystems a limit applies to: the system ones, or those its regex picks."""
    if limit.mountpoints:
        rx = re.compile(limit.mountpoints)
        return [fs for fs in snap.filesystems if rx.search(fs.mountpoint)]
    return [fs for fs in snap.filesystems if fs.role == "system"]


def evaluate(limits: Iterable[Limit], snap: HostSnapshot,
             high_water: Dict[Tuple[str, str], int]) -> List[Headroom]:
    """One Headroom per (limit, mountpoint) it applies to.

    ``high_water`` maps (device, mountpoint) to the highest used bytes seen.
    A system_disk_bytes limit is measured on the disk that holds "/" and
    reported under mountpoint "/".
    """
    out = []
    for limit in limits:
        if limit.measure == "system_disk_bytes":
            size = sum(d.size_bytes for d in snap.disks if d.role == "system")
            if size:
                out.append(Headroom(limit.name, "/", "bytes", limit.value, size))
            continue
        for fs in _targets(limit, snap):
            if limit.measure == "used_bytes":
                measured, unit = fs.used_bytes, "bytes"
            elif limit.measure == "used_inodes":
                if fs.inodes == 0:      # btrfs and others report no inode count
                    continue
                measured, unit = fs.inodes_used, "inodes"
            elif limit.measure == "used_high_water_bytes":
                measured = high_water.get((fs.device, fs.mountpoint), fs.used_bytes)
                unit = "bytes"
            else:
                continue                # cloud measures are not host limits
            out.append(Headroom(limit.name, fs.mountpoint, unit, limit.value, measured))
    return out


def host_limits_in_force(profile_limits: Iterable[Limit], config_limits: Iterable[Limit]) -> Tuple[Limit, ...]:
    """Profile limits, with a config limit of the same name replacing the profile's."""
    config_limits = tuple(config_limits)
    overridden = {l.name for l in config_limits}
    return tuple(l for l in profile_limits if l.name not in overridden) + config_limits
