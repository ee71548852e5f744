"""LinodeSource through the unpatched linode_api4 SDK, over HTTP, against the fake Linode API.

The scenario (tests/fixtures/linode/account.yaml) is an account at
2024-05-01T12:00:00 UTC; the expected values below are read off that file.
"""
import json
import time
import traceback
from collections import Counter

import pytest

from exporter import profiles
from exporter.config import cloud_config
from exporter.errors import SourceError
from exporter.models import Disk, FinishedJob, Image, Quota, QuotaValue, RunningJob, Server
from exporter.sources.linode.source import LinodeSource
from fakes.linode_api import FakeLinodeAPI, parse_time as at

TIMEOUT = 0.3           # request_timeout of every source here
MIB = 2 ** 20
GB = 10 ** 9


@pytest.fixture
def api():
    with FakeLinodeAPI("account") as fake:
        yield fake


@pytest.fixture
def source(api, monkeypatch):
    """Factory: source(**cloud_config overrides) -> LinodeSource on the fake's clock."""
    monkeypatch.setenv("LINODE_TOKEN", api.token)
    made = []

    def make(**overrides):
        cfg = cloud_config("linode", "akamai", api_url=api.url, request_timeout=TIMEOUT, **overrides)
        made.append(LinodeSource(cfg, profiles.get("linode"), clock=api.clock))
        return made[-1]
    yield make
    for s in made:
        s.close()


def imagize_events(count, first_id=100000):
    """Finished disk_imagize events of batch-1 inside the lookback, enough to need several pages."""
    return [{"id": first_id + n, "action": "disk_imagize", "status": "finished", "created": "2024-05-01T06:00:00",
             "duration": 60.0, "entity": {"id": 103, "label": "batch-1", "type": "linode",
                                          "url": "/v4/linode/instances/103"},
             "secondary_entity": None, "percent_complete": 100, "rate": None, "read": True, "seen": True,
             "time_remaining": None, "username": "ops", "message": None} for n in range(count)]


def refresh_error(src) -> SourceError:
    with pytest.raises(SourceError) as info:
        src.refresh()
    return info.value


def assert_no_token(err, token):
    assert token not in repr(err)
    assert token not in "".join(traceback.format_exception(err))


# ---- the snapshot -------------------------------------------------------------

def test_snapshot_matches_the_scenario(source):
    snap = source().refresh()

    # project: the account's euuid (GET /account)
    assert (snap.cloud, snap.project, snap.taken_at) == ("akamai", "E1AF5EEC-526F-487D-B317EBEB34C87D71",
                                                         at("2024-05-01T12:00:00"))
    images = {i.image_id: i for i in snap.images}
    assert len(images) == 24 and all(i.startswith("private/") for i in images)   # public images filtered out
    assert Counter(i.status for i in snap.images) == {"available": 22, "creating": 1, "pending_upload": 1}
    assert sum(i.size_bytes for i in snap.images) == 74425 * MIB
    assert images["private/20021"] == Image("private/20021", "web-1-2024-04-30", "available", 5400 * MIB,
                                            at("2024-04-30T09:00:00"), server_id="101", stored_bytes=5400 * MIB)
    assert images["private/20024"] == Image("private/20024", "db-1-pre-migration", "creating", 0,
                                            at("2024-05-01T11:30:00"), server_id="102", stored_bytes=0)
    assert images["private/20022"].server_id == ""          # uploaded, not made from a disk
    assert snap.quota == Quota(images=QuotaValue(25, "profile"), bytes=QuotaValue(150 * GB, "profile"),
                               max_image_bytes=QuotaValue(6 * GB, "profile"))

    # last_backup_success is the instance's backups.last_successful, even when older than the lookback.
    assert snap.servers == (
        Server("101", "web-1", backups_enabled=True, last_backup_success=at("2024-05-01T02:41:00")),
        Server("102", "db-1", backups_enabled=True, last_backup_success=at("2024-04-29T03:52:00")),
        Server("103", "batch-1", backups_enabled=True, last_backup_success=at("2024-04-28T02:35:00")),
        Server("104", "scratch-1", backups_enabled=False))
    assert len(snap.disks) == 8
    over_limit = [d for d in snap.disks if d.size_bytes > 6 * GB]
    assert over_limit == [Disk("102", "db-1", "1011", "Debian 12 Disk", 8192 * MIB)]

    assert set(snap.running_jobs) == {
        RunningJob("5012", "backup", "102", "db-1", "running", at("2024-04-30T11:00:00")),
        RunningJob("5004", "backup", "101", "web-1", "running", at("2024-05-01T11:50:00")),
        RunningJob("private/20024", "image", "102", "db-1", "creating", at("2024-05-01T11:30:00")),
        RunningJob("private/20023", "image", "", "", "pending_upload", at("2024-05-01T10:00:00")),
    }
    assert set(snap.finished_jobs) == {
        # image jobs, from events; 8002 started before the 48 h lookback but finished inside it
        FinishedJob("private/20018", "image", "", at("2024-04-29T11:00:00"), at("2024-04-29T13:00:00"), True),
        FinishedJob("private/20021", "image", "101", at("2024-04-30T09:00:00"), at("2024-04-30T09:07:00"), True),
        FinishedJob("private/20025", "image", "102", at("2024-04-30T14:00:00"), at("2024-04-30T14:01:35"), False),
        FinishedJob("private/20026", "image", "102", at("2024-04-30T14:35:00"), at("2024-04-30T14:36:28"), False),
        FinishedJob("private/20022", "image", "", at("2024-04-30T20:00:00"), at("2024-04-30T20:30:00"), True),
        # backups, from the Backup Service
        FinishedJob("5001", "backup", "101", at("2024-05-01T02:00:00"), at("2024-05-01T02:41:00"), True),
        FinishedJob("5003", "backup", "101", at("2024-04-30T16:00:00"), at("2024-04-30T16:12:30"), True),
        FinishedJob("5021", "backup", "103", at("2024-04-30T02:00:00"), at("2024-04-30T02:17:00"), False),
        FinishedJob("5022", "backup", "103", at("2024-05-01T02:00:00"), at("2024-05-01T02:09:00"), False),
    }


def test_the_scenario_shows_what_the_alerts_are_for(source):
    snap = source().refresh()
    running = {j.job_id: j for j in snap.running_jobs}
    assert snap.taken_at - running["5012"].started == 25 * 3600                  # backup running for 25 h
    failures = Counter((j.server_id, j.kind) for j in snap.finished_jobs if not j.succeeded)
    assert failures == {("103", "backup"): 2, ("102", "image"): 2}              # failed twice
    assert len(snap.images) == snap.quota.images.value - 1                      # 24 of 25


def test_moving_clock_finishes_jobs_and_starts_new_ones(api, source):
    src = source()
    src.refresh()
    api.clock.advance(3600)
    snap = src.refresh()

    running = {j.job_id: j for j in snap.running_jobs}
    assert set(running) == {"5012", "private/20023", "private/20027"}
    assert snap.taken_at - running["5012"].started == 26 * 3600
    assert running["private/20027"] == RunningJob("private/20027", "image", "103", "batch-1", "creating",
                                                  at("2024-05-01T12:40:00"))
    assert FinishedJob("private/20024", "image", "102", at("2024-05-01T11:30:00"), at("2024-05-01T12:30:00"),
                       True) in snap.finished_jobs
    assert FinishedJob("5004", "backup", "101", at("2024-05-01T11:50:00"), at("2024-05-01T12:20:00"),
                       True) in snap.finished_jobs
    assert len(snap.images) == 25                                                # the account is now full


def test_lookback_bounds_finished_jobs_and_the_event_query(api, source):
    snap = source(lookback=12 * 3600).refresh()
    assert {j.job_id for j in snap.finished_jobs} == {"5001", "5022"}
    events = [r for r in api.requests if r.path == "/v4/account/events"]
    # lookback plus the 24 h a job may run before it counts as stuck
    assert json.loads(events[0].headers["X-Filter"])["+and"][1] == {"created": {"+gte": "2024-04-30T00:00:00"}}


def test_configured_quota_wins_over_the_profile(source):
    snap = source(image_quota=50, image_bytes_quota=500 * GB, max_image_size=10 * GB).refresh()
    assert snap.quota == Quota(images=QuotaValue(50, "config"), bytes=QuotaValue(500 * GB, "config"),
                               max_image_bytes=QuotaValue(10 * GB, "config"))


def test_empty_account(monkeypatch):
    with FakeLinodeAPI("empty") as fake:
        monkeypatch.setenv("LINODE_TOKEN", fake.token)
        src = LinodeSource(cloud_config("linode", "new", api_url=fake.url, request_timeout=TIMEOUT),
                           profiles.get("linode"), clock=fake.clock)
        snap = src.refresh()
        src.close()
    assert (snap.images, snap.servers, snap.disks, snap.running_jobs, snap.finished_jobs) == ((),) * 5
    assert snap.quota.images == QuotaValue(25, "profile")
    # The three listings and /account, which this token may not read (403): project stays "".
    assert [r.path for r in fake.requests] == ["/v4/images", "/v4/linode/instances", "/v4/account/events",
                                               "/v4/account"]
    assert snap.project == "" and snap.details_pending == 0


# ---- requests -----------------------------------------------------------------

def test_requests_are_read_only_few_and_use_the_largest_pages(api, source):
    source().refresh()
    assert {r.method for r in api.requests} == {"GET"}
    assert sorted(api.paths()) == sorted(
        ["/v4/images", "/v4/linode/instances", "/v4/account/events", "/v4/account"]
        + [f"/v4/linode/instances/{i}/disks" for i in (101, 102, 103, 104)]
        + [f"/v4/linode/instances/{i}/backups" for i in (101, 102, 103)])    # 104 has no Backup Service
    assert all(r.headers["Authorization"] == f"Bearer {api.token}" for r in api.requests)
    assert all(r.query == {"page_size": "500"} for r in api.requests
               if not r.path.endswith(("/backups", "/account")))
    filters = {r.path: json.loads(r.headers["X-Filter"]) for r in api.requests if "X-Filter" in r.headers}
    assert filters == {
        "/v4/images": {"is_public": False},
        "/v4/account/events": {"+and": [{"+or": [{"action": a} for a in (
            "disk_imagize", "image_upload", "disk_create", "disk_delete", "disk_resize", "disk_update",
            "disk_duplicate", "linode_rebuild", "linode_resize", "linode_migrate", "linode_migrate_datacenter",
            "linode_clone", "backups_restore", "backups_enable", "backups_cancel", "linode_snapshot")]},
            {"created": {"+gte": "2024-04-28T12:00:00"}}]},
    }


def test_every_page_is_read_with_the_same_filter(api, source):
    for e in imagize_events(1100):
        api.add("events", e)
    snap = source().refresh()
    pages = [r for r in api.requests if r.path == "/v4/account/events"]
    assert [r.query for r in pages] == [{"page_size": "500"}, {"page": "2", "page_size": "500"},
                                        {"page": "3", "page_size": "500"}]
    assert len({r.headers["X-Filter"] for r in pages}) == 1
    image_jobs = [j for j in snap.finished_jobs if j.kind == "image"]
    assert len(image_jobs) == 5 + 1100
    assert FinishedJob("event/100000", "image", "103", at("2024-05-01T06:00:00"), at("2024-05-01T06:01:00"),
                       True) in image_jobs


# ---- failures -----------------------------------------------------------------

def test_missing_token_is_an_auth_error_without_any_request(api, source, monkeypatch):
    monkeypatch.delenv("LINODE_TOKEN")
    err = refresh_error(source())
    assert (err.reason, str(err)) == ("auth", "environment variable LINODE_TOKEN is not set")
    assert api.requests == []


def test_token_comes_from_the_configured_variable(api, source, monkeypatch):
    monkeypatch.setenv("ACME_LINODE_TOKEN", api.token)
    monkeypatch.delenv("LINODE_TOKEN")
    assert len(source(token_env="ACME_LINODE_TOKEN").refresh().images) == 24


def test_wrong_token_is_an_auth_error_that_does_not_show_it(api, source, monkeypatch):
    monkeypatch.setenv("LINODE_TOKEN", "wrong-4c1d8e0f9a7b6e5d")
    err = refresh_error(source())
    assert err.reason == "auth"
    assert str(err) == "listing private images: GET /v4/images?page_size=500: HTTP 401 Invalid Token"
    assert_no_token(err, "wrong-4c1d8e0f9a7b6e5d")


# (fault, parameters, reason, text the message shows)
FAULTS = [
    ("error", {"status": 500}, "http_5xx", "GET /v4/images?page_size=500: HTTP 500 Internal Server Error"),
    ("error", {"status": 503}, "http_5xx", "HTTP 503 Service Unavailable"),
    ("error", {"status": 403}, "auth", "HTTP 403"),
    ("error", {"status": 404}, "http_4xx", "HTTP 404 Not found"),
    ("rate_limited", {"retry_after": 120}, "rate_limited", "HTTP 429 Too Many Requests (Retry-After 120 s)"),
    ("malformed_json", {}, "malformed", "listing private images: the answer is not valid JSON"),
    ("missing_data", {}, "malformed", "lacks the fields"),
    ("slow", {"delay": 4 * TIMEOUT}, "timeout", "GET /v4/images?page_size=500: no answer within 0.3 s"),
    ("hang", {}, "timeout", "no answer within 0.3 s"),
    ("refused", {}, "connection", "GET /v4/images?page_size=500: connection refused"),
]


@pytest.mark.parametrize("fault,params,reason,text", FAULTS, ids=[f"{f[0]}-{f[2]}" for f in FAULTS])
def test_fault_fails_the_refresh_at_the_first_request(api, source, fault, params, reason, text):
    src = source()
    api.set_fault(fault, **params)
    started = time.monotonic()
    err = refresh_error(src)
    elapsed = time.monotonic() - started

    assert err.reason == reason
    assert text in str(err)
    assert elapsed < TIMEOUT + 0.5              # no retries, no sleeping for Retry-After
    assert len(api.requests) == (0 if fault == "refused" else 1)
    assert_no_token(err, api.token)


def test_rate_limit_hands_retry_after_to_the_poller(api, source):
    api.set_fault("rate_limited", retry_after=120)
    assert refresh_error(source()).retry_after == 120


@pytest.mark.parametrize("fault,reason,text", [
    ("auth_mid_pagination", "auth", "GET /v4/account/events?page=2&page_size=500: HTTP 401 Invalid Token"),
    ("page_loop", "pagination", "listing events: the API returned 101099 twice; its pages repeat"),
    ("pages_grow", "pagination", "the number of pages or items changed between pages"),
    ("short_page", "pagination", "listing events: read 750 of the 1110 items the API announced"),
])
def test_pagination_fault(api, source, fault, reason, text):
    for e in imagize_events(1100):
        api.add("events", e)
    api.set_fault(fault)
    err = refresh_error(source())
    assert err.reason == reason
    assert text in str(err)
    assert_no_token(err, api.token)


def test_fault_in_one_instance_names_it(api, source):
    api.set_fault("error", path="/linode/instances/102/backups", status=502)
    err = refresh_error(source())
    assert err.reason == "http_5xx"
    assert str(err) == "reading the backups of instance 102: GET /v4/linode/instances/102/backups: HTTP 502 Error"


def test_token_echoed_by_the_api_is_scrubbed(api, source):
    api.set_fault("error", status=400, message=f"Bad header: Authorization: Bearer {api.token}")
    err = refresh_error(source())
    assert str(err) == ("listing private images: GET /v4/images?page_size=500: "
                        "HTTP 400 Bad header: Authorization: Bearer <token>")
    assert_no_token(err, api.token)


def test_bad_field_value_is_malformed(api, source):
    api.change("images", api.objects("images")[0]["id"], {"size": "big"})
    err = refresh_error(source())
    assert err.reason == "malformed"
    assert str(err).startswith("listing private images: unexpected data (ValueError")


def test_slow_answers_inside_the_timeout_are_fine(api, source):
    api.set_fault("slow", path="/images", delay=TIMEOUT / 2)
    assert len(source().refresh().images) == 24


@pytest.mark.parametrize("fault", ["hang", "refused", "error"])
def test_the_same_source_recovers_when_the_api_does(api, source, fault):
    src = source()
    api.set_fault(fault)
    refresh_error(src)
    api.clear_faults()
    assert len(src.refresh().images) == 24


# ---- the fake itself ----------------------------------------------------------

def test_fake_speaks_the_api_wire_format(api):
    import urllib.error
    import urllib.request

    def get(path, token=api.token, method="GET"):
        req = urllib.request.Request(api.url + path, method=method,
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    assert get("/images", token="nope") == (401, {"errors": [{"reason": "Invalid Token"}]})
    status, body = get("/images", token=None)                                # anonymous: public images only
    assert status == 200 and {i["id"] for i in body["data"]} == {"linode/debian12", "linode/ubuntu22.04",
                                                                 "linode/alpine3.19"}
    status, body = get("/linode/instances?page=2&page_size=25")
    assert (status, body["data"], body["page"], body["pages"], body["results"]) == (200, [], 2, 1, 4)
    assert get("/linode/instances?page_size=10")[0] == 400
    assert get("/linode/instances", method="DELETE")[0] == 405
