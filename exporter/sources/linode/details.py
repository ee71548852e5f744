"""Linode: per-instance details (disks, backups) kept between refreshes.

Linode has no bulk endpoint for disks or backups: reading both for every
instance costs two requests per instance per refresh, and the API allows
a few hundred requests a minute per user (Akamai's "Rate limits" page for
the Linode API). So they are read again only when they can have changed:

- never read yet (a new instance, or the Backup Service just switched on);
- disks: an event of a disk-changing action on the instance since they were read
  (records.DISK_ACTIONS; the events listing is read every refresh anyway);
- backups: the instance listing's backups.last_successful moved, a backup was
  in progress when last read, or a backup event since they were read;
- a sweep: each refresh re-reads the least recently read ones, as many as
  make every instance's details at most `sweep_interval` old
  (ceil(reads * refresh_interval / sweep_interval) a refresh). It catches
  what no signal shows: a failed automatic backup leaves last_successful alone.

What a refresh could not reach (out of its request budget, or a 429) keeps
the data it had; the reads that were due and not made are counted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from ...models import Disk, Server
from .records import (BACKUP_ACTIONS, BACKUP_IN_PROGRESS, DISK_ACTIONS, EVENT_OUTCOME, Backup,
                             LinodeEvent)

NEW, CHANGED, SWEEP = "new", "changed", "sweep"


@dataclass
class Details:
    disks: Tuple[Disk, ...] = ()
    disks_at: Optional[float] = None         # when read; None: never
    backups: Tuple[Backup, ...] = ()
    backups_at: Optional[float] = None
    last_successful: Optional[float] = None  # the listing's backups.last_successful when backups were read


@dataclass(frozen=True)
class Read:
    server: Server
    what: str                 # "disks" or "backups"
    why: str                  # NEW, CHANGED or SWEEP


@dataclass
class DetailCache:
    by_server: Dict[str, Details] = field(default_factory=dict)

    def plan(self, servers: List[Server], events: Iterable[LinodeEvent], refresh_interval: float,
             sweep_interval: float) -> List[Read]:
        """The reads this refresh should make, most needed first: new, changed, then the sweep."""
        alive = {s.server_id for s in servers}
        self.by_server = {k: v for k, v in self.by_server.items() if k in alive}
        touched = _touched(events)
        due: List[Read] = []
        rest: List[Tuple[float, Read]] = []
        for s in servers:
            d = self.by_server.setdefault(s.server_id, Details())
            if d.disks_at is None:
                due.append(Read(s, "disks", NEW))
            elif _after(touched.get((s.server_id, "disks")), d.disks_at):
                due.append(Read(s, "disks", CHANGED))
            else:
                rest.append((d.disks_at, Read(s, "disks", SWEEP)))
            if not s.backups_enabled:
                d.backups, d.backups_at = (), None
                continue
            if d.backups_at is None:
                due.append(Read(s, "backups", NEW))
            elif (s.last_backup_success != d.last_successful
                  or any(b.status in BACKUP_IN_PROGRESS for b in d.backups)
                  or _after(touched.get((s.server_id, "backups")), d.backups_at)):
                due.append(Read(s, "backups", CHANGED))
            else:
                rest.append((d.backups_at, Read(s, "backups", SWEEP)))
        due.sort(key=lambda r: r.why != NEW)
        reads = len(due) + len(rest)
        sweep = math.ceil(reads * refresh_interval / sweep_interval) if rest else 0
        rest.sort(key=lambda t: (t[0], t[1].server.server_id, t[1].what))
        return due + [r for _, r in rest[:sweep]]

    def store_disks(self, server_id: str, disks: List[Disk], at: float) -> None:
        d = self.by_server.setdefault(server_id, Details())
        d.disks, d.disks_at = tuple(disks), at

    def store_backups(self, server: Server, backups: List[Backup], at: float) -> None:
        d = self.by_server.setdefault(server.server_id, Details())
        d.backups, d.backups_at, d.last_successful = tuple(backups), at, server.last_backup_success

    def disks(self) -> List[Disk]:
        return [x for d in self.by_server.values() for x in d.disks]

    def backups(self) -> List[Backup]:
        return [x for d in self.by_server.values() for x in d.backups]


def _touched(events: Iterable[LinodeEvent]) -> Dict[Tuple[str, str], float]:
    """(server id, "disks"/"backups") -> when the latest event of that kind ended (inf: not yet)."""
    out: Dict[Tuple[str, str], float] = {}
    for e in events:
        if not e.server_id:
            continue
        ended = e.started + (e.duration or 0.0) if e.status in EVENT_OUTCOME else math.inf
        for what, actions in (("disks", DISK_ACTIONS), ("backups", BACKUP_ACTIONS)):
            if e.action in actions:
                key = (e.server_id, what)
                out[key] = max(out.get(key, -math.inf), ended)
    return out


def _after(event_end: Optional[float], read_at: float) -> bool:
    return event_end is not None and event_end >= read_at
