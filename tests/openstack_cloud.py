"""An OpenStack test cloud: a started fake plus a clouds.yaml entry "fake" pointing at it.

Shared by the OpenStack source tests (tests/test_openstack_*.py) through the
make_cloud and cloud fixtures, imported from here.
"""
from __future__ import annotations

import pytest
import yaml

from exporter import profiles
from exporter.config import cloud_config
from exporter.sources.openstack.source import OpenStackSource
from fakes.openstack_api import FakeOpenStack
from fakes.openstack_scenarios import PROJECT_ID, load_scenario  # noqa: F401 - PROJECT_ID for the tests

START = 1714564800.0          # 2024-05-01T12:00:00Z, the scenario's time zero
M, H = 60.0, 3600.0
MIB, GIB = 2**20, 2**30
TIMEOUT = 1.0                 # request_timeout for every source in these tests


def clouds_entry(url, user, password, project_name) -> dict:
    """A clouds.yaml entry: password auth against the Keystone v3 of a fake served at ``url``."""
    return {"auth_type": "password", "region_name": "RegionOne", "identity_api_version": 3,
            "auth": {"auth_url": url + "/identity/v3", "username": user, "password": password,
                     "project_name": project_name, "user_domain_name": "Default", "project_domain_name": "Default"}}


def fake_entry(fake: FakeOpenStack, password=None) -> dict:
    """clouds_entry for a FakeOpenStack, with its own credentials unless ``password`` differs."""
    return clouds_entry(fake.url, fake.user, password or fake.password, fake.project_name)


class Cloud:
    """A started fake plus a clouds.yaml entry "fake" that points at it."""

    def __init__(self, fake: FakeOpenStack, tmp_path, monkeypatch, password=None):
        self.fake = fake.start()
        self.sources = []
        path = tmp_path / "clouds.yaml"
        path.write_text(yaml.safe_dump({"clouds": {"fake": fake_entry(fake, password)}}))
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
        for var in ("OS_CLOUD", "OS_AUTH_URL", "OS_PASSWORD", "OS_USERNAME", "OS_PROJECT_NAME"):
            monkeypatch.delenv(var, raising=False)

    def source(self, profile="openstack", page_size=None, max_pages=None, **cfg) -> OpenStackSource:
        cfg = cloud_config("openstack", "lab", **{"cloud": "fake", "request_timeout": TIMEOUT, **cfg})
        kwargs = {k: v for k, v in (("page_size", page_size), ("max_pages", max_pages)) if v}
        src = OpenStackSource(cfg, profiles.get(profile), clock=self.fake.clock, **kwargs)
        self.sources.append(src)
        return src

    def secrets(self):
        return [self.fake.password] + list(self.fake.tokens_issued)

    def close(self):
        for s in self.sources:
            s.close()
        self.fake.stop()


@pytest.fixture
def make_cloud(tmp_path, monkeypatch):
    clouds = []

    def make(scenario=None, password=None, **fake_kwargs):
        """password: what clouds.yaml says, when it should differ from the fake's."""
        c = Cloud(FakeOpenStack(scenario or load_scenario("project"), **fake_kwargs), tmp_path, monkeypatch,
                  password=password)
        clouds.append(c)
        return c
    yield make
    for c in clouds:
        c.close()


@pytest.fixture
def cloud(make_cloud):
    return make_cloud()
