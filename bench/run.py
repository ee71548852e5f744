#!/usr/bin/env python3
"""Every benchmark in one go, with the machine they ran on and the targets of issue 8.

    python bench/run.py [--quick] [--no-linode]

Runs, one after the other (never two at once, they would share the cores):
host scrape latency against node_exporter (bench/host_scrape.py), cloud
mode at three OpenStack sizes (and 10k once more with Prometheus' Accept
header, i.e. OpenMetrics) and three Linode sizes, each size in a fresh
process (bench/cloud_scale.py --sizes), 50 concurrent scrapers for 10 s
(bench/load.py) and the idle cost at a 15 s scrape interval (bench/idle.py).
About three minutes on 2 cores; --quick cuts the repetitions (about one
minute) for a smoke run whose figures are noisier.

The figures are printed, never asserted: timings depend on the machine and
on whatever else runs on it. Each target line says met or MISSED.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

from common import ROOT, table

import cloud_scale
import host_scrape
import idle
import load

MB = 10**6
MIB = 2**20
RSS_TARGET_MB = 150
SCRAPE_P99_TARGET_MS = 20.0
DEFAULT_REFRESH_INTERVAL = 300.0      # exporter.config.CloudConfig.refresh_interval
OPENSTACK_CONSTANT = 4                # Glance usage + an empty last page per listing (3)


def machine() -> list:
    def cpuinfo(key):
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.split(":")[0].strip() == key:
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return platform.processor() or "unknown"

    def meminfo():
        try:
            with open("/proc/meminfo") as f:
                kib = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
            return f"{kib / 2**20:.1f} GiB"
        except (OSError, StopIteration, ValueError):
            return "unknown"

    def git():
        try:
            rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=ROOT, timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                   text=True, cwd=ROOT, timeout=10).stdout.strip()
            return f"{rev}{' + uncommitted changes' if dirty else ''}" if rev else "unknown"
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"

    load1, load5, _ = os.getloadavg()
    return [
        ["CPU", f"{cpuinfo('model name')} ({os.cpu_count()} cores online)"],
        ["memory", meminfo()],
        ["kernel", f"{platform.system()} {platform.release()}"],
        ["Python", f"{platform.python_implementation()} {platform.python_version()}"],
        ["node_exporter", host_scrape.node_exporter_version()],
        ["commit", git()],
        ["load average at start", f"{load1:.2f} (1 min), {load5:.2f} (5 min)"],
        ["date", time.strftime("%Y-%m-%d %H:%M:%S %Z")],
    ]


def section(title: str) -> None:
    print(f"\n## {title}\n", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, about a minute; noisier figures")
    ap.add_argument("--no-linode", dest="linode", action="store_false", help="skip the Linode sizes")
    a = ap.parse_args()
    scrapes = 200 if a.quick else 500
    refreshes, renders = (1, 20) if a.quick else (2, 50)
    load_seconds = 5.0 if a.quick else 10.0
    idle_seconds, idle_scrapes = (5.0, 50) if a.quick else (20.0, 200)
    started = time.monotonic()

    machine_rows = machine()
    print("# imaging-exporter benchmarks" + (" (--quick)" if a.quick else ""))
    section("machine")
    width = max(len(k) for k, _ in machine_rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in machine_rows))

    section(f"host scrape latency against node_exporter ({scrapes} scrapes each, alternating)")
    host, node_bin = host_scrape.run(scrapes)
    print(host_scrape.report(host, scrapes, node_bin))
    host_ratios = host_scrape.ratios(host)

    section("cloud mode by size")
    openstack = [cloud_scale.run_child("openstack", i, s, refreshes, renders)
                 for i, s in cloud_scale.parse_sizes(cloud_scale.DEFAULT_SIZES)]
    cloud_scale.print_sizes("openstack", openstack)
    om = cloud_scale.run_child("openstack", 10_000, 5_000, refreshes, renders, openmetrics=True)
    print("\nthe same at 10k/5k, scraped with Prometheus' Accept header (it negotiates OpenMetrics):")
    print(cloud_scale.sizes_table([om]))
    linode = []
    if a.linode:
        print()
        # The largest account costs ~4,000 requests a refresh: one warm refresh is enough to time it.
        linode = [cloud_scale.run_child("linode", i, s, 1 if s >= 2000 else refreshes, renders)
                  for i, s in cloud_scale.parse_sizes(cloud_scale.DEFAULT_LINODE_SIZES)]
        cloud_scale.print_sizes("linode", linode)
    print("\ncloud CPU per hour at the default 300 s refresh interval, projected from the warm refresh "
          "(source refresh + rendering, 12 times an hour; scrapes add ~0.4 ms CPU each):")
    rows = [[r["provider"], f"{r['images']}/{r['servers']}",
             f"{(r['warm']['cpu'] + r['warm']['render_cpu_ms'] / 1e3) * 3600 / DEFAULT_REFRESH_INTERVAL:.1f}"]
            for r in openstack + linode]
    print(table(["provider", "images/servers", "CPU s/h"], rows))

    section(f"load: 50 concurrent scrapers for {load_seconds:g} s (host mode)")
    lr = load.run(50, load_seconds)
    lw = load.run(50, load_seconds, warm=True)
    print(table(load.HEADERS, [load.row(lr), load.row(lw)]))
    print("cold: the burst is the exporter's first scrape; warm: one scrape went before it")

    section("idle cost at a 15 s scrape interval (host mode)")
    idle_results = idle.measure_all(idle_seconds, idle_scrapes)
    print(table(idle.HEADERS, idle.rows(idle_results)))
    per_hour = idle_results["host"][2]
    peer = idle_results.get("node_exporter (peer)")

    section("targets (issue 8)")
    mid = next((r for r in openstack if r["images"] == 10_000), openstack[len(openstack) // 2])
    big = max(openstack, key=lambda r: r["images"])
    p99 = max(mid["scrape_ms"]["identity"]["p99"], mid["scrape_ms"]["gzip"]["p99"])
    constants = [r["warm_requests"] - r["pages"] for r in openstack]
    linode_constants = [r["warm_requests"] - r["pages"] for r in linode]
    peak_mb = big["rss_peak_refreshes"] * MIB / MB
    plain_peak_mb = big["rss_peak"] * MIB / MB
    steady_mb = big["rss_warm"] * MIB / MB
    verdict = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    rows = [
        ["host scrape p50 / node_exporter <= 1.0", f"{host_ratios['new']:.2f} new connections, "
         f"{host_ratios['keep-alive']:.2f} keep-alive, {host_ratios['prometheus']:.2f} as Prometheus scrapes",
         verdict(max(host_ratios.values()) <= 1.0)],
        [f"cloud scrape p99 < {SCRAPE_P99_TARGET_MS:g} ms at {mid['images']}/{mid['servers']}",
         f"{mid['scrape_ms']['identity']['p99']:.2f} ms plain, {mid['scrape_ms']['gzip']['p99']:.2f} ms gzip",
         verdict(p99 < SCRAPE_P99_TARGET_MS)],
        ["refresh requests <= pages + small constant",
         f"OpenStack +{max(constants)} (at most {OPENSTACK_CONSTANT}: usage, empty last pages)"
         + (f"; Linode +{max(linode_constants)}" if linode else ""),
         verdict(max(constants) <= OPENSTACK_CONSTANT and all(c <= 0 for c in linode_constants))],
        ["0 errors under 50 scrapers", f"{lr['errors'] + lw['errors']} errors in "
         f"{lr['requests'] + lw['requests']} requests (cold and warm)",
         verdict(lr["errors"] + lw["errors"] == 0 and lr["alive"] and lw["alive"])],
        [f"RSS < {RSS_TARGET_MB} MB at {big['images']} images",
         f"peak {peak_mb:.0f} MB, {steady_mb:.0f} MB after a warm refresh (gzip scrapes); "
         f"{plain_peak_mb:.0f} MB peak with plain-text scrapes too",
         verdict(peak_mb < RSS_TARGET_MB)],
        ["idle CPU s/h (host, 15 s scrapes)", f"{per_hour:.2f} CPU s/h"
         + (f" (node_exporter {peer[2]:.2f})" if peer else ""), "reported (no threshold set)"],
    ]
    print(table(["target", "measured", "verdict"], rows, left=3))
    print(f"\n(MB = 10^6 bytes; the tables above are in MiB. Whole run: {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
