"""Linode: the SDK's objects as plain records, and the jobs derived from them.

No I/O here except what linode_api4 does when a listing is iterated
(further pages); source.py decides what to read.

Sizes: the API's "MB" are mebibytes (a "Linode 1024" plan's 20 GB disk is
20480 MB), so bytes = MB * 2**20. An image's "size" is one copy, the
smallest disk it deploys to; "total_size" is what it occupies in all the
regions it is replicated to (Akamai's "Get an image" reference), which is
what image storage counts.
"""
from __future__ import annotations

import calendar
import functools
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Dict, List, Optional, Tuple

from linode_api4 import Event, and_, or_

from ...models import Disk, FinishedJob, Image, RunningJob, Server

PAGE_SIZE = 500                   # the API's largest page_size
MAX_ITEMS = 100 * PAGE_SIZE       # a listing longer than 100 pages is runaway pagination
MIB = 2 ** 20
API_TIME = "%Y-%m-%dT%H:%M:%S"    # UTC, without a zone suffix

IMAGE_IN_PROGRESS = frozenset({"creating", "pending_upload"})
EVENT_OUTCOME = {"finished": True, "failed": False}      # "started", "scheduled", ... are not done
BACKUP_IN_PROGRESS = frozenset({"pending", "running", "needsPostProcessing", "paused"})
# "userAborted" is left out of both: an operator cancelled it, nothing to alert on.
BACKUP_OUTCOME = {"successful": True, "failed": False}

IMAGING_ACTIONS = ("disk_imagize", "image_upload")
# Events after which an instance's disks or backups are read again (Linode's event actions).
DISK_ACTIONS = ("disk_create", "disk_delete", "disk_resize", "disk_update", "disk_duplicate",
                "linode_rebuild", "linode_resize", "linode_migrate", "linode_migrate_datacenter",
                "linode_clone", "backups_restore")
BACKUP_ACTIONS = ("backups_enable", "backups_cancel", "backups_restore", "linode_snapshot")


class Pagination(Exception):
    """The pages of a listing do not add up."""


@dataclass(frozen=True)
class LinodeEvent:
    event_id: str
    status: str
    started: float
    duration: Optional[float]
    server_id: str            # the instance imaged; "" for an upload
    server_name: str
    image_id: str             # the image made, "" when the event names none
    action: str = ""


@dataclass(frozen=True)
class Backup:
    backup_id: str
    server_id: str
    server_name: str
    status: str
    started: float
    ended: Optional[float]    # finished, else last updated; None while in progress


# ---- reading the SDK's objects ---------------------------------------------------
# Each object is read as soon as its page arrives: linode_api4 reloads a
# "volatile" field (a backup's status) with one more GET when it is read
# more than 15 s after loading.

def drain(listing) -> list:
    """Every item of an SDK list, which fetches further pages as it is indexed."""
    if len(listing) > MAX_ITEMS:
        raise Pagination(f"the API announced {len(listing)} items, more than {MAX_ITEMS}")
    items, seen = [], set()
    try:
        for item in listing:
            if item.id in seen:
                raise Pagination(f"the API returned {item.id} twice; its pages repeat")
            seen.add(item.id)
            items.append(item)
    except RuntimeError as exc:
        if type(exc) is not RuntimeError:   # ApiError, UnexpectedResponseError
            raise
        raise Pagination("the number of pages or items changed between pages") from None
    if len(items) != len(listing):
        raise Pagination(f"read {len(items)} of the {len(listing)} items the API announced")
    return items


def watched_events(since: float):
    """X-Filter: image captures and uploads, and the disk and backup changes, created since `since`."""
    actions = IMAGING_ACTIONS + DISK_ACTIONS + tuple(a for a in BACKUP_ACTIONS if a not in DISK_ACTIONS)
    any_action = functools.reduce(or_, (Event.action == a for a in actions))
    return and_(any_action, Event.created >= time.strftime(API_TIME, time.gmtime(since)))


def timestamp(value) -> float:
    """Unix seconds of an API time.

    linode_api4 turns "2024-05-01T12:00:00" (UTC) into a naive datetime with
    the same fields, and keeps the string when it cannot parse it.
    """
    if isinstance(value, datetime):
        return float(calendar.timegm(value.timetuple()))
    if isinstance(value, str):
        return float(calendar.timegm(time.strptime(value[:19], API_TIME)))
    raise ValueError(f"{value!r} is not a time")


def megabytes(value) -> Optional[int]:
    return None if value is None else int(value) * MIB


def image(img) -> Image:
    # total_size: every region the image is replicated to (absent before replication existed).
    total = getattr(img, "total_size", None)
    return Image(image_id=str(img.id), name=str(img.label or ""), status=str(img.status),
                 size_bytes=megabytes(img.size), created=timestamp(img.created),
                 stored_bytes=megabytes(total) if total is not None else None)


def server(inst) -> Server:
    backups = inst.backups
    last = getattr(backups, "last_successful", None) if backups is not None else None
    return Server(server_id=str(inst.id), name=str(inst.label or ""),
                  backups_enabled=bool(backups.enabled) if backups is not None else False,
                  last_backup_success=timestamp(last) if last else None)


def disk(d, server: Server) -> Disk:
    return Disk(server_id=server.server_id, server_name=server.name, disk_id=str(d.id),
                label=str(d.label or ""), size_bytes=megabytes(d.size) or 0)


def _ref(entity, kind: str) -> Optional[Tuple[str, str]]:
    """(id, label) of an event's entity when it is of `kind` ("linode", "image")."""
    if entity is not None and getattr(entity, "type", None) == kind:
        return str(entity.id), str(getattr(entity, "label", "") or "")
    return None


def event(e) -> LinodeEvent:
    server = _ref(e.entity, "linode") or ("", "")
    # disk_imagize names the image as its secondary entity, image_upload as its entity.
    image = _ref(e.secondary_entity, "image") or _ref(e.entity, "image") or ("", "")
    return LinodeEvent(event_id=str(e.id), status=str(e.status), started=timestamp(e.created),
                       duration=None if e.duration is None else float(e.duration),
                       server_id=server[0], server_name=server[1], image_id=image[0], action=str(e.action))


def backups(available, server: Server) -> List[Backup]:
    snapshot = available.snapshot
    found = list(available.automatic) + [b for b in (snapshot.current, snapshot.in_progress) if b is not None]
    return [backup(b, server) for b in found]


def backup(b, server: Server) -> Backup:
    ended = b.finished or b.updated
    return Backup(backup_id=str(b.id), server_id=server.server_id, server_name=server.name,
                  status=str(b.status), started=timestamp(b.created),
                  ended=None if b.status in BACKUP_IN_PROGRESS or not ended else timestamp(ended))


# ---- from records to jobs -------------------------------------------------------

def image_servers(events: List[LinodeEvent], servers: List[Server]) -> Dict[str, Tuple[str, str]]:
    """image id -> (server id, server name) of the instance whose disk it was made from."""
    names = {s.server_id: s.name for s in servers}
    return {e.image_id: (e.server_id, names.get(e.server_id, e.server_name))
            for e in events if e.image_id and e.server_id and e.action in IMAGING_ACTIONS}


def image_running(images: List[Image], made_by: Dict[str, Tuple[str, str]]) -> List[RunningJob]:
    jobs = []
    for img in images:
        if img.status in IMAGE_IN_PROGRESS:
            server_id, server_name = made_by.get(img.image_id, ("", ""))
            jobs.append(RunningJob(job_id=img.image_id, kind="image", server_id=server_id,
                                   server_name=server_name, phase=img.status, started=img.created))
    return jobs


def image_finished(events: List[LinodeEvent], since: float) -> List[FinishedJob]:
    jobs = []
    for e in events:
        if e.status not in EVENT_OUTCOME or e.action not in IMAGING_ACTIONS:
            continue
        finished = e.started + (e.duration or 0.0)
        if finished >= since:
            jobs.append(FinishedJob(job_id=e.image_id or f"event/{e.event_id}", kind="image",
                                    server_id=e.server_id, started=e.started, finished=finished,
                                    succeeded=EVENT_OUTCOME[e.status]))
    return jobs


def backup_running(found: List[Backup]) -> List[RunningJob]:
    return [RunningJob(job_id=b.backup_id, kind="backup", server_id=b.server_id, server_name=b.server_name,
                       phase=b.status, started=b.started)
            for b in found if b.status in BACKUP_IN_PROGRESS]


def backup_finished(found: List[Backup], since: float) -> List[FinishedJob]:
    return [FinishedJob(job_id=b.backup_id, kind="backup", server_id=b.server_id, started=b.started,
                        finished=b.ended, succeeded=BACKUP_OUTCOME[b.status])
            for b in found if b.status in BACKUP_OUTCOME and b.ended is not None and b.ended >= since]


