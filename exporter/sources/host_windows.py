"""Host source on Windows: volumes, the domain controller role and database servers, through psutil.

Windows has no statvfs, /proc or sysfs. psutil's cross-platform calls give
what an image limit needs: the volumes (``disk_partitions``), their sizes
(``disk_usage``, GetDiskFreeSpaceExW), the processes, and the NTDS service
(``win_service_get``). Source 000 on Windows servers: the virtual disk
"cannot shrink once it has expanded" (so each read records a high-water
mark of used bytes: sources/high_water.py), and an image of a domain
controller cannot be restored.

Everything psutil is reached through ``api`` (the psutil module by default),
so the reader runs under test on any platform with psutil's recorded shapes.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from typing import Callable, Mapping, Optional

import psutil

from ..config import HostConfig
from ..models import DeviceError, Filesystem, HostSnapshot
from .databases import DatabaseCounter
from .host import _error_name, _Filter, _Statter

log = logging.getLogger(__name__)

# The Active Directory Domain Services service; it runs on domain controllers only.
DC_SERVICE = "NTDS"
# psutil's drive types (the last word of sdiskpart.opts): only fixed disks are
# what an image of the server holds. CD-ROMs and removable media are not,
# and network drives belong to another server.
IMAGED_DRIVE_TYPES = frozenset({"fixed"})


def drive_root(drive: str) -> str:
    """'C:' or 'c:\\' -> 'C:\\', the form psutil gives mount points in."""
    drive = drive.strip().rstrip("\\/")
    return (drive[:1].upper() + drive[1:] if drive else "C:") + "\\"


def _drive_type(opts: str) -> str:
    # psutil: "rw,fixed", "ro,cdrom", "removable" (no media: no rw/ro part), "rw,compressed,fixed".
    return opts.rsplit(",", 1)[-1].strip()


def _process_name(name: str) -> str:
    # sqlservr.exe -> sqlservr: the engine table holds names without Windows' suffix.
    name = (name or "").lower()
    return name[:-4] if name.endswith(".exe") else name


class WindowsHostSource:
    def __init__(self, cfg: HostConfig, api=psutil, environ: Optional[Mapping[str, str]] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self.api = api
        self.filter = _Filter(cfg)
        # disk_usage on a volume that has gone away can block like a hung
        # mount: the same deadline and stuck-volume memory as on Linux.
        self.statter = _Statter(api.disk_usage, cfg.mount_timeout)
        environ = os.environ if environ is None else environ
        self.system_drive = drive_root(environ.get("SystemDrive") or "C:")
        self.databases = DatabaseCounter(self._processes, clock)
        self._dc_problem = ""

    def read(self) -> HostSnapshot:
        volumes, seen = [], set()
        for part in self.api.disk_partitions(all=False):
            if _drive_type(part.opts) not in IMAGED_DRIVE_TYPES or part.mountpoint in seen:
                continue
            if not self.filter.wanted(part.mountpoint, part.fstype):
                continue
            seen.add(part.mountpoint)
            volumes.append(part)
        results = self.statter.stat_all([v.mountpoint for v in volumes])
        filesystems, errors = [], []
        for v in volumes:
            r = results[v.mountpoint]
            if isinstance(r, (str, BaseException)):
                errors.append(DeviceError(v.device, v.mountpoint, v.fstype,
                                          r if isinstance(r, str) else _error_name(r)))
                continue
            # The system drive is what the provider images; other volumes are
            # data (psutil cannot tell which disk holds a volume).
            role = "system" if v.mountpoint.upper() == self.system_drive else "data"
            # GetDiskFreeSpaceExW: total and free of the volume; NTFS has no inodes.
            filesystems.append(Filesystem(
                device=v.device, mountpoint=v.mountpoint, fstype=v.fstype, role=role,
                size_bytes=r.total, free_bytes=r.free, avail_bytes=r.free, inodes=None, inodes_free=None))
        return HostSnapshot(filesystems=tuple(filesystems), errors=tuple(errors), disks=(),
                            database_processes=self.databases.counts(), hostname=socket.gethostname(),
                            domain_controller=self._domain_controller())

    def _domain_controller(self) -> Optional[bool]:
        """True when the NTDS service exists and runs; None when Windows would not say."""
        try:
            status = self.api.win_service_get(DC_SERVICE).status()
        except psutil.NoSuchProcess:
            return False              # no AD DS role on this server
        except Exception as e:  # noqa: BLE001 - AccessDenied, an RPC error: unknown, not "no"
            problem = f"cannot query the {DC_SERVICE} service: {e}"
            if problem != self._dc_problem:
                log.warning("%s; imaging_host_domain_controller is left out", problem)
            self._dc_problem = problem
            return None
        self._dc_problem = ""
        return status == "running"

    def _processes(self):
        for proc in self.api.process_iter(["name", "ppid"]):
            yield proc.pid, _process_name(proc.info.get("name")), proc.info.get("ppid") or 0
