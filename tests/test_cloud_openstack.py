"""Cloud mode for OpenStack, end to end: the exporter process, unpatched openstacksdk and the fake cloud.

The exporter runs as a real process with a temporary clouds.yaml
(OS_CLIENT_CONFIG_FILE) that points at fake Keystone/Glance/Nova/Cinder
servers on 127.0.0.1. The fakes run live: each scenario step is moved so
that its time is the real time now, because the exporter runs on the real
clock. Expected values are written out from the story of
tests/fixtures/openstack/project.yaml, relative to the step's start time S.
"""
from __future__ import annotations

import time
from collections import Counter

import pytest
import yaml

from conftest import samples, wait_until
from fakes.faults import Fault
from fakes.openstack_api import FakeOpenStack
from fakes.openstack_scenarios import load_scenario, project_scenario, synthetic_scenario
from fakes.scenario import Scenario
from openstack_cloud import fake_entry

M, H = 60.0, 3600.0
GIB = 2**30
ARGS = ["--no-collector.host"]


@pytest.fixture
def project():
    fake = FakeOpenStack(load_scenario("project"), live=True).start()
    yield fake
    fake.stop()


def clouds_env(tmp_path, fakes: dict) -> dict:
    """A clouds.yaml with one entry per fake (named like the cloud), and the env that points at it."""
    entries = {name: fake_entry(f) for name, f in fakes.items()}
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": entries}))
    return {"OS_CLIENT_CONFIG_FILE": str(path)}


def cloud_config(name="lab", **extra):
    return {"name": name, "provider": "openstack", "cloud": name, "refresh_interval": "1s",
            "request_timeout": "1s", **extra}


def start(exporter_process, tmp_path, fakes: dict, clouds=None, args=()):
    clouds = clouds or [cloud_config(name) for name in fakes]
    exp = exporter_process({"clouds": clouds}, args=ARGS + list(args), env=clouds_env(tmp_path, fakes))

    def published(m):
        # Up, and the refresh's data served (see test_a_scrape_that_says_up_has_the_data).
        return all(up(m, c["name"]) == 1 and samples(m, "imaging_images_bytes", cloud=c["name"]) for c in clouds)
    wait_until(lambda: published(exp.scrape()), timeout=30, what="the first refresh")
    return exp


def up(m, cloud):
    v = list(samples(m, "imaging_source_up", source="openstack", cloud=cloud).values())
    return v[0] if v else None


def value(m, name, **labels):
    got = samples(m, name, **labels)
    assert len(got) == 1, (name, labels, got)
    return next(iter(got.values()))


def by(m, name, *keys, **labels):
    """{label value(s): sample value} of one metric."""
    out = {}
    for lbl, v in samples(m, name, **labels).items():
        d = dict(lbl)
        k = tuple(d[key] for key in keys)
        out[k[0] if len(k) == 1 else k] = v
    return out


def jobs(m, cloud="lab"):
    """{(server_id, server_name, kind, job_id, phase): started} of the running jobs."""
    return by(m, "imaging_job_started_timestamp_seconds", "server_id", "server_name", "kind", "job_id", "phase",
              cloud=cloud)


def histogram(m, kind, cloud="lab"):
    """(count, sum, {le: cumulative}) of imaging_job_duration_seconds for one kind."""
    return (value(m, "imaging_job_duration_seconds_count", cloud=cloud, kind=kind),
            value(m, "imaging_job_duration_seconds_sum", cloud=cloud, kind=kind),
            by(m, "imaging_job_duration_seconds_bucket", "le", cloud=cloud, kind=kind))


def refreshes_later(exp, n=2, cloud="lab"):
    """Wait until the exporter has refreshed ``n`` more times (each success moves its timestamp)."""
    seen = [value(exp.scrape(), "imaging_source_last_success_timestamp_seconds", cloud=cloud)]

    def moved():
        t = value(exp.scrape(), "imaging_source_last_success_timestamp_seconds", cloud=cloud)
        if t != seen[-1]:
            seen.append(t)
        return len(seen) > n
    wait_until(moved, timeout=10 + 3 * n, what=f"{n} more refreshes")
    return exp.scrape()


# ---- the scenario, exactly ----------------------------------------------------------------------

def test_metrics_match_the_scenario_as_it_moves(project, exporter_process, tmp_path):
    exp = start(exporter_process, tmp_path, {"lab": project})
    scenario_start = project.scenario.start   # step 0, moved to the real time
    m = exp.scrape()

    assert by(m, "imaging_images", "status", cloud="lab", project="demo") == {
        "active": 3, "saving": 1, "killed": 2, "queued": 2}            # not the other project's cirros
    assert value(m, "imaging_images_bytes", cloud="lab", project="demo") == 15 * GIB
    assert by(m, "imaging_quota_images", "source", cloud="lab") == {"api": 10}
    assert by(m, "imaging_quota_bytes", "source", cloud="lab") == {"api": 20 * GIB}
    # Glance's own usage: its 8 images but the 2 killed ones; 10 + 3 + 2 GiB.
    assert by(m, "imaging_quota_images_used", "source", cloud="lab") == {"api": 6}
    assert by(m, "imaging_quota_bytes_used", "source", cloud="lab") == {"api": 15 * GIB}
    assert by(m, "imaging_source_part_up", "part", cloud="lab") == {"volume_snapshots": 1}
    assert samples(m, "imaging_image_max_size_bytes", cloud="lab") == {}   # no API, config or profile value
    assert jobs(m) == {
        ("srv-legacy", "legacy-1", "image", "img-legacy-stuck", "saving"): scenario_start - 25 * H,
        ("srv-web", "web-1", "image", "img-web-today", "image_snapshot"): scenario_start,      # Nova's task state
        ("srv-db", "db-1", "volume_snapshot", "vsnap-db-now", "creating"): scenario_start,
    }
    # The start times are real times: legacy-1's image has been saving for 25 hours now.
    stuck = jobs(m)[("srv-legacy", "legacy-1", "image", "img-legacy-stuck", "saving")]
    assert time.time() - stuck == pytest.approx(25 * H, abs=120)
    assert by(m, "imaging_jobs_running", "kind", cloud="lab") == {"image": 2, "backup": 0, "volume_snapshot": 1}
    assert by(m, "imaging_job_failures", "server_id", "kind", cloud="lab") == {
        ("srv-app", "image"): 2, ("srv-db", "volume_snapshot"): 1}
    assert by(m, "imaging_job_last_failure_timestamp_seconds", "server_id", "kind", cloud="lab") == {
        ("srv-app", "image"): scenario_start - 1 * H - 45 * M, ("srv-db", "volume_snapshot"): scenario_start - 55 * M}
    assert by(m, "imaging_server_boot_from_volume", "server_id", "server_name", cloud="lab") == {
        ("srv-db", "db-1"): 1, ("srv-web", "web-1"): 0, ("srv-app", "app-1"): 0, ("srv-legacy", "legacy-1"): 0}
    assert by(m, "imaging_job_last_success_timestamp_seconds", "server_id", "kind", cloud="lab") == {
        ("srv-web", "image"): scenario_start - 23.5 * H}
    assert value(m, "imaging_job_last_duration_seconds", cloud="lab", server_id="srv-web", kind="image") == 30 * M
    count, total, buckets = histogram(m, "image")
    assert (count, total) == (1, 30 * M)              # web-1's image of yesterday
    assert buckets["900.0"] == 0 and buckets["1800.0"] == 1 and buckets["+Inf"] == 1
    assert by(m, "imaging_job_duration_seconds_count", "kind", cloud="lab") == {"image": 1}
    assert value(m, "imaging_source_refresh_interval_seconds", cloud="lab") == 1

    # +5m: web-1's image is uploading; app-1's weekly backup is queued (Nova: image_backup).
    project.step()
    scenario_start = project.scenario.start
    wait_until(lambda: ("srv-app", "app-1", "backup", "img-app-weekly", "image_backup") in jobs(exp.scrape()),
               timeout=10, what="step 1")
    m = exp.scrape()
    assert jobs(m) == {
        ("srv-legacy", "legacy-1", "image", "img-legacy-stuck", "saving"): scenario_start - 25 * H,
        ("srv-web", "web-1", "image", "img-web-today", "image_uploading"): scenario_start,
        ("srv-app", "app-1", "backup", "img-app-weekly", "image_backup"): scenario_start + 5 * M,
        ("srv-db", "db-1", "volume_snapshot", "vsnap-db-now", "creating"): scenario_start,
    }
    assert by(m, "imaging_jobs_running", "kind", cloud="lab") == {"image": 2, "backup": 1, "volume_snapshot": 1}
    assert sum(samples(m, "imaging_images", cloud="lab").values()) == 9          # of 10
    assert histogram(m, "image")[:2] == (1, 30 * M)

    # +20m: web-1's image is active (4 GiB, 20 minutes), the volume snapshot is done.
    project.step()
    scenario_start = project.scenario.start
    wait_until(lambda: value(exp.scrape(), "imaging_jobs_running", cloud="lab", kind="image") == 1,
               timeout=10, what="step 2")
    m = exp.scrape()
    assert jobs(m) == {
        ("srv-legacy", "legacy-1", "image", "img-legacy-stuck", "saving"): scenario_start - 25 * H,
        ("srv-app", "app-1", "backup", "img-app-weekly", "image_uploading"): scenario_start + 5 * M,
    }
    assert value(m, "imaging_images_bytes", cloud="lab") == 19 * GIB             # of 20 GiB
    assert by(m, "imaging_job_last_success_timestamp_seconds", "server_id", "kind", cloud="lab") == {
        ("srv-web", "image"): scenario_start + 20 * M, ("srv-db", "volume_snapshot"): scenario_start + 20 * M}
    assert by(m, "imaging_job_last_duration_seconds", "server_id", "kind", cloud="lab") == {
        ("srv-web", "image"): 20 * M, ("srv-db", "volume_snapshot"): 20 * M}
    expected = {"image": (2, 50 * M), "volume_snapshot": (1, 20 * M)}
    assert {k: histogram(m, k)[:2] for k in expected} == expected
    assert histogram(m, "image")[2]["900.0"] == 0 and histogram(m, "image")[2]["1800.0"] == 2
    assert histogram(m, "volume_snapshot")[2]["900.0"] == 0 and histogram(m, "volume_snapshot")[2]["1800.0"] == 1

    # +30m: app-1's backup was deleted before it became active: a failed backup, seen by this process.
    project.step()
    wait_until(lambda: samples(exp.scrape(), "imaging_job_failures", cloud="lab", server_id="srv-app",
                               kind="backup"), timeout=10, what="step 3")
    m = exp.scrape()
    assert value(m, "imaging_job_failures", cloud="lab", server_id="srv-app", kind="backup") == 1
    assert time.time() - value(m, "imaging_job_last_failure_timestamp_seconds", cloud="lab", server_id="srv-app",
                               kind="backup") < 30
    assert by(m, "imaging_jobs_running", "kind", cloud="lab") == {"image": 1, "backup": 0, "volume_snapshot": 0}

    # Each job is observed once: the same jobs in every refresh do not count again ...
    m = refreshes_later(exp, 2)
    assert {k: histogram(m, k)[:2] for k in expected} == expected
    # ... nor after a restart with the same state file.
    exp.stop()
    assert "Traceback" not in exp.log()
    exp = start(exporter_process, tmp_path, {"lab": project})
    m = refreshes_later(exp, 1)
    assert {k: histogram(m, k)[:2] for k in expected} == expected
    assert by(m, "imaging_job_last_duration_seconds", "server_id", "kind", cloud="lab") == {
        ("srv-web", "image"): 20 * M, ("srv-db", "volume_snapshot"): 20 * M}


def test_a_scrape_that_says_up_has_the_data(exporter_process, tmp_path):
    """The scrape that first says imaging_source_up 1 also has that refresh's images.

    Scraped as fast as possible from the start, twice, against enough images
    (1010) that rendering them takes a while.
    """
    with FakeOpenStack(synthetic_scenario(images=1010, servers=5), live=True) as fake:
        env = clouds_env(tmp_path, {"lab": fake})
        for _ in range(2):
            exp = exporter_process({"clouds": [cloud_config()]}, args=ARGS, env=env)

            def first_up():
                m = exp.scrape()
                return m if up(m, "lab") == 1 else None
            m = wait_until(first_up, timeout=30, interval=0, what="the first refresh")
            assert sum(samples(m, "imaging_images", cloud="lab").values()) == 1010, \
                "imaging_source_up said 1 before the refresh's data was served"
            exp.stop()


# ---- faults --------------------------------------------------------------------------------------

FAULTS = [
    ("500", lambda: Fault("error", r"/v2/images$", 500), "http_5xx"),
    ("503", lambda: Fault("error", r"/servers/detail$", 503), "http_5xx"),
    ("401-mid-pagination", lambda: Fault("error", r"/v2/images$", 401, skip=1), "auth"),
    ("slow", lambda: Fault("slow", r"/v2/images$", delay=3), "timeout"),
    ("hang", lambda: Fault("hang", r"/servers/detail$"), "timeout"),
    ("malformed", lambda: Fault("malformed_json", r"/v2/images$"), "malformed"),
    ("next-link-loops", lambda: Fault("page_loop", r"/servers/detail$"), "pagination"),
    ("refused", None, "connection"),
]


def test_faults_keep_the_last_good_data_and_recover(exporter_process, tmp_path):
    # More images than one page (1000), so that a fault can strike the images' second page.
    with FakeOpenStack(synthetic_scenario(images=1010, servers=5), live=True) as fake:
        exp = start(exporter_process, tmp_path, {"lab": fake})
        m = exp.scrape()
        good = {n: samples(m, n, cloud="lab") for n in ("imaging_images", "imaging_images_bytes",
                                                          "imaging_jobs_running", "imaging_quota_images")}
        assert by(m, "imaging_images", "status", cloud="lab") == {"active": 999, "saving": 11}
        for name, make, reason in FAULTS:
            errors_before = value(exp.scrape(), "imaging_source_refresh_errors_total", cloud="lab", reason=reason)
            requests_before = len(fake.requests)
            fault = None
            if make is None:
                fake.refuse()
            else:
                fault = fake.add_fault(make())
            wait_until(lambda: up(exp.scrape(), "lab") == 0, timeout=15, what=f"up 0 under {name}")
            if fault is not None and fault.mode in ("hang", "slow"):
                # Scrape right after the fault struck again: the exporter is waiting on the API now.
                fired = fault.fired
                wait_until(lambda: fault.fired > fired, timeout=10, what=f"{name} to strike again")
            t = time.monotonic()
            m = exp.scrape()
            assert time.monotonic() - t < 0.5, f"a scrape waited on the API under {name}"
            assert {n: samples(m, n, cloud="lab") for n in good} == good, f"{name} changed the published data"
            assert value(m, "imaging_source_refresh_errors_total", cloud="lab", reason=reason) > errors_before, \
                (name, exp.log()[-2000:])
            assert up(m, "lab") == 0
            if name == "401-mid-pagination":
                later = fake.requests[requests_before:]
                assert any(p == "/image/v2/images" and "marker" in q for _, p, q, _ in later), "page 2 was asked for"
                assert any(mth == "POST" for mth, _, _, _ in later), "keystoneauth renewed the token, in vain"
            fake.clear_faults()
            fake.accept()
            wait_until(lambda: up(exp.scrape(), "lab") == 1, timeout=15, what=f"recovery after {name}")
            assert {n: samples(exp.scrape(), n, cloud="lab") for n in good} == good
        assert exp.proc.poll() is None
        assert {(mth, p) for mth, p, _, _ in fake.requests if mth != "GET"} == {("POST", "/identity/v3/auth/tokens")}
        log = exp.log()
        assert "Traceback" not in log
        for reason in {r for _, _, r in FAULTS}:
            assert f"refresh failed ({reason})" in log


# ---- read-only, and no secrets -------------------------------------------------------------------

def test_only_get_requests_and_no_secret_leaks(project, exporter_process, tmp_path):
    exp = start(exporter_process, tmp_path, {"lab": project}, args=["--log.level=debug"])
    token = project.tokens_issued[0]
    # An API (or a proxy in front of it) that echoes the credentials in its error bodies.
    echo = f"upstream said: X-Auth-Token: {token}; password={project.password}"
    for fault in (Fault("error", r"/v2/images$", 500, message=echo),
                  Fault("error", r"/servers/detail$", 400, message=echo),
                  Fault("error", r"/auth/tokens$", 401, message=echo)):
        errors = value(exp.scrape(), "imaging_source_refresh_errors_total", cloud="lab",
                       reason={500: "http_5xx", 400: "http_4xx", 401: "auth"}[fault.status])
        project.add_fault(fault)
        if fault.status == 401:
            project.expire_tokens()         # the next refresh must ask Keystone again, and is refused
        wait_until(lambda: value(exp.scrape(), "imaging_source_refresh_errors_total", cloud="lab",
                                 reason={500: "http_5xx", 400: "http_4xx", 401: "auth"}[fault.status]) > errors,
                   timeout=15, what=f"an HTTP {fault.status}")
        assert fault.fired
        project.clear_faults()
        wait_until(lambda: up(exp.scrape(), "lab") == 1, timeout=15, what="recovery")
    assert len(project.tokens_issued) >= 2          # a second token after the expiry
    text = exp.text()
    exp.stop()
    log = exp.log()
    methods = Counter((mth, p) for mth, p, _, _ in project.requests if mth != "GET")
    assert set(methods) == {("POST", "/identity/v3/auth/tokens")}, methods
    for wanted in ("HTTP 500 from GET /image/v2/images", "HTTP 400 from GET /compute/v2.1/servers/detail"):
        assert wanted in log, f"the error is logged: {wanted}"
    for secret in [project.password] + project.tokens_issued:
        assert secret not in text, "a secret in /metrics"
        assert secret not in log, "a secret in the log"
    assert "upstream said" not in log, "the API's error body is not repeated"


# ---- two clouds ------------------------------------------------------------------------------------

def staging_scenario() -> Scenario:
    """Another project on another cloud: two active images, nothing running or failed."""
    return project_scenario({
        "servers": {"srv-stg": {"name": "stg-1", "image": "img-stg-base", "created_at": "-30d"}},
        "images": {
            "img-stg-base": {"name": "debian-12", "status": "active", "size": 2 * GIB,
                             "created_at": "-30d", "updated_at": "-30d"},
            "img-stg-1": {"name": "stg-1-nightly", "status": "active", "size": 1 * GIB, "server": "srv-stg",
                          "image_type": "snapshot", "created_at": "-3h", "updated_at": "-2h45m"}}},
        project_id="5b1f0000000000000000000000005b1f", project_name="staging", limits=None)


def test_two_clouds_are_labelled_apart(project, exporter_process, tmp_path):
    with FakeOpenStack(staging_scenario(), user="stg-reader", password="an-0ther-Secret", live=True) as staging:
        staging.usage_api = "missing"               # Glance before Xena: no /v2/info/usage
        exp = start(exporter_process, tmp_path, {"lab": project, "staging": staging},
                    clouds=[cloud_config("lab"),
                            cloud_config("staging", image_quota=30, image_bytes_quota="100GB")])
        m = exp.scrape()
        assert by(m, "imaging_images", "status", cloud="lab", project="demo") == {
            "active": 3, "saving": 1, "killed": 2, "queued": 2}
        assert by(m, "imaging_images", "status", cloud="staging", project="staging") == {"active": 2}
        assert value(m, "imaging_images_bytes", cloud="lab") == 15 * GIB
        assert value(m, "imaging_images_bytes", cloud="staging") == 3 * GIB
        assert by(m, "imaging_quota_images", "source", cloud="lab") == {"api": 10}
        assert by(m, "imaging_quota_images", "source", cloud="staging") == {"config": 30}
        assert by(m, "imaging_quota_bytes", "source", cloud="staging") == {"config": 100 * 10**9}
        assert by(m, "imaging_jobs_running", "kind", cloud="staging") == {"image": 0, "backup": 0,
                                                                          "volume_snapshot": 0}
        assert by(m, "imaging_jobs_running", "kind", cloud="lab") == {"image": 2, "backup": 0, "volume_snapshot": 1}
        assert samples(m, "imaging_job_failures", cloud="staging") == {}
        assert by(m, "imaging_job_duration_seconds_count", "kind", cloud="staging") == {"image": 1}
        assert value(m, "imaging_job_duration_seconds_sum", cloud="staging", kind="image") == 15 * M
        assert {dict(k)["project"] for k in samples(m, "imaging_images", cloud="lab")} == {"demo"}
        assert {dict(k)["project"] for k in samples(m, "imaging_images", cloud="staging")} == {"staging"}
        assert by(m, "imaging_server_boot_from_volume", "server_name", cloud="staging") == {"stg-1": 0}
        # Each cloud asked only its own API, with its own credentials.
        assert "/image/v2/info/usage" in staging.paths()
        assert staging.tokens_issued and project.tokens_issued
        assert not set(staging.tokens_issued) & set(project.tokens_issued)
        # One cloud failing leaves the other up.
        staging.add_fault(Fault("error", r"/v2/images$", 503))
        wait_until(lambda: up(exp.scrape(), "staging") == 0, timeout=15, what="staging down")
        m = exp.scrape()
        assert up(m, "lab") == 1
        assert value(m, "imaging_source_refresh_errors_total", cloud="lab", reason="http_5xx") == 0
        assert value(m, "imaging_images_bytes", cloud="staging") == 3 * GIB
