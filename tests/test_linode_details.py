"""Linode: what a refresh costs and what it shows (issue 14 point 6, issue 19 item 1).

Per-instance disks and backups are kept between refreshes and re-read when
they can have changed; a fake enforcing the published per-minute limits
(429 + Retry-After, X-RateLimit-* headers) never fails a refresh, and what
a refresh could not reach keeps its last data and is counted.
"""
from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

import pytest

from exporter import profiles
from exporter.collectors import cloud as cloud_mod
from exporter.config import cloud_config
from exporter.ledger import JobLedger
from exporter.sources.linode.source import LinodeSource
from exporter.state import State
from fakes.clock import FakeClock
from fakes.linode_api import FakeLinodeAPI, format_time, parse_time
from fakes.linode_rate_limits import RateLimiter
from fakes.linode_synthetic import synthetic_api

MIB = 2 ** 20
SAMPLES = os.path.join(os.path.dirname(__file__), "fixtures", "linode", "samples")
DETAIL = ("/disks", "/backups")


@pytest.fixture
def make_source(monkeypatch):
    """make(api, sleep=..., wall=..., **cloud_config overrides); by default waits are recorded, not slept."""
    made = []

    def make(api, sleep=None, wall=time.time, **overrides):
        monkeypatch.setenv("LINODE_TOKEN", api.token)
        cfg = cloud_config("linode", "akamai", api_url=api.url, request_timeout=2.0, **overrides)
        src = LinodeSource(cfg, profiles.get("linode"), clock=api.clock, sleep=sleep or (lambda s: None),
                           wall=wall)
        made.append(src)
        return src
    yield make
    for s in made:
        s.close()


def new_paths(api, before):
    return [r.path for r in api.requests[before:]]


def detail_reads(paths):
    return sorted(p for p in paths if p.endswith(DETAIL))


def rows(snap, spec):
    poller = SimpleNamespace(snapshot=snap, ledger=JobLedger(State(None), snap.cloud, 48 * 3600))
    for s, r in cloud_mod.cloud_families([poller]).rows():
        if s.name == spec.name:
            return {labels: value for labels, value in r}
    return {}


# ---- what a steady refresh reads ------------------------------------------------------

def test_a_steady_refresh_reads_only_what_can_have_changed(make_source):
    with FakeLinodeAPI("account") as api:
        src = make_source(api)
        src.refresh()
        first = new_paths(api, 0)
        assert len(detail_reads(first)) == 4 + 3          # every disk listing, every Backup Service
        api.clock.advance(300)
        before = len(api.requests)
        snap = src.refresh()
        paths = new_paths(api, before)
    # The three listings; /account was read once. Backups of 101 and 102 were running at
    # the last read, so they are read again; one sweep read (7 reads * 300 s / 3600 s).
    assert sorted(p for p in paths if not p.endswith(DETAIL)) == [
        "/v4/account/events", "/v4/images", "/v4/linode/instances"]
    assert detail_reads(paths) == ["/v4/linode/instances/101/backups", "/v4/linode/instances/101/disks",
                                   "/v4/linode/instances/102/backups"]
    assert snap.details_pending == 0
    assert len(snap.disks) == 8                          # 104's disks kept, not re-read


def test_events_and_last_successful_trigger_a_reread(make_source):
    with FakeLinodeAPI("account") as api:
        src = make_source(api, details_refresh_interval=10 * 86400)
        src.refresh()
        now = api.clock()
        api.add("events", {"id": 9100, "action": "disk_resize", "status": "finished", "created": format_time(now + 60),
                           "duration": 30.0, "entity": {"id": 104, "label": "scratch-1", "type": "linode",
                                                        "url": "/v4/linode/instances/104"},
                           "secondary_entity": None, "percent_complete": 100, "rate": None, "read": True,
                           "seen": True, "time_remaining": None, "username": "ops", "message": None})
        inst = next(i for i in api.objects("instances") if i["id"] == 103)
        api.change("instances", 103, {"backups": dict(inst["backups"], last_successful=format_time(now + 120))})
        api.clock.advance(300)
        before = len(api.requests)
        src.refresh()
        reads = detail_reads(new_paths(api, before))
    # 104: disk_resize after the last read; 103: last_successful moved; 101/102: backups were
    # running; 101/disks: the one sweep read.
    assert reads == ["/v4/linode/instances/101/backups", "/v4/linode/instances/101/disks",
                     "/v4/linode/instances/102/backups", "/v4/linode/instances/103/backups",
                     "/v4/linode/instances/104/disks"]


def test_the_sweep_rereads_every_instance_within_its_interval(make_source):
    api = synthetic_api(40, clock=FakeClock(parse_time("2024-05-01T12:00:00")), backups_every=0)
    with api:
        src = make_source(api, refresh_interval=300, details_refresh_interval=1200)
        src.refresh()
        read_at = {}
        for n in range(4):                        # 1200 s / 300 s: four refreshes
            api.clock.advance(300)
            before = len(api.requests)
            src.refresh()
            for p in detail_reads(new_paths(api, before)):
                read_at.setdefault(p, n)
    assert len(read_at) == 40                     # 40 disk listings, 10 a refresh
    assert sorted(read_at.values()) == sorted([0, 1, 2, 3] * 10)


# ---- stored bytes and the project -----------------------------------------------------------

def test_total_size_counts_for_storage_and_the_euuid_is_the_project(make_source):
    with open(os.path.join(SAMPLES, "openapi-examples.json"), encoding="utf-8") as f:
        example = json.load(f)["Image"]
    with FakeLinodeAPI("empty") as api:
        api.account = {"euuid": "E1AF5EEC-526F-487D-B317EBEB34C87D71"}
        # The specification's Image example, made private and replicated to three regions.
        api.add("images", dict(example, id="private/31337", is_public=False, vendor=None, eol=None,
                               created="2024-04-01T10:00:00", size=2500, total_size=7500,
                               regions=[{"region": r, "status": "available"} for r in ("us-east", "eu-west", "ap-south")]))
        snap = make_source(api).refresh()
    (img,) = snap.images
    assert (img.size_bytes, img.stored_bytes) == (2500 * MIB, 7500 * MIB)
    project = "E1AF5EEC-526F-487D-B317EBEB34C87D71"
    assert snap.project == project
    assert rows(snap, cloud_mod.IMAGES_BYTES) == {("akamai", project): 7500 * MIB}
    assert rows(snap, cloud_mod.IMAGE_SIZE) == {("akamai", project, "private/31337", "Debian 11", "", "available"):
                                                2500 * MIB}


def test_without_account_access_the_customer_header_names_the_account(make_source):
    with FakeLinodeAPI("empty") as api:
        api.account = {"euuid": "0B4A3F6C-2D1E-4F5A-9C8B7A6D5E4F3A2B"}
        api.account_scope = False
        snap = make_source(api).refresh()
    assert snap.project == "0B4A3F6C-2D1E-4F5A-9C8B7A6D5E4F3A2B"


# ---- rate limits -----------------------------------------------------------------------------

def test_a_429_on_an_instance_keeps_its_last_data_and_counts_it(make_source):
    waits = []
    with FakeLinodeAPI("account") as api:
        src = make_source(api, sleep=waits.append)
        first = src.refresh()
        inst = next(i for i in api.objects("instances") if i["id"] == 103)
        api.change("instances", 103, {"backups": dict(inst["backups"], last_successful=format_time(api.clock() + 60))})
        api.clock.advance(300)
        api.set_fault("rate_limited", path="/linode/instances/10", retry_after=20)
        snap = src.refresh()
    # Retry-After 20 s, waited for while the waits stay within half the 300 s interval.
    assert waits == [20.0] * 7
    # 101, 102 (running backups) and 103 (new last_successful) were due: none read, all kept.
    assert snap.details_pending == 3
    assert snap.disks == first.disks
    assert {j.job_id for j in snap.running_jobs} >= {"5012", "5004"}
    assert rows(snap, cloud_mod.DETAILS_PENDING) == {("akamai", "E1AF5EEC-526F-487D-B317EBEB34C87D71"): 3}


def test_the_published_limits_are_never_hit_and_the_picture_completes(make_source):
    """300 instances against 200 collection requests a minute: 300 disk listings do not fit one window."""
    window_clock = FakeClock(time.time())       # X-RateLimit-Reset is epoch seconds
    api = synthetic_api(300, clock=FakeClock(parse_time("2024-05-01T12:00:00")))
    api.rate_limiter = RateLimiter(clock=window_clock)
    with api:
        # Waits would exceed half the 60 s interval: each refresh reads one window's worth.
        src = make_source(api, sleep=window_clock.advance, wall=window_clock, refresh_interval=60,
                          details_refresh_interval=3600)
        pending = []
        for _ in range(8):
            snap = src.refresh()                  # raises on any failure
            pending.append(snap.details_pending)
            if snap.details_pending == 0:
                break
            api.clock.advance(60)
            window_clock.advance(60)
    assert api.rate_limiter.rejected == 0         # paced by X-RateLimit-Remaining: no 429 at all
    assert pending[0] > 0 and pending[-1] == 0
    assert pending == sorted(pending, reverse=True)
    assert len(snap.disks) == 600 and len(snap.servers) == 300
    assert len(pending) == 2                      # ~187 disk listings a window: two windows


def test_a_refresh_waits_for_the_window_within_half_its_interval(make_source):
    window_clock = FakeClock(time.time())
    api = synthetic_api(300, clock=FakeClock(parse_time("2024-05-01T12:00:00")))
    api.rate_limiter = RateLimiter(clock=window_clock)
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        window_clock.advance(seconds)
    with api:
        snap = make_source(api, sleep=sleep, wall=window_clock, refresh_interval=300).refresh()
    assert snap.details_pending == 0 and len(snap.disks) == 600
    assert api.rate_limiter.rejected == 0
    assert len(waits) == 1 and 1 < waits[0] <= 62          # one window reset (whole seconds, +1): 300 disk listings


def test_the_poller_comes_back_when_the_window_resets_while_details_are_pending(make_source):
    """A refresh out of budget is followed by the next one at the window's reset, not a whole interval later."""
    from exporter.poller import Poller
    window_clock = FakeClock(time.time())
    api = synthetic_api(300, clock=FakeClock(parse_time("2024-05-01T12:00:00")))
    api.rate_limiter = RateLimiter(clock=window_clock)
    with api:
        # Waits may add up to 60 s (half the interval): the ~61 s to the first reset is too long.
        src = make_source(api, sleep=window_clock.advance, wall=window_clock, refresh_interval=120)
        poller = Poller(src, "akamai", 120, 3600, clock=api.clock)
        assert poller.refresh_once()
        assert poller.snapshot.details_pending > 0
        first_delay = poller.next_delay()
        assert 1 <= first_delay <= 62 and first_delay == src.resume_in
        api.clock.advance(first_delay)
        window_clock.advance(first_delay)
        assert poller.refresh_once()                  # its listings fit the fresh window: no 429
        assert poller.snapshot.details_pending == 0
        assert poller.next_delay() == 120              # complete: back to the interval
    assert api.rate_limiter.rejected == 0


def test_the_rate_limiter_answers_as_the_api_documents():
    clock = FakeClock(1000.0)
    limiter = RateLimiter({"collection": (2, 60.0), "other": (5, 60.0)}, clock=clock)
    assert limiter.take("/v4/images") == (True, {"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": "1",
                                                 "X-RateLimit-Reset": "1060"})
    assert limiter.take("/v4/linode/instances/7/disks")[0]
    ok, headers = limiter.take("/v4/account/events")
    assert not ok and headers["Retry-After"] == "60" and headers["X-RateLimit-Remaining"] == "0"
    assert limiter.take("/v4/linode/instances/7/backups")[0]          # another class, its own window
    clock.advance(60)
    assert limiter.take("/v4/images")[0]
