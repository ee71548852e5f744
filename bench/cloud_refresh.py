#!/usr/bin/env python3
"""Cloud mode: a refresh's CPU, and scrapes over HTTP while refreshes run.

    python bench/cloud_refresh.py [--sizes 10k/5k,50k/20k] [--refreshes 3] [--rounds 2] [--churn 0.0002]

For each size, in a fresh child process: the fake OpenStack in a process of
its own (bench/cloud_scale.py's Fake), the exporter's Poller -> CloudCache ->
Exposition as exporter.app wires them, served by exporter.web (aiohttp) on
127.0.0.1. A third process scrapes /metrics back to back over one kept-alive
connection with Prometheus' Accept-Encoding (gzip), as Prometheus does, while
the exporter refreshes 2 x `--refreshes` times back to back, alternating
between scrapes answered on the server's event loop (as shipped, from the held
gzip body) and on its thread pool (as before); scrapes that started during a
refresh are the ones counted. Loopback, 2 shared cores.

"CPU s" is this process's CPU for a refresh (the source, rendering and the
collection after it), in the same process three ways, alternating: "before"
(exporter.poller.gc_paused replaced by a no-op, CloudCache.reuse and the
source's reuse off: issue 19's baseline, every object built and every line
rendered with the GC running), "GC paused" and "now" (as shipped: the GC
paused, the previous snapshot's unchanged objects reused by the source and
the lines of unchanged runs of objects by the cache). Before each refresh the fake's account changes (--churn:
images created at the top of the listing, deleted and changed at random
places, servers renamed), so "now" re-renders what a real account changes.
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
import http.client, json, select, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
out, end = [], time.time() + seconds
while time.time() < end and not select.select([sys.stdin], [], [], 0)[0]:    # until told to stop
    t0, w = time.time(), time.perf_counter()
    c.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
    r = c.getresponse(); r.read()
    out.append((t0, time.perf_counter() - w))
    time.sleep(0.002)
print(json.dumps(out))
'''


# Images created, deleted and changed (each) before every refresh, as a fraction of the images
# (and a fifth as many servers renamed): 50k images kept ~30 days is ~1,700 created and deleted
# a day, ~6 of each in a 5-minute interval; 0.0002 is 10 of each at 50k.
CHURN = 0.0002

# The refresh CPU is measured three ways in the same process, alternating, each round:
CONFIGS = (
    ("before", False, False),           # the code before issue 19: GC running, every object and line made anew
    ("GC paused", True, False),         # the GC paused during a refresh, every object and line made anew
    ("now", True, True),                # and unchanged objects (source) and runs' lines (cache) reused
)


def child(images: int, servers: int, refreshes: int, switch: bool = True, churn: float = 0.0,
          rounds: int = 2) -> dict:
    import cloud_scale
    from exporter import poller as poller_mod
    from exporter.web import make_server

    from exporter.app import Exporter
    from exporter.state import State

    fake = cloud_scale.Fake("openstack", images, servers)
    h = cloud_scale.Harness(fake)
    port = free_port()
    # The app as the CLI serves it (exporter.app.Exporter.wsgi_app): its quick() lets the web
    # handler answer a scrape of the held gzip body on its event loop. on_loop[0] False sends
    # every scrape to the handler's thread pool instead (how cloud scrapes were answered before).
    app = Exporter(State(None), [h.poller], h.exposition).wsgi_app()
    shipped_quick, on_loop = app.quick, [True]
    app.quick = lambda environ: on_loop[0] and shipped_quick(environ)
    server = make_server(f"127.0.0.1:{port}", app)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    changes = round(images * churn)
    seed = iter(range(1_000_000))

    def refresh():
        if changes:
            fake.churn(changes, next(seed))
        c0 = time.process_time()
        r = h.refresh()
        return time.process_time() - c0, r["cpu"], r["render_cpu_ms"] / 1e3

    try:
        h.refresh()                                           # cold: token, discovery
        runs = {label: [] for label, _, _ in CONFIGS}
        rendered = []
        saved = poller_mod.gc_paused
        for _ in range(rounds):
            for label, pause, reuse in CONFIGS:
                poller_mod.gc_paused = saved if pause else contextlib.nullcontext
                h.cache.reuse = h.source.source.reuse = reuse
                try:
                    if reuse:
                        refresh()          # the previous refresh rendered without keeping pieces
                    runs[label].append(refresh())
                    if reuse:
                        rendered = list(h.cache.pieces_rendered.values())
                finally:
                    poller_mod.gc_paused = saved
                    h.cache.reuse = h.source.source.reuse = True
        cpu = {label: [statistics.median(x[i] for x in r) for i in range(3)] for label, r in runs.items()}
        # Scrapes while refreshing back to back (with the pause, as shipped).
        if switch:
            poller_mod.favour_scrapes()             # as Poller.start does
        windows = []            # (start, end, answered on the loop)
        seconds_guess = 2 + 2 * refreshes * 8 * max(1, images / 10_000)
        scraper = subprocess.Popen([sys.executable, "-c", SCRAPER, str(port), str(seconds_guess)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        for i in range(2 * refreshes):             # alternating: on the loop (as shipped), on the pool
            on_loop[0] = i % 2 == 0
            if changes:
                fake.churn(changes, next(seed))
            t0 = time.time()
            h.refresh()
            windows.append((t0, time.time(), on_loop[0]))
        on_loop[0] = True
        time.sleep(2.0)                             # idle scrapes after the last refresh
        out = json.loads(scraper.communicate("stop\n")[0])
        during = [d for t, d in out if any(a <= t < b for a, b, loop in windows if loop)]
        pooled = [d for t, d in out if any(a <= t < b for a, b, loop in windows if not loop)]
        idle = [d for t, d in out if t > windows[-1][1] + 0.5]
    finally:
        server.shutdown()
        server.server_close()
        h.close()
        fake.stop()
    return {"images": images, "servers": servers, "cpu": cpu, "changes": changes, "rendered": rendered,
            "refresh_s": statistics.median(b - a for a, b, _ in windows),
            "during": {"n": len(during), "p50": pct(during, 50) * 1e3, "p99": pct(during, 99) * 1e3,
                       "max": max(during) * 1e3} if during else None,
            "pooled": {"n": len(pooled), "p50": pct(pooled, 50) * 1e3, "p99": pct(pooled, 99) * 1e3,
                       "max": max(pooled) * 1e3} if pooled else None,
            "idle": {"n": len(idle), "p50": pct(idle, 50) * 1e3, "p99": pct(idle, 99) * 1e3} if idle else None}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10k/5k,50k/20k")
    ap.add_argument("--refreshes", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="rounds of the three CPU configurations (median)")
    ap.add_argument("--churn", type=float, default=CHURN,
                    help="images created, deleted and changed before each refresh, each as a fraction of the images")
    ap.add_argument("--json", help=argparse.SUPPRESS)
    ap.add_argument("--default-switch-interval", dest="switch", action="store_false",
                    help="keep Python's 5 ms GIL switch interval (before issue 19) instead of Poller.start's 1 ms")
    a = ap.parse_args(argv)
    if a.json:
        i, s = (int(x) for x in a.json.split("/"))
        print(json.dumps(child(i, s, a.refreshes, a.switch, a.churn, a.rounds)))
        return 0
    import cloud_scale
    rows, cpu_rows = [], []
    for images, servers in cloud_scale.parse_sizes(a.sizes):
        out = subprocess.run([sys.executable, __file__, "--json", f"{images}/{servers}", "--refreshes",
                              str(a.refreshes), "--churn", str(a.churn), "--rounds", str(a.rounds)]
                             + ([] if a.switch else ["--default-switch-interval"]),
                             capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            print(out.stderr[-2000:])
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        cpu = r["cpu"]
        before = cpu["before"][0]
        again = ", ".join(f"{n} of {of}" for n, of in r["rendered"])
        cpu_rows.append([f"{images}/{servers}", f"{r['changes']} ({again} runs rendered)"]
                        + [f"{cpu[label][0]:.2f} ({cpu[label][1]:.2f} + {cpu[label][2]:.2f})"
                           for label, _, _ in CONFIGS]
                        + [f"{cpu['now'][0] / before:.2f} ({(1 - cpu['now'][0] / before) * 100:.0f} % less)"])
        d, p, i = r["during"], r["pooled"], r["idle"]
        rows.append([f"{images}/{servers}", f"{r['refresh_s']:.1f}", d and d["n"], d and f"{d['p50']:.1f}",
                     d and f"{d['p99']:.1f}", d and f"{d['max']:.1f}",
                     p and f"{p['p50']:.1f} / {p['p99']:.1f} / {p['max']:.1f}", i and f"{i['p50']:.1f}/{i['p99']:.1f}"])
    print(f"OpenStack refresh CPU s of this process: total (source + rendering); median of {a.rounds} rounds, "
          "the three alternating in each; 'changes': images created, deleted and changed (each) before every refresh")
    print(table(["images/servers", "changes", "before: GC running, all rendered", "GC paused, all rendered",
                 "now: GC paused, unchanged runs reused", "now / before"], cpu_rows))
    print("\nscrapes over HTTP (loopback, kept-alive, gzip) from another process while the exporter refreshes "
          f"back to back; GIL switch interval {'1 ms (Poller.start)' if a.switch else '5 ms (Python default)'}; "
          "refreshes alternate between scrapes answered on the event loop (as shipped: the held gzip body) "
          "and on the thread pool (before)")
    print(table(["images/servers", "refresh s", "scrapes during", "p50 ms", "p99 ms", "max ms",
                 "pool: p50 / p99 / max ms", "idle p50/p99 ms"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
