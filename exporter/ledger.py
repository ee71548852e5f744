"""Job ledger: what a cloud's finished jobs add up to, kept across restarts.

A refresh sees every finished job inside the lookback window again and
again; the ledger observes each successful one once into the duration
histogram, and remembers each server's last success and last duration even
after that job has left the window (a backup 3 days old must still show as
3 days old, not vanish).

Two more facts the alerts need, kept across restarts in the same per-cloud
section (mappings of str to numbers):
- ``first_start``: the earliest start seen for each running job id. A job the
  provider re-queues under the same id restarts its own clock; the 24 h stuck
  rule must count from the first start we saw.
- ``consecutive_failures`` / ``consecutive_at``: failures of a server's jobs of
  one kind in a row, reset by a later success, with the end time of the job
  that set the count (an older job observed late does not change it).
"""
from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Dict, Iterable, Tuple

from .state import State
from .state_schema import BUCKETS     # the state file keeps one count per bound

if TYPE_CHECKING:       # annotations only
    from .cloud_models import FinishedJob, RunningJob


class JobLedger:
    def __init__(self, state: State, cloud: str, lookback: float = 48 * 3600.0):
        self.state = state
        self.cloud = cloud
        self.lookback = lookback

    def _section(self):
        sec = self.state.jobs(self.cloud)
        sec.setdefault("counted", {})
        sec.setdefault("last_success", {})
        sec.setdefault("histogram", {})
        sec.setdefault("failed", {})
        sec.setdefault("first_start", {})
        sec.setdefault("consecutive_failures", {})
        sec.setdefault("consecutive_at", {})
        return sec

    def observe(self, finished: Iterable[FinishedJob], now: float, servers: Iterable[str] = ()) -> int:
        """Record new finished jobs; return how many were newly counted."""
        new = 0
        with self.state.lock:
            sec = self._section()
            counted, last, hist, failed = sec["counted"], sec["last_success"], sec["histogram"], sec["failed"]
            streak, streak_at = sec["consecutive_failures"], sec["consecutive_at"]
            for job in sorted(finished, key=lambda j: j.finished):
                key = f"{job.kind}/{job.job_id}"
                if key in counted:
                    continue
                counted[key] = job.finished
                new += 1
                sk = f"{job.server_id}/{job.kind}"
                if job.finished >= streak_at.get(sk, float("-inf")):
                    streak[sk] = 0 if job.succeeded else streak.get(sk, 0) + 1
                    streak_at[sk] = job.finished
                if not job.succeeded:
                    # Kept here too: a failure the source saw only once (an image
                    # deleted before it became active) must survive a restart.
                    failed[key] = [job.server_id, job.kind, job.finished]
                    continue
                h = hist.setdefault(job.kind, {"buckets": [0] * len(BUCKETS), "count": 0, "sum": 0.0})
                i = bisect.bisect_left(BUCKETS, job.duration)
                if i < len(BUCKETS):
                    h["buckets"][i] += 1      # stored per bucket, made cumulative on output
                h["count"] += 1
                h["sum"] += job.duration
                lk = f"{job.server_id}/{job.kind}"
                if job.finished >= last.get(lk, [0.0])[0]:
                    last[lk] = [job.finished, job.duration]
            # Forget ids that can no longer come back into the window.
            horizon = now - 2 * self.lookback
            for key in [k for k, t in counted.items() if t < horizon]:
                del counted[key]
            for key in [k for k, f in failed.items() if f[2] < now - self.lookback]:
                del failed[key]
            servers = set(servers)
            if servers:
                for mapping in (last, streak, streak_at):
                    for lk in [k for k in mapping if k.rsplit("/", 1)[0] not in servers]:
                        del mapping[lk]
            self.state.mark_dirty()
        self.state.flush(force=bool(new))
        return new

    def track_running(self, running: Iterable[RunningJob], now: float) -> Dict[Tuple[str, str], float]:
        """Record the running jobs' starts; return {(kind, job_id): earliest start seen} of them.

        Ids that stopped running are forgotten once their first start is older
        than the lookback (a job that comes back after that is a new job).
        """
        out: Dict[Tuple[str, str], float] = {}
        changed = False
        with self.state.lock:
            first = self._section()["first_start"]
            for job in running:
                key = f"{job.kind}/{job.job_id}"
                seen = first.get(key)
                if seen is None or job.started < seen:
                    first[key] = seen = job.started
                    changed = True
                out[(job.kind, job.job_id)] = seen
            for key in [k for k, t in first.items() if tuple(k.split("/", 1)) not in out and t < now - self.lookback]:
                del first[key]
                changed = True
            if changed:
                self.state.mark_dirty()
        if changed:
            self.state.flush(force=True)
        return out

    def first_start(self, kind: str, job_id: str, started: float) -> float:
        """The earliest start seen for a job id (``started`` when the ledger has none earlier)."""
        with self.state.lock:
            return min(started, self._section()["first_start"].get(f"{kind}/{job_id}", started))

    def consecutive_failures(self) -> Dict[Tuple[str, str], int]:
        """{(server_id, kind): failed jobs in a row since the last success}."""
        with self.state.lock:
            return {tuple(k.rsplit("/", 1)): int(n) for k, n in self._section()["consecutive_failures"].items()}

    def failures(self, now: float) -> Dict[Tuple[str, str], Tuple[int, float]]:
        """{(server_id, kind): (failures inside the lookback, when the last one ended)}."""
        out: Dict[Tuple[str, str], Tuple[int, float]] = {}
        with self.state.lock:
            for server_id, kind, finished in self._section()["failed"].values():
                if finished >= now - self.lookback:
                    n, last = out.get((server_id, kind), (0, 0.0))
                    out[(server_id, kind)] = (n + 1, max(last, finished))
        return out

    def histogram(self) -> Dict[str, Tuple[list, int, float]]:
        """{kind: ([(upper bound, cumulative count), ...], count, sum)}; the last bound is +inf."""
        out = {}
        with self.state.lock:
            for kind, h in self._section()["histogram"].items():
                cum, rows = 0, []
                for le, n in zip(BUCKETS, h["buckets"]):
                    cum += n
                    rows.append((le, cum))
                rows.append((float("inf"), h["count"]))
                out[kind] = (rows, h["count"], h["sum"])
        return out

    def last_success(self) -> Dict[Tuple[str, str], Tuple[float, float]]:
        """{(server_id, kind): (finished, duration)}."""
        with self.state.lock:
            return {tuple(k.rsplit("/", 1)): (v[0], v[1]) for k, v in self._section()["last_success"].items()}

