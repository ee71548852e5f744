"""Running database servers, counted the same way on every platform.

Source 000: images "are not a reliable way to back up a dynamic database",
with SQL Server named beside mysqldump. Each platform's host reader lists
its processes as (pid, name, ppid); this module names the engines and keeps
the count fresh without making a scrape wait for a process walk.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Dict, Iterable, Tuple

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

Processes = Iterable[Tuple[int, str, int]]     # (pid, name, ppid)


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
    """

    def __init__(self, list_processes: Callable[[], Processes], clock: Callable[[], float] = time.monotonic):
        self._list = list_processes
        self._clock = clock
        self._cache: Tuple[float, Tuple] = (float("-inf"), ())
        self.recounting = threading.Lock()
        self._first_count = threading.Lock()

    def counts(self) -> Tuple[Tuple[str, int], ...]:
        taken, cached = self._cache
        if taken == float("-inf"):
            with self._first_count:           # a burst of first scrapes walks the processes once
                if self._cache[0] == float("-inf"):
                    self._recount()
            return self._cache[1]
        if self._clock() - taken >= PROCESS_CACHE_SECONDS and self.recounting.acquire(blocking=False):
            def run():
                try:
                    self._recount()
                except Exception:  # noqa: BLE001 - keep the last count
                    log.debug("counting database processes failed", exc_info=True)
                finally:
                    self.recounting.release()
            threading.Thread(target=run, name="db-processes", daemon=True).start()
        return cached

    def _recount(self) -> None:
        self._cache = (self._clock(), count_servers(self._list()))
