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
