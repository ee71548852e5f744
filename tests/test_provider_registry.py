"""The provider registry, and the "Adding a provider" list of docs/architecture.md held true.

A fourth provider, TinyCloud (tests/tinycloud/), is registered by the test
through exporter.sources.registry.register() and served by a tiny API on
127.0.0.1; no exporter file names it, yet the config, the CLI's collector
flags, the preflight, the app and the metrics all take it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml

from conftest import ROOT, parse_metrics, samples
from exporter import cli
from exporter.app import assemble
from exporter.config import parse
from exporter.errors import ConfigError
from exporter.sources import registry
from tinycloud import PROVIDER
from tinycloud.api import FakeTinyCloud

NOW = time.time()
IMAGES = [{"id": "img-1", "name": "web-1 nightly", "status": "active", "size": 2 * 10**9, "created": NOW - 7200,
           "server_id": "srv-1"},
          {"id": "img-2", "name": "db-1 nightly", "status": "saving", "size": 0, "created": NOW - 600,
           "server_id": "srv-2"}]


@pytest.fixture
def tinycloud():
    registry.register(PROVIDER)
    yield PROVIDER
    registry.unregister(PROVIDER.name)


def config(tmp_path, **cloud):
    return parse({"state_file": str(tmp_path / "state.json"),
                  "clouds": [{"name": "tiny", "provider": "tinycloud", **cloud}]})


def test_the_builtin_providers_are_the_registry_lines():
    assert registry.names() == ("openstack", "linode", "rackspace_backup")
    for name in registry.names():
        provider = registry.get(name)
        assert provider.name == name and provider.profile and provider.extra
        assert provider.source.startswith(f"exporter.sources.{name}.source:")


def test_an_unknown_provider_is_one_error_listing_the_known_ones(tinycloud):
    with pytest.raises(ConfigError) as e:
        parse({"clouds": [{"name": "x", "provider": "aws"}]})
    assert e.value.problems == ["clouds[0].provider: must be one of openstack, linode, rackspace_backup, tinycloud, "
                                "not 'aws'"]


def test_a_registered_provider_declares_its_keys(tmp_path, tinycloud):
    cfg = config(tmp_path, url="http://127.0.0.1:1/", request_timeout="2s").clouds[0]
    assert (cfg.profile, dict(cfg.options), cfg.request_timeout) == ("generic", {"url": "http://127.0.0.1:1"}, 2.0)
    with pytest.raises(ConfigError) as e:
        config(tmp_path, url="ftp://x", token_env="T")
    assert sorted(e.value.problems) == [
        "clouds[0] (tiny).token_env: unknown key; known keys: image_bytes_quota, image_quota, lookback, "
        "max_image_size, name, profile, provider, refresh_interval, request_timeout, url",
        "clouds[0] (tiny).url: 'ftp://x' must start with http:// or https://"]


def test_the_cli_has_its_collector_flag_and_preflight(tmp_path, tinycloud, capsys):
    args = cli.build_parser().parse_args(["--no-collector.tinycloud"])
    assert args.collector_tinycloud is False and args.collector_openstack is True
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"state_file": str(tmp_path / "state.json"), "host": {"profile": "generic"},
                                    "clouds": [{"name": "tiny", "provider": "tinycloud"}]}))
    assert cli.main(["--check-config", f"--config.file={path}", "--no-collector.host"]) == 2
    assert capsys.readouterr().err == f"imaging-exporter: {path}: clouds[0] (tiny): provider tinycloud: url is empty\n"
    assert cli.main(["--check-config", f"--config.file={path}", "--no-collector.host",
                     "--no-collector.tinycloud"]) == 0
    assert "config OK" in capsys.readouterr().out


def test_the_exporter_polls_it_like_any_provider(tmp_path, tinycloud):
    with FakeTinyCloud(IMAGES) as api:
        exporter = assemble(config(tmp_path, url=api.url, request_timeout="2s"), {"host": False})
        try:
            exporter.refresh_all()
            metrics = parse_metrics(exporter.exposition.raw().decode())
            api.set_fault("error", status=503)
            exporter.refresh_all()
            failed = parse_metrics(exporter.exposition.raw().decode())
        finally:
            exporter.stop()
    assert list(samples(metrics, "imaging_images", cloud="tiny", project="acct-1", status="active").values()) == [1]
    assert list(samples(metrics, "imaging_source_up", source="tinycloud").values()) == [1.0]
    (started,) = samples(metrics, "imaging_job_started_timestamp_seconds", cloud="tiny", kind="image").items()
    assert dict(started[0])["server_id"] == "srv-2" and started[1] == pytest.approx(NOW - 600)
    # A failing API keeps the last good data and counts the failure by reason.
    assert list(samples(failed, "imaging_source_up", source="tinycloud").values()) == [0.0]
    assert list(samples(failed, "imaging_source_refresh_errors_total", reason="http_5xx").values()) == [1.0]
    assert list(samples(failed, "imaging_images", cloud="tiny", status="active").values()) == [1.0]
    assert api.paths() == ["/images", "/images"]


def test_adding_it_touched_no_exporter_file(tinycloud):
    """Every file of the provider is under tests/; exporter/ names it nowhere."""
    here = os.path.dirname(os.path.abspath(__file__))
    package = os.path.dirname(os.path.abspath(__import__("tinycloud").__file__))
    assert package.startswith(here + os.sep)
    found = subprocess.run(["grep", "-rli", "tinycloud", "exporter", "pyproject.toml"], cwd=ROOT,
                           capture_output=True, text=True)
    assert found.returncode == 1 and found.stdout == "", found.stdout


def test_a_missing_sdk_is_one_error_naming_the_extra():
    provider = PROVIDER._replace(name="needs-sdk", source="tinycloud.no_such_sdk:TinyCloudSource")
    with pytest.raises(ConfigError) as e:
        provider.source_class()
    assert e.value.problems == ["provider needs-sdk needs urllib (the standard library), which is not installed "
                                "(tinycloud.no_such_sdk is missing): pip install 'imaging-exporter[tinycloud]'"]


def test_host_mode_and_the_registry_import_no_sdk(tmp_path):
    code = ("import sys\n"
            "from exporter import cli, logs\n"
            "from exporter.app import assemble\n"
            "from exporter.config import Config\n"
            "from exporter.sources import registry\n"
            "logs.setup()\n"
            "cli.build_parser()\n"
            "[registry.get(n).options for n in registry.names()]\n"
            "assemble(Config(state_file=sys.argv[1]), {'host': True}).exposition.raw()\n"
            "print(sorted(m for m in ('openstack', 'linode_api4', 'keystoneauth1', 'rackspaceauth', 'requests')"
            " if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "state.json")], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
