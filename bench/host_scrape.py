#!/usr/bin/env python3
"""Host-mode scrape latency against node_exporter's filesystem collector.

Starts Debian's prometheus-node-exporter (--collector.disable-defaults
--collector.filesystem) and imaging-exporter in host mode on loopback ports,
scrapes them in alternation (so machine noise hits both alike), and prints
p50/p99 of GET /metrics and the ratio. Target: ratio of p50s <= 1.0.

    python bench/host_scrape.py [--requests 500]
"""
from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            scrape(port)
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing answered on port {port}")


def scrape(port, conn=None):
    """One GET /metrics; a new connection unless one is given (keep-alive)."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics", headers={"Accept-Encoding": "identity"})
    r = c.getresponse()
    body = r.read()
    if r.status != 200:
        raise OSError(f"status {r.status}")
    if conn is None:
        c.close()
    return len(body)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def measure(ports, n, keepalive):
    times = {name: [] for name in ports}
    conns = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=10) for name, port in ports.items()} \
        if keepalive else {}
    for _ in range(n):
        for name, port in ports.items():
            t = time.perf_counter()
            try:
                scrape(port, conns.get(name))
            except (http.client.HTTPException, OSError):
                # The server closed a kept-alive connection (HTTP/1.0): reconnect.
                conns[name] = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                scrape(port, conns[name])
            times[name].append((time.perf_counter() - t) * 1000)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500)
    args = ap.parse_args()
    node_bin = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if not node_bin:
        raise SystemExit("prometheus-node-exporter is not installed (apt-get install prometheus-node-exporter)")
    ports = {"node_exporter": free_port(), "imaging-exporter": free_port()}
    tmp = tempfile.mkdtemp()
    cfg = os.path.join(tmp, "config.yaml")
    with open(cfg, "w") as f:
        f.write(f"state_file: {tmp}/state.json\nhost:\n  profile: rackspace-firstgen-linux\n")
    procs = [
        subprocess.Popen([node_bin, f"--web.listen-address=127.0.0.1:{ports['node_exporter']}",
                          "--collector.disable-defaults", "--collector.filesystem"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{ports['imaging-exporter']}",
                          f"--config.file={cfg}"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        for port in ports.values():
            wait_ready(port)
        measure(ports, 50, keepalive=False)     # warm up both
        print(f"host scrape latency, {args.requests} scrapes each, alternating; "
              f"{os.cpu_count()} CPUs; node_exporter = {node_bin}")
        print(f"{'connection':<12} {'exporter':<18} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
        ratios = {}
        for keepalive in (False, True):
            times = measure(ports, args.requests, keepalive)
            label = "keep-alive" if keepalive else "new"
            for name, t in times.items():
                print(f"{label:<12} {name:<18} {pct(t, 50):>8.3f} {pct(t, 99):>8.3f} {statistics.mean(t):>8.3f}")
            ratios[label] = pct(times["imaging-exporter"], 50) / pct(times["node_exporter"], 50)
        for label, r in ratios.items():
            print(f"ratio p50 imaging-exporter / node_exporter ({label} connections): {r:.2f} "
                  f"({'meets' if r <= 1.0 else 'misses'} the <= 1.0 target)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


if __name__ == "__main__":
    main()
