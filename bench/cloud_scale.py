#!/usr/bin/env python3
"""OpenStack cloud mode at scale: one refresh of a big project, and scraping it.

    python bench/cloud_scale.py [--images 10000] [--servers 5000] [--refreshes 5] [--renders 200]

The fake OpenStack API (tests/fakes/openstack_api.py) runs in a child process
so that this process's RSS and CPU time are the exporter side only. Through
unpatched openstacksdk, it measures a cold refresh (token, discovery) and warm
ones: wall time, CPU time, HTTP requests, RSS. Then it scrapes the way the
exporter serves /metrics (Poller -> CloudCache rendered per refresh ->
Exposition joined per scrape) and times scrapes, plain and gzip.
"""
from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time

import psutil
import yaml

from common import ROOT, pct, table

sys.path.insert(0, ROOT)

from exporter import __version__, profiles
from exporter.config import CloudConfig
from exporter.sources.openstack import OpenStackSource

MIB = 2**20


def serve_fake(conn, images, servers):
    """Child process: the fake cloud; answers "count" (requests so far) and "stop"."""
    from tests.fakes.openstack_api import FakeOpenStack, Scenario
    fake = FakeOpenStack(Scenario.synthetic(images=images, servers=servers)).start()
    conn.send((fake.url, fake.user, fake.password))
    while True:
        cmd = conn.recv()
        if cmd == "count":
            conn.send(len(fake.requests))
        else:
            fake.stop()
            conn.send("stopped")
            return


def write_clouds_yaml(url, user, password) -> str:
    path = os.path.join(tempfile.mkdtemp(prefix="imaging-bench-"), "clouds.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({"clouds": {"bench": {"auth_type": "password", "region_name": "RegionOne", "auth": {
            "auth_url": url + "/identity/v3", "username": user, "password": password,
            "project_name": "demo", "user_domain_name": "Default", "project_domain_name": "Default"}}}}, f)
    return path


def rss_mib() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / MIB


def timed_refresh(source, ask):
    before = ask("count")
    cpu, wall = time.process_time(), time.perf_counter()
    snap = source.refresh()
    return snap, time.perf_counter() - wall, time.process_time() - cpu, ask("count") - before


def render_times(source, renders):
    """Scrapes through the exporter's own serving path (exporter.exposition), fed by a real Poller:
    health metrics rendered per scrape, cloud metrics rendered once per refresh and cached."""
    from exporter.collectors.exporter import ExporterCollector
    from exporter.exposition import CloudCache, Exposition
    from exporter.ledger import JobLedger
    from exporter.poller import Poller
    from exporter.state import State

    cfg = source.cfg
    poller = Poller(source, cfg.name, cfg.refresh_interval, cfg.lookback, ledger=JobLedger(State(None), cfg.name))
    cache = CloudCache([poller])
    poller.on_refresh = cache.refresh
    exposition = Exposition(ExporterCollector(__version__, pollers=[poller], cloud_cache=cache), cache)
    exposition.render()                      # first scrape: the text format is now rendered per refresh
    if not poller.refresh_once():
        raise SystemExit(f"refresh failed: {poller.health.last_error}")
    body = exposition.render()[1]
    times = {}
    for label, encoding in (("identity", None), ("gzip", "gzip")):
        times[label] = []
        for _ in range(renders):
            t = time.perf_counter()
            exposition.render(None, encoding)
            times[label].append(time.perf_counter() - t)
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return times, len(body), series, cache.last_duration


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--servers", type=int, default=5_000)
    ap.add_argument("--refreshes", type=int, default=5, help="warm refreshes to time")
    ap.add_argument("--renders", type=int, default=200, help="generate_latest runs to time")
    args = ap.parse_args()

    parent, child = mp.Pipe()
    fake = mp.Process(target=serve_fake, args=(child, args.images, args.servers), daemon=True)
    fake.start()
    url, user, password = parent.recv()

    def ask(cmd):
        parent.send(cmd)
        return parent.recv()

    os.environ["OS_CLIENT_CONFIG_FILE"] = write_clouds_yaml(url, user, password)
    cfg = CloudConfig(name="bench", provider="openstack", cloud="bench", request_timeout=30.0)
    source = OpenStackSource(cfg, profiles.get("openstack"))
    rss_before = rss_mib()
    try:
        rows = []
        snap, wall, cpu, requests = timed_refresh(source, ask)
        rows.append(["cold (token, discovery)", f"{wall:.2f}", f"{cpu:.2f}", requests, f"{rss_mib():.0f}"])
        warm = []
        for _ in range(args.refreshes):
            snap, wall, cpu, requests = timed_refresh(source, ask)   # the previous snapshot is freed
            warm.append((wall, cpu, requests))
        rows.append([f"warm, median of {args.refreshes}", f"{statistics.median(w[0] for w in warm):.2f}",
                     f"{statistics.median(w[1] for w in warm):.2f}", warm[-1][2], f"{rss_mib():.0f}"])
        print(f"OpenStack refresh: {len(snap.images)} images, {len(snap.servers)} servers, "
              f"{len(snap.running_jobs)} running jobs, {len(snap.finished_jobs)} finished in the lookback")
        print(f"RSS before the first refresh: {rss_before:.0f} MiB (Python, openstacksdk, prometheus_client)\n")
        print(table(["refresh", "wall s", "CPU s", "HTTP requests", "RSS after, MiB"], rows))

        times, size, series, render = render_times(source, args.renders)
        print(f"\nScrape from the snapshot ({args.renders} scrapes each): {series} series, {size / 1024:.0f} KiB; "
              f"rendering the cloud part once per refresh took {render * 1e3:.0f} ms")
        print(table(["encoding", "p50 ms", "p99 ms", "max ms"],
                    [[label, f"{pct(t, 50) * 1e3:.1f}", f"{pct(t, 99) * 1e3:.1f}", f"{max(t) * 1e3:.1f}"]
                     for label, t in times.items()]))
    finally:
        source.close()
        ask("stop")
        fake.join(5)


if __name__ == "__main__":
    main()
