"""OpenStack cloud source: one project's images, imaging jobs and image quota.

One refresh is a fixed handful of paginated GET requests, whatever the size of
the project (no call per image or per server):

    Glance  GET /v2/images?owner=<project>&limit=1000   the project's images
    Nova    GET /servers/detail?limit=1000              task states, boot from volume, names
    Cinder  GET /snapshots/detail?limit=1000            volume snapshots
    Glance  GET /v2/info/usage                          unified limits, when the cloud has them

plus the Keystone token POST and version discovery, which the SDK caches.

openstacksdk provides auth, the catalog, version discovery and the HTTP
adapters; the listings go through the service proxies' raw get() and are
paginated here. The SDK's Resource objects cost about 4 ms each to build (10k
images and 5k servers would take a minute of CPU per refresh), and owning the
pagination lets a refresh stop a next chain that loops.

Errors become SourceError with a fixed reason; messages are built here from
safe parts only, never from the SDK's text, which can carry URLs and bodies.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Dict, List, Optional, Tuple, TypeVar
from urllib.parse import parse_qsl, urlsplit

from keystoneauth1 import exceptions as ksa_exc
import openstack
from openstack import exceptions as sdk_exc
import requests
import urllib3

from .. import __version__
from ..config import CloudConfig
from ..errors import SourceError
from ..models import CloudSnapshot, FinishedJob, Image, Quota, QuotaValue, RunningJob, Server
from ..profiles import Profile
from .http_deadline import DeadlineAdapter, ResponseTooLarge

PAGE_SIZE = 1000          # the services' default maximum page (api_limit_max, osapi_max_limit)
MAX_PAGES = 1000          # per listing: a next chain longer than this is runaway pagination
MIB = 1024 * 1024         # Glance's image_size_total is in MiB

# Glance image statuses. "killed" is Glance's only failure status: an upload
# that failed; Nova leaves the image killed when the snapshot fails.
IMAGE_IN_PROGRESS = frozenset({"queued", "saving", "uploading", "importing"})
IMAGE_FAILED = frozenset({"killed"})
IMAGE_DONE = "active"
# Nova task states while a server is being imaged; more precise than Glance's status.
IMAGING_TASK_STATES = frozenset({"image_snapshot", "image_snapshot_pending", "image_pending_upload",
                                 "image_uploading", "image_backup"})
# Nova marks the images it creates with the image_type property.
SERVER_IMAGE_TYPES = frozenset({"snapshot", "backup"})
VOLSNAP_IN_PROGRESS = frozenset({"creating"})
VOLSNAP_FAILED = frozenset({"error"})
VOLSNAP_DONE = "available"

T = TypeVar("T")


# ---- what one refresh reads, as plain records --------------------------------

@dataclass(frozen=True)
class _Image:
    image_id: str
    name: str
    status: str
    size: Optional[int]
    created: float
    updated: float
    server_id: str
    kind: str                 # "image" or "backup"
    from_server: bool         # made by Nova (snapshot/backup), not uploaded by a user


@dataclass(frozen=True)
class _Server:
    server_id: str
    name: str
    task_state: Optional[str]
    boot_from_volume: bool
    volume_ids: Tuple[str, ...]


@dataclass(frozen=True)
class _VolumeSnapshot:
    snapshot_id: str
    status: str
    volume_id: str
    created: float
    updated: float


def preflight(cfg: CloudConfig) -> List[str]:
    """Problems --check-config can see without calling the API: the clouds.yaml entry."""
    from openstack import config as os_config
    try:
        os_config.OpenStackConfig().get_one(cloud=cfg.cloud or None)
    except Exception as e:  # noqa: BLE001 - openstacksdk raises several kinds; the message names the entry
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return [f"clouds.yaml: {first}"]
    return []


class OpenStackSource:
    provider = "openstack"

    def __init__(self, cfg: CloudConfig, profile: Profile, clock: Callable[[], float] = time.time,
                 *, page_size: int = PAGE_SIZE, max_pages: int = MAX_PAGES):
        self.cfg = cfg
        self.profile = profile
        self._clock = clock
        self._page_size = page_size
        self._max_pages = max_pages
        self._conn = None     # made on the first refresh, so a broken cloud cannot stop startup
        # Memory between refreshes: jobs running at the last good refresh, and
        # those that vanished since (deleted before they finished = failed).
        self._in_flight: Dict[str, RunningJob] = {}
        self._vanished: Dict[str, FinishedJob] = {}

    # ---- the contract ----

    def refresh(self) -> CloudSnapshot:
        now = self._clock()
        conn = _call("loading the cloud configuration", self._connection, self.cfg)
        access = _call("authenticating", lambda: conn.session.auth.get_access(conn.session), self.cfg)
        project_id = access.project_id
        everyone = {"all_tenants": "1"} if self.cfg.all_projects else {}

        images = self._list("listing images", _image_record, conn, "image", "/images", "images",
                            {} if self.cfg.all_projects else {"owner": project_id})
        servers = self._list("listing servers", _server_record, conn, "compute", "/servers/detail", "servers",
                             everyone)
        volume_snapshots = self._list("listing volume snapshots", _volume_snapshot_record, conn, "block_storage",
                                      "/snapshots/detail", "snapshots", everyone, optional=True)
        # Glance's usage is the token's project only; with all_projects the
        # listing spans the cloud and the project's limit would not match it.
        usage = None if self.cfg.all_projects else _call(
            "reading image usage", lambda: _image_usage(conn.image), self.cfg)

        horizon = now - self.cfg.lookback
        by_id = {s.server_id: s for s in servers}
        running = _image_running(images, by_id) + _volume_snapshot_running(volume_snapshots, servers)
        finished = (_image_finished(images, horizon)
                    + _volume_snapshot_finished(volume_snapshots, servers, horizon))
        listed = {i.image_id for i in images} | {v.snapshot_id for v in volume_snapshots}
        vanished = self._vanished_jobs(listed, now)

        snap = CloudSnapshot(
            cloud=self.cfg.name,
            project=access.project_name or project_id,
            taken_at=now,
            images=tuple(Image(image_id=i.image_id, name=i.name, status=i.status, size_bytes=i.size,
                               created=i.created, server_id=i.server_id) for i in images),
            running_jobs=tuple(running),
            finished_jobs=tuple(finished) + tuple(vanished.values()),
            servers=tuple(Server(server_id=s.server_id, name=s.name, boot_from_volume=s.boot_from_volume)
                          for s in servers),
            quota=self._quota(usage),
        )
        # Commit the memory only once the whole refresh has succeeded.
        self._in_flight = {j.job_id: j for j in running}
        self._vanished = vanished
        return snap

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # ---- reading ----

    def _connection(self):
        if self._conn is None:
            self._conn = openstack.connect(
                cloud=self.cfg.cloud or None, api_timeout=self.cfg.request_timeout,
                app_name="imaging-exporter", app_version=__version__)
            # request_timeout for each whole response too, not only each read (a dripping API).
            for scheme in ("https://", "http://"):
                self._conn.session.session.mount(scheme, DeadlineAdapter(deadline=self.cfg.request_timeout))
        return self._conn

    def _list(self, what: str, build: Callable[[dict], T], conn, service: str, path: str, key: str,
              params: dict, optional: bool = False) -> List[T]:
        def run():
            try:
                proxy = getattr(conn, service)      # may authenticate and read the catalog
                return self._paginate(what, build, proxy, path, key, params)
            except sdk_exc.ServiceDisabledException:
                if optional:
                    return []                       # e.g. a cloud without Cinder
                raise
        return _call(what, run, self.cfg)

    def _paginate(self, what: str, build: Callable[[dict], T], proxy, path: str, key: str,
                  params: dict) -> List[T]:
        """Every item of a marker/limit listing as a record, following the service's next links.

        Each page is turned into records as it arrives, so the raw JSON of
        one page at a time is alive, not of the whole listing (70 MiB at 50k
        images). Only the query of a next link is used: Nova and Cinder build
        its host from their own config, which is often an internal name the
        exporter cannot reach. An id seen twice (the links loop or overlap)
        or more than max_pages pages (they never end) is a pagination error.
        """
        records: List[T] = []
        seen = set()
        query = {**params, "limit": str(self._page_size)}
        for _ in range(self._max_pages):
            body = _get_json(proxy, path, query)
            page = body.get(key) if isinstance(body, dict) else None
            if not isinstance(page, list):
                raise SourceError("malformed", f"{what}: the answer has no {key} list")
            for item in page:
                oid = item.get("id") if isinstance(item, dict) else None
                if not isinstance(oid, str) or not oid:
                    raise SourceError("malformed", f"{what}: an item without an id")
                if oid in seen:
                    raise SourceError("pagination", f"{what}: {oid} came twice; the next links loop")
                seen.add(oid)
            records += _records(what, build, page)
            link = _next_query(body, key)
            if link is None or not page:
                return records
            query = {**params, **link}
        raise SourceError("pagination", f"{what}: more than {self._max_pages} pages; the next links do not end")

    # ---- deriving ----

    def _vanished_jobs(self, listed: set, now: float) -> Dict[str, FinishedJob]:
        """Jobs that were running last time and are gone from the listing now: failed.

        Nova deletes the snapshot image when imaging fails, and a user may
        delete a stuck one; either way the job did not produce its image.
        """
        vanished = {k: j for k, j in self._vanished.items() if j.finished >= now - self.cfg.lookback}
        for job_id, job in self._in_flight.items():
            if job_id not in listed:
                vanished[job_id] = FinishedJob(job_id=job_id, kind=job.kind, server_id=job.server_id,
                                               started=job.started, finished=now, succeeded=False)
        return vanished

    def _quota(self, usage: Optional[dict]) -> Quota:
        return Quota(
            images=self._pick(_usage_limit(usage, "image_count_total", 1), self.cfg.image_quota,
                              "image_count"),
            bytes=self._pick(_usage_limit(usage, "image_size_total", MIB), self.cfg.image_bytes_quota,
                             "image_bytes_total"),
            max_image_bytes=self._pick(None, self.cfg.max_image_size, "image_size"),
        )

    def _pick(self, api: Optional[int], configured: Optional[int], measure: str) -> Optional[QuotaValue]:
        """Precedence: the API's own limit, then the config file, then the profile."""
        if api is not None:
            return QuotaValue(api, "api")
        if configured is not None:
            return QuotaValue(configured, "config")
        limit = self.profile.cloud_limit(measure)
        return QuotaValue(limit.value, "profile") if limit is not None else None


# ---- HTTP --------------------------------------------------------------------

def _get_json(proxy, path: str, query: Optional[dict] = None):
    """One GET relative to the service's endpoint, without the SDK's retries.

    openstacksdk retries Glance 503s five times with backoff (15 s); the
    poller retries whole refreshes instead, so one request costs at most
    request_timeout.
    """
    resp = proxy.get(path, params=query, raise_exc=False, connect_retries=0, status_code_retries=0)
    sdk_exc.raise_from_response(resp)
    return resp.json()


def _next_query(body: dict, key: str) -> Optional[dict]:
    """The query of the next page's link: Glance's "next", Nova's and Cinder's "<key>_links"."""
    link = body.get("next")
    for entry in body.get(f"{key}_links") or ():
        if isinstance(entry, dict) and entry.get("rel") == "next":
            link = entry.get("href")
    if not link or not isinstance(link, str):
        return None
    return dict(parse_qsl(urlsplit(link).query))


# ---- records from API items -----------------------------------------------------

def _records(what: str, build: Callable[[dict], T], items: List[dict]) -> List[T]:
    try:
        return [build(item) for item in items]
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise SourceError("malformed", f"{what}: unexpected item shape ({type(e).__name__})") from None


def _image_record(d: dict) -> _Image:
    # Nova's image properties (image_type, instance_uuid) are top-level keys in Glance v2.
    image_type = d.get("image_type") or ""
    server_id = d.get("instance_uuid") or ""
    created = _timestamp(d["created_at"])
    size = d.get("size")
    return _Image(image_id=d["id"], name=d.get("name") or "", status=d.get("status") or "",
                  size=int(size) if size is not None else None, created=created,
                  updated=_timestamp(d["updated_at"]) if d.get("updated_at") else created,
                  server_id=str(server_id), kind="backup" if image_type == "backup" else "image",
                  from_server=image_type in SERVER_IMAGE_TYPES or bool(server_id))


def _server_record(d: dict) -> _Server:
    # Nova answers image "" for a server that boots from a volume; its images
    # then hold no disk data.
    image = d.get("image")
    volumes = tuple(v["id"] for v in d.get("os-extended-volumes:volumes_attached") or ())
    return _Server(server_id=d["id"], name=d.get("name") or "", task_state=d.get("OS-EXT-STS:task_state"),
                   boot_from_volume=not (isinstance(image, dict) and image.get("id")), volume_ids=volumes)


def _volume_snapshot_record(d: dict) -> _VolumeSnapshot:
    created = _timestamp(d["created_at"])
    return _VolumeSnapshot(snapshot_id=d["id"], status=d.get("status") or "", volume_id=d.get("volume_id") or "",
                           created=created,
                           updated=_timestamp(d["updated_at"]) if d.get("updated_at") else created)


def _timestamp(value: str) -> float:
    """ISO 8601 from the APIs; Cinder writes naive UTC ("2024-05-01T12:00:00.000000")."""
    if value.endswith("Z"):              # Python 3.10's fromisoformat does not take "Z"
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


# ---- jobs ------------------------------------------------------------------

def _image_running(images: List[_Image], servers: Dict[str, _Server]) -> List[RunningJob]:
    jobs = []
    for i in images:
        if i.status not in IMAGE_IN_PROGRESS or not i.from_server:
            continue
        srv = servers.get(i.server_id)
        phase = srv.task_state if srv is not None and srv.task_state in IMAGING_TASK_STATES else i.status
        jobs.append(RunningJob(job_id=i.image_id, kind=i.kind, server_id=i.server_id,
                               server_name=srv.name if srv else "", phase=phase, started=i.created))
    return jobs


def _image_finished(images: List[_Image], horizon: float) -> List[FinishedJob]:
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


def _volume_servers(servers: List[_Server]) -> Dict[str, _Server]:
    return {vol: s for s in servers for vol in s.volume_ids}


def _volume_snapshot_running(snaps: List[_VolumeSnapshot], servers: List[_Server]) -> List[RunningJob]:
    by_volume = _volume_servers(servers)
    jobs = []
    for v in snaps:
        if v.status in VOLSNAP_IN_PROGRESS:
            srv = by_volume.get(v.volume_id)
            jobs.append(RunningJob(job_id=v.snapshot_id, kind="volume_snapshot",
                                   server_id=srv.server_id if srv else "", server_name=srv.name if srv else "",
                                   phase=v.status, started=v.created))
    return jobs


def _volume_snapshot_finished(snaps: List[_VolumeSnapshot], servers: List[_Server],
                              horizon: float) -> List[FinishedJob]:
    by_volume = _volume_servers(servers)
    jobs = []
    for v in snaps:
        if v.created < horizon or not (v.status == VOLSNAP_DONE or v.status in VOLSNAP_FAILED):
            continue
        srv = by_volume.get(v.volume_id)
        jobs.append(FinishedJob(job_id=v.snapshot_id, kind="volume_snapshot",
                                server_id=srv.server_id if srv else "", started=v.created,
                                finished=v.updated, succeeded=v.status == VOLSNAP_DONE))
    return jobs


# ---- quota -------------------------------------------------------------------

def _image_usage(image_proxy) -> Optional[dict]:
    """Glance's unified-limits usage, or None when the cloud does not have it.

    Glance before Xena has no /v2/info/usage (404); with unified limits
    switched off it answers {"usage": {}}.
    """
    try:
        body = _get_json(image_proxy, "/info/usage")
    except sdk_exc.NotFoundException:
        return None
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        raise SourceError("malformed", "reading image usage: the answer has no usage mapping")
    return usage or None


def _usage_limit(usage: Optional[dict], name: str, unit: int) -> Optional[int]:
    entry = (usage or {}).get(name)
    if not isinstance(entry, dict) or entry.get("limit") is None:
        return None
    try:
        limit = int(entry["limit"])
    except (TypeError, ValueError):
        raise SourceError("malformed", f"reading image usage: {name} limit is not a number") from None
    return limit * unit if limit >= 0 else None      # -1: unlimited


# ---- errors ------------------------------------------------------------------

def _call(what: str, fn: Callable[[], T], cfg: CloudConfig) -> T:
    """Run one step of a refresh; turn whatever it raises into a SourceError."""
    try:
        return fn()
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure must become a SourceError
        reason, detail = _classify(exc, cfg)
        after = _retry_after(exc)
        if after is not None:
            detail += f" (Retry-After {after:g} s)"
        raise SourceError(reason, f"{what}: {detail}", retry_after=after) from None


def _classify(exc: Exception, cfg: CloudConfig) -> Tuple[str, str]:
    """(reason, safe detail). Never str(exc): SDK messages can carry URLs, bodies and headers.

    keystoneauth wraps the real cause (a refused connection becomes a
    DiscoveryFailure, a body that stalls a ConnectFailure), so the whole
    chain is searched: timeouts first, then connection and HTTP errors.
    """
    chain = _chain(exc)
    too_large = [e for e in chain if isinstance(e, ResponseTooLarge)]
    if too_large:
        return "malformed", str(too_large[0])
    if any(_is_timeout(e) for e in chain):
        return "timeout", f"no answer within {cfg.request_timeout:g}s"
    if any(isinstance(e, ksa_exc.SSLError) for e in chain):
        return "connection", "TLS handshake failed"
    if any(isinstance(e, ksa_exc.ConnectionError) for e in chain):
        return "connection", "cannot connect to the API (refused, reset or unresolvable)"
    for e in chain:
        status = _http_status(e)
        if status:
            return _status_reason(status), f"HTTP {status} from {_request_line(e)}"
    for e in chain:
        if isinstance(e, (ksa_exc.EndpointNotFound, sdk_exc.EndpointNotFound, sdk_exc.ServiceDisabledException)):
            return "other", "the service catalog has no endpoint for this service"
        if isinstance(e, sdk_exc.ConfigException):
            return "other", f"cannot load cloud {cfg.cloud or '(OS_CLOUD)'} from clouds.yaml or the environment"
        if isinstance(e, json.JSONDecodeError):
            return "malformed", "the answer is not valid JSON"
        if isinstance(e, ksa_exc.DiscoveryFailure):
            return "malformed", "version discovery found no usable API version"
        if isinstance(e, (sdk_exc.NotSupported, sdk_exc.ServiceDiscoveryException)):
            # openstacksdk logs why discovery failed and raises this without the cause.
            return "other", "version discovery failed (no answer, an error or no supported version)"
        if isinstance(e, (KeyError, TypeError, AttributeError, ValueError)):
            return "malformed", f"unexpected answer shape ({type(e).__name__})"
    return "other", type(exc).__name__


def _chain(exc: Optional[BaseException]) -> List[BaseException]:
    """exc, then what it was raised from or while handling, innermost last."""
    out: List[BaseException] = []
    while exc is not None and exc not in out and len(out) < 20:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _is_timeout(exc: BaseException) -> bool:
    # Not urllib3's TimeoutError: NewConnectionError (connection refused) derives from it.
    return isinstance(exc, (ksa_exc.ConnectTimeout, requests.exceptions.Timeout,
                            urllib3.exceptions.ReadTimeoutError, TimeoutError))


def _retry_after(exc: BaseException) -> Optional[float]:
    """Seconds a 429 or 503 asked us to wait (Retry-After in seconds), for the poller's backoff."""
    for e in _chain(exc):
        response = getattr(e, "response", None)
        if isinstance(e, (sdk_exc.HttpException, ksa_exc.HttpError)) and response is not None:
            try:
                return float(response.headers.get("Retry-After"))
            except (TypeError, ValueError):
                return None     # absent, or an HTTP date: the poller's own backoff applies
    return None


def _http_status(exc) -> Optional[int]:
    if isinstance(exc, sdk_exc.HttpException):
        return exc.status_code
    if isinstance(exc, ksa_exc.HttpError):
        return exc.http_status
    return None


def _status_reason(status: int) -> str:
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate_limited"
    if 400 <= status < 500:
        return "http_4xx"
    if status >= 500:
        return "http_5xx"
    return "other"


def _request_line(exc) -> str:
    """"GET /image/v2/images": method and path only, no query, host or credentials."""
    method = getattr(exc, "method", None) or "request"
    url = getattr(exc, "url", None) or ""
    path = urlsplit(url).path if url else ""
    return f"{method} {path}".strip()
