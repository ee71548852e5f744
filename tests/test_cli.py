"""What a newcomer meets on the command line: messages, logs, checks, the exporter's own metrics."""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, http_get, run_cli
from exporter.errors import SourceError
from exporter.models import CloudSnapshot
from exporter.poller import Poller

_LOGFMT_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_.]*)=("(?:[^"\\]|\\.)*"|[^\s"=]*)')


def parse_logfmt(line: str) -> dict:
    """A strict logfmt reader: every character of the line belongs to a key=value pair."""
    out, pos = {}, 0
    for m in _LOGFMT_PAIR.finditer(line):
        assert line[pos:m.start()].strip() == "", f"not logfmt at {pos}: {line!r}"
        value = m.group(2)
        if value.startswith('"'):
            value = json.loads(value)          # logfmt's escapes are JSON's (\", \\, \n)
        out[m.group(1)] = value
        pos = m.end()
    assert line[pos:].strip() == "", f"not logfmt at {pos}: {line!r}"
    return out


def host_config(tmp_path, extra=""):
    path = tmp_path / "config.yaml"
    path.write_text(f"state_file: {tmp_path / 'state.json'}\n{extra}")
    return str(path)


def test_list_profiles_into_a_closed_pipe_is_quiet():
    # `imaging-exporter --list-profiles | head` with head gone: no BrokenPipeError traceback.
    read_end, write_end = os.pipe()
    os.close(read_end)
    r = subprocess.run([sys.executable, "-m", "exporter", "--list-profiles"], cwd=ROOT, stdout=write_end,
                       stderr=subprocess.PIPE, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    os.close(write_end)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_check_config_skips_clouds_whose_collector_is_off(tmp_path):
    cfg = host_config(tmp_path, "clouds:\n- {name: prod, provider: openstack, cloud: nosuchcloud}\n"
                                "- {name: lin, provider: linode, token_env: IMAGING_TEST_NO_TOKEN}\n")
    env = {"OS_CLIENT_CONFIG_FILE": str(tmp_path / "none.yaml")}
    code, _, err = run_cli("--check-config", f"--config.file={cfg}", env=env)
    assert code == 2 and "prod" in err and "lin" in err
    code, _, err = run_cli("--check-config", f"--config.file={cfg}", "--no-collector.openstack", env=env)
    assert code == 2 and "(prod)" not in err and "(lin)" in err
    code, out, err = run_cli("--check-config", f"--config.file={cfg}", "--no-collector.openstack",
                             "--no-collector.linode", env=env)
    assert code == 0 and "config OK" in out, err


def test_cloud_not_found_lists_where_clouds_yaml_was_searched(tmp_path):
    cfg = host_config(tmp_path, "clouds:\n- {name: prod, provider: openstack, cloud: prod}\n")
    missing = tmp_path / "my-clouds.yaml"
    code, _, err = run_cli("--check-config", f"--config.file={cfg}", env={"OS_CLIENT_CONFIG_FILE": str(missing)})
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "Cloud prod was not found" in err and str(missing) in err and "/etc/openstack/clouds.yaml" in err


@pytest.mark.parametrize("state_file, why", [
    ("{tmp}/a-file/state.json", "is not writable"),          # a directory that is a file
    ("{tmp}/a-dir", "is not a regular file"),
])
def test_check_config_refuses_a_state_file_it_cannot_write(tmp_path, state_file, why):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-dir").mkdir()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"state_file: {state_file.format(tmp=tmp_path)}\n")
    code, _, err = run_cli("--check-config", f"--config.file={cfg}")
    assert code == 2 and why in err and len(err.strip().splitlines()) == 1, err


def test_check_config_warns_about_a_limit_that_matches_no_filesystem(tmp_path):
    cfg = host_config(tmp_path, "host:\n  limits:\n  - {name: app, measure: used_bytes, value: 40GB, "
                                "mountpoints: '^/no-such-mount$'}\n")
    code, out, err = run_cli("--check-config", f"--config.file={cfg}")
    assert code == 0 and "config OK" in out
    assert "warning" in err and "host.limits (app)" in err and "matches none" in err and " / " not in err


def test_an_empty_limit_value_says_what_to_write(tmp_path):
    cfg = host_config(tmp_path, "host:\n  limits:\n  - {name: app, measure: used_bytes, value: null}\n")
    code, _, err = run_cli("--check-config", f"--config.file={cfg}")
    assert code == 2 and "host.limits[0].value: is empty" in err and "None" not in err


def test_log_lines_are_logfmt_whatever_they_hold(exporter_process, tmp_path):
    # A config path with a quote, an equals sign and a space lands in the start line.
    odd = tmp_path / 'we"ird =dir'
    odd.mkdir()
    exp = exporter_process(args=["--log.level=debug"], config={"state_file": str(tmp_path / "s.json")}, path=odd)
    for path in ('/metrics', '/a%22b%20c=d', '/x%5C%0Ay'):
        try:
            http_get(exp.url + path)
        except Exception:  # noqa: BLE001 - 404s are expected; the log lines are what is tested
            pass
    exp.stop()
    lines = [l for l in exp.log().splitlines() if l.strip()]
    assert len(lines) >= 2
    parsed = [parse_logfmt(l) for l in lines]
    assert all({"ts", "level", "logger", "msg"} <= set(p) for p in parsed)
    start = parsed[0]["msg"]
    for fact in ("profile generic", "state file", "s.json", "TLS off", "basic auth off", f"config {odd}"):
        assert fact in start, start


def test_json_log_format(tmp_path):
    cfg = host_config(tmp_path)
    code, out, err = run_cli("--once", f"--config.file={cfg}", "--log.level=debug", "--log.format=json")
    assert code == 0
    records = [json.loads(l) for l in err.strip().splitlines()]
    assert records and all(r["level"] in ("debug", "info") for r in records)
    assert any("one scrape" in r["msg"] for r in records)


def test_once_at_debug_says_what_it_did_and_where_the_state_went(tmp_path):
    cfg = host_config(tmp_path)
    code, out, err = run_cli("--once", f"--config.file={cfg}", "--log.level=debug")
    assert code == 0 and "imaging_filesystem_size_bytes" in out
    msgs = [parse_logfmt(l)["msg"] for l in err.strip().splitlines()]
    assert any(str(tmp_path / "state.json") in m and "profile generic" in m for m in msgs), msgs
    assert any(m.startswith("created state file") for m in msgs), msgs
    # The second run finds it: nothing to announce.
    code, _, err = run_cli("--once", f"--config.file={cfg}")
    assert code == 0 and "created state file" not in err


def test_default_state_file_follows_state_directory(tmp_path):
    code, _, err = run_cli("--once", "--config.file=/dev/null", env={"STATE_DIRECTORY": str(tmp_path)})
    assert code == 0 and (tmp_path / "state.json").is_file(), err
    assert f"created state file {tmp_path / 'state.json'}" in err


def test_once_writes_no_process_metrics(tmp_path):
    """--once output is a textfile for node_exporter, whose own process_* it would duplicate."""
    cfg = host_config(tmp_path)
    for extra in ((), ("--web.disable-exporter-metrics",)):
        code, out, _ = run_cli("--once", f"--config.file={cfg}", *extra)
        assert code == 0 and "process_" not in out and "imaging_filesystem_size_bytes" in out


def test_process_metrics_are_served_and_pass_promtool(exporter_process, tmp_path):
    from conftest import need_binary
    exp = exporter_process(config={"state_file": str(tmp_path / "s.json")})
    status, text = http_get(exp.url + "/metrics")
    assert "process_resident_memory_bytes" in text
    r = subprocess.run([need_binary("promtool"), "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    off = exporter_process(config={"state_file": str(tmp_path / "s2.json")}, args=["--web.disable-exporter-metrics"],
                           path=_mkdir(tmp_path / "off"))
    status, text = http_get(off.url + "/metrics")
    assert status == 200 and "process_" not in text and "imaging_filesystem_size_bytes" in text


class _Failing:
    provider = "linode"

    def __init__(self):
        self.fail = True

    def refresh(self):
        if self.fail:
            raise SourceError("timeout", "the API did not answer in 30s")
        return CloudSnapshot(cloud="lin", project="", taken_at=0.0)

    def close(self):
        pass


def test_failed_refresh_says_there_is_no_data_before_the_first_success(tmp_path, caplog):
    source = _Failing()
    poller = Poller(source, "lin", 300, 3600)
    with caplog.at_level(logging.WARNING, logger="exporter.poller"):
        poller.refresh_once()
        source.fail = False
        poller.refresh_once()
        source.fail = True
        poller.refresh_once()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[0].endswith("; no data yet") and warnings[1].endswith("; keeping the last good data")


def _mkdir(path):
    path.mkdir()
    return path
