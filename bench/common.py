"""Helpers shared by the benchmarks: ports, processes, percentiles, tables."""
from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str = "/metrics", timeout: float = 10.0) -> bytes:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Accept-Encoding": "identity"})
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise OSError(f"HTTP {r.status}")
        return body
    finally:
        c.close()


def wait_ready(port: int, timeout: float = 30.0, path: str = "/-/healthy") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            get(port, path, timeout=1)
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing answered on port {port}")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def start_exporter(config_yaml: str, env=None, extra_args=()):
    """Start imaging-exporter with this config text; return (process, port, tmpdir)."""
    tmp = tempfile.mkdtemp(prefix="imaging-bench-")
    cfg = os.path.join(tmp, "config.yaml")
    with open(cfg, "w") as f:
        f.write(f"state_file: {tmp}/state.json\n" + config_yaml)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{port}",
                             f"--config.file={cfg}", "--log.level=warn", *extra_args],
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT, **(env or {})),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port)
    return proc, port, tmp


def stop(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def table(headers, rows, left: int = 1) -> str:
    """A plain-text table; the first `left` columns are left-aligned, the others right-aligned."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i >= left else str(c).ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])
