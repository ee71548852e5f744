"""Host source: the server's own filesystems, disks and database processes.

Read at scrape time. A statvfs of a local block-device filesystem answers
from memory and is called inline; every other one (NFS, CIFS, FUSE, ...)
runs in a worker thread bounded by the mount timeout, so a hung network
mount never hangs a scrape, and so does any mount whose inline call was
once slow. A mount that timed out is remembered as stuck and skipped until
its stat returns, as node_exporter's filesystem collector does.
"""
from __future__ import annotations

import concurrent.futures
import errno
import logging
import os
import re
import select
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from ..config import HostConfig
from ..models import BlockDevice, DeviceError, Filesystem, HostSnapshot
from ..threads import CachedThreads
from .block_devices import BlockTopology
from .databases import DatabaseCounter, ProcScanner

log = logging.getLogger(__name__)

# Filesystems on a local block device whose statfs reads counters kept in
# memory: called inline (~1 us) instead of on a thread with a deadline
# (11-80 us a call, issue 19). Anything else can hang: network, FUSE, others.
LOCAL_FSTYPES = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "exfat", "f2fs", "jfs", "reiserfs",
                           "ntfs3", "hfsplus"})
# An inline statfs slower than this goes under the deadline guard for good.
SLOW_INLINE_SECONDS = 0.05
# Virtual block devices that are never a server's disk.

def _unescape(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal.
    if "\\" not in field:
        return field
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mount_table_paths(root_path: str) -> List[str]:
    proc = os.path.join(root_path, "proc")
    return [os.path.join(proc, "1", "mounts"), os.path.join(proc, "self", "mounts")]


def _parse_mounts(lines) -> List[Tuple[str, str, str]]:
    mounts = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 3:
            mounts.append((_unescape(parts[0]), _unescape(parts[1]), parts[2]))
    return mounts


def read_mounts(root_path: str = "/") -> List[Tuple[str, str, str]]:
    """(device, mountpoint, fstype) from PID 1's mount table.

    PID 1's table rather than our own, like node_exporter: under systemd's
    ProtectSystem or in a container our namespace differs from the host's.
    """
    return _read_table(_mount_table_paths(root_path))


def _read_table(paths: List[str]) -> List[Tuple[str, str, str]]:
    """The first readable of ``paths``; psutil's view when none is."""
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return _parse_mounts(f.read().splitlines())
        except OSError:
            continue
    import psutil           # only without a mount table (not Linux): host mode's import saved
    return [(p.device, p.mountpoint, p.fstype) for p in psutil.disk_partitions(all=True)]


class MountTable:
    """read_mounts(), re-read only when the kernel says the table changed.

    /proc/PID/mounts can be polled (proc(5)): after a mount or unmount in
    that namespace, poll() on an open descriptor reports POLLPRI. Reading
    and parsing the table was a third of a host read, and mounts rarely
    change. A file that cannot tell (a plain file under --path.rootfs, for
    one) reports POLLOUT, as regular files always do, and is read every time.
    """

    def __init__(self, root_path: str = "/", paths: Optional[List[str]] = None):
        self.paths = paths or _mount_table_paths(root_path)
        self._file = None
        self._poll = select.poll()
        self._table: Optional[List[Tuple[str, str, str]]] = None
        self._changed = False
        self._lock = threading.Lock()

    def read(self) -> List[Tuple[str, str, str]]:
        with self._lock:
            if self._stale():
                self._table, self._changed = self._load(), False
            return self._table

    def changed(self) -> bool:
        """True when the next read() reads the table again (it changed, or cannot be watched)."""
        with self._lock:
            return self._stale()

    def _stale(self) -> bool:
        # The kernel reports a change to one poll() only: remembered until the table is read.
        if self._table is None or self._file is None:
            return True
        if not self._changed and self._poll.poll(0):
            self._changed = True
        return self._changed

    def _load(self) -> List[Tuple[str, str, str]]:
        if self._file is None:
            for path in self.paths:
                try:
                    self._file = open(path, "rb")   # noqa: SIM115 - kept open to be polled
                    break
                except OSError:
                    continue
            else:
                return _read_table([])              # nothing to watch: psutil's view, read every time
            # Registered before the first read: a change after this point is reported.
            self._poll.register(self._file, select.POLLPRI | select.POLLERR | select.POLLOUT)
        try:
            self._file.seek(0)
            data = self._file.read()
        except OSError:
            self._close()
            return _read_table(self.paths)
        return _parse_mounts(data.decode("utf-8", errors="replace").splitlines())

    def _close(self):
        try:
            self._poll.unregister(self._file)
        except (KeyError, ValueError):
            pass
        self._file.close()
        self._file = None


class _Filter:
    def __init__(self, cfg: HostConfig):
        c = lambda s: re.compile(s) if s else None  # noqa: E731
        self.mp_inc, self.mp_exc = c(cfg.mount_points_include), c(cfg.mount_points_exclude)
        self.fs_inc, self.fs_exc = c(cfg.fs_types_include), c(cfg.fs_types_exclude)

        self._memo: Dict[Tuple[str, str], bool] = {}

    def wanted(self, mountpoint: str, fstype: str) -> bool:
        key = (mountpoint, fstype)
        hit = self._memo.get(key)
        if hit is None:
            if len(self._memo) > 10000:     # mount tables churn under container runtimes
                self._memo.clear()
            hit = self._memo[key] = self._wanted(mountpoint, fstype)
        return hit

    def _wanted(self, mountpoint: str, fstype: str) -> bool:
        if self.mp_exc and self.mp_exc.search(mountpoint):
            return False
        if self.mp_inc and not self.mp_inc.search(mountpoint):
            return False
        if self.fs_exc and self.fs_exc.search(fstype):
            return False
        if self.fs_inc and not self.fs_inc.search(fstype):
            return False
        return True


class _Statter:
    """Runs each stat call on a thread of its own with a deadline; remembers stuck mounts.

    A stuck mount is not stat'ed again until its call returns, so hung
    mounts hold one thread each and nothing else waits behind them.
    """

    def __init__(self, stat_fn: Callable, timeout: float):
        self.stat_fn, self.timeout = stat_fn, timeout
        self._threads = CachedThreads("statfs")
        self._stuck: Dict[str, concurrent.futures.Future] = {}
        self._slow: set = set()              # inline once, too slow: guarded from then on
        self._lock = threading.Lock()
        self.guarded = True                  # the last stat_all had a mount not stat'ed inline

    def stat_all(self, paths: List[str], inline=frozenset()):
        """Return {path: result | exception | "timeout" | "stuck"}; paths in ``inline`` are
        stat'ed in the calling thread unless one was once slow."""
        results, futures, direct = {}, {}, []
        with self._lock:
            stuck, slow = set(self._stuck), set(self._slow)
        for p in paths:
            if p in stuck:
                results[p] = "stuck"
            elif p in inline and p not in slow:
                direct.append(p)
            else:
                futures[p] = self._threads.submit(self.stat_fn, p)
        self.guarded = len(direct) < len(paths)    # one is guarded or stuck: it may hang again
        deadline = time.monotonic() + self.timeout
        for p in direct:                     # while the guarded calls run on their threads
            results[p] = self._stat_inline(p)
        for p, fut in futures.items():
            try:
                results[p] = fut.result(timeout=max(0.0, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                results[p] = "timeout"
                # Not started yet (a starved machine): late, not stuck.
                if not fut.cancel():
                    self._mark_stuck(p, fut)
            except Exception as e:  # noqa: BLE001 - reported as device_error
                results[p] = e
        return results

    def _stat_inline(self, path):
        started = time.monotonic()
        try:
            result = self.stat_fn(path)
        except Exception as e:  # noqa: BLE001 - reported as device_error
            result = e
        took = time.monotonic() - started
        if took > SLOW_INLINE_SECONDS:
            log.warning("statfs of %s took %.3fs; it runs under the %.1fs deadline from now on",
                        path, took, self.timeout)
            with self._lock:
                self._slow.add(path)
        return result

    def _mark_stuck(self, path, fut):
        log.warning("statfs of %s did not return within %.1fs; skipping it until it does", path, self.timeout)
        with self._lock:
            self._stuck[path] = fut

        def done(_f, path=path):
            log.info("statfs of %s returned; the mount is watched again", path)
            with self._lock:          # after the log line: whoever sees it watched again sees the line too
                self._stuck.pop(path, None)
        fut.add_done_callback(done)




def detect_server_id(root_path: str = "/") -> str:
    """The cloud's id for this server, from cloud-init, when a provider knows its form.

    cloud-init writes the instance id from the metadata service or config
    drive; each provider of the registry says whether it is one of its
    server ids (on OpenStack, the Nova server UUID). Otherwise "".
    """
    from .registry import server_id_detectors
    try:
        with open(os.path.join(root_path, "var", "lib", "cloud", "data", "instance-id")) as f:
            value = f.read()
    except OSError:
        return ""
    return next((sid for sid in (detect(value) for detect in server_id_detectors()) if sid), "")


def _error_name(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno:
        return errno.errorcode.get(e.errno, str(e.errno)).lower()
    return type(e).__name__.lower()


class HostSource:
    def __init__(self, cfg: HostConfig, stat_fn: Callable = os.statvfs, sys_path: Optional[str] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self.filter = _Filter(cfg)
        self.statter = _Statter(stat_fn, cfg.mount_timeout)
        root = cfg.root_path or "/"
        self.topology = BlockTopology(sys_path or os.path.join(root, "sys"))
        self.mount_table = MountTable(root)
        self.databases = DatabaseCounter(ProcScanner(clock=clock), clock)

    def _host_path(self, mountpoint: str) -> str:
        root = self.cfg.root_path or "/"
        return mountpoint if root == "/" else os.path.join(root, mountpoint.lstrip("/"))

    def read(self) -> HostSnapshot:
        table = self.mount_table.read()
        mounts, seen = [], set()
        for device, mountpoint, fstype in table:
            if mountpoint in seen or not self.filter.wanted(mountpoint, fstype):
                continue   # the first of stacked mounts, as the kernel shows it
            seen.add(mountpoint)
            mounts.append((device, mountpoint, fstype))
        root_disks = next((self.topology.disks_of(d) for d, m, _ in table if m == "/"), frozenset())
        results = self.statter.stat_all(
            [self._host_path(m) for _, m, _ in mounts],
            inline={self._host_path(m) for d, m, t in mounts if t in LOCAL_FSTYPES and d.startswith("/dev/")})
        filesystems, errors = [], []
        for device, mountpoint, fstype in mounts:
            r = results[self._host_path(mountpoint)]
            if isinstance(r, str) or isinstance(r, BaseException):
                errors.append(DeviceError(device, mountpoint, fstype,
                                          r if isinstance(r, str) else _error_name(r)))
                continue
            disks = self.topology.disks_of(device)
            role = "system" if (mountpoint == "/" or (disks and disks & root_disks)) else "data"
            bs = r.f_frsize or r.f_bsize
            filesystems.append(Filesystem(
                device=device, mountpoint=mountpoint, fstype=fstype, role=role,
                size_bytes=r.f_blocks * bs, free_bytes=r.f_bfree * bs, avail_bytes=r.f_bavail * bs,
                inodes=r.f_files, inodes_free=r.f_ffree))
        disks = tuple(BlockDevice(name, "system" if name in root_disks else "data", size)
                      for name, size in self.topology.disk_sizes().items())
        # os.uname().nodename is gethostname(2), without importing socket (--once).
        return HostSnapshot(filesystems=tuple(filesystems), errors=tuple(errors), disks=disks,
                            database_processes=self._database_processes(), hostname=os.uname().nodename)

    def quick(self) -> bool:
        """True when read() cannot wait: the last one stat'ed every mount inline (local block
        devices only: none guarded, none stuck) and the mount table has not changed since."""
        return not self.statter.guarded and not self.mount_table.changed()

    def _database_processes(self) -> Tuple[Tuple[str, int], ...]:
        return self.databases.counts()


def platform_source(cfg: HostConfig, platform: str = sys.platform):
    """The host reader of this platform, chosen once when the exporter starts.

    Windows has no statvfs, /proc or sysfs: its reader takes volumes, sizes,
    the domain controller role and processes from psutil's Windows API.
    """
    if platform == "win32":
        from .host_windows import WindowsHostSource
        return WindowsHostSource(cfg)
    return HostSource(cfg)
