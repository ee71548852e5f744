"""Linode cloud source: private images, imaging events, the Backup Service, disks.

One refresh, all GET through linode_api4 with 500 items a page (the API's maximum):

    GET /images                          X-Filter {"is_public": false}: the account's own images
    GET /linode/instances                names, Backup Service on or off
    GET /account/events                  X-Filter: disk_imagize / image_upload since the lookback
    GET /linode/instances/{id}/disks     for every instance
    GET /linode/instances/{id}/backups   for every instance with the Backup Service on

Linode has no bulk endpoint for disks or backups, so a refresh costs 3 list
requests plus up to 2 per instance. Each request is bounded by
cfg.request_timeout (connect, and each read) and is not retried; the poller
retries the refresh. A refresh that fails stops at its first failed request.

An image's server_id comes from its disk_imagize event, so it is known for
images made inside the event window (lookback + the 24 h stuck threshold).

Sizes: the API's "MB" are mebibytes (a "Linode 1024" plan's 20 GB disk is
20480 MB), so bytes = MB * 2**20. Against the profiles' decimal-GB limits
this errs towards warning early.

Errors become SourceError with a fixed reason; messages are built here from
safe parts (method, path, status, the API's error reasons) and scrubbed of
the token, never copied from the SDK or requests.
"""
from __future__ import annotations

import calendar
import contextlib
import errno
import os
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import requests
from .http_deadline import DeadlineAdapter, ResponseTooLarge
from linode_api4 import Event, Image as LinodeImage, LinodeClient, and_, or_
from linode_api4.errors import ApiError, UnexpectedResponseError

from .. import __version__
from .. import profiles as profiles_mod
from ..config import CloudConfig
from ..errors import SourceError
from ..models import CloudSnapshot, Disk, FinishedJob, Image, Quota, QuotaValue, RunningJob, Server
from ..profiles import Profile

PAGE_SIZE = 500                   # the API's largest page_size
MAX_ITEMS = 100 * PAGE_SIZE       # a listing longer than 100 pages is runaway pagination
MIB = 2 ** 20
API_TIME = "%Y-%m-%dT%H:%M:%S"    # UTC, without a zone suffix

IMAGE_IN_PROGRESS = frozenset({"creating", "pending_upload"})
EVENT_OUTCOME = {"finished": True, "failed": False}      # "started", "scheduled", ... are not done
BACKUP_IN_PROGRESS = frozenset({"pending", "running", "needsPostProcessing", "paused"})
# "userAborted" is left out of both: an operator cancelled it, nothing to alert on.
BACKUP_OUTCOME = {"successful": True, "failed": False}


# ---- what one refresh reads, as plain records ---------------------------------

@dataclass(frozen=True)
class _Event:
    event_id: str
    status: str
    started: float
    duration: Optional[float]
    server_id: str            # the instance imaged; "" for an upload
    server_name: str
    image_id: str             # the image made, "" when the event names none


@dataclass(frozen=True)
class _Backup:
    backup_id: str
    server_id: str
    server_name: str
    status: str
    started: float
    ended: Optional[float]    # finished, else last updated; None while in progress


class _Pagination(Exception):
    """The pages of a listing do not add up."""


class _BoundedAdapter(DeadlineAdapter):
    """Gives every request a timeout and no retries.

    linode_api4 passes no timeout (requests would wait forever) and retries
    through urllib3, sleeping as long as a 429's Retry-After says; either
    would leave one refresh unbounded.
    """

    def __init__(self, timeout: float):
        super().__init__(max_retries=0, deadline=timeout)      # deadline: the whole response
        self._timeout = timeout

    def send(self, request, **kwargs):
        kwargs["timeout"] = (self._timeout, self._timeout)      # (connect, read)
        return super().send(request, **kwargs)


def preflight(cfg: CloudConfig) -> List[str]:
    """Problems --check-config can see without calling the API."""
    if not os.environ.get(cfg.token_env, "").strip():
        return [f"environment variable {cfg.token_env} (token_env) is not set or empty"]
    return []


class LinodeSource:
    provider = "linode"

    def __init__(self, cfg: CloudConfig, profile: Profile, clock: Callable[[], float] = time.time):
        self._cfg = cfg
        self._profile = profile
        self._clock = clock
        self._client: Optional[LinodeClient] = None
        self._token = ""

    def refresh(self) -> CloudSnapshot:
        client = self._connect()
        now = self._clock()
        since = now - self._cfg.lookback
        # A job that finished inside the lookback may have started before it;
        # one that ran longer than the stuck threshold is not worth more requests.
        events_since = since - profiles_mod.common().job_stuck_after

        with self._api("listing private images"):
            # "== False" builds the X-Filter {"is_public": false}; "is False" would not.
            images = [_image(i) for i in _drain(client.images(LinodeImage.is_public == False))]  # noqa: E712
        with self._api("listing instances"):
            instances = _drain(client.linode.instances())
            servers = [_server(i) for i in instances]
        with self._api("listing imaging events"):
            events = [_event(e) for e in _drain(client.account.events(_imaging_events(events_since)))]
        disks: List[Disk] = []
        backups: List[_Backup] = []
        for inst, server in zip(instances, servers):
            with self._api(f"listing the disks of instance {server.server_id}"):
                disks += [_disk(d, server) for d in _drain(inst.disks)]
            if server.backups_enabled:
                with self._api(f"reading the backups of instance {server.server_id}"):
                    backups += _backups(inst.available_backups, server)

        made_by = _image_servers(events, servers)
        images = [replace(i, server_id=made_by.get(i.image_id, ("", ""))[0]) for i in images]
        running = _image_running(images, made_by) + _backup_running(backups)
        finished = _image_finished(events, since) + _backup_finished(backups, since)
        return CloudSnapshot(
            cloud=self._cfg.name, project="", taken_at=now, images=tuple(images),
            running_jobs=tuple(sorted(running, key=lambda j: (j.started, j.job_id))),
            finished_jobs=tuple(sorted(finished, key=lambda j: (j.finished, j.job_id))),
            servers=tuple(servers), disks=tuple(disks), quota=self._quota())

    def close(self) -> None:
        if self._client is not None:
            self._client.session.close()
            self._client = None

    def _connect(self) -> LinodeClient:
        if self._client is None:
            name = self._cfg.token_env
            token = os.environ.get(name)
            if token is None:
                raise SourceError("auth", f"environment variable {name} is not set")
            if not token.strip():
                raise SourceError("auth", f"environment variable {name} is empty")
            client = LinodeClient(token.strip(), base_url=self._cfg.api_url.rstrip("/"), page_size=PAGE_SIZE,
                                  retry=False, user_agent=f"imaging-exporter/{__version__}")
            adapter = _BoundedAdapter(self._cfg.request_timeout)
            client.session.mount("http://", adapter)
            client.session.mount("https://", adapter)
            self._client, self._token = client, token.strip()
        return self._client

    @contextlib.contextmanager
    def _api(self, what: str) -> Iterator[None]:
        """Turn what the SDK, requests and bad data raise into SourceError."""
        try:
            yield
        except SourceError:
            raise
        except Exception as exc:
            classified = _classify(exc, self._cfg.request_timeout)
            if classified is None:
                raise                   # a bug, not the API: keep its traceback
            reason, detail = classified
            raise SourceError(reason, _scrub(f"{what}: {detail}", self._token),
                              retry_after=_retry_after(exc)) from None   # the SDK's exception holds the token

    def _quota(self) -> Quota:
        cfg = self._cfg
        return Quota(images=self._pick(cfg.image_quota, "image_count"),
                     bytes=self._pick(cfg.image_bytes_quota, "image_bytes_total"),
                     max_image_bytes=self._pick(cfg.max_image_size, "image_size"))

    def _pick(self, configured: Optional[int], measure: str) -> Optional[QuotaValue]:
        """Config over profile: the Linode API publishes no image limits."""
        if configured is not None:
            return QuotaValue(configured, "config")
        limit = self._profile.cloud_limit(measure)
        return QuotaValue(limit.value, "profile") if limit else None


# ---- reading the SDK's objects ---------------------------------------------------
# Each object is read as soon as its page arrives: linode_api4 reloads a
# "volatile" field (a backup's status) with one more GET when it is read
# more than 15 s after loading.

def _drain(listing) -> list:
    """Every item of an SDK list, which fetches further pages as it is indexed."""
    if len(listing) > MAX_ITEMS:
        raise _Pagination(f"the API announced {len(listing)} items, more than {MAX_ITEMS}")
    items, seen = [], set()
    try:
        for item in listing:
            if item.id in seen:
                raise _Pagination(f"the API returned {item.id} twice; its pages repeat")
            seen.add(item.id)
            items.append(item)
    except RuntimeError as exc:
        if type(exc) is not RuntimeError:   # ApiError, UnexpectedResponseError
            raise
        raise _Pagination("the number of pages or items changed between pages") from None
    if len(items) != len(listing):
        raise _Pagination(f"read {len(items)} of the {len(listing)} items the API announced")
    return items


def _imaging_events(since: float):
    """X-Filter: image captures and uploads created since `since`."""
    return and_(or_(Event.action == "disk_imagize", Event.action == "image_upload"),
                Event.created >= time.strftime(API_TIME, time.gmtime(since)))


def _timestamp(value) -> float:
    """Unix seconds of an API time.

    linode_api4 turns "2024-05-01T12:00:00" (UTC) into a naive datetime with
    the same fields, and keeps the string when it cannot parse it.
    """
    if isinstance(value, datetime):
        return float(calendar.timegm(value.timetuple()))
    if isinstance(value, str):
        return float(calendar.timegm(time.strptime(value[:19], API_TIME)))
    raise ValueError(f"{value!r} is not a time")


def _megabytes(value) -> Optional[int]:
    return None if value is None else int(value) * MIB


def _image(img) -> Image:
    return Image(image_id=str(img.id), name=str(img.label or ""), status=str(img.status),
                 size_bytes=_megabytes(img.size), created=_timestamp(img.created))


def _server(inst) -> Server:
    backups = inst.backups
    last = getattr(backups, "last_successful", None) if backups is not None else None
    return Server(server_id=str(inst.id), name=str(inst.label or ""),
                  backups_enabled=bool(backups.enabled) if backups is not None else False,
                  last_backup_success=_timestamp(last) if last else None)


def _disk(d, server: Server) -> Disk:
    return Disk(server_id=server.server_id, server_name=server.name, disk_id=str(d.id),
                label=str(d.label or ""), size_bytes=_megabytes(d.size) or 0)


def _ref(entity, kind: str) -> Optional[Tuple[str, str]]:
    """(id, label) of an event's entity when it is of `kind` ("linode", "image")."""
    if entity is not None and getattr(entity, "type", None) == kind:
        return str(entity.id), str(getattr(entity, "label", "") or "")
    return None


def _event(e) -> _Event:
    server = _ref(e.entity, "linode") or ("", "")
    # disk_imagize names the image as its secondary entity, image_upload as its entity.
    image = _ref(e.secondary_entity, "image") or _ref(e.entity, "image") or ("", "")
    return _Event(event_id=str(e.id), status=str(e.status), started=_timestamp(e.created),
                  duration=None if e.duration is None else float(e.duration),
                  server_id=server[0], server_name=server[1], image_id=image[0])


def _backups(available, server: Server) -> List[_Backup]:
    snapshot = available.snapshot
    found = list(available.automatic) + [b for b in (snapshot.current, snapshot.in_progress) if b is not None]
    return [_backup(b, server) for b in found]


def _backup(b, server: Server) -> _Backup:
    ended = b.finished or b.updated
    return _Backup(backup_id=str(b.id), server_id=server.server_id, server_name=server.name,
                   status=str(b.status), started=_timestamp(b.created),
                   ended=None if b.status in BACKUP_IN_PROGRESS or not ended else _timestamp(ended))


# ---- from records to jobs -------------------------------------------------------

def _image_servers(events: List[_Event], servers: List[Server]) -> Dict[str, Tuple[str, str]]:
    """image id -> (server id, server name) of the instance whose disk it was made from."""
    names = {s.server_id: s.name for s in servers}
    return {e.image_id: (e.server_id, names.get(e.server_id, e.server_name))
            for e in events if e.image_id and e.server_id}


def _image_running(images: List[Image], made_by: Dict[str, Tuple[str, str]]) -> List[RunningJob]:
    jobs = []
    for img in images:
        if img.status in IMAGE_IN_PROGRESS:
            server_id, server_name = made_by.get(img.image_id, ("", ""))
            jobs.append(RunningJob(job_id=img.image_id, kind="image", server_id=server_id,
                                   server_name=server_name, phase=img.status, started=img.created))
    return jobs


def _image_finished(events: List[_Event], since: float) -> List[FinishedJob]:
    jobs = []
    for e in events:
        if e.status not in EVENT_OUTCOME:
            continue
        finished = e.started + (e.duration or 0.0)
        if finished >= since:
            jobs.append(FinishedJob(job_id=e.image_id or f"event/{e.event_id}", kind="image",
                                    server_id=e.server_id, started=e.started, finished=finished,
                                    succeeded=EVENT_OUTCOME[e.status]))
    return jobs


def _backup_running(backups: List[_Backup]) -> List[RunningJob]:
    return [RunningJob(job_id=b.backup_id, kind="backup", server_id=b.server_id, server_name=b.server_name,
                       phase=b.status, started=b.started)
            for b in backups if b.status in BACKUP_IN_PROGRESS]


def _backup_finished(backups: List[_Backup], since: float) -> List[FinishedJob]:
    return [FinishedJob(job_id=b.backup_id, kind="backup", server_id=b.server_id, started=b.started,
                        finished=b.ended, succeeded=BACKUP_OUTCOME[b.status])
            for b in backups if b.status in BACKUP_OUTCOME and b.ended is not None and b.ended >= since]


# ---- errors -------------------------------------------------------------------

def _classify(exc: Exception, timeout: float) -> Optional[Tuple[str, str]]:
    """(reason, detail) for an exception from one API step; None when it is not the API's doing."""
    if isinstance(exc, requests.Timeout):
        return "timeout", f"{_request_line(exc.request)}: no answer within {timeout:g} s"
    if isinstance(exc, ResponseTooLarge):
        return "malformed", f"{_request_line(exc.request)}: {exc}"
    if isinstance(exc, requests.ConnectionError):
        return "connection", f"{_request_line(exc.request)}: {_os_reason(exc)}"
    if isinstance(exc, ApiError):
        return _status_reason(exc.status), _api_error_detail(exc)
    if isinstance(exc, UnexpectedResponseError):
        return "malformed", "the answer lacks the fields the API documents"
    if isinstance(exc, _Pagination):
        return "pagination", str(exc)
    if isinstance(exc, requests.exceptions.JSONDecodeError):
        return "malformed", "the answer is not valid JSON"
    if isinstance(exc, requests.RequestException):      # e.g. a body cut off mid-transfer
        return "connection", f"{_request_line(exc.request)}: {type(exc).__name__}"
    if isinstance(exc, (ValueError, KeyError, TypeError)):
        return "malformed", f"unexpected data ({type(exc).__name__}: {str(exc)[:200]})"
    return None


def _scrub(message: str, token: str) -> str:
    """Belt and braces: no message carries the token, even if an API error echoed it."""
    return message.replace(token, "<token>") if token else message


def _status_reason(status: int) -> str:
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate_limited"
    return "http_5xx" if status >= 500 else "http_4xx"


def _api_error_detail(exc: ApiError) -> str:
    response = exc.response
    line = _request_line(response.request if response is not None else None)
    detail = f"{line}: HTTP {exc.status}"
    if exc.errors:
        detail += " " + "; ".join(str(r)[:200] for r in exc.errors)
    after = _retry_after(exc)
    if after is not None:
        detail += f" (Retry-After {after:g} s)"
    return detail


def _retry_after(exc: Exception) -> Optional[float]:
    """Seconds the API asked us to wait (429 Retry-After), for the poller's backoff."""
    response = getattr(exc, "response", None)
    if not isinstance(exc, ApiError) or response is None:
        return None
    try:
        return float(response.headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None


def _request_line(request) -> str:
    """ "GET /v4/images?page=2&page_size=500": the method and path, never headers."""
    if request is None:
        return "request"
    return f"{request.method} {request.path_url}"


def _os_reason(exc: Exception) -> str:
    """The socket error under requests' and urllib3's wrappers, e.g. "connection refused"."""
    seen = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in errno.errorcode:
            return os.strerror(e.errno).lower()
        stack += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        stack += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    return "cannot connect"
