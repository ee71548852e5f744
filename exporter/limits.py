"""Limit evaluation: limits in force against a host snapshot. Pure; no I/O."""
from __future__ import annotations

import re
from typing import Dict, Iterable, List, NamedTuple, Tuple

from .models import HostSnapshot
from .profiles import Limit


class Headroom(NamedTuple):
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


def _measure(limit: Limit, fs, high_water):
    """(value, unit) of a limit's measure on one filesystem; None when it has none."""
    if limit.measure == "used_bytes":
        return fs.used_bytes, "bytes"
    if limit.measure == "used_inodes":
        # btrfs reports 0 inodes, NTFS none at all: no count to hold to a limit.
        return None if not fs.inodes else (fs.inodes_used, "inodes")
    if limit.measure == "used_high_water_bytes":
        return high_water.get((fs.device, fs.mountpoint), fs.used_bytes), "bytes"
    return None                             # cloud measures are not host limits


def evaluate(limits: Iterable[Limit], snap: HostSnapshot,
             high_water: Dict[Tuple[str, str], int]) -> List[Headroom]:
    """Headroom rows of each limit.

    ``high_water`` maps (device, mountpoint) to the highest used bytes seen.
    A limit on the system filesystems is one row under mountpoint "/": an
    image holds all of them, so their measures add up (each device once: a
    bind mount or a btrfs subvolume is the same filesystem again). A limit
    with its own ``mountpoints`` regex holds each filesystem it picks to the
    limit, one row each. A system_disk_bytes limit is measured on the disk
    that holds "/".
    """
    out = []
    for limit in limits:
        if limit.measure == "system_disk_bytes":
            size = sum(d.size_bytes for d in snap.disks if d.role == "system")
            if size:
                out.append(Headroom(limit.name, "/", "bytes", limit.value, size))
            continue
        measured = [(fs, m) for fs in _targets(limit, snap) if (m := _measure(limit, fs, high_water)) is not None]
        if limit.mountpoints:
            out.extend(Headroom(limit.name, fs.mountpoint, unit, limit.value, value)
                       for fs, (value, unit) in measured)
        elif measured:
            per_device = {}
            for fs, (value, _) in measured:
                per_device.setdefault(fs.device, value)
            out.append(Headroom(limit.name, "/", measured[0][1][1], limit.value, sum(per_device.values())))
    return out


def not_applicable(limits: Iterable[Limit], snap: HostSnapshot) -> Dict[str, str]:
    """{limit name: why} for limits this host cannot be measured against at all.

    An inode limit on NTFS (the Windows reader gives no inode counts) is not
    applicable: no value, rather than a headroom computed from 0 inodes.
    """
    out = {}
    for limit in limits:
        targets = _targets(limit, snap)
        if limit.measure == "used_inodes" and targets and all(fs.inodes is None for fs in targets):
            fstypes = ", ".join(sorted({fs.fstype or "unknown" for fs in targets}))
            out[limit.name] = f"not applicable: {fstypes} has no inode counts"
    return out


def limits_in_force(profile, host_config) -> Tuple[Limit, ...]:
    """The limits host mode shows: the profile's host limits, a config limit of the same
    name replacing the profile's, without those the config turned off (``enabled: false``),
    then the config's own; and the profile's image-count limits, shown as
    imaging_limit_images for the dashboards (the account's count is cloud mode's)."""
    config_limits = tuple(host_config.limits)
    disabled = set(host_config.disabled_limits)
    dropped = {l.name for l in config_limits} | disabled
    host = tuple(l for l in profile.host_limits() if l.name not in dropped) + config_limits
    return host + tuple(l for l in profile.limits if l.measure == "image_count" and l.name not in disabled)


def unmatched(limits: Iterable[Limit], snap: HostSnapshot) -> List[Limit]:
    """Limits with a ``mountpoints`` regex that picks none of this server's filesystems:
    a typo, or a mount that is not there, would otherwise hold nothing to the limit silently."""
    return [l for l in limits if l.mountpoints and not _targets(l, snap)]
