"""Background refresh of a cloud source into the last good snapshot.

Cloud APIs are slow and sometimes down; a scrape must never wait on them.
Each cloud has a thread that calls source.refresh() every interval; a failed
refresh keeps the last good snapshot, counts its reason and retries with a
backoff. Scrapes read ``snapshot`` and ``health``, which are swapped whole.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import math
import logging
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

from .errors import SourceError
from .ledger import JobLedger
from .models import CloudSnapshot
from .state import State

log = logging.getLogger(__name__)

FIRST_RETRY = 10.0      # seconds after the first failure; doubles up to the interval
# No wait is longer than this, whatever an API's Retry-After says (86400 would
# be a day blind, 1e10 overflows a wait): an hour, as documented in docs/setup.md.
MAX_DELAY = 3600.0
# A refresh that left per-instance details unread (its source's rate-limit budget ran
# out: Linode) is followed by the next one when the spent window resets (the source's
# resume_in), or after this when it did not say, not after a whole interval:
# Linode's published limits are per-minute windows, so a fresh one has begun by then.
PENDING_DELAY = 61.0

try:   # glibc only: hand freed heap back to the system
    _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
except (OSError, AttributeError):
    _malloc_trim = None


def release_memory() -> None:
    """After a refresh: free the previous snapshot's and the pages' garbage now.

    A big refresh leaves tens of MiB of freed objects in the heap; without
    this, RSS stays at the high-water mark of the largest refresh.
    """
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)


# Python hands the GIL to a waiting thread after this long: a scrape's few steps (the
# event loop, the app's pool thread, back) each waited up to the 5 ms default behind a
# refresh that decodes pages; 1 ms cut the p99 of scrapes during a refresh (bench/cloud_refresh.py).
SWITCH_INTERVAL = 0.001


def favour_scrapes() -> None:
    """Shorter GIL turns while cloud refreshes run (process-wide; only ever lowered)."""
    if sys.getswitchinterval() > SWITCH_INTERVAL:
        sys.setswitchinterval(SWITCH_INTERVAL)


_gc_lock = threading.Lock()
_gc_pausers = 0          # refreshes running with the collector paused (several clouds: several threads)
_gc_reenable = False     # whether the collector was on when the first of them paused it


@contextlib.contextmanager
def gc_paused():
    """The cyclic GC off while a refresh decodes pages and renders, back on in a finally.

    Decoded JSON and rendered lines form no cycles, yet the fresh objects trip
    collections that walk the whole heap: ~37 % of a 50k-image refresh's CPU,
    with the GIL held, so scrapes waited (issue 19). release_memory collects once after.
    """
    global _gc_pausers, _gc_reenable
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_reenable = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_reenable:
                gc.enable()


@dataclass(frozen=True)
class Health:
    up: bool = False
    last_success: float = 0.0
    last_duration: float = 0.0
    errors: Dict[str, int] = field(default_factory=dict)   # reason -> count since start


class Poller:
    def __init__(self, source, name: str, interval: float, lookback: float,
                 state: Optional[State] = None, clock: Callable[[], float] = time.time,
                 on_refresh: Optional[Callable[[], None]] = None):
        self.source = source
        self.name = name                 # the configured cloud name
        self.provider = source.provider  # the source label
        self.interval = interval
        self.lookback = lookback
        # Counted jobs, failures and last successes; kept in the state file when there is one.
        self.ledger = JobLedger(state or State(None), name, lookback)
        self.on_refresh = on_refresh     # runs in this thread after each good refresh
        self._clock = clock
        self.snapshot: Optional[CloudSnapshot] = None
        self.health = Health()
        self._errors: Counter = Counter()
        self._failures_in_row = 0
        self._retry_after: Optional[float] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- one refresh ---------------------------------------------------------

    def refresh_once(self) -> bool:
        started = time.monotonic()
        with gc_paused():
            return self._refresh(started)

    def _refresh(self, started: float) -> bool:
        try:
            snap = self.source.refresh()
        except SourceError as e:
            self._retry_after = e.retry_after
            return self._failed(e.reason, str(e), started)
        except BaseException as e:  # noqa: BLE001 - a bug in a source (even SystemExit) must not kill the thread
            log.debug("unexpected error refreshing %s", self.name, exc_info=True)
            return self._failed("other", f"{type(e).__name__}: {e}"[:500], started)
        duration = time.monotonic() - started
        try:
            now = self._clock()
            self.ledger.observe(snap.finished_jobs, now, servers=[s.server_id for s in snap.servers])
            self.ledger.track_running(snap.running_jobs, now)
        except Exception:  # noqa: BLE001 - bookkeeping must not lose a good snapshot
            log.exception("cloud %s: could not record finished jobs", self.name)
        self.snapshot = snap
        self._failures_in_row = 0
        self._retry_after = None
        if self.on_refresh is not None:
            # Before health says up: a scrape that sees up=1 must see this refresh's data.
            try:
                self.on_refresh()
            except Exception as e:  # noqa: BLE001 - the data is fetched but not served: say so
                log.debug("cloud %s: after-refresh hook failed", self.name, exc_info=True)
                # Health stays truthful: the published metrics are the previous refresh's.
                return self._failed("other", f"serving the refreshed data failed: {type(e).__name__}: {e}"[:500],
                                    started)
        self.health = Health(up=True, last_success=self._clock(), last_duration=duration, errors=dict(self._errors))
        release_memory()
        log.info("cloud %s: refreshed in %.1fs: %d images, %d running jobs, %d servers", self.name, duration,
                 len(snap.images), len(snap.running_jobs), len(snap.servers))
        return True

    def _failed(self, reason: str, message: str, started: float) -> bool:
        self._errors[reason] += 1
        self._failures_in_row += 1
        h = self.health
        self.health = Health(up=False, last_success=h.last_success, last_duration=time.monotonic() - started,
                             errors=dict(self._errors))
        kept = "keeping the last good data" if h.last_success else "no data yet"
        log.warning("cloud %s: refresh failed (%s): %s; %s", self.name, reason, message, kept)
        return False

    # -- the thread ------------------------------------------------------------

    def next_delay(self) -> float:
        if self._failures_in_row == 0:
            snap = self.snapshot
            if snap is not None and snap.details_pending:
                resume = getattr(self.source, "resume_in", None)
                if not isinstance(resume, (int, float)) or not math.isfinite(resume) or resume < 0:
                    resume = PENDING_DELAY
                return min(self.interval, resume, MAX_DELAY)
            return min(self.interval, MAX_DELAY)
        backoff = min(self.interval, FIRST_RETRY * 2 ** min(self._failures_in_row - 1, 20))
        # An API that said when to come back (429 Retry-After) is not asked sooner, up to MAX_DELAY.
        retry_after = self._retry_after
        if not isinstance(retry_after, (int, float)) or not math.isfinite(retry_after) or retry_after < 0:
            retry_after = 0.0
        return min(MAX_DELAY, max(backoff, retry_after))

    def _run(self):
        while not self._stop.is_set():
            delay = FIRST_RETRY
            try:
                self.refresh_once()
                delay = self.next_delay()
            except BaseException:  # noqa: BLE001 - no exception of any kind ends the thread
                try:
                    log.exception("cloud %s: refresh crashed", self.name)
                except BaseException:  # noqa: BLE001
                    pass
            self._stop.wait(delay)

    def start(self):
        favour_scrapes()
        self._thread = threading.Thread(target=self._run, name=f"poll-{self.name}", daemon=True)
        self._thread.start()

    def request_stop(self):
        self._stop.set()

    def stop(self, timeout: float = 5.0):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():       # a refresh hung in the cloud API: it is a daemon thread
                log.warning("cloud %s: refresh still running at shutdown; not waiting for it", self.name)
                return
        close = getattr(self.source, "close", None)
        if close:
            try:
                close()
            except Exception:  # noqa: BLE001
                pass

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())
