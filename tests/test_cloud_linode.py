"""Cloud mode for Linode, end to end: the exporter process, linode_api4 and the fake API.

The fake runs live: its scenario is moved so that "now" is the real time,
because the exporter process runs on the real clock.
"""
import time

import pytest

from conftest import samples, wait_until
from fakes.linode_api import FakeLinodeAPI

GB = 10**9


@pytest.fixture
def fake():
    with FakeLinodeAPI("account", live=True) as api:
        yield api


def cloud_config(api, name="akamai", **extra):
    return {"name": name, "provider": "linode", "api_url": api.url, "refresh_interval": "1s",
            "request_timeout": "1s", **extra}


def start(exporter_process, fake, clouds=None, env=None):
    exp = exporter_process({"clouds": clouds or [cloud_config(fake)]}, args=["--no-collector.host"],
                           env={"LINODE_TOKEN": fake.token, **(env or {})})
    wait_until(lambda: up(exp.scrape(), "akamai" if clouds is None else clouds[0]["name"]) == 1,
               timeout=20, what="the first refresh")
    return exp


def up(m, cloud):
    v = list(samples(m, "imaging_source_up", cloud=cloud).values())
    return v[0] if v else None


def value(m, name, **labels):
    got = samples(m, name, **labels)
    assert len(got) == 1, (name, labels, got)
    return next(iter(got.values()))


def test_metrics_match_the_scenario(fake, exporter_process):
    exp = start(exporter_process, fake)
    m = exp.scrape()
    now = time.time()
    images = samples(m, "imaging_images", cloud="akamai")
    assert {dict(k)["status"]: v for k, v in images.items()} == {"available": 22, "creating": 1, "pending_upload": 1}
    assert sum(images.values()) == 24                                   # 24 of 25: the quota alert's case
    assert value(m, "imaging_quota_images", cloud="akamai") == 25
    assert dict(next(iter(samples(m, "imaging_quota_images", cloud="akamai"))))["source"] == "profile"
    assert value(m, "imaging_quota_bytes", cloud="akamai") == 150 * GB
    assert value(m, "imaging_image_max_size_bytes", cloud="akamai") == 6 * GB
    # Disk sizes are information only: the 6 GB image limit is on used bytes, which host mode measures.
    assert not samples(m, "imaging_cloud_disk_image_headroom_bytes")
    sizes = [v for k, v in samples(m, "imaging_cloud_disk_size_bytes").items() if dict(k)["server_name"] == "db-1"]
    assert max(sizes) == 8192 * 2**20
    # A backup that has been running for 25 h.
    backups = {dict(k)["server_name"]: now - v for k, v in
               samples(m, "imaging_job_started_timestamp_seconds", kind="backup").items()}
    assert backups["db-1"] == pytest.approx(25 * 3600, abs=120)
    assert value(m, "imaging_job_failures", server_id="103", kind="backup") == 2
    # db-1's two failed images in a row; web-1's images all succeeded.
    assert value(m, "imaging_job_consecutive_failures", server_id="102", kind="image") == 2
    assert value(m, "imaging_job_consecutive_failures", server_id="101", kind="image") == 0
    assert value(m, "imaging_backups_enabled", server_id="104") == 0
    assert value(m, "imaging_backups_enabled", server_id="101") == 1
    # Backup freshness comes from the instance's own record, even past the lookback.
    assert now - value(m, "imaging_job_last_success_timestamp_seconds", server_id="102", kind="backup") > 48 * 3600
    assert value(m, "imaging_jobs_running", kind="image") == 2
    assert value(m, "imaging_source_refresh_interval_seconds", cloud="akamai") == 1
    # The account's euuid is the project; every instance's details were read.
    assert value(m, "imaging_source_details_pending_servers", cloud="akamai",
                 project="E1AF5EEC-526F-487D-B317EBEB34C87D71") == 0
    # Storage counts total_size: 74,425 MiB of private images, each in one region.
    assert value(m, "imaging_images_bytes", cloud="akamai") == 74425 * 2**20


FAULTS = [
    ("error", {"status": 500}, "http_5xx"),
    ("error", {"status": 503}, "http_5xx"),
    ("error", {"status": 401, "message": "Invalid Token"}, "auth"),
    ("rate_limited", {"retry_after": 1}, "rate_limited"),
    ("malformed_json", {}, "malformed"),
    ("hang", {}, "timeout"),
    ("slow", {"delay": 3}, "timeout"),
    ("refused", {}, "connection"),
]


def test_faults_keep_the_last_good_data_and_recover(fake, exporter_process):
    exp = start(exporter_process, fake)
    good = samples(exp.scrape(), "imaging_images", cloud="akamai")
    for mode, params, reason in FAULTS:
        before = exp.scrape()
        errors_before = value(before, "imaging_source_refresh_errors_total", cloud="akamai", reason=reason)
        fake.set_fault(mode, **params)
        wait_until(lambda: up(exp.scrape(), "akamai") == 0, timeout=15, what=f"up 0 under {mode}")
        # Scrapes stay fast and keep the last good data while the API misbehaves.
        t = time.monotonic()
        m = exp.scrape()
        assert time.monotonic() - t < 0.5, f"a scrape waited on the API under {mode}"
        assert samples(m, "imaging_images", cloud="akamai") == good
        assert value(m, "imaging_source_refresh_errors_total", cloud="akamai", reason=reason) > errors_before
        fake.clear_faults()
        wait_until(lambda: up(exp.scrape(), "akamai") == 1, timeout=15, what=f"recovery after {mode}")
    assert exp.proc.poll() is None
    assert "Traceback" not in exp.log()


def test_only_get_requests_and_the_token_never_leaks(fake, exporter_process):
    exp = start(exporter_process, fake)
    fake.set_fault("error", status=400, message=f"Bad header: Authorization: Bearer {fake.token}")
    wait_until(lambda: up(exp.scrape(), "akamai") == 0, timeout=15, what="a failed refresh")
    fake.clear_faults()
    text = exp.text()
    exp.stop()
    assert {r.method for r in fake.requests} == {"GET"}
    assert fake.token not in text and fake.token not in exp.log()
    assert "Bad header" in exp.log(), "the API's reason is logged, scrubbed"


def test_missing_token_is_reported_not_fatal(fake, exporter_process):
    exp = exporter_process({"clouds": [cloud_config(fake, token_env="NO_SUCH_TOKEN_VAR")]},
                           args=["--no-collector.host"])
    wait_until(lambda: value(exp.scrape(), "imaging_source_refresh_errors_total", cloud="akamai",
                             reason="auth") >= 1, timeout=15, what="an auth error")
    assert up(exp.scrape(), "akamai") == 0
    assert "environment variable NO_SUCH_TOKEN_VAR is not set" in exp.log()


def test_two_accounts_are_labelled_apart(exporter_process):
    with FakeLinodeAPI("account", live=True) as one, FakeLinodeAPI("empty", live=True, token="other-token") as two:
        exp = exporter_process({"clouds": [cloud_config(one, "prod", token_env="TOKEN_PROD"),
                                           cloud_config(two, "staging", token_env="TOKEN_STAGING")]},
                               args=["--no-collector.host"],
                               env={"TOKEN_PROD": one.token, "TOKEN_STAGING": two.token})
        wait_until(lambda: up(exp.scrape(), "prod") == 1 and up(exp.scrape(), "staging") == 1, timeout=20,
                   what="both clouds")
        m = exp.scrape()
        assert sum(samples(m, "imaging_images", cloud="prod").values()) == 24
        assert sum(samples(m, "imaging_images", cloud="staging").values()) == 0
        assert value(m, "imaging_images_bytes", cloud="staging") == 0
