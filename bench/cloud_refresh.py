#!/usr/bin/env python3
"""Cloud mode: a refresh's CPU, and scrapes over HTTP while refreshes run.

    python bench/cloud_refresh.py [--sizes 10k/5k,50k/20k] [--refreshes 3] [--no-pause]

For each size, in a fresh child process: the fake OpenStack in a process of
its own (bench/cloud_scale.py's Fake), the exporter's Poller -> CloudCache ->
Exposition as exporter.app wires them, served by exporter.web (aiohttp) on
127.0.0.1. A third process scrapes /metrics back to back over one kept-alive
connection with Prometheus' Accept-Encoding (gzip), as Prometheus does, while
the exporter refreshes `--refreshes` times back to back; scrapes that
started during a refresh are the ones counted. Loopback, 2 shared cores.

"CPU s" is this process's CPU for a refresh (the source, rendering and the
collection after it), measured with the cyclic GC paused during the
refresh (the exporter as shipped) and, in the same process, without the
pause (exporter.poller.gc_paused replaced by a no-op: the code before issue 19).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import threading
import time

from common import ROOT, free_port, pct, table

SCRAPER = r'''
import http.client, json, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
out, end = [], time.time() + seconds
while time.time() < end:
    t0, w = time.time(), time.perf_counter()
    c.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
    r = c.getresponse(); r.read()
    out.append((t0, time.perf_counter() - w))
    time.sleep(0.002)
print(json.dumps(out))
'''


def child(images: int, servers: int, refreshes: int, switch: bool = True) -> dict:
    import cloud_scale
    from exporter import poller as poller_mod
    from exporter.web import make_server

    fake = cloud_scale.Fake("openstack", images, servers)
    h = cloud_scale.Harness(fake)
    port = free_port()
    app = h.exposition.wsgi_app()
    server = make_server(f"127.0.0.1:{port}", app)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        h.refresh()                                           # cold: token, discovery
        cpu = {}
        for label, pause in (("no pause (before)", False), ("GC paused (now)", True)):
            saved = poller_mod.gc_paused
            if not pause:
                poller_mod.gc_paused = contextlib.nullcontext
            try:
                runs = []
                for _ in range(2):
                    c0 = time.process_time()
                    h.refresh()
                    runs.append(time.process_time() - c0)
                cpu[label] = statistics.median(runs)
            finally:
                poller_mod.gc_paused = saved
        # Scrapes while refreshing back to back (with the pause, as shipped).
        if switch:
            poller_mod.favour_scrapes()             # as Poller.start does
        windows = []
        seconds_guess = 2 + refreshes * 8 * max(1, images / 10_000)
        scraper = subprocess.Popen([sys.executable, "-c", SCRAPER, str(port), str(seconds_guess)],
                                   stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        for _ in range(refreshes):
            t0 = time.time()
            h.refresh()
            windows.append((t0, time.time()))
        out = json.loads(scraper.communicate()[0])
        during = [d for t, d in out if any(a <= t < b for a, b in windows)]
        idle = [d for t, d in out if t > windows[-1][1] + 0.5]
    finally:
        server.shutdown()
        server.server_close()
        h.close()
        fake.stop()
    return {"images": images, "servers": servers, "cpu": cpu,
            "refresh_s": statistics.median(b - a for a, b in windows),
            "during": {"n": len(during), "p50": pct(during, 50) * 1e3, "p99": pct(during, 99) * 1e3,
                       "max": max(during) * 1e3} if during else None,
            "idle": {"n": len(idle), "p50": pct(idle, 50) * 1e3, "p99": pct(idle, 99) * 1e3} if idle else None}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10k/5k,50k/20k")
    ap.add_argument("--refreshes", type=int, default=3)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    ap.add_argument("--default-switch-interval", dest="switch", action="store_false",
                    help="keep Python's 5 ms GIL switch interval (before issue 19) instead of Poller.start's 1 ms")
    a = ap.parse_args(argv)
    if a.json:
        i, s = (int(x) for x in a.json.split("/"))
        print(json.dumps(child(i, s, a.refreshes, a.switch)))
        return 0
    import cloud_scale
    rows, cpu_rows = [], []
    for images, servers in cloud_scale.parse_sizes(a.sizes):
        out = subprocess.run([sys.executable, __file__, "--json", f"{images}/{servers}", "--refreshes",
                              str(a.refreshes)] + ([] if a.switch else ["--default-switch-interval"]),
                             capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            print(out.stderr[-2000:])
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        before, now = r["cpu"]["no pause (before)"], r["cpu"]["GC paused (now)"]
        cpu_rows.append([f"{images}/{servers}", f"{before:.2f}", f"{now:.2f}", f"{(1 - now / before) * 100:.0f} %"])
        d, i = r["during"], r["idle"]
        rows.append([f"{images}/{servers}", f"{r['refresh_s']:.1f}", d and d["n"], d and f"{d['p50']:.1f}",
                     d and f"{d['p99']:.1f}", d and f"{d['max']:.1f}", i and f"{i['p50']:.1f}/{i['p99']:.1f}"])
    print("OpenStack refresh CPU (this process: source + rendering + the collection after; median of 2 warm refreshes)")
    print(table(["images/servers", "CPU s, GC running (before)", "CPU s, GC paused (now)", "less"], cpu_rows))
    print("\nscrapes over HTTP (loopback, kept-alive, gzip) from another process while the exporter refreshes "
          f"back to back; GIL switch interval {'1 ms (Poller.start)' if a.switch else '5 ms (Python default)'}")
    print(table(["images/servers", "refresh s", "scrapes during", "p50 ms", "p99 ms", "max ms",
                 "idle p50/p99 ms"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
