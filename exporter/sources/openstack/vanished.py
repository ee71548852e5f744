"""OpenStack: what became of an imaging job whose image vanished between two refreshes.

Nova deletes the image of a snapshot that failed, and a user may delete an
image right after it became active: both look the same in Glance's listing.
Nova's instance actions tell them apart: the server's createImage (or
createBackup) action carries message "Error" when one of its events failed
(nova.db: action_event_finish), and its updated_at is when it ended.

One GET /servers/{id}/os-instance-actions per vanished job, at most
`budget` per refresh; jobs over the budget wait for the next refresh. A job
whose action cannot be found or read (server deleted, policy) counts as
failed, as it did before this lookup existed: the image is gone either way.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from ...models import FinishedJob, RunningJob
from .jobs import timestamp

log = logging.getLogger(__name__)

IMAGE_ACTIONS = {"image": "createImage", "backup": "createBackup"}
# An action recorded this long before Glance's created_at still belongs to the job:
# Nova records the action first, then creates the image.
ACTION_SLACK = 300.0


@dataclass
class VanishedState:
    """What the source remembers between refreshes; replaced whole after a good refresh."""
    in_flight: Dict[str, RunningJob] = field(default_factory=dict)   # running at the last good refresh
    pending: Dict[str, FinishedJob] = field(default_factory=dict)    # vanished, not yet looked up
    done: Dict[str, FinishedJob] = field(default_factory=dict)       # classified, inside the lookback


class Deferred(Exception):
    """The lookup could not be made now (timeout, 5xx, rate limit): try again next refresh."""


def advance(state: VanishedState, listed: set, running: List[RunningJob], now: float, lookback: float,
            budget: int, lookup: Callable[[FinishedJob], Optional[FinishedJob]]) -> VanishedState:
    """The next state: jobs gone from the listing are looked up (up to budget), the rest wait.

    lookup returns the classified job, None when Nova cannot tell (counted
    as failed), or raises Deferred.
    """
    horizon = now - lookback
    done = {k: j for k, j in state.done.items() if j.finished >= horizon}
    pending = {k: j for k, j in state.pending.items() if j.finished >= horizon}
    for job_id, job in state.in_flight.items():
        if job_id not in listed and job_id not in done:
            pending[job_id] = FinishedJob(job_id=job_id, kind=job.kind, server_id=job.server_id,
                                          started=job.started, finished=now, succeeded=False)
    spent = 0
    for job_id, job in sorted(pending.items(), key=lambda kv: (kv[1].finished, kv[0])):
        if job.kind not in IMAGE_ACTIONS or not job.server_id or budget <= 0:
            done[job_id] = job              # a volume snapshot, no server to ask about, or lookups off
        elif spent < budget:
            spent += 1
            try:
                done[job_id] = lookup(job) or job
            except Deferred:
                continue
        else:
            continue                        # over budget: next refresh
        del pending[job_id]
    return VanishedState(in_flight={j.job_id: j for j in running}, pending=pending, done=done)


def classify(actions: List[dict], job: FinishedJob) -> Optional[FinishedJob]:
    """The job as Nova's instance actions of its server tell it; None when none matches."""
    want = IMAGE_ACTIONS[job.kind]
    best = None
    for a in actions:
        if not isinstance(a, dict) or a.get("action") != want or not a.get("start_time"):
            continue
        started = timestamp(a["start_time"])
        if started < job.started - ACTION_SLACK:
            continue
        if best is None or started < best[0]:
            best = (started, a)
    if best is None:
        log.info("job %s of server %s vanished; no %s action found: counted as failed",
                 job.job_id, job.server_id, want)
        return None
    action = best[1]
    failed = action.get("message") == "Error"
    ended = timestamp(action["updated_at"]) if action.get("updated_at") else job.finished
    return FinishedJob(job_id=job.job_id, kind=job.kind, server_id=job.server_id, started=job.started,
                       finished=min(max(ended, job.started), job.finished), succeeded=not failed)
