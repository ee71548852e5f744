"""Linode cloud source: private images, imaging events, the Backup Service, disks.

A refresh, all GET through linode_api4 with 500 items a page (the API's maximum):

    GET /images                          X-Filter {"is_public": false}: the account's own images
    GET /linode/instances                names, Backup Service on or off, backups.last_successful
    GET /account/events                  X-Filter: imaging, disk and backup actions since the lookback
    GET /account                         once: the account's euuid, the `project` label
    GET /linode/instances/{id}/disks     only when due (details.py)
    GET /linode/instances/{id}/backups   only when due, for instances with the Backup Service on

Per-instance details are kept between refreshes and read again only when
they can have changed, plus a sweep that re-reads every instance's within
the details_refresh_interval option; a steady refresh costs the list pages, the
instances that changed and the sweep's share. Reads stop early when the
API's X-RateLimit-Remaining runs low or it answers 429: the instances not
reached keep their last data, counted by imaging_source_details_pending_servers.

Each request is bounded by cfg.request_timeout (connect, and each read) and
is not retried; the poller retries the refresh. A listing that fails fails
the refresh.

An image's server_id comes from its disk_imagize event, so it is known for
images made inside the event window (lookback + the 24 h stuck threshold).

Errors become SourceError through exporter.sources.api: messages from safe
parts (method, path, status, the API's documented error reasons), scrubbed of
the token, never copied from the SDK or requests.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from dataclasses import replace
from typing import Callable, Iterator, List, Optional

import requests
from linode_api4 import Image as LinodeImage, LinodeClient
from linode_api4.errors import ApiError, UnexpectedResponseError

from ... import __version__
from ...config import CloudConfig
from ...errors import SourceError
from ...models import CloudSnapshot, Server
from ...profiles import Profile
from .. import api, quota as quota_mod
from ..http_deadline import DeadlineAdapter
from . import records as rec
from .details import DetailCache, Read

log = logging.getLogger(__name__)

PAGE_SIZE = rec.PAGE_SIZE
# Per-instance reads stop while the API says fewer requests than this are left in its
# window: the next refresh's listings and anything else sharing the token need some.
RATE_LIMIT_RESERVE = 10
# A refresh may wait for the rate-limit window to reset, up to this share of its
# interval in all; beyond that, what is left waits for the next refresh.
PACE_SHARE = 0.5

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


class RateLimits:
    """The API's rate-limit headers of the latest answer (a requests response hook).

    X-RateLimit-Remaining and X-RateLimit-Reset (UTC epoch seconds) per
    Akamai's "Rate limits" page; X-Customer-UUID names the account.
    """

    def __init__(self):
        self.remaining: Optional[int] = None
        self.reset: Optional[float] = None
        self.customer = ""

    def hook(self, response, *args, **kwargs):
        h = response.headers
        try:
            self.remaining = int(h["X-RateLimit-Remaining"])
            self.reset = float(h.get("X-RateLimit-Reset") or 0) or None
        except (KeyError, ValueError):
            pass
        self.customer = h.get("X-Customer-UUID", self.customer) or self.customer
        return response

    def low(self, now: float) -> bool:
        """Too few requests left in the current window (which has not reset yet)."""
        if self.remaining is None or self.remaining > RATE_LIMIT_RESERVE:
            return False
        return self.reset is None or self.reset > now

    def wait(self, now: float) -> Optional[float]:
        """Seconds until the window resets (and a second more), None when the API did not say."""
        return None if self.reset is None else max(0.0, self.reset - now) + 1.0

    def forget(self) -> None:
        """After waiting for a reset: the next answer tells the new budget."""
        self.remaining = self.reset = None


class LinodeSource:
    provider = "linode"

    def __init__(self, cfg: CloudConfig, profile: Profile, clock: Callable[[], float] = time.time, *,
                 sleep: Callable[[float], None] = time.sleep, wall: Callable[[], float] = time.time):
        self._cfg = cfg
        self._profile = profile
        self._clock = clock
        # Waiting for a rate-limit window: X-RateLimit-Reset is epoch seconds (wall), the
        # wait a sleep; benchmarks and tests pass the fake's window clock for both.
        self._sleep, self._wall = sleep, wall
        self._client: Optional[LinodeClient] = None
        self._token = ""
        self._limits = RateLimits()
        self._classify = _classifier(cfg.request_timeout)
        self._details = DetailCache()
        self._project: Optional[str] = None     # the account's euuid, read once
        self.last_reads = 0                     # per-instance reads of the last refresh (for benchmarks)
        self.resume_in: Optional[float] = None  # seconds until the spent window resets, when reads were left

    def refresh(self) -> CloudSnapshot:
        client = self._connect()
        now = self._clock()
        since = now - self._cfg.lookback
        # A job that finished inside the lookback may have started before it;
        # one that ran longer than the stuck threshold is not worth more requests.
        events_since = since - self._profile.job_stuck_after

        with self._api("listing private images"):
            # "== False" builds the X-Filter {"is_public": false}; "is False" would not.
            images = [rec.image(i) for i in rec.drain(client.images(LinodeImage.is_public == False))]  # noqa: E712
        with self._api("listing instances"):
            instances = rec.drain(client.linode.instances())
            servers = [rec.server(i) for i in instances]
        with self._api("listing events"):
            events = [rec.event(e) for e in rec.drain(client.account.events(rec.watched_events(events_since)))]
        project = self._account(client)
        pending = self._read_details(instances, servers, events, now)

        made_by = rec.image_servers(events, servers)
        images = [replace(i, server_id=made_by.get(i.image_id, ("", ""))[0]) for i in images]
        backups = self._details.backups()
        running = rec.image_running(images, made_by) + rec.backup_running(backups)
        finished = rec.image_finished(events, since) + rec.backup_finished(backups, since)
        return CloudSnapshot(
            cloud=self._cfg.name, project=project, taken_at=now, images=tuple(images),
            running_jobs=tuple(sorted(running, key=lambda j: (j.started, j.job_id))),
            finished_jobs=tuple(sorted(finished, key=lambda j: (j.finished, j.job_id))),
            servers=tuple(servers), disks=tuple(sorted(self._details.disks(), key=lambda d: (d.server_id, d.disk_id))),
            quota=quota_mod.resolve(self._cfg, self._profile), details_pending=pending)

    def close(self) -> None:
        if self._client is not None:
            self._client.session.close()
            self._client = None

    def _connect(self) -> LinodeClient:
        if self._client is None:
            name = self._cfg.options["token_env"]
            token = os.environ.get(name)
            if token is None:
                raise SourceError("auth", f"environment variable {name} is not set")
            if not token.strip():
                raise SourceError("auth", f"environment variable {name} is empty")
            client = LinodeClient(token.strip(), base_url=self._cfg.options["api_url"].rstrip("/"), page_size=PAGE_SIZE,
                                  retry=False, user_agent=f"imaging-exporter/{__version__}")
            adapter = _BoundedAdapter(self._cfg.request_timeout)
            client.session.mount("http://", adapter)
            client.session.mount("https://", adapter)
            client.session.hooks["response"].append(self._limits.hook)
            self._client, self._token = client, token.strip()
        return self._client

    def _account(self, client) -> str:
        """The account's euuid, read once; a token without account access falls back to X-Customer-UUID."""
        if self._project is None:
            try:
                with self._api("reading the account"):
                    self._project = str(client.account().euuid or "")
            except SourceError as e:
                if e.reason == "rate_limited":
                    return self._limits.customer          # try again next refresh
                if e.reason not in ("auth", "http_4xx"):
                    raise
                log.info("cloud %s: cannot read /account (%s); project from X-Customer-UUID", self._cfg.name,
                         e.reason)
                self._project = self._limits.customer
        return self._project

    def _read_details(self, instances, servers: List[Server], events, now: float) -> int:
        """Make the reads that are due, paced by the rate limit; -> servers whose due reads were left.

        When the window is spent (X-RateLimit-Remaining low, or a 429), the
        refresh waits for its reset while the waits add up to at most
        PACE_SHARE of the refresh interval; then it stops, and what is left
        keeps its last data.
        """
        by_id = {str(i.id): i for i in instances}
        plan = self._details.plan(servers, events, self._cfg.refresh_interval, self._cfg.options["details_refresh_interval"])
        budget, waited = self._cfg.refresh_interval * PACE_SHARE, 0.0
        left = set()
        reads = 0
        self.resume_in = None
        i = 0
        while i < len(plan):
            read = plan[i]
            spent, retry_after = self._limits.low(self._wall()), None
            if not spent:
                try:
                    self._read_one(by_id[read.server.server_id], read, now)
                    reads += 1
                    i += 1
                    continue
                except SourceError as e:
                    if e.reason != "rate_limited":
                        raise
                    retry_after = e.retry_after
            wait = retry_after if retry_after is not None else self._limits.wait(self._wall())
            if wait is None or waited + wait > budget:
                left.update(r.server.server_id for r in plan[i:] if r.why != "sweep")
                self.resume_in = wait
                break
            self._sleep(wait)
            waited += wait
            self._limits.forget()
        self.last_reads = reads
        if left:
            log.warning("cloud %s: out of request budget; %d instances keep their last disks/backups",
                        self._cfg.name, len(left))
        return len(left)

    def _read_one(self, inst, read: Read, now: float) -> None:
        server = read.server
        if read.what == "disks":
            with self._api(f"listing the disks of instance {server.server_id}"):
                self._details.store_disks(server.server_id, [rec.disk(d, server) for d in rec.drain(inst.disks)], now)
        else:
            with self._api(f"reading the backups of instance {server.server_id}"):
                self._details.store_backups(server, rec.backups(inst.available_backups, server), now)

    @contextlib.contextmanager
    def _api(self, what: str) -> Iterator[None]:
        """One API step: what the SDK, requests and the answer's data raise becomes a SourceError."""
        with api.step(what, self._classify, self._token), api.reading():
            yield


# ---- errors -------------------------------------------------------------------

def _classifier(timeout: float) -> api.Classifier:
    def classify(exc: BaseException) -> Optional[api.Failure]:
        """The API's failures; None for anything else (exporter.sources.api's rule)."""
        if isinstance(exc, requests.Timeout):
            return api.Failure("timeout", f"{_request_line(exc.request)}: no answer within {timeout:g} s")
        if isinstance(exc, requests.ConnectionError):
            return api.Failure("connection", f"{_request_line(exc.request)}: {_os_reason(exc)}")
        if isinstance(exc, ApiError):
            response = exc.response
            return api.Failure(api.status_reason(exc.status), _api_error_detail(exc),
                               retry_after=api.retry_after(response.headers) if response is not None else None)
        if isinstance(exc, UnexpectedResponseError):
            return api.Failure("malformed", "the answer lacks the fields the API documents")
        if isinstance(exc, rec.Pagination):
            return api.Failure("pagination", str(exc))
        if isinstance(exc, requests.RequestException):      # e.g. a body cut off mid-transfer
            return api.Failure("connection", f"{_request_line(exc.request)}: {type(exc).__name__}")
        return None
    return classify


def _api_error_detail(exc: ApiError) -> str:
    """ "GET /v4/images?page_size=500: HTTP 401 Invalid Token": the API's documented error reasons."""
    response = exc.response
    detail = f"{_request_line(response.request if response is not None else None)}: HTTP {exc.status}"
    if exc.errors:
        detail += " " + "; ".join(str(r)[:200] for r in exc.errors)
    return detail


def _request_line(request) -> str:
    return api.request_line(getattr(request, "method", None), getattr(request, "url", None))


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
