"""Hostile clients against the real exporter process (issue 15, cases 1, 2, 8,
11 and 12's name[] cost; newcomer items 8 and 11), all on 127.0.0.1 with
bounded loops.

Case 1 runs the exporter as the shipped systemd unit does (its ExecStart
flags) under `prlimit --nofile=1024`, the limit a unit without LimitNOFILE
gets, and floods it with slow-loris connections.
"""
from __future__ import annotations

import base64
import contextlib
import http.client
import os
import re
import resource
import shlex
import socket
import statistics
import subprocess
import sys
import threading
import time

import bcrypt
import pytest
import yaml

from conftest import ROOT, die_with_parent, free_port, stop_process, wait_until
from web_serving import serving

UNIT = os.path.join(ROOT, "deploy", "imaging-exporter.service")


def _unit_flags():
    """ExecStart's flags from the shipped unit, and its LimitNOFILE."""
    text = open(UNIT).read().replace("\\\n", " ")
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.M).group(1)
    limit = re.search(r"^LimitNOFILE=(\d+)", text, re.M)
    return shlex.split(exec_start)[1:], int(limit.group(1)) if limit else None


def _start(tmp_path, args, prefix=(), config=None):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(dict(config or {"host": {"profile": "generic"}},
                                       state_file=str(tmp_path / "state.json"))))
    log = open(tmp_path / "exporter.log", "wb")
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "exporter", f"--config.file={cfg}", *args],
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=die_with_parent)
    return proc, log


def _scrape(port, timeout=5.0, headers=None, path="/metrics"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read()
    finally:
        c.close()


def _wait_listening(proc, port):
    def ready():
        assert proc.poll() is None, "the exporter exited"
        try:
            return _scrape(port, 1)[0] == 200
        except OSError:
            return False
    wait_until(ready, timeout=20, what="the exporter to listen")


def _proc_stat(pid):
    """(CPU seconds, threads) of a process from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return cpu, int(fields[17])


@pytest.fixture
def many_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_shipped_unit_sets_limit_nofile():
    _, limit = _unit_flags()
    assert limit is not None and limit >= 8192, "a unit without LimitNOFILE gets 1,024 descriptors"


def test_slow_loris_flood_under_1024_descriptors_leaves_scrapes_served(tmp_path, many_fds):
    """Case 1: ~1,100 connections that send a request line and then a header line
    every second (never finishing the head), under the 1,024-descriptor limit; 13
    scrapes during the flood are all answered, the CPU does not spin on EMFILE and
    connections cost no threads."""
    flags, _ = _unit_flags()
    port = free_port()
    args = [f for f in flags if not f.startswith(("--config.file", "--web.listen-address"))]
    proc, log = _start(tmp_path, args + [f"--web.listen-address=127.0.0.1:{port}"],
                       prefix=("prlimit", "--nofile=1024:1024", "--"))
    flood, stop = [], threading.Event()
    try:
        _wait_listening(proc, port)
        for _ in range(1100):
            with contextlib.suppress(OSError):
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.setblocking(False)
                with contextlib.suppress(OSError):
                    s.send(b"GET /metrics HTTP/1.1\r\n")
                flood.append(s)

        def drip():
            n = 0
            while not stop.wait(1.0):
                for s in flood:
                    with contextlib.suppress(OSError):
                        s.send(b"X-Drip-%d: x\r\n" % n)
                n += 1
        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        cpu0, _ = _proc_stat(proc.pid)
        t0 = time.monotonic()
        results, threads = [], []
        for _ in range(13):
            started = time.monotonic()
            try:
                status = _scrape(port, timeout=5)[0]
            except OSError as e:
                status = repr(e)
            results.append((status, round(time.monotonic() - started, 2)))
            threads.append(_proc_stat(proc.pid)[1])
            time.sleep(0.4)
        cpu1, _ = _proc_stat(proc.pid)
        wall = time.monotonic() - t0
        assert all(status == 200 for status, _ in results), results
        assert max(t for _, t in results) < 3.0, results
        assert (cpu1 - cpu0) / wall < 0.8, "the accept loop must not spin"
        assert max(threads) < 80, f"connections must not cost a thread each: {max(threads)} threads"
    finally:
        stop.set()
        for s in flood:
            s.close()
        stop_process(proc)
        log.close()
    text = (tmp_path / "exporter.log").read_text(errors="replace")
    assert "Traceback" not in text
    assert text.count("out of file descriptors") <= 5, "EMFILE is one log line per episode"


def test_slow_tls_handshakes_with_auth_under_1024_descriptors_leave_scrapes_served(tmp_path, many_fds,
                                                                                   tmp_path_factory):
    """Case 1 with TLS and basic auth on: 1,100 connections that start a TLS record and
    then drip a byte a second never finish their handshake; 13 TLS scrapes with the
    right password during them are answered."""
    import ssl
    from certificates import write_cert
    pki = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key, ca, _ = write_cert(pki, "ca", "test CA", ca=True)
    _, _, crt, key = write_cert(pki, "server", "127.0.0.1", ca_cert, ca_key, server=True)
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"tls_server_config": {"cert_file": crt, "key_file": key},
                                   "basic_auth_users": {"p": bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()}}))
    port = free_port()
    proc, log = _start(tmp_path, [f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={web}"],
                       prefix=("prlimit", "--nofile=1024:1024", "--"))
    context = ssl.create_default_context(cafile=ca)

    def tls_scrape(timeout=5.0):
        c = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)
        try:
            c.request("GET", "/metrics", headers=_basic("p", "pw"))
            r = c.getresponse()
            r.read()
            return r.status
        finally:
            c.close()
    flood, stop = [], threading.Event()
    try:
        wait_until(lambda: proc.poll() is None and _try_tls(tls_scrape) == 200, timeout=20, what="listening")
        for _ in range(1100):
            with contextlib.suppress(OSError):
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.setblocking(False)
                with contextlib.suppress(OSError):
                    s.send(b"\x16\x03\x01")           # the start of a TLS record, never finished
                flood.append(s)

        def drip():
            while not stop.wait(1.0):
                for s in flood:
                    with contextlib.suppress(OSError):
                        s.send(b"\x00")
        threading.Thread(target=drip, daemon=True).start()
        results = []
        for _ in range(13):
            started = time.monotonic()
            results.append((_try_tls(tls_scrape), round(time.monotonic() - started, 2)))
            time.sleep(0.3)
        assert all(status == 200 for status, _ in results), results
    finally:
        stop.set()
        for s in flood:
            s.close()
        stop_process(proc)
        log.close()
    assert "Traceback" not in (tmp_path / "exporter.log").read_text(errors="replace")


def _try_tls(fn):
    try:
        return fn()
    except (OSError, http.client.HTTPException) as e:
        return repr(e)


def test_max_requests_answers_503_past_the_cap():
    """--web.max-requests: requests being answered at once; past it a 503 at once, not a queue."""
    def slow(environ, start_response):
        time.sleep(0.5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]
    with serving(None, slow, max_requests=2) as port:
        statuses, lock = [], threading.Lock()
        barrier = threading.Barrier(6)

        def one():
            barrier.wait()
            started = time.monotonic()
            status = _scrape(port, timeout=10)[0]
            with lock:
                statuses.append((status, time.monotonic() - started))
        workers = [threading.Thread(target=one) for _ in range(6)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(20)
        assert sorted(s for s, _ in statuses) == [200, 200, 503, 503, 503, 503], statuses
        assert all(t < 0.3 for s, t in statuses if s == 503), "a 503 comes at once"
        assert _scrape(port)[0] == 200, "the cap is on requests at once, not a ban"


def test_repeated_listen_address_serves_every_address_and_a_duplicate_is_refused(tmp_path):
    a, b = free_port(), free_port()
    proc, log = _start(tmp_path, [f"--web.listen-address=127.0.0.1:{a}", f"--web.listen-address=127.0.0.1:{b}"])
    try:
        _wait_listening(proc, a)
        assert _scrape(b)[0] == 200
    finally:
        stop_process(proc)
        log.close()
    r = subprocess.run([sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{a}",
                        f"--web.listen-address=127.0.0.1:{a}"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "twice" in r.stderr


@pytest.fixture(scope="module")
def host_exporter(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("host")
    port = free_port()
    proc, log = _start(tmp_path, [f"--web.listen-address=127.0.0.1:{port}"])
    _wait_listening(proc, port)
    yield port, tmp_path
    stop_process(proc)
    log.close()


def test_50_concurrent_scrapers_get_no_errors(host_exporter):
    """What held before must hold: 50 scrapers at once (here for 3 s), 0 errors."""
    port, _ = host_exporter
    deadline = time.monotonic() + 3.0
    results, lock = [], threading.Lock()

    def scraper():
        while time.monotonic() < deadline:
            try:
                status = _scrape(port, timeout=10)[0]
            except OSError as e:
                status = repr(e)
            with lock:
                results.append(status)
    workers = [threading.Thread(target=scraper) for _ in range(50)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    errors = [r for r in results if r != 200]
    assert len(results) > 100 and not errors, (len(results), errors[:5])


def test_accept_headers_never_500_and_stay_in_the_fixed_formats(host_exporter):
    """Case 2 at the HTTP level (the cache side is in test_hostile_data.py)."""
    port, tmp_path = host_exporter
    served = set()
    accepts = [f"application/openmetrics-text; version=1.0.{n}" for n in range(25)] + [
        "text/plain; version=x", "text/plain;version=1.0.0;escaping=values", ";;;", "*/*;q=abc",
        "application/openmetrics-text; version=9", "\u00e9/\u00e9"]
    for accept in accepts:
        status, content_type, body = _scrape(port, headers={"Accept": accept.encode("utf-8").decode("latin-1")})
        assert status == 200, (accept, body[:200])
        served.add(content_type)
    assert len(served) <= 3, served
    assert "Traceback" not in (tmp_path / "exporter.log").read_text(errors="replace")


def test_request_body_is_not_run_as_a_request_and_head_has_no_body(host_exporter):
    """Case 8."""
    port, _ = host_exporter
    smuggled = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(smuggled), smuggled)
                  + b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /-/healthy HTTP/1.1\r\nHost: x\r\n"
                    b"Connection: close\r\n\r\n")
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                answer += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d+)", answer)
    assert statuses == [b"405", b"200", b"200"], answer[:500]
    assert b"# HELP" not in answer, "HEAD carries no body"
    assert answer.endswith(b"OK\n")


def test_name_filter_costs_about_a_normal_scrape(host_exporter):
    """Case 12: ?name[]= went through prometheus_client (200x a scrape); now the same renderer."""
    port, _ = host_exporter
    query = "/metrics?name[]=imaging_build_info&" + "&".join(f"name[]=imaging_x{i}" for i in range(200))

    def timed(path):
        times = []
        for _ in range(15):
            t = time.perf_counter()
            status, _, body = _scrape(port, path=path)
            times.append(time.perf_counter() - t)
            assert status == 200
        return statistics.median(times), body
    normal, _ = timed("/metrics")
    filtered, body = timed(query)
    assert b"imaging_build_info{" in body and b"imaging_filesystem" not in body
    assert filtered < 5 * normal + 0.005, (filtered, normal)


def _basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_timing_does_not_reveal_users_and_floods_do_not_delay_logins(tmp_path):
    """Case 11, with a hash of cost 11 (not the dummy's old fixed 10)."""
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(11)).decode()
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {"prometheus": hashed}}))
    port = free_port()
    proc, log = _start(tmp_path, [f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={web}"])
    try:
        wait_until(lambda: _try(port, _basic("prometheus", "right")) == 200, timeout=20, what="listening")

        def timed(headers):
            t = time.perf_counter()
            assert _scrape(port, headers=headers)[0] == 401
            return time.perf_counter() - t
        wrong = statistics.median(timed(_basic("prometheus", "nope")) for _ in range(5))
        unknown = statistics.median(timed(_basic("nobody", "nope")) for _ in range(5))
        assert 0.6 < unknown / wrong < 1.6, (unknown, wrong)

        stop, flood_statuses = threading.Event(), []

        def flood():
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    flood_statuses.append(_scrape(port, timeout=30, headers=_basic("prometheus", "guess"))[0])
        flooders = [threading.Thread(target=flood) for _ in range(12)]
        for f in flooders:
            f.start()
        time.sleep(0.5)
        worst = 0.0
        for _ in range(10):
            t = time.perf_counter()
            assert _scrape(port, headers=_basic("prometheus", "right"))[0] == 200
            worst = max(worst, time.perf_counter() - t)
            time.sleep(0.1)
        stop.set()
        for f in flooders:
            f.join(30)
        assert worst < 1.0, f"a right login waited {worst:.2f}s behind a wrong-password flood"
        assert set(flood_statuses) <= {401, 503} and 401 in flood_statuses
    finally:
        stop_process(proc)
        log.close()


def _try(port, headers):
    try:
        return _scrape(port, 1, headers=headers)[0]
    except OSError:
        return None


EMFILE_SERVER = r"""
import logging, sys
from exporter import web
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
web.FD_RESERVE = -1000          # a cap above the descriptor limit: EMFILE itself must be handled
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]
web.make_server("127.0.0.1:" + sys.argv[1], app).serve_forever()
"""


def test_emfile_backs_off_with_one_log_line_and_keeps_serving(tmp_path, many_fds):
    """Past the descriptor limit (here 64), accept fails with EMFILE: the server must not
    spin, must say so once, and must make room by closing the longest-waiting connection."""
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(["prlimit", "--nofile=64:64", "--", sys.executable, "-c", EMFILE_SERVER, str(port)],
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=die_with_parent)
    idle = []
    try:
        _wait_listening(proc, port)
        for _ in range(120):
            with contextlib.suppress(OSError):
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        cpu0, _ = _proc_stat(proc.pid)
        t0 = time.monotonic()
        statuses = []
        for _ in range(5):
            started = time.monotonic()
            with contextlib.suppress(OSError):
                statuses.append((_scrape(port, timeout=5)[0], round(time.monotonic() - started, 2)))
        wall = time.monotonic() - t0
        cpu1, _ = _proc_stat(proc.pid)
        assert [s for s, _ in statuses] == [200] * 5, statuses
        assert (cpu1 - cpu0) / wall < 0.8, "the accept loop must not spin on EMFILE"
    finally:
        for s in idle:
            s.close()
        stop_process(proc)
        log.close()
    text = (tmp_path / "server.log").read_text(errors="replace")
    assert text.count("out of file descriptors") == 1, text[-2000:]
    assert "Traceback" not in text


def _drip_head(s):
    """Send a request head one header line every 0.1 s (at most 4 s): (closed by the server, seconds)."""
    started = time.monotonic()
    for i in range(40):
        try:
            s.sendall(b"X-Drip-%d: x\r\n" % i)
            s.settimeout(0.1)
            if s.recv(1) == b"":
                return True, time.monotonic() - started
        except socket.timeout:
            continue
        except OSError:
            return True, time.monotonic() - started
    return False, time.monotonic() - started


def test_a_head_that_never_ends_is_cut_at_the_deadline(monkeypatch):
    from exporter import web
    monkeypatch.setattr(web, "HEAD_TIMEOUT", 1.0)
    monkeypatch.setattr(web, "SWEEP_INTERVAL", 0.2)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]
    with serving(None, app) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\n")
            closed, took = _drip_head(s)
        assert closed and 0.9 < took < 2.5, (closed, took)
        assert _scrape(port)[0] == 200


def test_a_kept_alive_connection_whose_next_head_never_ends_is_cut_at_the_deadline(monkeypatch):
    """The idle loop sleeps until the earliest deadline (the keep-alive one, 120 s here): a head
    that starts meanwhile brings the sweep forward to its own deadline."""
    from exporter import web
    monkeypatch.setattr(web, "HEAD_TIMEOUT", 1.0)
    monkeypatch.setattr(web, "SWEEP_INTERVAL", 0.2)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"ok\n"]
    with serving(None, app) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"ok\n"):
                answer += s.recv(4096)
            time.sleep(1.5)                          # idle, kept alive: no deadline due for 120 s
            s.sendall(b"GET / HTTP/1.1\r\n")
            closed, took = _drip_head(s)
        assert closed and 0.9 < took < 2.5, (closed, took)
        assert _scrape(port)[0] == 200
