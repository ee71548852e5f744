"""OpenStackSource against the fake cloud, through unpatched openstacksdk over HTTP.

The expected values below are written out from the scenario's story
(tests/fixtures/openstack/project.yaml), not computed from the fixture, so a
wrong reading of the API by the source fails these tests.
"""
from __future__ import annotations

import time
from collections import Counter

import pytest

from exporter.errors import SourceError
from exporter.models import FinishedJob, QuotaValue
from fakes.faults import Fault
from fakes.openstack_scenarios import load_scenario, synthetic_scenario
from openstack_cloud import (GIB, H, M, MIB, PROJECT_ID, START, TIMEOUT, Cloud, cloud,  # noqa: F401 - fixtures
                             make_cloud)

# openstacksdk warns about its own internals (proxy construction, influxdb), nothing this code calls.
pytestmark = pytest.mark.filterwarnings(r"ignore::PendingDeprecationWarning:openstack.*")

def running(snap):
    return {(j.job_id, j.kind, j.server_id, j.server_name, j.phase, j.started) for j in snap.running_jobs}


def finished(snap):
    return {(j.job_id, j.kind, j.server_id, j.started, j.finished, j.succeeded) for j in snap.finished_jobs}


# ---- the scenario, read exactly ----------------------------------------------------

def test_first_refresh_reads_the_project_exactly(cloud):
    snap = cloud.source().refresh()

    assert (snap.cloud, snap.project, snap.taken_at) == ("lab", "demo", START)
    assert Counter(i.status for i in snap.images) == {"active": 3, "saving": 1, "killed": 2, "queued": 2}
    assert "img-cirros" not in {i.image_id for i in snap.images}, "another project's public image"
    by_id = {i.image_id: i for i in snap.images}
    assert by_id["img-base"].size_bytes == 10 * GIB and by_id["img-base"].server_id == ""
    assert by_id["img-web-prev"].size_bytes == 3 * GIB and by_id["img-web-prev"].server_id == "srv-web"
    assert by_id["img-legacy-stuck"].size_bytes is None
    assert by_id["img-legacy-stuck"].created == START - 25 * H
    assert sum(i.size_bytes or 0 for i in snap.images) == 15 * GIB

    assert running(snap) == {
        ("img-legacy-stuck", "image", "srv-legacy", "legacy-1", "saving", START - 25 * H),
        ("img-web-today", "image", "srv-web", "web-1", "image_snapshot", START),
        ("vsnap-db-now", "volume_snapshot", "srv-db", "db-1", "creating", START),
    }
    assert finished(snap) == {
        ("img-web-prev", "image", "srv-web", START - 24 * H, START - 23.5 * H, True),
        ("img-app-try1", "image", "srv-app", START - 3 * H, START - 2 * H - 50 * M, False),
        ("img-app-try2", "image", "srv-app", START - 2 * H, START - 105 * M, False),
        ("vsnap-db-err", "volume_snapshot", "srv-db", START - 1 * H, START - 55 * M, False),
    }
    # img-web-old was created 20 days ago; its edit an hour ago is not a job finishing.
    failures = Counter(j.server_id for j in snap.finished_jobs if not j.succeeded and j.kind == "image")
    assert failures == {"srv-app": 2}

    assert {(s.server_id, s.name, s.boot_from_volume, s.backups_enabled) for s in snap.servers} == {
        ("srv-web", "web-1", False, None), ("srv-app", "app-1", False, None),
        ("srv-db", "db-1", True, None), ("srv-legacy", "legacy-1", False, None)}

    assert snap.quota.images == QuotaValue(10, "api")
    assert snap.quota.bytes == QuotaValue(20480 * MIB, "api")
    assert snap.quota.max_image_bytes is None       # neither the API, the config nor the profile has one


def test_the_scenario_moving_in_time(cloud):
    src = cloud.source()
    src.refresh()                                   # step 0: web-1's image queued

    cloud.fake.step()                               # +5m: saving; app-1's weekly backup queued
    snap = src.refresh()
    assert {(j.job_id, j.kind, j.phase, j.started) for j in snap.running_jobs} == {
        ("img-legacy-stuck", "image", "saving", START - 25 * H),
        ("img-web-today", "image", "image_uploading", START),
        ("img-app-weekly", "backup", "image_backup", START + 5 * M),
        ("vsnap-db-now", "volume_snapshot", "creating", START),
    }
    assert snap.quota.images == QuotaValue(10, "api") and len(snap.images) == 9   # nearly full

    cloud.fake.step()                               # +20m: web-1's image active, the volume snapshot done
    snap = src.refresh()
    assert {(j.job_id, j.phase) for j in snap.running_jobs} == {
        ("img-legacy-stuck", "saving"), ("img-app-weekly", "image_uploading")}
    done = {j.job_id: j for j in snap.finished_jobs if j.succeeded}
    assert done["img-web-today"].duration == 20 * M
    assert done["vsnap-db-now"] == FinishedJob("vsnap-db-now", "volume_snapshot", "srv-db",
                                               START, START + 20 * M, True)
    assert {i.image_id: i.size_bytes for i in snap.images}["img-web-today"] == 4 * GIB
    assert sum(i.size_bytes or 0 for i in snap.images) == 19 * GIB      # of 20 GiB

    cloud.fake.step()                               # +30m: the backup was deleted before it became active
    snap = src.refresh()
    assert running(snap) == {("img-legacy-stuck", "image", "srv-legacy", "legacy-1", "saving", START - 25 * H)}
    assert FinishedJob("img-app-weekly", "backup", "srv-app", START + 5 * M, START + 30 * M, False) \
        in snap.finished_jobs
    assert "img-app-weekly" not in {i.image_id for i in snap.images}
    snap_again = src.refresh()                      # still reported while inside the lookback
    assert finished(snap_again) == finished(snap)

    cloud.fake.step()                               # +50h: all but the stuck image left the lookback
    snap = src.refresh()
    assert snap.taken_at == START + 50 * H
    assert running(snap) == {("img-legacy-stuck", "image", "srv-legacy", "legacy-1", "saving", START - 25 * H)}
    assert snap.finished_jobs == ()


def test_a_job_vanishing_is_noticed_only_by_the_source_that_saw_it_running(cloud):
    # A source started after the deletion has no way to know; it must not invent a failure.
    cloud.fake.goto(3)
    snap = cloud.source().refresh()
    assert "img-app-weekly" not in {j.job_id for j in snap.finished_jobs}


def test_a_failed_refresh_does_not_lose_a_vanished_job(cloud):
    src = cloud.source()
    cloud.fake.goto(1)
    src.refresh()                                   # the backup is running
    cloud.fake.goto(3)
    cloud.fake.add_fault(Fault("error", r"/servers/detail$", 503, times=1))
    with pytest.raises(SourceError):
        src.refresh()                               # read the images (backup gone), then failed
    snap = src.refresh()
    assert [j.job_id for j in snap.finished_jobs if j.kind == "backup"] == ["img-app-weekly"]


# ---- quotas and limits ---------------------------------------------------------------

@pytest.mark.parametrize("usage_api", ["disabled", "missing"])
def test_without_unified_limits_quota_comes_from_config_then_profile(cloud, usage_api):
    cloud.fake.usage_api = usage_api
    snap = cloud.source(image_quota=30, max_image_size=40 * 10**9).refresh()
    assert snap.quota.images == QuotaValue(30, "config")
    assert snap.quota.bytes is None
    assert snap.quota.max_image_bytes == QuotaValue(40 * 10**9, "config")

    snap = cloud.source(profile="linode").refresh()
    assert snap.quota.images == QuotaValue(25, "profile")
    assert snap.quota.bytes == QuotaValue(150 * 10**9, "profile")
    assert snap.quota.max_image_bytes == QuotaValue(6 * 10**9, "profile")


def test_the_api_quota_wins_over_config(cloud):
    snap = cloud.source(image_quota=30, image_bytes_quota=10**12).refresh()
    assert snap.quota.images == QuotaValue(10, "api")
    assert snap.quota.bytes == QuotaValue(20480 * MIB, "api")


# ---- what goes over the wire -----------------------------------------------------------

def test_only_reads_and_only_the_projects_own_images(cloud):
    src = cloud.source()
    src.refresh()
    src.refresh()
    methods = Counter((m, p) for m, p, _, _ in cloud.fake.requests if m != "GET")
    assert methods == {("POST", "/identity/v3/auth/tokens"): 1}, "one token, reused"
    listings = [q for m, p, q, _ in cloud.fake.requests if p == "/image/v2/images"]
    assert listings and all(q["owner"] == PROJECT_ID for q in listings)
    assert all(q["limit"] == "1000" for m, p, q, _ in cloud.fake.requests if p.endswith(("images", "detail")))


def test_requests_are_pages_plus_a_constant(make_cloud):
    cloud = make_cloud(synthetic_scenario(images=2500, servers=1200))
    src = cloud.source()
    snap = src.refresh()
    first = Counter(p for _, p, _, _ in cloud.fake.requests)
    src.refresh()
    second = Counter(p for _, p, _, _ in cloud.fake.requests) - first
    # ceil(n / 1000) pages per listing, one page of hidden images, one usage read;
    # nothing per image or server.
    assert second == {"/image/v2/images": 3 + 1, "/compute/v2.1/servers/detail": 2,
                      f"/volume/v3/{PROJECT_ID}/snapshots/detail": 1, "/image/v2/info/usage": 1}
    # The first refresh adds Keystone's discovery, the token, and Glance's discovery (its
    # catalog entry has no version; Nova's and Cinder's do).
    assert first - second == {"/identity/v3": 1, "/identity/v3/auth/tokens": 1, "/image": 1}
    assert len(snap.images) == 2500 and len(snap.servers) == 1200
    assert len(snap.running_jobs) == 25             # every 100th image is saving


def test_small_pages_follow_every_next_link(cloud):
    snap = cloud.source(page_size=2).refresh()
    image_pages = [q.get("marker") for _, p, q, _ in cloud.fake.requests
                   if p == "/image/v2/images" and "os_hidden" not in q]
    # 8 images newest first, 2 a page, each page after the last id of the one before; the
    # last page is full, so the service links one more, empty page.
    assert image_pages == [None, "img-app-try2", "img-web-prev", "img-by-hand", "img-base"]
    server_pages = [q.get("marker") for _, p, q, _ in cloud.fake.requests if p.endswith("/servers/detail")]
    assert len(server_pages) == 3                   # 4 servers: 2 full pages and an empty one
    assert len(snap.images) == 8 and len(snap.servers) == 4


# ---- failures ------------------------------------------------------------------------------

FAULTS = [
    pytest.param(Fault("error", r"/v2/images$", 500), "http_5xx", id="500"),
    pytest.param(Fault("error", r"/v2/images$", 503), "http_5xx", id="503"),
    pytest.param(Fault("error", r"/servers/detail$", 502), "http_5xx", id="502-nova"),
    pytest.param(Fault("error", r"/v2/images$", 401, skip=1), "auth", id="401-mid-pagination"),
    pytest.param(Fault("error", r"/snapshots/detail$", 403), "auth", id="403-cinder"),
    pytest.param(Fault("error", r"/v2/images$", 429), "rate_limited", id="429"),
    pytest.param(Fault("error", r"/servers/detail$", 404), "http_4xx", id="404-nova"),
    pytest.param(Fault("error", r"/info/usage$", 500), "http_5xx", id="500-usage"),
    pytest.param(Fault("error", r"/auth/tokens$", 500), "http_5xx", id="500-keystone"),
    # openstacksdk swallows the cause of a failed version discovery: all we can say is "other".
    pytest.param(Fault("error", r"^/image$", 500), "other", id="500-glance-discovery"),
    pytest.param(Fault("malformed_json", r"/v2/images$", skip=1), "malformed", id="malformed-page-2"),
    pytest.param(Fault("malformed_json", r"/servers/detail$"), "malformed", id="malformed-nova"),
    pytest.param(Fault("malformed_json", r"/info/usage$"), "malformed", id="malformed-usage"),
    pytest.param(Fault("page_loop", r"/v2/images$"), "pagination", id="next-link-loops"),
    pytest.param(Fault("page_overlap", r"/servers/detail$"), "pagination", id="pages-overlap"),
    pytest.param(Fault("hang", r"/servers/detail$", skip=1), "timeout", id="hang-mid-pagination"),
    pytest.param(Fault("hang", r"/auth/tokens$"), "timeout", id="hang-keystone"),
    pytest.param(Fault("stall", r"/v2/images$"), "timeout", id="stall-in-body"),
    pytest.param(Fault("slow", r"/v2/images$", delay=3 * TIMEOUT), "timeout", id="slow"),
]


@pytest.mark.parametrize("fault, reason", FAULTS)
def test_a_fault_is_a_source_error_with_its_reason(make_cloud, fault, reason):
    cloud = make_cloud(load_scenario("project"))
    cloud.fake.add_fault(fault)
    src = cloud.source(page_size=2)
    t0 = time.monotonic()
    with pytest.raises(SourceError) as err:
        src.refresh()
    elapsed = time.monotonic() - t0
    assert err.value.reason == reason, str(err.value)
    assert fault.fired >= 1
    assert elapsed < TIMEOUT + 1.0, f"took {elapsed:.1f}s"
    assert_no_secrets(err.value, cloud)


def assert_no_secrets(err: SourceError, cloud: Cloud):
    text = str(err)
    assert text and all(secret not in text for secret in cloud.secrets()), text
    # The SDK's exception (URL, response body) must not ride along in a traceback either.
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


def test_a_next_chain_longer_than_max_pages_is_cut(cloud):
    with pytest.raises(SourceError) as err:
        cloud.source(page_size=2, max_pages=4).refresh()     # the images need 5 requests
    assert err.value.reason == "pagination"
    assert cloud.fake.paths().count("/image/v2/images") == 4


def test_rate_limited_passes_retry_after_to_the_poller(cloud):
    cloud.fake.add_fault(Fault("error", r"/servers/detail$", 429, headers={"Retry-After": "120"}))
    with pytest.raises(SourceError) as err:
        cloud.source().refresh()
    assert (err.value.reason, err.value.retry_after) == ("rate_limited", 120.0)


def test_wrong_password_is_auth(make_cloud):
    cloud = make_cloud(password="not-the-password")
    with pytest.raises(SourceError) as err:
        cloud.source().refresh()
    assert err.value.reason == "auth"
    assert "not-the-password" not in str(err.value)


@pytest.mark.parametrize("refreshed_before", [True, False], ids=["after-a-refresh", "from-the-start"])
def test_connection_refused_when_the_cloud_is_down(cloud, refreshed_before):
    src = cloud.source()
    if refreshed_before:
        src.refresh()                               # keep-alive connections are open now
    cloud.fake.stop()
    t0 = time.monotonic()
    with pytest.raises(SourceError) as err:
        src.refresh()
    assert err.value.reason == "connection"
    assert time.monotonic() - t0 < TIMEOUT + 1.0
    assert_no_secrets(err.value, cloud)


def test_a_slow_answer_inside_the_timeout_is_fine(cloud):
    cloud.fake.add_fault(Fault("slow", r"/v2/images$", delay=TIMEOUT / 4))
    assert len(cloud.source().refresh().images) == 8


def test_an_expired_token_mid_pagination_is_renewed(cloud):
    # keystoneauth answers one 401 by fetching a new token and retrying once.
    cloud.fake.add_fault(Fault("error", r"/v2/images$", 401, skip=1, times=1))
    snap = cloud.source(page_size=2).refresh()
    assert len(snap.images) == 8
    assert len(cloud.fake.tokens_issued) == 2


def test_a_token_revoked_between_refreshes_is_renewed(cloud):
    src = cloud.source()
    src.refresh()
    cloud.fake.expire_tokens()
    assert len(src.refresh().images) == 8
    assert len(cloud.fake.tokens_issued) == 2


def test_a_source_recovers_after_a_failed_refresh(cloud):
    src = cloud.source()
    cloud.fake.add_fault(Fault("error", r"/v2/images$", 503, times=1))
    with pytest.raises(SourceError):
        src.refresh()
    assert len(src.refresh().images) == 8


def test_a_broken_cloud_config_fails_refresh_not_construction(cloud):
    src = cloud.source(cloud="no-such-cloud")         # must not raise
    with pytest.raises(SourceError) as err:
        src.refresh()
    assert err.value.reason == "other" and "no-such-cloud" in str(err.value)


# ---- cloud shapes -------------------------------------------------------------------------

def test_a_cloud_without_block_storage(make_cloud):
    cloud = make_cloud(services=("image", "compute"))
    snap = cloud.source().refresh()
    assert {j.kind for j in snap.running_jobs} == {"image"}
    assert not any(p.startswith("/volume") for p in cloud.fake.paths())


def test_all_projects_as_admin_sees_every_project(make_cloud):
    sc = load_scenario("project")
    sc.objects["servers"]["srv-other"] = {"name": "other-1", "image": "img-base",
                                          "project": "0000000000000000000000000000beef"}
    cloud = make_cloud(sc, admin=True)
    snap = cloud.source(all_projects=True, image_quota=100).refresh()
    assert "srv-other" in {s.server_id for s in snap.servers}
    # Another project's public image is the catalogue, not this account's imaging (issue 14 point 7).
    assert "img-cirros" not in {i.image_id for i in snap.images}
    # Glance's usage is the token's project only: not a quota for the whole cloud.
    assert snap.quota.images == QuotaValue(100, "config")
    servers_q = [q for _, p, q, _ in cloud.fake.requests if p.endswith("/servers/detail")]
    assert servers_q and all(q.get("all_tenants") == "1" for q in servers_q)
    assert "/image/v2/info/usage" not in cloud.fake.paths()


def test_all_projects_without_admin_is_an_auth_error(cloud):
    with pytest.raises(SourceError) as err:
        cloud.source(all_projects=True).refresh()
    assert err.value.reason == "auth"
