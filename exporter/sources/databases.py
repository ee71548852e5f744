"""Running database servers, counted the same way on every platform.

Source 000: images "are not a reliable way to back up a dynamic database",
with SQL Server named beside mysqldump. Each platform's host reader lists
its processes as (pid, name, ppid); this module names the engines and keeps
the count fresh without making a scrape wait for a process walk.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Dict, Iterable, List, Optional, Tuple

log = logging.getLogger(__name__)

# Process names (without Windows' ".exe") of database servers whose data an
# image does not capture consistently. None: a helper, never counted.
DATABASE_ENGINES = {
    "mysqld": "mysql", "mariadbd": "mysql", "mysqld_safe": None,
    "postgres": "postgresql", "postmaster": "postgresql",
    "mongod": "mongodb", "redis-server": "redis", "sqlservr": "mssql",
    "oracle": "oracle", "tnslsnr": None, "cassandra": "cassandra",
    "couchdb": "couchdb", "beam.smp": None, "influxd": "influxdb",
    "etcd": "etcd", "clickhouse-server": "clickhouse", "memcached": None,
}
PROCESS_CACHE_SECONDS = 30.0
FULL_RESCAN_SECONDS = 300.0     # ProcScanner re-reads every process this often

Processes = Iterable[Tuple[int, str, int]]     # (pid, name, ppid)


# The kernel keeps 15 characters of a process name (TASK_COMM_LEN): longer
# engine names are confirmed from the command line, as psutil's name() does.
_TRUNCATED = {name[:15]: name for name in DATABASE_ENGINES if len(name) > 15}


def _read_stat(proc_path: str, entry: str) -> Optional[Tuple[str, int]]:
    """(name, ppid) of one process, or None if it is gone or unreadable: what
    psutil.Process(pid) gives for name() and ppid(), from one read of /proc/PID/stat."""
    try:                                  # os.open/os.read: half the cost of open() per process
        fd = os.open(f"{proc_path}/{entry}/stat", os.O_RDONLY)
    except OSError:
        return None                       # gone since the listing
    try:
        stat = os.read(fd, 4096)          # a stat line is under 1 KiB
    except OSError:
        return None
    finally:
        os.close(fd)
    # "PID (comm) S PPID ...": comm may hold spaces and parentheses, so the last ")" ends it.
    open_at, close_at = stat.find(b"("), stat.rfind(b")")
    fields = stat[close_at + 2:].split(b" ", 2)
    if open_at < 0 or close_at < open_at or len(fields) < 2 or not fields[1].isdigit():
        return None
    name = stat[open_at + 1:close_at].decode("utf-8", "replace")
    if name in _TRUNCATED:
        name = _full_name(proc_path, entry, name)
    return name, int(fields[1])


def _read_name(proc_path: str, entry: str) -> Optional[Tuple[str, int]]:
    """(name, ppid) as _read_stat, from /proc/PID/comm, which the kernel writes at a third
    of stat's cost; stat is read too only for a database engine's name (its parent
    tells a PostgreSQL backend from its server). ppid 0: not needed (count_servers)."""
    try:
        fd = os.open(f"{proc_path}/{entry}/comm", os.O_RDONLY)
    except OSError:
        return _read_stat(proc_path, entry)   # gone, or no comm (not Linux's /proc)
    try:
        comm = os.read(fd, 64)
    except OSError:
        return None
    finally:
        os.close(fd)
    name = comm.rstrip(b"\n").decode("utf-8", "replace")
    if name in DATABASE_ENGINES or name in _TRUNCATED:
        return _read_stat(proc_path, entry)
    return name, 0


class ProcScanner:
    """(pid, name, ppid) of every process, as psutil.process_iter(["name", "ppid"]) at a
    fraction of its cost: it reads only the processes it has not yet seen settle, and their
    comm rather than their stat (ppid only for database engines, 0 for the rest).

    Reading a process's stat costs ~9 us (0.8 ms at 90 processes, ~4.5 ms
    at 500), listing /proc ~60 us: a host runs the same processes scan
    after scan (issue 19). A process whose name was the same in two scans
    in a row is not read again while its /proc entry keeps its inode (a
    fork shows its parent's name until it execs: the second read catches
    the exec; a PID used again is a new /proc inode). Every process is
    re-read every FULL_RESCAN_SECONDS, which catches a program that exec'd
    another in place after both reads (a container entrypoint's `exec postgres`)
    and a parent that changed.
    """

    def __init__(self, proc_path: str = "/proc", clock: Callable[[], float] = time.monotonic,
                 full_every: float = FULL_RESCAN_SECONDS):
        self.proc_path, self._clock, self.full_every = proc_path, clock, full_every
        self._known: Dict[str, Tuple[int, str, int, bool]] = {}    # pid -> (inode, name, ppid, settled)
        self._full_at = float("-inf")
        self.reads = 0                    # processes read (comm or stat), for tests and benchmarks

    def __call__(self) -> List[Tuple[int, str, int]]:
        now = self._clock()
        full = now - self._full_at >= self.full_every
        if full:
            self._full_at = now
        known: Dict[str, Tuple[int, str, int, bool]] = {}
        try:
            entries = os.scandir(self.proc_path)
        except OSError:
            self._known = {}
            return []
        with entries:
            for entry in entries:
                pid = entry.name
                if not pid.isdigit():
                    continue
                try:
                    inode = entry.inode()
                except OSError:
                    continue
                old = self._known.get(pid)
                if old is not None and old[3] and old[0] == inode and not full:
                    known[pid] = old
                    continue
                got = _read_name(self.proc_path, pid)
                self.reads += 1
                if got is None:
                    continue
                settled = old is not None and old[0] == inode and old[1] == got[0]
                known[pid] = (inode, got[0], got[1], settled)
        self._known = known
        return [(int(pid), name, ppid) for pid, (_, name, ppid, _) in known.items()]


def _full_name(proc_path: str, pid: str, comm: str) -> str:
    try:
        with open(f"{proc_path}/{pid}/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0", 1)[0].decode("utf-8", "replace")
    except OSError:
        return comm
    full = os.path.basename(argv0)
    return full if full.startswith(comm) else comm


def count_servers(processes: Processes) -> Tuple[Tuple[str, int], ...]:
    """(engine, count) of database servers: one per server, not one per worker."""
    names: Dict[int, Tuple[str, int]] = {pid: (name, ppid) for pid, name, ppid in processes}
    counts: Dict[str, int] = {}
    for name, ppid in names.values():
        engine = DATABASE_ENGINES.get(name)
        # PostgreSQL forks a process per connection, all named like their parent.
        if engine and DATABASE_ENGINES.get(names.get(ppid, ("", 0))[0]) != engine:
            counts[engine] = counts.get(engine, 0) + 1
    return tuple(sorted(counts.items()))


class DatabaseCounter:
    """The last count, recounted in the background once it is older than PROCESS_CACHE_SECONDS.

    Walking every process costs milliseconds on a busy host, and databases
    do not come and go between scrapes. Only the very first read waits.
    The recount runs on one thread that waits for the next (starting a
    thread per recount cost more than ProcScanner's recount itself).
    """

    def __init__(self, list_processes: Callable[[], Processes], clock: Callable[[], float] = time.monotonic):
        self._list = list_processes
        self._clock = clock
        self._cache: Tuple[float, Tuple] = (float("-inf"), ())
        self.recounting = threading.Lock()
        self._first_count = threading.Lock()
        self._wake = threading.Event()
        self._worker: Optional[threading.Thread] = None

    def counts(self) -> Tuple[Tuple[str, int], ...]:
        taken, cached = self._cache
        if taken == float("-inf"):
            with self._first_count:           # a burst of first scrapes walks the processes once
                if self._cache[0] == float("-inf"):
                    self._recount()
            return self._cache[1]
        if self._clock() - taken >= PROCESS_CACHE_SECONDS and self.recounting.acquire(blocking=False):
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="db-processes", daemon=True)
                self._worker.start()
            self._wake.set()
        return cached

    def _work(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self._recount()
            except Exception:  # noqa: BLE001 - keep the last count
                log.debug("counting database processes failed", exc_info=True)
            finally:
                self.recounting.release()

    def _recount(self) -> None:
        self._cache = (self._clock(), count_servers(self._list()))
