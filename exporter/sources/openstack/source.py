"""OpenStack cloud source: one project's images, imaging jobs and image quota.

One refresh is a fixed handful of paginated GET requests, whatever the size of
the project (no call per image or per server):

    Glance  GET /v2/images?owner=<project>&limit=1000   the project's images
    Glance  GET /v2/images?owner=<project>&os_hidden=true   ... and its hidden ones
    Nova    GET /servers/detail?limit=1000              task states, boot from volume, names
    Cinder  GET /snapshots/detail?limit=1000            volume snapshots (optional part)
    Glance  GET /v2/info/usage                          unified limits and Glance's own usage

plus the Keystone token POST and version discovery, which the SDK caches,
and GET /servers/{id}/os-instance-actions for a job whose image vanished
(at most the action_lookups option a refresh; vanished.py).

Volume snapshots are an optional part: a Cinder that is missing, offers no
usable version or fails is reported by imaging_source_part_up and a log
line, and the rest of the refresh stands.

openstacksdk provides auth, the catalog, version discovery and the HTTP
adapters; the listings go through the service proxies' raw get() and are
paginated here. The SDK's Resource objects cost about 4 ms each to build (10k
images and 5k servers would take a minute of CPU per refresh), and owning the
pagination lets a refresh stop a next chain that loops.

Errors become SourceError through exporter.sources.api, classified by
exporter.sources.keystone: messages from safe parts only, never the SDK's text.
"""
from __future__ import annotations

import logging
import time
from functools import partial
from typing import Callable, List, Optional, TypeVar
from urllib.parse import parse_qsl, urlsplit

import openstack
from openstack import exceptions as sdk_exc

from ... import __version__
from ...config import CloudConfig
from ...errors import SourceError
from ...models import CloudSnapshot, FinishedJob
from ...profiles import Profile
from .. import api, keystone, quota as quota_mod
from ..http_deadline import DeadlineAdapter
from . import jobs, vanished
from .reuse import Previous

log = logging.getLogger(__name__)

PAGE_SIZE = 1000          # the services' default maximum page (api_limit_max, osapi_max_limit)
MAX_PAGES = 1000          # per listing: a next chain longer than this is runaway pagination
MIB = 1024 * 1024         # Glance's image_size_total is in MiB

# Nova's os-instance-actions: changes-since needs 2.58; events for non-admins 2.51.
ACTIONS_MICROVERSION = "2.58"

T = TypeVar("T")


class OpenStackSource:
    provider = "openstack"

    def __init__(self, cfg: CloudConfig, profile: Profile, clock: Callable[[], float] = time.time,
                 *, page_size: int = PAGE_SIZE, max_pages: int = MAX_PAGES):
        self.cfg = cfg
        self.profile = profile
        self._all_projects = cfg.options["all_projects"]
        self._classify = keystone.classifier(cfg.request_timeout, cfg.options["cloud"])
        self._clock = clock
        self._page_size = page_size
        self._max_pages = max_pages
        self._conn = None     # made on the first refresh, so a broken cloud cannot stop startup
        # Jobs running at the last good refresh and those that vanished since.
        self._vanished = vanished.VanishedState()
        # The last snapshot returned: its unchanged objects are reused by the next refresh (reuse.py);
        # reuse=False builds every object anew (bench/cloud_refresh.py's "before").
        self._last: Optional[CloudSnapshot] = None
        self.reuse = True

    # ---- the contract ----

    def refresh(self) -> CloudSnapshot:
        now = self._clock()
        conn = api.call("loading the cloud configuration", self._connection, self._classify)
        access = api.call("authenticating", lambda: conn.session.auth.get_access(conn.session), self._classify)
        project_id = access.project_id
        everyone = {"all_tenants": "1"} if self._all_projects else {}
        last = Previous(self._last if self.reuse else None)

        images = self._images(conn, project_id, last)
        servers = self._list("listing servers", partial(jobs.server_record, last=last.servers), conn, "compute",
                             "/servers/detail", "servers", everyone, last.same_server_id)
        volume_snapshots = self._volume_snapshots(conn, everyone)
        # Glance's usage is the token's project only; with all_projects the
        # listing spans the cloud and the project's limit would not match it.
        usage = None if self._all_projects else api.call(
            "reading image usage", lambda: _image_usage(conn.image), self._classify)

        horizon = now - self.cfg.lookback
        who = jobs.Attribution(servers, volume_snapshots)
        images = [who.image(i) for i in images]
        if self._all_projects:
            images = jobs.own_images(images, project_id, who.servers)
        snaps = volume_snapshots or []
        running = jobs.image_running(images, who.servers) + jobs.volume_snapshot_running(snaps, who)
        finished = jobs.image_finished(images, horizon) + jobs.volume_snapshot_finished(snaps, who, horizon)
        listed = {i.image_id for i in images} | {v.snapshot_id for v in snaps}
        tracked = list(running)
        if volume_snapshots is None:     # not read: their jobs have not vanished, and are still followed
            unread = [j for j in self._vanished.in_flight.values() if j.kind == "volume_snapshot"]
            listed |= {j.job_id for j in unread}
            tracked += unread
        memory = vanished.advance(self._vanished, listed, tracked, now, self.cfg.lookback,
                                  self.cfg.options["action_lookups"], lambda job: self._action_of(conn, job))
        if who.unattributed:
            log.info("cloud %s: %d jobs or images credited to no server: %s", self.cfg.name,
                     len(who.unattributed), ", ".join(f"{k} ({v})" for k, v in sorted(who.unattributed.items())[:10]))

        snap = CloudSnapshot(
            cloud=self.cfg.name,
            project=access.project_name or project_id,
            taken_at=now,
            images=tuple(last.image(i) for i in images),
            running_jobs=tuple(running),
            finished_jobs=tuple(finished) + tuple(memory.done.values()),
            servers=tuple(last.server(s) for s in servers),
            quota=self._quota(usage),
            parts=(("volume_snapshots", volume_snapshots is not None),),
        )
        # Commit the memory only once the whole refresh has succeeded.
        self._vanished = memory
        self._last = snap
        return snap

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # ---- reading ----

    def _connection(self):
        if self._conn is None:
            self._conn = openstack.connect(
                cloud=self.cfg.options["cloud"] or None, api_timeout=self.cfg.request_timeout,
                app_name="imaging-exporter", app_version=__version__)
            # request_timeout for each whole response too, not only each read (a dripping API).
            for scheme in ("https://", "http://"):
                self._conn.session.session.mount(scheme, DeadlineAdapter(deadline=self.cfg.request_timeout))
        return self._conn

    def _list(self, what: str, build: Callable[[dict], T], conn, service: str, path: str, key: str,
              params: dict, same_id: Optional[Callable[[str], str]] = None) -> List[T]:
        def run():
            proxy = getattr(conn, service)      # may authenticate and read the catalog
            return self._paginate(what, build, proxy, path, key, params, same_id)
        return api.call(what, run, self._classify)

    def _images(self, conn, project_id: str, last: Previous) -> List[jobs.OsImage]:
        """The images, hidden ones too: Glance lists os_hidden images only when asked for them alone."""
        owner = {} if self._all_projects else {"owner": project_id}
        build, same_id = partial(jobs.image_record, last=last.images), last.same_image_id
        shown = self._list("listing images", build, conn, "image", "/images", "images", owner, same_id)
        hidden = self._list("listing hidden images", build, conn, "image", "/images", "images",
                            {**owner, "os_hidden": "true"}, same_id)
        ids = {i.image_id for i in shown}
        return shown + [i for i in hidden if i.image_id not in ids]

    def _volume_snapshots(self, conn, params: dict) -> Optional[List[jobs.OsVolumeSnapshot]]:
        """Cinder's snapshots, or None when Cinder cannot be read: an optional part of the refresh.

        A cloud without Cinder, a Cinder offering only v1 or failing discovery,
        or one that errors or times out costs the volume snapshot jobs only.
        Expired credentials are still the whole refresh's failure.
        """
        try:
            return self._list("listing volume snapshots", jobs.volume_snapshot_record, conn, "block_storage",
                              "/snapshots/detail", "snapshots", params)
        except SourceError as e:
            if e.reason == "auth":
                raise
            log.warning("cloud %s: volume snapshots skipped (%s): %s", self.cfg.name, e.reason, e)
            return None

    def _action_of(self, conn, job: FinishedJob) -> Optional[FinishedJob]:
        """A vanished job as its server's instance actions tell it (vanished.py).

        With Nova 2.58 or later the list is cut by changes-since and says when
        the action ended; before that the whole list is read and the message
        alone tells a failure.
        """
        path = f"/servers/{job.server_id}/os-instance-actions"
        if _supports(conn.compute, ACTIONS_MICROVERSION):
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(job.started - vanished.ACTION_SLACK))
            query, microversion = {"changes-since": since}, ACTIONS_MICROVERSION
        else:
            query, microversion = None, None
        try:
            body = api.call("reading instance actions", lambda: _get_json(
                conn.compute, path, query, microversion=microversion), self._classify)
        except SourceError as e:
            if e.reason in ("http_4xx", "auth"):    # the server is gone, or policy forbids: cannot tell
                return None
            raise vanished.Deferred() from None
        actions = body.get("instanceActions") if isinstance(body, dict) else None
        if not isinstance(actions, list):
            return None
        try:
            with api.reading():
                return vanished.classify(actions, job)
        except api.Malformed:
            return None

    def _paginate(self, what: str, build: Callable[[dict], T], proxy, path: str, key: str,
                  params: dict, same_id: Optional[Callable[[str], str]] = None) -> List[T]:
        """Every item of a marker/limit listing as a record, following the service's next links.

        Each page is turned into records as it arrives, so the raw JSON of
        one page at a time is alive, not of the whole listing (70 MiB at 50k
        images). Only the query of a next link is used: Nova and Cinder build
        its host from their own config, which is often an internal name the
        exporter cannot reach. An id seen twice (the links loop or overlap)
        or more than max_pages pages (they never end) is a pagination error.
        The ids seen are kept as same_id gives them: the previous snapshot's
        equal strings, not the page's (which would outlive their page).
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
                seen.add(same_id(oid) if same_id is not None else oid)
            records += jobs.records(what, build, page)
            link = _next_query(body, key)
            if link is None or not page:
                return records
            query = {**params, **link}
        raise SourceError("pagination", f"{what}: more than {self._max_pages} pages; the next links do not end")

    def _quota(self, usage: Optional[dict]):
        images_limit, images_used = jobs.usage_entry(usage, "image_count_total", 1)
        bytes_limit, bytes_used = jobs.usage_entry(usage, "image_size_total", MIB)
        return quota_mod.resolve(self.cfg, self.profile, api_images=images_limit, api_bytes=bytes_limit,
                                 images_used=images_used, bytes_used=bytes_used)


# ---- HTTP --------------------------------------------------------------------

def _get_json(proxy, path: str, query: Optional[dict] = None, microversion: Optional[str] = None):
    """One GET relative to the service's endpoint, without the SDK's retries.

    openstacksdk retries Glance 503s five times with backoff (15 s); the
    poller retries whole refreshes instead, so one request costs at most
    request_timeout.
    """
    extra = {"microversion": microversion} if microversion else {}
    resp = proxy.get(path, params=query, raise_exc=False, connect_retries=0, status_code_retries=0, **extra)
    sdk_exc.raise_from_response(resp)
    with api.reading():
        return resp.json()


def _supports(proxy, microversion: str) -> bool:
    """Whether the service's discovered maximum microversion reaches `microversion`."""
    try:
        top = proxy.get_endpoint_data().max_microversion
    except Exception:  # noqa: BLE001 - no discovery data: assume the base version only
        return False
    want = tuple(int(x) for x in microversion.split("."))
    return bool(top) and tuple(top) >= want


def _next_query(body: dict, key: str) -> Optional[dict]:
    """The query of the next page's link: Glance's "next", Nova's and Cinder's "<key>_links"."""
    link = body.get("next")
    for entry in body.get(f"{key}_links") or ():
        if isinstance(entry, dict) and entry.get("rel") == "next":
            link = entry.get("href")
    if not link or not isinstance(link, str):
        return None
    return dict(parse_qsl(urlsplit(link).query))


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
