"""Rackspace Cloud Backup source through real keystoneauth1 + rackspaceauth and the fake API over HTTP.

The account (tests/fixtures/rackspace_backup/account.yaml) is built from the documented examples;
the source finds its endpoint in the fake Identity's service catalog, as it would
at Rackspace. Nothing of the SDK is patched.
"""
from __future__ import annotations

import time

import pytest

from conftest import parse_metrics, run_cli, samples
from exporter import profiles
from exporter.config import parse
from exporter.errors import ConfigError, SourceError
from exporter.sources import registry
from fakes.clock import FakeClock
from fakes.rackspace_backup_api import FakeRackspaceBackup, load_scenario

ACCOUNT = load_scenario("account")
NOW = ACCOUNT.start                                 # 2026-11-30T00:53:20Z
DB = "87c3b6e1-fb1a-41f9-91e5-313ae35a5a06"     # HostServerId of the documented agent details
WEB = "5e0c3a0d-2f9e-4c55-9b8d-2a6a7a1b9c01"
HOUR, DAY = 3600.0, 86400.0


@pytest.fixture
def api(tmp_path, monkeypatch):
    with FakeRackspaceBackup() as fake:
        clouds = tmp_path / "clouds.yaml"
        clouds.write_text(fake.clouds_yaml())
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
        monkeypatch.delenv("OS_CLOUD", raising=False)
        fake.clouds_path = clouds
        yield fake


def account(api):
    """db-1: MySQL backed up nightly; a backup stuck 25 h, one done, one missed, one skipped, one failed.
    web-1: an agent offline with only an inactive configuration."""
    api.load(ACCOUNT)


def cloud_config(**extra):
    raw = {"name": "rs", "provider": "rackspace_backup", "cloud": "rackspace", "request_timeout": "2s", **extra}
    return parse({"clouds": [raw]}).clouds[0]


def source(clock=None, **extra):
    cfg = cloud_config(**extra)
    source_class = registry.get("rackspace_backup").source_class()
    return source_class(cfg, profiles.get(cfg.profile), clock=clock or FakeClock(NOW))


# ---- what a refresh reads -------------------------------------------------------------

def test_agents_join_their_cloud_servers_and_report_online(api):
    account(api)
    snap = source().refresh()
    agents = {a.agent_id: a for a in snap.backup_agents}
    assert agents["213564"].server_id == DB and agents["213564"].online
    assert agents["213565"].server_id == WEB and not agents["213565"].online
    assert agents["213564"].last_heartbeat == NOW and agents["213565"].last_heartbeat is None
    assert snap.project == api.tenant and snap.cloud == "rs"
    servers = {s.server_id: s for s in snap.servers}
    assert servers[DB].backups_enabled and not servers[WEB].backups_enabled
    assert servers[DB].last_backup_success == NOW - 2 * HOUR     # the agent's TimeOfLastSuccessfulBackup
    assert servers[DB].boot_from_volume is None                  # Cloud Backup cannot tell


def test_enabled_configurations_say_what_they_cover_and_how_often(api):
    account(api)
    configs = {c.configuration_id: c for c in source().refresh().backup_configurations}
    assert set(configs) == {"158486", "158487", "158488"}       # the inactive one is left out
    assert configs["158486"].paths == (("/var/lib/mysql/", "Folder"), ("/etc/mysql/", "Folder"))
    assert configs["158486"].interval == DAY and configs["158486"].server_id == DB
    assert configs["158487"].interval == 4 * HOUR
    assert configs["158488"].interval is None and configs["158488"].frequency == "Manually"


def test_backups_become_running_and_finished_jobs_with_failures_by_reason(api):
    account(api)
    snap = source().refresh()
    (running,) = snap.running_jobs
    assert (running.job_id, running.kind, running.server_id, running.server_name, running.phase, running.started) \
        == ("134330", "backup", DB, "db-1", "InProgress", NOW - 25 * HOUR)
    finished = {j.job_id: j for j in snap.finished_jobs}
    # Stopped is an operator's decision; the backup of 9 days ago is outside the 48 h lookback.
    assert set(finished) == {"134331", "134332", "134333", "134334", "134336"}
    assert finished["134331"].succeeded and finished["134331"].duration == HOUR   # from the report
    assert finished["134336"].succeeded                       # CompletedWithErrors: the report says Success
    assert not finished["134332"].succeeded and finished["134332"].duration == 0
    assert not finished["134334"].succeeded and finished["134334"].duration == HOUR
    assert {(f.server_id, f.reason, f.count) for f in snap.backup_failures} == {
        (DB, "failed", 1), (DB, "missed", 1), (DB, "skipped", 1)}


def test_only_get_requests_after_the_token_post_and_reports_are_read_once(api):
    account(api)
    src = source()
    src.refresh()
    src.refresh()
    methods = {(r.method, r.path.startswith("/v2.0/")) for r in api.requests}
    assert methods == {("POST", True), ("GET", False)}
    assert sum(r.method == "POST" for r in api.requests) == 1          # the token is reused
    reports = [p for p in api.paths() if "/backup/report/" in p]
    assert sorted(reports) == sorted(set(reports)) and len(reports) == 3   # 134331, 134334, 134336
    assert all("X-Auth-Token" in r.headers for r in api.requests if r.method == "GET")


def test_heartbeat_is_kept_while_the_agent_is_offline(api):
    account(api)
    clock = FakeClock(NOW)
    src = source(clock)
    src.refresh()
    api.agents["213564"]["Status"] = "Offline"
    clock.advance(HOUR)
    agent = {a.agent_id: a for a in src.refresh().backup_agents}["213564"]
    assert not agent.online and agent.last_heartbeat == NOW


def test_the_catalog_endpoint_of_the_configured_region_is_used(api):
    account(api)
    source().refresh()
    assert all(p.startswith("/dfw/v1.0/") for p in api.paths() if not p.startswith("/v2.0"))
    api.requests.clear()
    source(region="ord").refresh()
    assert all(p.startswith("/ord/v1.0/") for p in api.paths() if not p.startswith("/v2.0"))
    # The documented catalog is a US account's: no London endpoint.
    with pytest.raises(SourceError) as e:
        source(region="lon").refresh()
    assert e.value.reason == "other" and "no endpoint" in str(e.value)
    api.requests.clear()
    source(api_url=api.endpoint("SYD") + "/").refresh()
    assert all(p.startswith("/syd/v1.0/") for p in api.paths() if not p.startswith("/v2.0"))


# ---- faults: each a SourceError with its reason, never the API key ---------------------------------

@pytest.mark.parametrize("mode, params, path, reason", [
    ("error", {"status": 500}, "/activity", "http_5xx"),
    ("error", {"status": 503}, "/user/agents", "http_5xx"),
    ("error", {"status": 403}, "/agent", "auth"),
    ("rate_limited", {"retry_after": 12}, "/backup-configuration", "rate_limited"),
    ("malformed_json", {}, "/agent", "malformed"),
    ("missing_data", {}, "/activity", "malformed"),
    ("missing_data", {}, "/backup/report", "malformed"),
    ("auth_rejected", {}, None, "auth"),
    ("hang", {}, "/user/agents", "timeout"),
])
def test_api_faults_become_source_errors(api, mode, params, path, reason):
    account(api)
    api.set_fault(mode, path, **params)
    started = time.monotonic()
    with pytest.raises(SourceError) as e:
        source().refresh()
    assert e.value.reason == reason, str(e.value)
    assert time.monotonic() - started < 10          # request_timeout 2 s bounds a hung request
    assert api.api_key not in str(e.value)
    if mode == "rate_limited":
        assert e.value.retry_after == 12
    api.clear_faults()
    assert source().refresh().backup_agents      # and the next refresh works again


def test_refused_connection_and_a_wrong_api_key(api):
    account(api)
    api.set_fault("refused")
    with pytest.raises(SourceError) as e:
        source().refresh()
    assert e.value.reason == "connection"
    api.clear_faults()
    api.clouds_path.write_text(api.clouds_yaml(api_key="not-the-key-0000"))
    with pytest.raises(SourceError) as e:
        source().refresh()
    assert e.value.reason == "auth" and "not-the-key-0000" not in str(e.value)


def test_a_malformed_date_is_a_malformed_answer(api):
    account(api)
    api.activity[0]["TimeOfActivity"] = "2024-01-01T00:00:00Z"
    with pytest.raises(SourceError) as e:
        source().refresh()
    assert e.value.reason == "malformed"


# ---- config and preflight --------------------------------------------------------------------

def test_config_defaults_and_errors():
    cfg = cloud_config()
    assert cfg.profile == "rackspace_backup"
    assert dict(cfg.options) == {"region": "", "api_url": "", "cloud": "rackspace"}
    with pytest.raises(ConfigError) as e:
        parse({"clouds": [{"name": "rs", "provider": "rackspace_backup", "region": "d f", "token_env": "X",
                           "api_url": "ftp://backup"}]})
    text = str(e.value)
    assert "region: 'd f' is not a region name" in text and "token_env: unknown key" in text
    assert "api_url: 'ftp://backup' must start with http:// or https://" in text


def test_preflight_checks_the_clouds_yaml_entry_without_the_network(api, tmp_path):
    module = registry.get("rackspace_backup")
    assert module.preflight(cloud_config()) == []
    assert module.preflight(cloud_config(cloud="nosuch"))[0].startswith("clouds.yaml: ")
    api.clouds_path.write_text(api.clouds_yaml().replace("auth_type: rackspace_apikey", "auth_type: password"))
    assert "auth_type is 'password'" in module.preflight(cloud_config())[0]
    api.clouds_path.write_text(api.clouds_yaml().replace(f"      api_key: {api.api_key}\n", ""))
    assert module.preflight(cloud_config()) == ["clouds.yaml entry rackspace: auth has no api_key"]
    assert api.requests == []


# ---- through the exporter: the metrics ----------------------------------------------------------

def test_once_exports_the_backup_families(api, tmp_path):
    account(api)
    shift = time.time() - NOW     # the CLI runs on the real clock: move the account to it
    for body in list(api.agents.values()) + api.activity + list(api.reports.values()):
        for key, value in body.items():
            if isinstance(value, str) and value.startswith("/Date("):
                body[key] = "/Date(%d)/" % (int(value[6:-2]) + shift * 1000)
    config = tmp_path / "config.yaml"
    config.write_text(f"state_file: {tmp_path / 'state.json'}\nclouds:\n"
                      "- {name: rs, provider: rackspace_backup, cloud: rackspace}\n")
    code, out, err = run_cli("--once", f"--config.file={config}", "--no-collector.host",
                             env={"OS_CLIENT_CONFIG_FILE": str(api.clouds_path)})
    assert code == 0, err
    m = parse_metrics(out)
    c = {"cloud": "rs", "project": api.tenant}
    assert samples(m, "imaging_backup_agent_online", **c, server_id=DB, agent_id="213564") \
        and list(samples(m, "imaging_backup_agent_online", **c, server_id=WEB).values()) == [0]
    assert list(samples(m, "imaging_backups_enabled", **c, server_id=DB).values()) == [1]
    assert list(samples(m, "imaging_backups_enabled", **c, server_id=WEB).values()) == [0]
    assert samples(m, "imaging_job_started_timestamp_seconds", **c, server_id=DB, kind="backup", phase="InProgress")
    assert set(samples(m, "imaging_backup_covered_path_info", **c, configuration_id="158486")) == {
        frozenset(dict(c, server_id=DB, configuration_id="158486", path=p, item_type="Folder").items())
        for p in ("/var/lib/mysql/", "/etc/mysql/")}
    assert list(samples(m, "imaging_backup_schedule_interval_seconds", **c, configuration_id="158487").values()) \
        == [4 * HOUR]
    assert {dict(k)["reason"]: v for k, v in samples(m, "imaging_backup_failures", **c).items()} == {
        "failed": 1, "missed": 1, "skipped": 1}
    assert list(samples(m, "imaging_job_failures", **c, server_id=DB, kind="backup").values()) == [3]
    assert samples(m, "imaging_job_last_success_timestamp_seconds", **c, server_id=DB, kind="backup")
    assert samples(m, "imaging_job_duration_seconds_count", **c, kind="backup")
    assert not samples(m, "imaging_server_boot_from_volume", **c)
    assert list(samples(m, "imaging_source_up", cloud="rs").values()) == [1]


def test_a_revoked_token_is_renewed_once_and_the_refresh_goes_on(api):
    account(api)
    src = source()
    src.refresh()
    api.tokens.clear()               # Identity revoked it (expiry, a password change)
    assert src.refresh().backup_agents
    assert sum(r.method == "POST" for r in api.requests) == 2
