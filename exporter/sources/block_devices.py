"""Block devices from sysfs: the whole disks behind a filesystem's device, and their sizes."""
from __future__ import annotations

import os
import re
import time
from typing import Callable, Dict, Optional

_SKIP_BLOCK = re.compile(r"^(loop|ram|zram|sr|fd|nbd)\d*")


class BlockTopology:
    """Maps devices to the whole disks behind them, from sysfs.

    Disks and partitions change far less often than Prometheus scrapes, so
    what sysfs said is reused for a few minutes; that keeps a host scrape
    as cheap as node_exporter's.
    """

    # Prometheus scrapes every 15-60 s: a shorter reuse would never hit. A
    # disk that is resized shows within five minutes.
    def __init__(self, sys_path: str = "/sys", ttl: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.sys_path = sys_path
        self.ttl, self._clock = ttl, clock
        self._disks_of: Dict[str, frozenset] = {}
        self._sizes: Optional[Dict[str, int]] = None
        self._taken = float("-inf")

    def _expire(self):
        now = self._clock()
        if now - self._taken >= self.ttl:
            self._disks_of, self._sizes, self._taken = {}, None, now

    def disks_of(self, device: str) -> frozenset:
        """Whole-disk kernel names behind /dev/X (partitions, dm and md resolved)."""
        self._expire()
        disks = self._disks_of.get(device)
        if disks is None:
            disks = frozenset()
            if device.startswith("/dev/"):
                name = self._kernel_name(device)
                disks = frozenset(self._disks_of_name(name, depth=0))
            self._disks_of[device] = disks
        return disks

    def _kernel_name(self, device: str) -> str:
        """vda1 for /dev/vda1; dm-0 for /dev/mapper/vg-root, even without /dev
        (systemd's PrivateDevices hides it), through sysfs's dm/name."""
        name = os.path.basename(os.path.realpath(device))
        if device.startswith("/dev/mapper/") and not name.startswith("dm-"):
            block = os.path.join(self.sys_path, "block")
            for dm in _listdir(block):
                try:
                    with open(os.path.join(block, dm, "dm", "name")) as f:
                        if f.read().strip() == name:
                            return dm
                except OSError:
                    continue
        return name

    def _disks_of_name(self, name: str, depth: int):
        cls = os.path.join(self.sys_path, "class", "block", name)
        if depth > 8 or not os.path.exists(cls):
            return set()
        slaves = os.path.join(cls, "slaves")
        try:
            below = os.listdir(slaves)
        except OSError:
            below = []
        if below:            # device mapper / md: the disks of every slave
            out = set()
            for s in below:
                out |= self._disks_of_name(s, depth + 1)
            return out
        if os.path.exists(os.path.join(cls, "partition")):
            return {os.path.basename(os.path.dirname(os.path.realpath(cls)))}
        return {name}

    def disk_sizes(self) -> Dict[str, int]:
        self._expire()
        if self._sizes is None:
            self._sizes = self._read_disk_sizes()
        return self._sizes

    def _read_disk_sizes(self) -> Dict[str, int]:
        out = {}
        block = os.path.join(self.sys_path, "block")
        try:
            names = sorted(os.listdir(block))
        except OSError:
            return out
        for name in names:
            if _SKIP_BLOCK.match(name):
                continue
            try:
                with open(os.path.join(block, name, "size")) as f:
                    sectors = int(f.read().strip())   # always 512-byte units
            except (OSError, ValueError):
                continue
            # dm and md devices are built from disks, not disks themselves.
            if sectors > 0 and not _listdir(os.path.join(block, name, "slaves")):
                out[name] = sectors * 512
        return out


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []
