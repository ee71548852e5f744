"""The one small file that survives restarts: high-water marks and counted jobs.

Written atomically (temporary file, fsync, rename, fsync of the directory),
so a kill -9 at any point leaves either the old or the new file; temporary
files a kill left behind are removed at start.

Loading trusts nothing (exporter/state_schema.py): a file that is not valid
JSON, too big or too deep is moved aside and the exporter starts afresh; a
file with some bad entries keeps the good ones (the original is copied
aside first). A file that cannot be read at all (permissions, not a regular
file, an I/O error) is refused: ConfigError, exit 2, and it is never
overwritten, since it may hold high-water marks only it knows.

A new high-water peak is written at once by a writer thread, so it is on
disk within milliseconds of the scrape that saw it, not only at shutdown.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import threading
import time
from typing import Dict, Optional

from . import state_schema
from .errors import ConfigError
from .yamlfile import read_regular_file

log = logging.getLogger(__name__)

VERSION = 1
MAX_BYTES = 64 * 1024 * 1024    # far above any real ledger; a bigger file is not ours
# Ledger changes are written at most this often (forced writes excepted);
# shutdown flushes the rest.
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


def _temp_prefix(path: str) -> str:
    return f".{os.path.basename(path)}.tmp-"


def write_atomic(path: str, data: bytes, mode: Optional[int] = None, make_dirs: bool = True) -> None:
    """Temporary file beside ``path`` (a name ending in neither .json nor .prom), fsync, rename,
    fsync of the directory: a reader, or a kill -9, sees the old file or the new one."""
    directory = os.path.dirname(os.path.abspath(path))
    if make_dirs:
        os.makedirs(directory, exist_ok=True)
    # O_EXCL with a random name is what tempfile.mkstemp does; its import (random, shutil) costs --once ~2 ms.
    tmp = os.path.join(directory, f"{_temp_prefix(path)}{os.urandom(6).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
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


def _no_constants(name):
    raise ValueError(f"{name} is not a number this file may hold")


class State:
    """Thread-safe view of the state file.

    Sections: ``high_water`` {"device mountpoint": bytes} and ``jobs``
    {cloud: {"counted": {job_id: finished}, "histogram": {...}, ...}}.
    """

    def __init__(self, path: Optional[str], clock=time.monotonic):
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()     # one writer at a time
        self._data = {"version": VERSION, "high_water": {}, "jobs": {}}
        self._dirty = False
        self._last_write = float("-inf")
        self._write_problem = ""   # the last write error logged, so that it is logged once
        self._wake = threading.Event()
        self._writer: Optional[threading.Thread] = None
        if path:
            self._remove_stale_temp_files()
            self._load()

    # -- loading and saving --------------------------------------------------

    def _remove_stale_temp_files(self):
        directory = os.path.dirname(os.path.abspath(self.path))
        for tmp in glob.glob(os.path.join(glob.escape(directory), glob.escape(_temp_prefix(self.path)) + "*")):
            try:
                os.unlink(tmp)
                log.info("removed %s, left by an interrupted write", tmp)
            except OSError:
                pass

    def _load(self):
        try:
            raw = read_regular_file(self.path, MAX_BYTES)
        except FileNotFoundError:
            return
        except NotADirectoryError:      # a path under a regular file: nothing there to lose
            return
        except ValueError as e:
            if "regular file" in str(e):
                raise ConfigError(f"state file {self.path} {e}; point state_file at a file") from None
            return self._set_aside(str(e))
        except OSError as e:
            raise ConfigError(f"state file {self.path}: cannot read it ({e.strerror}); it is left untouched: "
                              "fix its permissions or move it away") from None
        try:
            doc = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
            data, problems = state_schema.check(doc, VERSION, len(state_schema.BUCKETS))
        except (ValueError, RecursionError, UnicodeDecodeError) as e:   # JSONDecodeError is a ValueError
            return self._set_aside(str(e)[:200] or type(e).__name__)
        self._data = data
        if problems:
            aside = self._copy_aside()
            log.error("state file %s is corrupt in part: dropped %d bad entries (%s%s); the original is kept as %s",
                      self.path, len(problems), problems[0], "; ..." if len(problems) > 1 else "", aside)
            self._dirty = True
            self.flush()

    def _aside_name(self) -> str:
        return f"{self.path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"

    def _copy_aside(self) -> str:
        aside = self._aside_name()
        import shutil   # only for this rare copy
        try:
            shutil.copy2(self.path, aside)
        except OSError as e:
            raise ConfigError(f"state file {self.path} has bad entries and cannot be copied aside to "
                              f"{aside} ({e.strerror}); it is left untouched") from None
        return aside

    def _set_aside(self, why: str):
        aside = self._aside_name()
        try:
            os.replace(self.path, aside)
        except OSError as e:
            raise ConfigError(f"state file {self.path} is unusable ({why}) and cannot be moved aside "
                              f"({e.strerror}); it is left untouched") from None
        log.error("state file %s is corrupt or unusable (%s); moved to %s, starting afresh", self.path, why, aside)

    def flush(self, force: bool = True) -> None:
        """Write the file if anything changed (at most every few seconds unless forced).

        The data is serialized under the lock and written outside it: a scrape
        recording a high-water mark never waits for an fsync."""
        if not self.path:
            return
        with self._write_lock:
            with self._lock:
                if not self._dirty:
                    return
                now = self._clock()
                if not force and now - self._last_write < _MIN_WRITE_INTERVAL:
                    return
                payload = json.dumps(self._data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
                self._dirty = False
            try:
                write_atomic(self.path, payload)
                self._last_write = now
                self._write_problem = ""
            except (OSError, ValueError) as e:
                with self._lock:
                    self._dirty = True
                msg = f"cannot write state file {self.path}: {getattr(e, 'strerror', None) or e}"
                if msg != self._write_problem:
                    log.error("%s; high-water marks will not survive a restart", msg)
                self._write_problem = msg

    def _write_soon(self):
        """Wake the writer thread (started on first use): a new peak is saved at once,
        without making the scrape that saw it wait for the fsync."""
        if not self.path:
            return
        if self._writer is None:
            with self._lock:
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write_loop, name="state-writer", daemon=True)
                    self._writer.start()
        self._wake.set()

    def _write_loop(self):
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self.flush(force=True)
            except Exception:  # noqa: BLE001 - the writer must outlive any one failure
                log.exception("writing the state file failed")

    # -- high-water marks ------------------------------------------------------

    def high_water(self, device: str, mountpoint: str, used: int) -> int:
        """Record ``used`` and return the highest value ever seen for this filesystem."""
        key = f"{device} {mountpoint}"
        with self._lock:
            hw = self._data["high_water"]
            peak = used > hw.get(key, -1)
            if peak:
                hw[key] = used
                self._dirty = True
            value = hw[key]
        if peak:
            self._write_soon()
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
