"""OpenStack: API items as plain records, and the jobs derived from them.

Pure functions, no I/O: source.py reads the APIs and hands
the items here.

Attribution of a job to a server:
- an image Nova made from a server's own disk names it (instance_uuid);
- a boot-from-volume server's snapshot image carries no instance_uuid, only
  its block device mapping (block_device_mapping[].snapshot_id); the server
  is reached through the Cinder snapshot's volume and the servers that have
  that volume attached (Nova's os-extended-volumes:volumes_attached);
- a volume attached to several servers (multi-attach) names none of them:
  crediting one would be arbitrary. Such jobs get server_id "" and the
  reason is logged.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple, TypeVar

from ...errors import SourceError
from .. import api
from ...models import FinishedJob, Image, RunningJob, Server

T = TypeVar("T")

# Glance image statuses. "killed" is Glance's only failure status: an upload
# that failed; Nova leaves the image killed when the snapshot fails.
IMAGE_IN_PROGRESS = frozenset({"queued", "saving", "uploading", "importing"})
IMAGE_FAILED = frozenset({"killed"})
IMAGE_DONE = "active"
# Nova task states while a server is being imaged; more precise than Glance's status.
IMAGING_TASK_STATES = frozenset({"image_snapshot", "image_snapshot_pending", "image_pending_upload",
                                 "image_uploading", "image_backup"})
# Nova marks the images it creates from a server's disk with the image_type property.
SERVER_IMAGE_TYPES = frozenset({"snapshot", "backup"})
VOLSNAP_IN_PROGRESS = frozenset({"creating"})
VOLSNAP_FAILED = frozenset({"error"})
VOLSNAP_DONE = "available"

NO_VOLUME_SNAPSHOTS = "volume_snapshots_unavailable"   # reasons a job names no server
MULTIATTACH = "multiattach"
DETACHED = "volume_not_attached"


# slots: at 50k images the records of a refresh are ~50 bytes smaller each without a __dict__ (2.5 MiB).
@dataclass(frozen=True, slots=True)
class OsImage:
    image_id: str
    name: str
    status: str
    size: Optional[int]
    created: float
    updated: float
    server_id: str
    kind: str                 # "image" or "backup"
    from_server: bool         # made by Nova (snapshot/backup), not uploaded by a user
    owner: str = ""
    snapshot_ids: Tuple[str, ...] = ()    # Cinder snapshots of a boot-from-volume server's image


@dataclass(frozen=True, slots=True)
class OsServer:
    server_id: str
    name: str
    task_state: Optional[str]
    boot_from_volume: bool
    volume_ids: Tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OsVolumeSnapshot:
    snapshot_id: str
    status: str
    volume_id: str
    created: float
    updated: float


# ---- records from API items -----------------------------------------------------

def image_record(d: dict, last: Optional[Mapping[str, Image]] = None) -> OsImage:
    """An image item as a record; with `last` (the previous snapshot's images by id), the
    record's strings are that image's where they are equal, so the item's own die with its page."""
    # Nova's image properties (image_type, instance_uuid, block_device_mapping)
    # are top-level keys in Glance v2.
    image_type = d.get("image_type") or ""
    image_id, name, status = d["id"], d.get("name") or "", d.get("status") or ""
    server_id = str(d.get("instance_uuid") or "")
    old = last.get(image_id) if last else None
    if old is not None:
        image_id = old.image_id
        name = old.name if old.name == name else name
        server_id = old.server_id if old.server_id == server_id else server_id
        status = old.status if old.status == status else _word(status)
    else:
        status = _word(status)
    created = timestamp(d["created_at"])
    size = d.get("size")
    snaps = _bdm_snapshot_ids(d.get("block_device_mapping"))
    return OsImage(image_id=image_id, name=name, status=status,
                   size=int(size) if size is not None else None, created=created,
                   updated=timestamp(d["updated_at"]) if d.get("updated_at") else created,
                   server_id=server_id, kind="backup" if image_type == "backup" else "image",
                   from_server=image_type in SERVER_IMAGE_TYPES or bool(server_id) or bool(snaps),
                   owner=_word(str(d.get("owner") or "")), snapshot_ids=snaps)


def _word(value):
    """One string object for a value that 50k items repeat (a status, the owner); not a str: as it is."""
    return sys.intern(value) if type(value) is str else value


def _bdm_snapshot_ids(value) -> Tuple[str, ...]:
    """snapshot_id of each mapping; Nova stores the list JSON-encoded as a string property."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return ()
    if not isinstance(value, list):
        return ()
    return tuple(str(m["snapshot_id"]) for m in value if isinstance(m, dict) and m.get("snapshot_id"))


def server_record(d: dict, last: Optional[Mapping[str, Server]] = None) -> OsServer:
    """A server item as a record; `last` as for image_record."""
    # Nova answers image "" for a server that boots from a volume; its images
    # then hold no disk data.
    image = d.get("image")
    volumes = tuple(v["id"] for v in d.get("os-extended-volumes:volumes_attached") or ())
    server_id, name = d["id"], d.get("name") or ""
    old = last.get(server_id) if last else None
    if old is not None:
        server_id = old.server_id
        name = old.name if old.name == name else name
    return OsServer(server_id=server_id, name=name, task_state=d.get("OS-EXT-STS:task_state"),
                    boot_from_volume=not (isinstance(image, dict) and image.get("id")), volume_ids=volumes)


def volume_snapshot_record(d: dict) -> OsVolumeSnapshot:
    created = timestamp(d["created_at"])
    return OsVolumeSnapshot(snapshot_id=d["id"], status=d.get("status") or "", volume_id=d.get("volume_id") or "",
                            created=created,
                            updated=timestamp(d["updated_at"]) if d.get("updated_at") else created)


def timestamp(value: str) -> float:
    """ISO 8601 from the APIs; Cinder and Nova's actions write naive UTC ("2024-05-01T12:00:00.000000")."""
    if value.endswith("Z"):              # Python 3.10's fromisoformat does not take "Z"
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def records(what: str, build: Callable[[dict], T], items: List[dict]) -> List[T]:
    with api.reading():
        return [build(item) for item in items]


def usage_entry(usage: Optional[dict], name: str, unit: int) -> Tuple[Optional[int], Optional[int]]:
    """(limit, usage) of one of Glance's unified limits, in bytes or images; -1 (unlimited) is None."""
    entry = (usage or {}).get(name)
    if not isinstance(entry, dict):
        return None, None
    out = []
    for key in ("limit", "usage"):
        raw = entry.get(key)
        try:
            value = None if raw is None else int(raw)
        except (TypeError, ValueError):
            raise SourceError("malformed", f"reading image usage: {name} {key} is not a number") from None
        out.append(value * unit if value is not None and value >= 0 else None)
    return out[0], out[1]


# ---- attribution ---------------------------------------------------------------

class Attribution:
    """Which server a volume, a Cinder snapshot or a boot-from-volume image belongs to."""

    def __init__(self, servers: Iterable[OsServer], volume_snapshots: Optional[Iterable[OsVolumeSnapshot]]):
        self.servers = {s.server_id: s for s in servers}
        self._by_volume: Dict[str, List[OsServer]] = {}
        for s in self.servers.values():
            for vol in s.volume_ids:
                self._by_volume.setdefault(vol, []).append(s)
        # None: Cinder could not be read, so snapshots cannot be followed.
        self._snap_volume = None if volume_snapshots is None else {
            v.snapshot_id: v.volume_id for v in volume_snapshots}
        self.unattributed: Dict[str, str] = {}       # job or image id -> reason

    def volume(self, job_id: str, volume_id: str) -> Tuple[str, str]:
        """(server id, name) of the one server the volume is attached to, else ("", "")."""
        attached = self._by_volume.get(volume_id, [])
        if len(attached) == 1:
            return attached[0].server_id, attached[0].name
        self.unattributed[job_id] = MULTIATTACH if attached else DETACHED
        return "", ""

    def image(self, img: OsImage) -> OsImage:
        """The image with server_id filled in from its block device mapping when Nova left it out."""
        if img.server_id or not img.snapshot_ids:
            return img
        if self._snap_volume is None:
            self.unattributed[img.image_id] = NO_VOLUME_SNAPSHOTS
            return img
        found = set()
        for snap_id in img.snapshot_ids:
            volume_id = self._snap_volume.get(snap_id)
            attached = self._by_volume.get(volume_id, []) if volume_id else []
            if len(attached) > 1:
                self.unattributed[img.image_id] = MULTIATTACH
                return img
            found.update(s.server_id for s in attached)
        if len(found) == 1:
            return replace(img, server_id=found.pop())
        self.unattributed[img.image_id] = MULTIATTACH if found else DETACHED
        return img


def own_images(images: List[OsImage], project_id: str, servers: dict) -> List[OsImage]:
    """With all_projects: the token's project's images and the images of the servers listed.

    An admin's listing holds every project's images, the public catalogue
    and images shared with the project among them; those are no one's
    imaging jobs and would inflate the project's count.
    """
    return [i for i in images if i.owner == project_id or (i.from_server and i.server_id in servers)]


# ---- jobs ------------------------------------------------------------------

def image_running(images: List[OsImage], servers: Dict[str, OsServer]) -> List[RunningJob]:
    jobs = []
    for i in images:
        if i.status not in IMAGE_IN_PROGRESS or not i.from_server:
            continue
        srv = servers.get(i.server_id)
        phase = srv.task_state if srv is not None and srv.task_state in IMAGING_TASK_STATES else i.status
        jobs.append(RunningJob(job_id=i.image_id, kind=i.kind, server_id=i.server_id,
                               server_name=srv.name if srv else "", phase=phase, started=i.created))
    return jobs


def image_finished(images: List[OsImage], horizon: float) -> List[FinishedJob]:
    """Server images created inside the lookback that became active or were killed.

    created_at, not updated_at, decides: a later metadata edit bumps
    updated_at of an old image and must not bring it back as a new job.
    """
    jobs = []
    for i in images:
        if not i.from_server or i.created < horizon:
            continue
        if i.status == IMAGE_DONE or i.status in IMAGE_FAILED:
            jobs.append(FinishedJob(job_id=i.image_id, kind=i.kind, server_id=i.server_id,
                                    started=i.created, finished=i.updated, succeeded=i.status == IMAGE_DONE))
    return jobs


def volume_snapshot_running(snaps: List[OsVolumeSnapshot], who: Attribution) -> List[RunningJob]:
    jobs = []
    for v in snaps:
        if v.status in VOLSNAP_IN_PROGRESS:
            server_id, name = who.volume(v.snapshot_id, v.volume_id)
            jobs.append(RunningJob(job_id=v.snapshot_id, kind="volume_snapshot", server_id=server_id,
                                   server_name=name, phase=v.status, started=v.created))
    return jobs


def volume_snapshot_finished(snaps: List[OsVolumeSnapshot], who: Attribution,
                             horizon: float) -> List[FinishedJob]:
    jobs = []
    for v in snaps:
        if v.created < horizon or not (v.status == VOLSNAP_DONE or v.status in VOLSNAP_FAILED):
            continue
        server_id, _ = who.volume(v.snapshot_id, v.volume_id)
        jobs.append(FinishedJob(job_id=v.snapshot_id, kind="volume_snapshot", server_id=server_id,
                                started=v.created, finished=v.updated, succeeded=v.status == VOLSNAP_DONE))
    return jobs
