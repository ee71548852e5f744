"""The one small file that survives restarts: high-water marks and counted jobs.

Written atomically (temporary file, fsync, rename, fsync of the directory),
so a kill -9 at any point leaves either the old or the new file. A file that
is truncated or corrupt anyway (disk full, hand edits) is reported, moved
aside and replaced; it never stops the exporter.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from typing import Dict, Optional

log = logging.getLogger(__name__)

VERSION = 1
# High-water marks move a little on every scrape of a busy disk; writing at
# most this often keeps the disk quiet, and shutdown flushes the rest.
_MIN_WRITE_INTERVAL = 5.0


def default_path(platform: str = "") -> str:
    """$STATE_DIRECTORY (systemd), else /var/lib if writable, else the user's state dir.

    Windows: %ProgramData%\\imaging-exporter\\state.json, where a service
    account can write and which survives reinstalls of the exporter.
    """
    import ntpath
    import sys                          # imported here: this function is the only user
    if (platform or sys.platform) == "win32":
        base = os.environ.get("ProgramData") or os.environ.get("ALLUSERSPROFILE") or r"C:\ProgramData"
        return ntpath.join(base, "imaging-exporter", "state.json")
    if os.environ.get("STATE_DIRECTORY"):
        return os.path.join(os.environ["STATE_DIRECTORY"].split(":")[0], "state.json")
    system = "/var/lib/imaging-exporter"
    if os.access(system, os.W_OK) or (not os.path.exists(system) and os.access("/var/lib", os.W_OK)):
        return os.path.join(system, "state.json")
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "imaging-exporter", "state.json")


def write_atomic(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


class State:
    """Thread-safe view of the state file.

    Sections: ``high_water`` {"device mountpoint": bytes} and ``jobs``
    {cloud: {"counted": {job_id: finished}, "histogram": {...}}}.
    """

    def __init__(self, path: Optional[str], clock=time.monotonic):
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        self._data = {"version": VERSION, "high_water": {}, "jobs": {}}
        self._dirty = False
        self._last_write = float("-inf")
        self.problem = ""          # last load/save problem, for logs and metrics
        if path:
            self._load()

    # -- loading and saving --------------------------------------------------

    def _load(self):
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return
        except OSError as e:
            self.problem = f"cannot read state file {self.path}: {e.strerror}"
            log.error("%s; starting with empty state", self.problem)
            return
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or data.get("version") != VERSION:
                raise ValueError("unexpected layout")
            hw = data.get("high_water", {})
            jobs = data.get("jobs", {})
            if not isinstance(hw, dict) or not isinstance(jobs, dict):
                raise ValueError("unexpected layout")
            self._data = {"version": VERSION,
                          "high_water": {str(k): int(v) for k, v in hw.items()},
                          "jobs": jobs}
        except (ValueError, TypeError, UnicodeDecodeError) as e:
            aside = f"{self.path}.corrupt-{int(time.time())}"
            self.problem = f"state file {self.path} is corrupt ({e}); moved to {aside} and started afresh"
            log.error("%s", self.problem)
            try:
                os.replace(self.path, aside)
            except OSError:
                pass
            self._dirty = True
            self.flush()

    def flush(self, force: bool = True) -> None:
        """Write the file if anything changed (at most every few seconds unless forced)."""
        if not self.path:
            return
        with self._lock:
            if not self._dirty:
                return
            now = self._clock()
            if not force and now - self._last_write < _MIN_WRITE_INTERVAL:
                return
            payload = json.dumps(self._data, sort_keys=True, separators=(",", ":")).encode()
            try:
                write_atomic(self.path, payload)
                self._dirty = False
                self._last_write = now
                self.problem = ""
            except OSError as e:
                msg = f"cannot write state file {self.path}: {e.strerror}"
                if msg != self.problem:
                    log.error("%s; high-water marks will not survive a restart", msg)
                self.problem = msg

    # -- high-water marks ------------------------------------------------------

    def high_water(self, device: str, mountpoint: str, used: int) -> int:
        """Record ``used`` and return the highest value ever seen for this filesystem."""
        key = f"{device} {mountpoint}"
        with self._lock:
            hw = self._data["high_water"]
            if used > hw.get(key, -1):
                hw[key] = used
                self._dirty = True
            value = hw[key]
        self.flush(force=False)
        return value

    # -- jobs already counted ---------------------------------------------------

    def jobs(self, cloud: str) -> Dict:
        """The mutable jobs section of one cloud; call mark_dirty() after changing it."""
        with self._lock:
            return self._data["jobs"].setdefault(cloud, {})

    def mark_dirty(self) -> None:
        with self._lock:
            self._dirty = True

    @property
    def lock(self):
        return self._lock
