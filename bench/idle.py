#!/usr/bin/env python3
"""Idle cost: CPU seconds per hour of an exporter scraped every 15 s.

    python bench/idle.py [--idle-seconds 20] [--scrapes 200]

Measures the process's CPU time while nobody scrapes (background threads)
and the CPU time per scrape, then adds them up for an hour at a 15 s
interval (240 scrapes). node_exporter (filesystem collector only) is
measured alongside as a peer, over the same idle window.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time

import psutil

from common import free_port, get, start_exporter, stop, table, wait_ready

MODES = {"host": "host:\n  profile: rackspace-firstgen-linux\n"}


def cpu(p):
    """CPU seconds of the whole process, threads that have ended included.

    Linux: the process's CPU-time clock (nanoseconds; clock_getcpuclockid's
    id, built by hand as Python has no binding for it). Elsewhere psutil's
    user + system, in 10 ms ticks: too coarse for a 20 s idle window.
    """
    try:
        return time.clock_gettime(((~p.pid) << 3) | 2)     # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
    except (OSError, OverflowError, AttributeError):
        t = p.cpu_times()
        return t.user + t.system


def _idle_and_scrapes(procs, idle_seconds, scrapes, interval):
    """procs: {name: (psutil.Process, port)}; the idle window is shared, the scrapes take turns."""
    for _, port in procs.values():
        get(port)
    time.sleep(1)
    c0 = {name: cpu(ps) for name, (ps, _) in procs.items()}
    time.sleep(idle_seconds)
    idle_rate = {name: (cpu(ps) - c0[name]) / idle_seconds for name, (ps, _) in procs.items()}
    out = {}
    for name, (ps, port) in procs.items():
        c = cpu(ps)
        for _ in range(scrapes):
            get(port)
        per_scrape = (cpu(ps) - c) / scrapes
        per_hour = idle_rate[name] * 3600 + per_scrape * 3600 / interval
        out[name] = (idle_rate[name] * 3600, per_scrape * 1000, per_hour, ps.memory_info().rss)
    return out


def measure(config, idle_seconds, scrapes, interval=15.0):
    """(background CPU s/h, CPU ms per scrape, total CPU s/h, RSS bytes) of imaging-exporter with this config."""
    proc, port, _ = start_exporter(config)
    try:
        return _idle_and_scrapes({"x": (psutil.Process(proc.pid), port)}, idle_seconds, scrapes, interval)["x"]
    finally:
        stop(proc)


def measure_all(idle_seconds, scrapes, interval=15.0):
    """Every mode of MODES and, as a peer, node_exporter with its filesystem collector (same idle window)."""
    procs, started = {}, []
    try:
        for name, config in MODES.items():
            proc, port, _ = start_exporter(config)
            started.append(proc)
            procs[name] = (psutil.Process(proc.pid), port)
        node_bin = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
        if node_bin:
            port = free_port()
            proc = subprocess.Popen([node_bin, f"--web.listen-address=127.0.0.1:{port}",
                                     "--collector.disable-defaults", "--collector.filesystem"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            started.append(proc)
            wait_ready(port, path="/metrics")
            procs["node_exporter (peer)"] = (psutil.Process(proc.pid), port)
        return _idle_and_scrapes(procs, idle_seconds, scrapes, interval)
    finally:
        for proc in started:
            stop(proc)


HEADERS = ["mode", "background CPU s/h", "CPU ms/scrape", "total CPU s/h", "RSS MiB"]


def rows(results):
    return [[name, f"{idle_h:.2f}", f"{ms:.2f}", f"{per_hour:.2f}", f"{rss / 2**20:.0f}"]
            for name, (idle_h, ms, per_hour, rss) in results.items()]


def main():
    ap = argparse.ArgumentParser(description="idle CPU cost")
    ap.add_argument("--idle-seconds", type=float, default=20.0)
    ap.add_argument("--scrapes", type=int, default=200)
    a = ap.parse_args()
    results = measure_all(a.idle_seconds, a.scrapes)
    print("idle cost at a 15 s scrape interval")
    print(table(HEADERS, rows(results)))


if __name__ == "__main__":
    sys.exit(main())
