"""Hostile cloud APIs and signals (issue 15, cases 3, 6, 7, 9 and 12's
shutdown): the real SDKs over HTTP against fakes on 127.0.0.1, and the
exporter as a real process.
"""
from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import threading
import time

import pytest
import yaml

from conftest import samples, wait_until
from exporter import profiles
from exporter.config import cloud_config
from exporter.errors import SourceError
from exporter.poller import MAX_DELAY, Poller
from exporter.sources.linode.source import LinodeSource
from exporter.sources.openstack.source import OpenStackSource
from fakes.linode_api import FakeLinodeAPI
from openstack_cloud import clouds_entry

# ---- a dripping API (case 9) ---------------------------------------------------

def _read_head(conn) -> bool:
    """Read a request head off the connection; False when the client went away first."""
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            return False
        data += chunk
    return True


class DrippingServer:
    """Answers every request with a 200 whose body comes one byte every 0.2 s."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn):
        with conn, contextlib.suppress(OSError):
            if not _read_head(conn):
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(300):                       # at most 60 s, and stop() ends it
                if self.stop.wait(0.2):
                    return
                conn.sendall(b" ")

    def close(self):
        self.stop.set()
        self.sock.close()


@pytest.fixture
def dripping():
    server = DrippingServer()
    yield server
    server.close()


def _timed_failure(source):
    poller = Poller(source, "drip", 60.0, 48 * 3600.0)
    started = time.monotonic()
    assert poller.refresh_once() is False
    elapsed = time.monotonic() - started
    source.close()
    return poller, elapsed


def test_dripping_linode_api_is_a_timeout(dripping, monkeypatch):
    monkeypatch.setenv("LINODE_TOKEN", "drip-token")
    cfg = cloud_config("linode", "drip", api_url=dripping.url + "/v4", request_timeout=1.5)
    poller, elapsed = _timed_failure(LinodeSource(cfg, profiles.get("linode")))
    assert elapsed < 4.0, f"the refresh waited {elapsed:.1f}s on a dripping API"
    assert poller.health.up is False and poller.health.errors == {"timeout": 1}


def test_dripping_openstack_identity_is_a_timeout(dripping, tmp_path, monkeypatch):
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(yaml.safe_dump({"clouds": {"drip": clouds_entry(dripping.url, "u", "p", "p")}}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    cfg = cloud_config("openstack", "drip", cloud="drip", request_timeout=1.5)
    poller, elapsed = _timed_failure(OpenStackSource(cfg, profiles.get("openstack")))
    assert elapsed < 4.0, f"the refresh waited {elapsed:.1f}s on a dripping API"
    assert poller.health.up is False and poller.health.errors == {"timeout": 1}


# ---- Retry-After and exceptions (case 6) ------------------------------------------

@pytest.mark.parametrize("retry_after", ["10000000000", "86400", "1e400", "-5", "nan"])
def test_retry_after_is_capped_and_the_thread_lives(retry_after, monkeypatch):
    with FakeLinodeAPI("account") as api:
        monkeypatch.setenv("LINODE_TOKEN", api.token)
        api.set_fault("rate_limited", retry_after=retry_after)
        cfg = cloud_config("linode", "rl", api_url=api.url, request_timeout=2.0)
        source = LinodeSource(cfg, profiles.get("linode"), clock=api.clock)
        poller = Poller(source, "rl", 300.0, 48 * 3600.0)
        poller.start()
        try:
            wait_until(lambda: poller.health.errors, timeout=10, what="the first refresh")
            time.sleep(0.2)
            assert poller.alive, "the poller thread ended"
            assert poller.health.errors == {"rate_limited": 1}
            assert 0 < poller.next_delay() <= MAX_DELAY == 3600.0
        finally:
            poller.stop(timeout=2)


class Raises:
    provider = "test"

    def __init__(self, exc):
        self.exc, self.calls = exc, 0

    def refresh(self):
        self.calls += 1
        raise self.exc


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt(), GeneratorExit(), MemoryError(),
                                 RecursionError(), SourceError("timeout", "x", retry_after=float("inf"))],
                         ids=lambda e: type(e).__name__)
def test_no_exception_of_any_kind_ends_a_poller_thread(exc):
    source = Raises(exc)
    poller = Poller(source, "boom", 300.0, 3600.0)
    poller.start()
    try:
        wait_until(lambda: source.calls >= 1 and poller.health.errors, timeout=5, what="a refresh")
        time.sleep(0.1)
        assert poller.alive and poller.health.up is False
        assert poller.next_delay() <= MAX_DELAY
    finally:
        poller.stop(timeout=2)


# ---- label values from the API (case 3) --------------------------------------------

def _image(api, id_, label):
    img = dict(json.loads(json.dumps(api.objects("images")[0])))
    img.update(id=f"private/{id_}", label=label)
    return img


def _cloud_up(exp, cloud="lin"):
    v = list(samples(exp.scrape(), "imaging_source_up", cloud=cloud).values())
    return v[0] if v else None


def test_hostile_image_names_render_and_later_data_is_not_frozen(exporter_process):
    with FakeLinodeAPI("account", live=True) as api:
        exp = exporter_process({"clouds": [{"name": "lin", "provider": "linode", "api_url": api.url,
                                            "refresh_interval": "1s", "request_timeout": "2s"}]},
                               args=["--no-collector.host"], env={"LINODE_TOKEN": api.token})
        wait_until(lambda: _cloud_up(exp) == 1, timeout=20, what="the first refresh")
        api.add("images", _image(api, 90001, "\ud800lone\udfff surrogates\x00\x07\r\tand \u202e" + "x" * 5000))
        wait_until(lambda: 'image_id="private/90001"' in exp.text(), timeout=15, what="the hostile image")
        for accept in ("", "application/openmetrics-text; version=1.0.0"):
            text = exp.text()
            line = next(l for l in text.splitlines() if 'image_id="private/90001"' in l)
            assert "\ufffdlone\ufffd surrogates\ufffd\ufffd\ufffd\ufffdand \u202e" in line and len(line) < 2000
        api.add("images", _image(api, 90002, "after-the-bad-one"))
        wait_until(lambda: "after-the-bad-one" in exp.text(), timeout=15, what="data after the bad image")
        assert _cloud_up(exp) == 1
        assert "Traceback" not in exp.log()


# ---- signals and shutdown (cases 7 and 12) ---------------------------------------------

def test_sighup_is_logged_not_fatal(exporter_process):
    exp = exporter_process({"host": {"profile": "generic"}})
    exp.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "received SIGHUP" in exp.log(), timeout=10, what="the SIGHUP log line")
    assert exp.proc.poll() is None and exp.scrape()
    exp.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert exp.proc.poll() is None


def test_sigterm_with_four_hung_clouds_saves_state_and_exits_within_5s(exporter_process, tmp_path):
    with FakeLinodeAPI("account", live=True) as api:
        api.set_fault("hang")
        clouds = [{"name": f"hung{i}", "provider": "linode", "api_url": api.url, "refresh_interval": "1s",
                   "request_timeout": "60s"} for i in range(4)]
        exp = exporter_process({"clouds": clouds, "host": {"profile": "generic"}}, env={"LINODE_TOKEN": api.token})
        exp.scrape()                                  # a host scrape: high-water marks to save
        time.sleep(1.0)                               # every poller is inside a request that hangs
        started = time.monotonic()
        exp.proc.send_signal(signal.SIGTERM)
        exp.proc.wait(10)
        took = time.monotonic() - started
        assert took < 5.0, f"stopping took {took:.1f}s"
        assert exp.proc.returncode == 0, "stopped in order, not by the watchdog"
        state = json.loads((tmp_path / "state.json").read_text())
        assert state["high_water"], "the high-water marks were saved"
        log = exp.log()
        assert "received signal SIGTERM" in log and "Traceback" not in log


class HugeServer(DrippingServer):
    """Answers with a 100 MB body as fast as loopback allows (chunked: no length up front)."""

    def _drip(self, conn):
        with conn, contextlib.suppress(OSError):
            if not _read_head(conn):
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            block = b"%x\r\n%s\r\n" % (1 << 20, b" " * (1 << 20))
            for _ in range(100):
                if self.stop.is_set():
                    return
                conn.sendall(block)
            conn.sendall(b"0\r\n\r\n")


def test_a_100_mb_answer_is_cut_off_not_held(monkeypatch, caplog):
    import resource
    caplog.set_level(logging.WARNING, logger="exporter.poller")
    server = HugeServer()
    try:
        monkeypatch.setenv("LINODE_TOKEN", "huge-token")
        cfg = cloud_config("linode", "huge", api_url=server.url + "/v4", request_timeout=20)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        poller, elapsed = _timed_failure(LinodeSource(cfg, profiles.get("linode")))
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        assert poller.health.up is False and sum(poller.health.errors.values()) == 1
        assert poller.health.errors == {"malformed": 1} and "more than" in caplog.text
        assert grew < 150, f"peak memory grew {grew:.0f} MiB for a 100 MB answer"
    finally:
        server.close()


def test_a_100_mb_identity_answer_is_cut_off_for_openstack(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="exporter.poller")
    server = HugeServer()
    try:
        clouds = tmp_path / "clouds.yaml"
        clouds.write_text(yaml.safe_dump({"clouds": {"huge": clouds_entry(server.url, "u", "p", "p")}}))
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
        cfg = cloud_config("openstack", "huge", cloud="huge", request_timeout=20)
        poller, _ = _timed_failure(OpenStackSource(cfg, profiles.get("openstack")))
        assert poller.health.errors == {"malformed": 1}, poller.health
        assert "more than" in caplog.text
    finally:
        server.close()


def test_data_that_cannot_be_served_turns_health_down_not_frozen(caplog):
    """Case 3's second half: a refresh whose rendering fails must not leave up=1 over stale metrics."""
    class Fine:
        provider = "test"

        def refresh(self):
            from exporter.models import CloudSnapshot
            return CloudSnapshot(cloud="render", project="p", taken_at=time.time())

    def broken_render():
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
    poller = Poller(Fine(), "render", 300.0, 3600.0, on_refresh=broken_render)
    caplog.set_level(logging.WARNING, logger="exporter.poller")
    assert poller.refresh_once() is False
    assert poller.health.up is False and poller.health.errors == {"other": 1}
    assert "serving the refreshed data failed" in caplog.text
