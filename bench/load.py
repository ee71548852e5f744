#!/usr/bin/env python3
"""Load: many concurrent scrapers against one exporter in host mode.

    python bench/load.py [--scrapers 50] [--seconds 10]

Prints requests, errors (target 0), throughput and latency percentiles.
The scrapers run in a separate process, so the exporter's GIL is its own.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from common import ROOT, start_exporter, stop, table

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


def run(scrapers=50, seconds=10.0):
    proc, port, _ = start_exporter("host:\n  profile: rackspace-firstgen-linux\n")
    try:
        out = subprocess.run([sys.executable, "-c", CLIENT, str(port), str(scrapers), str(seconds)],
                             capture_output=True, text=True, cwd=ROOT, timeout=seconds + 60).stdout
        res = json.loads(out)
        alive = proc.poll() is None
    finally:
        stop(proc)
    lat = sorted(res["lat"])
    p = lambda q: lat[min(len(lat) - 1, int(q * (len(lat) - 1)))] * 1000 if lat else float("nan")  # noqa: E731
    return {"scrapers": scrapers, "seconds": seconds, "requests": res["ok"] + res["errors"], "errors": res["errors"],
            "rps": res["ok"] / seconds, "p50_ms": p(0.5), "p99_ms": p(0.99), "alive": alive}


def main():
    ap = argparse.ArgumentParser(description="concurrent scrape load")
    ap.add_argument("--scrapers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    r = run(a.scrapers, a.seconds)
    print(f"load: {r['scrapers']} concurrent scrapers for {r['seconds']:g} s, host mode, loopback")
    print(table(["requests", "errors", "req/s", "p50 ms", "p99 ms", "exporter alive"],
                [[r["requests"], r["errors"], f"{r['rps']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                  "yes" if r["alive"] else "NO"]]))
    return 0 if r["errors"] == 0 and r["alive"] else 1


if __name__ == "__main__":
    sys.exit(main())
