#!/usr/bin/env python3
"""Idle cost: CPU seconds per hour of an exporter scraped every 15 s.

    python bench/idle.py [--idle-seconds 20] [--scrapes 200]

Measures the process's CPU time while nobody scrapes (background threads)
and the CPU time per scrape, then adds them up for an hour at a 15 s
interval (240 scrapes).
"""
from __future__ import annotations

import argparse
import sys
import time

import psutil

from common import get, start_exporter, stop, table

MODES = {"host": "host:\n  profile: rackspace-firstgen-linux\n"}


def cpu(p):
    t = p.cpu_times()
    return t.user + t.system


def measure(config, idle_seconds, scrapes, interval=15.0):
    proc, port, _ = start_exporter(config)
    try:
        ps = psutil.Process(proc.pid)
        get(port)
        time.sleep(1)
        c0 = cpu(ps)
        time.sleep(idle_seconds)
        idle_rate = (cpu(ps) - c0) / idle_seconds
        c0 = cpu(ps)
        for _ in range(scrapes):
            get(port)
        per_scrape = (cpu(ps) - c0) / scrapes
        rss = ps.memory_info().rss
    finally:
        stop(proc)
    per_hour = idle_rate * 3600 + per_scrape * 3600 / interval
    return idle_rate * 3600, per_scrape * 1000, per_hour, rss


def main():
    ap = argparse.ArgumentParser(description="idle CPU cost")
    ap.add_argument("--idle-seconds", type=float, default=20.0)
    ap.add_argument("--scrapes", type=int, default=200)
    a = ap.parse_args()
    rows = []
    for name, config in MODES.items():
        idle_h, ms, per_hour, rss = measure(config, a.idle_seconds, a.scrapes)
        rows.append([name, f"{idle_h:.2f}", f"{ms:.2f}", f"{per_hour:.2f}", f"{rss / 2**20:.0f}"])
    print("idle cost at a 15 s scrape interval")
    print(table(["mode", "background CPU s/h", "CPU ms/scrape", "total CPU s/h", "RSS MiB"], rows))


if __name__ == "__main__":
    sys.exit(main())
