"""Textfile mode: `--once --output FILE` read by Debian's node_exporter textfile collector.

- the file is written whole (temporary file + rename), world-readable, and node_exporter
  serves its series, with the timestamp series the stale-textfile alert needs;
- an error (bad config, a path that cannot be written) exits 2 with one line and leaves the
  previous file exactly as it was, never an empty one.
"""
from __future__ import annotations

import os
import stat
import subprocess
import time

from conftest import (die_with_parent, free_port, http_get, need_binary, parse_metrics, run_cli, samples,
                      stop_process, wait_until)


def test_once_output_is_served_by_node_exporters_textfile_collector(tmp_path):
    textfile_dir = tmp_path / "textfile"
    textfile_dir.mkdir()
    out = textfile_dir / "imaging.prom"
    before = time.time()
    code, stdout, err = run_cli("--once", "--config.file=/dev/null", "--output", str(out))
    assert code == 0, err
    assert stdout == ""
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o644
    assert sorted(os.listdir(textfile_dir)) == ["imaging.prom"]          # no temporary file left
    port = free_port()
    proc = subprocess.Popen(
        [need_binary("prometheus-node-exporter"), "--collector.disable-defaults", "--collector.textfile",
         "--collector.textfile.directory=%s" % textfile_dir, "--web.listen-address=127.0.0.1:%d" % port],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    try:
        body = wait_until(lambda: http_get("http://127.0.0.1:%d/metrics" % port, 2)[1], 20, 0.1,
                          "node_exporter to listen")
    finally:
        stop_process(proc)
    m = parse_metrics(body)
    # node_exporter read the file without an error and serves our series.
    assert list(samples(m, "node_textfile_scrape_error").values()) == [0]
    stamp = list(samples(m, "imaging_textfile_timestamp_seconds").values())
    assert len(stamp) == 1 and before <= stamp[0] <= time.time()
    assert samples(m, "imaging_filesystem_size_bytes", mountpoint="/")
    assert samples(m, "imaging_build_info")


def test_an_error_leaves_the_previous_file_as_it_was(tmp_path):
    out = tmp_path / "imaging.prom"
    assert run_cli("--once", "--config.file=/dev/null", "--output", str(out))[0] == 0
    good = out.read_bytes()
    assert b"imaging_textfile_timestamp_seconds" in good
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("host: {profile: no-such-profile}\n")
    code, _, err = run_cli("--once", "--config.file=%s" % bad_config, "--output", str(out))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert out.read_bytes() == good
    # A directory that does not exist: one line, exit 2, nothing written anywhere.
    missing = tmp_path / "no-such-dir" / "imaging.prom"
    code, _, err = run_cli("--once", "--config.file=/dev/null", "--output", str(missing))
    assert code == 2 and "cannot write" in err and "Traceback" not in err, err
    assert not missing.parent.exists()
    assert sorted(os.listdir(tmp_path)) == ["bad.yaml", "imaging.prom"]


def test_output_needs_once():
    code, _, err = run_cli("--output", "/tmp/never-written.prom", "--config.file=/dev/null")
    assert code == 2 and "--output: only with --once" in err


# What a host-mode one-shot imports (issue 19: --once costs what host mode needs, no more).
_IMPORTS = r'''
import contextlib, io, json, sys
from exporter import cli
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = cli.main(sys.argv[1:])
defined = sorted(k for k, v in vars(sys.modules["exporter.models"]).items() if isinstance(v, type))
print(json.dumps({"code": code, "body": out.getvalue(), "modules": sorted(sys.modules), "models": defined}))
'''
_NEVER = ("prometheus_client", "psutil", "exporter.cloud_models", "exporter.poller",
          "exporter.sources.openstack.source", "exporter.sources.linode.source", "gzip", "difflib",
          # dataclasses (and the inspect it imports), tempfile, socket and signal cost a one-shot ~10 ms
          # together; the ledger and the cloud collector are the cloud side's
          "dataclasses", "inspect", "tempfile", "socket", "signal", "exporter.ledger", "exporter.collectors.cloud")


def _one_shot(tmp_path, *args):
    import json
    import sys
    from conftest import ROOT
    r = subprocess.run([sys.executable, "-c", _IMPORTS, "--once", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, PYTHONPATH=ROOT, STATE_DIRECTORY=str(tmp_path)))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["code"] == 0
    return out["body"], set(out["modules"]), set(out["models"])


def test_once_in_host_mode_imports_no_yaml_and_no_cloud_modules(tmp_path):
    body, modules, models = _one_shot(tmp_path)
    assert "imaging_filesystem_size_bytes" in body and "exporter.profiles" in modules
    # exporter.models defined its host models only.
    assert "HostSnapshot" in models and not models & {"CloudSnapshot", "Image", "FinishedJob"}
    assert not {m for m in modules if m.split(".")[0] == "yaml" or m.startswith(_NEVER)}


def test_once_with_a_config_file_reads_it_with_yaml_and_still_no_cloud_modules(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"state_file: {tmp_path}/state.json\nhost:\n  profile: rackspace-firstgen-linux\n")
    body, modules, _ = _one_shot(tmp_path, f"--config.file={config}", "--log.level=warn")
    assert "yaml" in modules
    assert not {m for m in modules if m.startswith(_NEVER)}
    m = parse_metrics(body)
    # rackspace-firstgen-linux (profiles.yaml): 250GB and 3M inodes.
    assert list(samples(m, "imaging_limit_bytes", limit="volume_size").values()) == [250e9]
    assert list(samples(m, "imaging_limit_inodes", limit="inode_usage").values()) == [3e6]
    assert (tmp_path / "state.json").exists()


def test_once_output_is_the_served_host_body_with_the_textfile_stamp(tmp_path):
    """--once writes the series a served scrape of the same config writes, plus its timestamp."""
    from exporter.app import assemble
    from exporter.config import Config
    body, _, _ = _one_shot(tmp_path, "--config.file=/dev/null")
    served = assemble(Config(state_file=str(tmp_path / "state.json")), {"host": True}, process_metrics=False)
    try:
        served.refresh_all()
        expected = served.exposition.raw().decode()
    finally:
        served.stop()
    ours, theirs = parse_metrics(body), parse_metrics(expected)
    stamp = [k for k in ours if k[0] == "imaging_textfile_timestamp_seconds"]
    assert len(stamp) == 1
    assert set(ours) - set(stamp) == set(theirs)
    assert [l for l in body.splitlines() if l.startswith("#") and "textfile_timestamp" not in l] == \
        [l for l in expected.splitlines() if l.startswith("#")]
    for name in ("imaging_limit_bytes", "imaging_limit_inodes", "imaging_filesystem_size_bytes", "imaging_build_info",
                 "imaging_filesystem_inodes", "imaging_disk_size_bytes"):
        assert samples(ours, name) == samples(theirs, name), name
