"""Config validation: every bad config gives one clear line per problem and exit 2."""
import os

import pytest

from exporter import config, units
from exporter.errors import ConfigError
from conftest import run_cli

BAD_CONFIGS = {
    "wrong_type_host": ("host: [1, 2]\n", "host: must be a mapping"),
    "wrong_type_timeout": ("host:\n  mount_timeout: 5\n", "host.mount_timeout: 5 needs a unit"),
    "unitless_timeout": ("host:\n  mount_timeout: '5'\n", "host.mount_timeout: '5' is not a duration"),
    "zero_timeout": ("host:\n  mount_timeout: 0s\n", "host.mount_timeout: '0s' is outside 100ms..5m"),
    "unknown_profile": ("host:\n  profile: rackspace-thirdgen\n", "host.profile: unknown profile 'rackspace-thirdgen'"),
    "bad_regex": ("host:\n  mount_points_exclude: '^(/proc'\n", "host.mount_points_exclude: bad regular expression"),
    "negative_size": ("host:\n  limits:\n  - {name: x, measure: used_bytes, value: -5GB}\n",
                      "host.limits[0].value: '-5GB' is not a size"),
    "unitless_size": ("host:\n  limits:\n  - {name: x, measure: used_bytes, value: 250}\n",
                      "host.limits[0].value: 250 needs a unit"),
    "zero_size": ("host:\n  limits:\n  - {name: x, measure: used_bytes, value: 0GB}\n",
                  "host.limits[0].value: must be greater than zero"),
    "unknown_measure": ("host:\n  limits:\n  - {name: x, measure: used_blocks, value: 1GB}\n",
                        "host.limits[0].measure: unknown measure 'used_blocks'"),
    "limit_missing_value": ("host:\n  limits:\n  - {name: x, measure: used_bytes}\n", "host.limits[0]: missing value"),
    "disable_unknown_limit": ("host:\n  profile: linode\n  limits:\n  - {name: system_volume, enabled: false}\n",
                              "host.limits[0].name: 'system_volume' is not a limit of profile 'linode'; its limits: "
                              "custom_image_size, images_per_account, image_storage_per_account"),
    "disable_with_value": ("host:\n  profile: rackspace-io\n  limits:\n"
                           "  - {name: system_volume, enabled: false, value: 0}\n",
                           "host.limits[0]: a limit turned off takes only name and enabled, not value"),
    "enabled_not_bool": ("host:\n  profile: rackspace-io\n  limits:\n  - {name: system_volume, enabled: 'no'}\n",
                         "host.limits[0].enabled: must be true or false, not a string"),
    "unknown_top_key": ("hosts:\n  profile: linode\n", "hosts: unknown key (did you mean 'host'?)"),
    "unknown_host_key": ("host:\n  mount_timeot: 5s\n", "host.mount_timeot: unknown key"),
    "top_level_list": ("- a\n- b\n", "the top level must be a mapping"),
    "bad_yaml": ("host:\n  profile: [linode\n", "not valid YAML at line"),
    "bad_provider": ("clouds:\n- {name: a, provider: aws}\n", "clouds[0].provider: must be one of openstack, linode"),
    "duplicate_cloud": ("clouds:\n- {name: a, provider: linode}\n- {name: a, provider: openstack}\n",
                        "clouds[1].name: 'a' is used by another cloud"),
    "cloud_unknown_key": ("clouds:\n- {name: a, provider: linode, cloud: x}\n", "clouds[0] (a).cloud: unknown key"),
    "cloud_bad_quota": ("clouds:\n- {name: a, provider: openstack, image_quota: many}\n",
                        "clouds[0] (a).image_quota: 'many' is not a count"),
    "cloud_bad_interval": ("clouds:\n- {name: a, provider: openstack, refresh_interval: 300}\n",
                           "clouds[0] (a).refresh_interval: 300 needs a unit"),
    "bad_token_env": ("clouds:\n- {name: a, provider: linode, token_env: 'my token'}\n",
                      "clouds[0] (a).token_env: 'my token' is not an environment variable name"),
    "all_projects_not_bool": ("clouds:\n- {name: a, provider: openstack, all_projects: 'yes'}\n",
                              "clouds[0] (a).all_projects: must be true or false"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_is_one_clear_line_and_exit_2(tmp_path, name):
    text, expected = BAD_CONFIGS[name]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    code, out, err = run_cli("--check-config", f"--config.file={path}")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert expected in lines[0]
    assert lines[0].startswith(f"imaging-exporter: {path}: ")
    assert "Traceback" not in err


def test_unreadable_config_file(tmp_path):
    code, _, err = run_cli("--check-config", f"--config.file={tmp_path / 'missing.yaml'}")
    assert code == 2
    assert err.strip() == f"imaging-exporter: {tmp_path / 'missing.yaml'}: cannot read config file: No such file or directory"


def test_directory_as_config_file(tmp_path):
    code, _, err = run_cli("--check-config", f"--config.file={tmp_path}")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot read config file" in err


def test_every_problem_is_reported_at_once(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("host:\n  profile: nope\n  mount_timeout: soon\nclouds: 3\n")
    code, _, err = run_cli("--check-config", f"--config.file={path}")
    assert code == 2
    assert len(err.strip().splitlines()) == 3


def test_good_config_passes(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("""
host:
  profile: rackspace-firstgen-linux
  server_id: 6d1c4a2e-0000-4000-8000-000000000001
  mount_timeout: 2s
  limits:
    - {name: app_volume, measure: used_bytes, value: 40GiB, mountpoints: "^/srv"}
    - {name: inode_usage, measure: used_inodes, value: 2.5M}
state_file: /tmp/x/state.json
clouds:
  - {name: prod, provider: openstack, cloud: prod, refresh_interval: 5m, lookback: 48h, image_quota: 25}
  - {name: lin, provider: linode, token_env: LINODE_TOKEN, max_image_size: 6GB}
""")
    code, out, err = run_cli("--check-config", f"--config.file={path}", env=credentials(tmp_path))
    assert code == 0, err
    assert "config OK" in out
    cfg = config.load(str(path))
    assert cfg.host.limits[0].value == 40 * 2**30
    assert cfg.host.limits[1].value == 2_500_000
    assert cfg.clouds[0].refresh_interval == 300 and cfg.clouds[0].lookback == 48 * 3600
    assert cfg.clouds[1].max_image_size == 6 * 10**9 and cfg.clouds[1].profile == "linode"


def test_no_config_file_gives_defaults():
    cfg = config.load(None)
    assert cfg.host.profile == "generic" and cfg.host.mount_timeout == 5.0 and cfg.clouds == ()


def test_empty_config_file_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert config.load(str(path)).host == config.HostConfig()


@pytest.mark.parametrize("text,value", [("250GB", 250 * 10**9), ("40GiB", 40 * 2**30), ("1.5TB", 1_500_000_000_000),
                                        ("512 MiB", 512 * 2**20), ("6gb", 6 * 10**9), ("100B", 100)])
def test_sizes(text, value):
    assert units.parse_size(text) == value


@pytest.mark.parametrize("text", ["250", "GB", "-1GB", "1XB", "", "1e9B"])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        units.parse_size(text)


@pytest.mark.parametrize("text,value", [("5s", 5), ("1h30m", 5400), ("48h", 172800), ("500ms", 0.5), ("2d", 172800)])
def test_durations(text, value):
    assert units.parse_duration(text) == value


@pytest.mark.parametrize("text,value", [(25, 25), ("3M", 3_000_000), ("2.5k", 2500), ("3000000", 3_000_000)])
def test_counts(text, value):
    assert units.parse_count(text) == value


def test_parse_raises_only_config_error():
    for data in (1, "x", [1], {"host": None}, {"clouds": [None, 1, "x"]}, {"host": {"limits": [None, 1]}}):
        with pytest.raises(ConfigError):
            config.parse(data)


def credentials(tmp_path, linode_token="t0ken"):
    """A clouds.yaml with a "prod" entry, and a Linode token, as the machine would have them."""
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  prod:\n    auth:\n      auth_url: http://127.0.0.1:1/identity/v3\n"
                      "      username: u\n      password: s3cret-pw\n      project_name: p\n"
                      "      user_domain_name: Default\n      project_domain_name: Default\n")
    env = {"OS_CLIENT_CONFIG_FILE": str(clouds)}
    if linode_token is not None:
        env["LINODE_TOKEN"] = linode_token
    return env


@pytest.mark.parametrize("example", ["host.example.yaml", "cloud.example.yaml"])
def test_example_configs_are_valid(tmp_path, example):
    path = os.path.join(os.path.dirname(__file__), "..", "deploy", example)
    code, out, err = run_cli("--check-config", f"--config.file={path}", env=credentials(tmp_path))
    assert code == 0 and err == "" and out.startswith("imaging-exporter: config OK"), err


def test_host_example_polls_no_cloud():
    # The systemd steps install it on every server: an example cloud there would page
    # ImagingSourceDown on every one of them.
    path = os.path.join(os.path.dirname(__file__), "..", "deploy", "host.example.yaml")
    assert config.load(path).clouds == ()


def test_check_config_reports_missing_credentials(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("clouds:\n- {name: prod, provider: openstack, cloud: nosuchcloud}\n"
                    "- {name: lin, provider: linode, token_env: IMAGING_TEST_NO_TOKEN}\n")
    code, _, err = run_cli("--check-config", f"--config.file={path}", env=credentials(tmp_path))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2, err
    assert lines[0].startswith(f"imaging-exporter: {path}: clouds[0] (prod): clouds.yaml: ")
    assert "nosuchcloud" in lines[0]
    assert lines[1] == (f"imaging-exporter: {path}: clouds[1] (lin): environment variable IMAGING_TEST_NO_TOKEN "
                        "(token_env) is not set or empty")
    assert "s3cret-pw" not in err and "Traceback" not in err


def test_a_profile_limit_can_be_turned_off_per_host(tmp_path):
    from exporter.app import assemble
    from conftest import parse_metrics, samples
    cfg = config.parse({"host": {"profile": "linode", "limits": [
        {"name": "custom_image_size", "enabled": False},
        {"name": "app", "measure": "used_bytes", "value": "1TB", "enabled": True}]},
        "state_file": str(tmp_path / "s.json")})
    assert cfg.host.disabled_limits == ("custom_image_size",)
    m = parse_metrics(assemble(cfg, {"host": True}).exposition.raw().decode())
    limits = {dict(k)["limit"] for k in samples(m, "imaging_limit_bytes")}
    assert limits == {"app"}, limits
    assert not samples(m, "imaging_headroom_bytes", limit="custom_image_size")
    assert samples(m, "imaging_limit_images", limit="images_per_account")
