"""Rackspace's public cloud: API-key auth (Identity v2.0, RAX-KSKEY:apiKeyCredentials).

openstacksdk loads the rackspaceauth plugin (auth_type: rackspace_apikey)
from a clouds.yaml, posts the documented request to the fake's Identity
v2.0, and reads images and servers through the catalog it answers.
"""
from __future__ import annotations

import pytest
import yaml

from exporter import profiles
from exporter.config import cloud_config
from exporter.errors import SourceError
from exporter.sources.openstack import preflight
from exporter.sources.openstack.source import OpenStackSource
from fakes.openstack_api import FakeOpenStack
from fakes.openstack_scenarios import project_scenario

pytestmark = pytest.mark.filterwarnings(r"ignore::PendingDeprecationWarning:openstack.*")

API_KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def rackspace(tmp_path, monkeypatch):
    sc = project_scenario({
        "servers": {"srv-1": {"name": "web-1", "image": "img-base", "task_state": "image_uploading",
                              "created_at": "-9d"}},
        "images": {"img-1": {"name": "web-1 nightly", "status": "saving", "server": "srv-1",
                             "image_type": "snapshot", "created_at": "-5m"}}},
        limits={"image_count_total": 25, "image_size_total": 1024 * 250})
    fake = FakeOpenStack(sc, user="racker", api_key=API_KEY).start()

    def write(api_key=API_KEY):
        path = tmp_path / "clouds.yaml"
        path.write_text(yaml.safe_dump({"clouds": {"rackspace": {
            "auth_type": "rackspace_apikey",
            "auth": {"auth_url": fake.url + "/identity/v2.0/", "username": "racker", "api_key": api_key},
            "region_name": "RegionOne", "identity_api_version": 2}}}))
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    for var in ("OS_CLOUD", "OS_AUTH_URL", "OS_PASSWORD", "OS_USERNAME", "OS_PROJECT_NAME"):
        monkeypatch.delenv(var, raising=False)
    write()
    yield fake, write
    fake.stop()


def source(fake):
    cfg = cloud_config("openstack", "rax", cloud="rackspace", request_timeout=2.0)
    return OpenStackSource(cfg, profiles.get("rackspace-standard"), clock=fake.clock)


def test_api_key_auth_reads_the_account(rackspace):
    fake, _ = rackspace
    cfg = cloud_config("openstack", "rax", cloud="rackspace")
    assert preflight(cfg) == []                # the plugin is found: no "could not be found"
    src = source(fake)
    try:
        snap = src.refresh()
    finally:
        src.close()
    assert [(j.job_id, j.server_id, j.phase) for j in snap.running_jobs] == [("img-1", "srv-1", "image_uploading")]
    assert snap.quota.images.value == 25 and snap.quota.images_used == 1
    # The documented request: POST {auth_url}tokens with RAX-KSKEY:apiKeyCredentials.
    posts = [(p, h) for m, p, _, h in fake.requests if m == "POST"]
    assert [p for p, _ in posts] == ["/identity/v2.0/tokens"]
    assert fake.tokens_issued and all(m == "GET" for m, _, _, _ in fake.requests if m != "POST")


def test_the_request_body_is_the_documented_shape(rackspace):
    fake, _ = rackspace
    src = source(fake)
    try:
        src.refresh()
    finally:
        src.close()
    assert fake.v2_auth_bodies == [{"auth": {"RAX-KSKEY:apiKeyCredentials": {
        "username": "racker", "apiKey": API_KEY}}}]


def test_a_wrong_api_key_is_an_auth_error_that_does_not_show_it(rackspace):
    fake, write = rackspace
    write(api_key="wrong-key-ffffffffffffffffffffffff")
    src = source(fake)
    with pytest.raises(SourceError) as err:
        src.refresh()
    src.close()
    assert err.value.reason == "auth"
    assert "wrong-key" not in str(err.value) and API_KEY not in str(err.value)


def test_a_missing_plugin_names_the_extra(rackspace, tmp_path, monkeypatch):
    path = tmp_path / "other-clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": {"rackspace": {
        "auth_type": "rackspace_apikeyz",            # a plugin that is not installed
        "auth": {"auth_url": "http://127.0.0.1:9/v2.0/", "username": "racker", "api_key": API_KEY}}}}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    (problem,) = preflight(cloud_config("openstack", "rax", cloud="rackspace"))
    assert "rackspace_apikeyz could not be found" in problem
    assert "pip install 'imaging-exporter[rackspace]'" in problem
    assert API_KEY not in problem
