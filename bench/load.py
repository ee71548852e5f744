#!/usr/bin/env python3
"""Load: many concurrent scrapers against one exporter in host mode.

    python bench/load.py [--scrapers 50] [--seconds 10] [--warm]

Prints requests, errors (target 0), throughput and latency percentiles.
By default the burst starts right after the exporter does (its first
scrape); --warm adds a run where one scrape went first.
The scrapers run in a separate process, so the exporter's GIL is its own.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from common import ROOT, get, start_exporter, stop, table

CLIENT = r"""
import http.client, json, sys, threading, time
port, scrapers, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
lat, errors, lock = [], [0], threading.Lock()
deadline = time.monotonic() + seconds
def worker():
    while time.monotonic() < deadline:
        t = time.perf_counter()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/metrics")
            r = c.getresponse(); r.read(); c.close()
            ok = r.status == 200
        except Exception:
            ok = False
        with lock:
            if ok: lat.append(time.perf_counter() - t)
            else: errors[0] += 1
threads = [threading.Thread(target=worker) for _ in range(scrapers)]
[t.start() for t in threads]; [t.join() for t in threads]
print(json.dumps({"ok": len(lat), "errors": errors[0], "lat": lat}))
"""


def run(scrapers=50, seconds=10.0, warm=False):
    """warm: one scrape before the burst, so the exporter's caches (database processes, disks) are filled."""
    proc, port, _ = start_exporter("host:\n  profile: rackspace-firstgen-linux\n")
    try:
        if warm:
            get(port)
        out = subprocess.run([sys.executable, "-c", CLIENT, str(port), str(scrapers), str(seconds)],
                             capture_output=True, text=True, cwd=ROOT, timeout=seconds + 60).stdout
        res = json.loads(out)
        alive = proc.poll() is None
    finally:
        stop(proc)
    lat = sorted(res["lat"])
    p = lambda q: lat[min(len(lat) - 1, int(q * (len(lat) - 1)))] * 1000 if lat else float("nan")  # noqa: E731
    return {"scrapers": scrapers, "seconds": seconds, "warm": warm, "requests": res["ok"] + res["errors"], "errors": res["errors"],
            "rps": res["ok"] / seconds, "p50_ms": p(0.5), "p99_ms": p(0.99), "max_ms": p(1.0),
            "over_1s": sum(1 for t in lat if t > 1.0), "alive": alive}


HEADERS = ["start", "requests", "errors", "req/s", "p50 ms", "p99 ms", "max ms", "> 1 s", "exporter alive"]


def row(r):
    return ["warm" if r["warm"] else "cold", r["requests"], r["errors"], f"{r['rps']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
            f"{r['max_ms']:.0f}", r["over_1s"], "yes" if r["alive"] else "NO"]


def main():
    ap = argparse.ArgumentParser(description="concurrent scrape load")
    ap.add_argument("--scrapers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warm", action="store_true",
                    help="also run once after one warm-up scrape (the caches filled before the burst)")
    a = ap.parse_args()
    results = [run(a.scrapers, a.seconds)] + ([run(a.scrapers, a.seconds, warm=True)] if a.warm else [])
    print(f"load: {a.scrapers} concurrent scrapers for {a.seconds:g} s, host mode, loopback")
    print(table(HEADERS, [row(r) for r in results]))
    print("cold: the burst is the exporter's first scrape; warm: one scrape went before it")
    return 0 if all(r["errors"] == 0 and r["alive"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
