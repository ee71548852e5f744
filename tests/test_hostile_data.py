"""Bad data the exporter keeps or renders (issue 15, cases 2, 4, 5 and 12's
temp files): the cloud cache under Accept fuzzing, state files with wrong
types, Infinity, deep nesting, FIFOs and directories, high-water marks
across kill -9.
"""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, ExporterProcess, samples, wait_until
from exporter.exposition import CloudCache
from exporter.ledger import JobLedger
from exporter.render import FORMATS, negotiate
from exporter.state import State

# ---- case 2: the cloud cache holds at most the fixed formats ---------------------


def test_distinct_accept_headers_add_no_cache_entries():
    cache = CloudCache([])
    for n in range(25):
        for gz in (True, False):
            cache.get(negotiate(f"application/openmetrics-text; version=1.0.{n}"), gz)
    for accept in ("text/plain; version=x", "text/plain;version=1.0.0;escaping=dots", "a/b", "*/*"):
        cache.get(negotiate(accept), False)
    assert len(cache.held()) <= 2 and set(cache.held()) <= set(FORMATS)
    cache.refresh()
    assert len(cache.held()) <= 2 and set(cache.held()) <= set(FORMATS)


# ---- case 4: state files with bad contents ------------------------------------------

HW_KEY = "/dev/vdx /data"


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_wrong_types_drop_only_the_bad_entries_and_keep_a_copy(tmp_path, caplog):
    original = json.dumps({"version": 1, "high_water": {HW_KEY: 10 ** 15, "bad": "x"},
                           "jobs": {"lin": {"failed": [], "counted": {"a/1": 1.0},
                                            "first_seen": {"job-1": 1700000000.0},
                                            "consecutive_failures": {"srv backup": 3},
                                            "future_list": {"k": ["a", 1.5]}},
                                    "other": []}})
    path = _write(tmp_path / "state.json", original)
    state = State(path)
    assert "dropped" in caplog.text and "bad entries" in caplog.text and "original is kept" in caplog.text
    ledger = JobLedger(state, "lin")
    assert ledger.failures(time.time()) == {} and ledger.histogram() == {}
    assert state.high_water("/dev/vdx", "/data", 5) == 10 ** 15, "the high-water mark survives"
    asides = list(tmp_path.glob("state.json.corrupt-*"))
    assert len(asides) == 1 and asides[0].read_text() == original
    saved = json.loads((tmp_path / "state.json").read_text())
    # Another module's keys inside a cloud's section are kept.
    assert saved["jobs"]["lin"]["first_seen"] == {"job-1": 1700000000.0}
    assert saved["jobs"]["lin"]["consecutive_failures"] == {"srv backup": 3}
    assert saved["jobs"]["lin"]["future_list"] == {"k": ["a", 1.5]}
    assert "other" not in saved["jobs"]


@pytest.mark.parametrize("text", [
    '{"version":1,"high_water":{"a":Infinity},"jobs":{}}',
    '{"version":1,"high_water":{"a":NaN},"jobs":{}}',
    '{"version":1,"high_water":{},"jobs":' + "[" * 100000 + "]" * 100000 + "}",
    '{"version":1,"high_water":{},"jobs":{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{}}}}}}}}}}',
    '{"version":1,"high_water":{"a":1' + "0" * 400 + '},"jobs":{}}',
    '{"version":1,"high_water":{"a":1e400},"jobs":{}}',
    '{"version":2}', "[]", "", "\xff\xfe{", '{"version":1,"high_water":{"a":',
], ids=["inf", "nan", "deep-list", "deep-mapping", "400-digits", "1e400", "version", "list", "empty",
        "not-utf8", "truncated"])
def test_unusable_state_file_is_moved_aside_never_a_crash(tmp_path, text, caplog):
    path = tmp_path / "state.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape") if text != "\xff\xfe{" else b"\xff\xfe{")
    state = State(str(path))
    assert "is corrupt" in caplog.text, "the problem is logged"
    assert list(tmp_path.glob("state.json.corrupt-*")), "kept aside, never silently dropped"
    # Whatever happened, the state works and its file is valid afterwards.
    state.high_water("/dev/a", "/", 7)
    state.flush()
    json.loads((tmp_path / "state.json").read_text())


def _run(args, timeout=20):
    return subprocess.run([sys.executable, "-m", "exporter", *args], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("kind", ["fifo", "directory", "/dev/zero"])
def test_state_path_that_is_not_a_file_is_refused_with_exit_2_and_left_alone(tmp_path, kind):
    state = tmp_path / "state.json"
    if kind == "fifo":
        os.mkfifo(state)
    elif kind == "directory":
        state.mkdir()
    else:
        state = pathlib.Path("/dev/zero")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"state_file: {state}\n")
    started = time.monotonic()
    r = _run([f"--config.file={cfg}", "--web.listen-address=127.0.0.1:0"])
    assert time.monotonic() - started < 15
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "not a regular file" in r.stderr and "Traceback" not in r.stderr
    assert state.is_fifo() if kind == "fifo" else state.is_dir() if kind == "directory" else state.is_char_device()


def test_exporter_starts_with_a_deeply_nested_state_file(tmp_path):
    (tmp_path / "state.json").write_text('{"version":1,"jobs":' + "[" * 50000 + "]" * 50000 + "}")
    exp = ExporterProcess(tmp_path, {"host": {"profile": "generic"}})
    try:
        assert exp.scrape()
        log = exp.log()
        assert "Traceback" not in log and log.count("is corrupt or unusable") == 1
    finally:
        exp.stop()


def test_stale_temp_files_are_removed_at_start(tmp_path):
    (tmp_path / ".state.json.tmp-abc123").write_text("{partial")
    (tmp_path / ".other.json.tmp-keep").write_text("{not ours")
    State(str(tmp_path / "state.json"))
    assert not (tmp_path / ".state.json.tmp-abc123").exists()
    assert (tmp_path / ".other.json.tmp-keep").exists()


# ---- case 5: the high-water mark never goes down -------------------------------------

def test_a_new_peak_is_on_disk_within_a_moment(tmp_path):
    state = State(str(tmp_path / "state.json"))
    for used in (100, 200, 300):
        state.high_water("/dev/a", "/", used)
        wait_until(lambda: (tmp_path / "state.json").exists()
                   and json.loads((tmp_path / "state.json").read_text())["high_water"].get("/dev/a /") == used,
                   timeout=2, what=f"peak {used} on disk")


def _mount_of(path, metrics):
    series = samples(metrics, "imaging_filesystem_used_high_water_bytes")
    best = None
    for labels, value in series.items():
        mp = dict(labels)["mountpoint"]
        if str(path).startswith(mp.rstrip("/") + "/") or mp == "/":
            if best is None or len(mp) > len(best[0]):
                best = (mp, labels, value)
    return best


@pytest.mark.parametrize("how", ["kill -9", "SIGHUP then kill -9"])
def test_high_water_survives_kill_9_right_after_a_new_peak(tmp_path, how):
    exp = ExporterProcess(tmp_path, {"host": {"profile": "generic"}})
    try:
        first = _mount_of(tmp_path, exp.scrape())
        assert first is not None, "no filesystem holds tmp_path"
        (tmp_path / "grow.bin").write_bytes(os.urandom(8 << 20))
        os.sync()
        peak = _mount_of(tmp_path, exp.scrape())[2]
        assert peak > first[2]
        if how.startswith("SIGHUP"):
            exp.proc.send_signal(signal.SIGHUP)
            time.sleep(0.2)
            assert exp.proc.poll() is None, "SIGHUP ended the process"
        time.sleep(0.3)                    # "within one scrape": well under a scrape interval
        exp.proc.send_signal(signal.SIGKILL)
        exp.proc.wait(10)
    finally:
        exp.stop()
    (tmp_path / "grow.bin").unlink()
    os.sync()
    again = ExporterProcess(tmp_path, {"host": {"profile": "generic"}})
    try:
        after = _mount_of(tmp_path, again.scrape())[2]
        assert after >= peak, f"the high-water mark went down by {peak - after} bytes"
    finally:
        again.stop()
