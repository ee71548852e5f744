#!/usr/bin/env python3
"""Linode under its published rate limits, with API latency, on a simulated clock.

    python bench/linode_limits.py [--instances 200,1000,5000] [--latency 0.05] [--hours 2]

What is real and what is simulated:

- real: the exporter's Poller driving the unpatched LinodeSource and
  linode_api4 over loopback HTTP to the fake (tests/fakes/linode_api.py),
  which enforces Akamai's published per-user limits (200 paginated
  collection GETs and 800 other requests per 60 s window, 429 with
  Retry-After); every request is really made and answered.
- simulated: time. One clock serves the source, the fake's scenario and its
  rate-limit windows. It moves by the real time that passes (the
  exporter's and the fake's CPU, both on this machine, so a pessimistic
  figure), plus the latency added to every answer (not slept), plus every
  wait: the source's waits for a window to reset and the poller's delays
  between refreshes (Poller.next_delay), which are not slept either.
  Two simulated hours of 5,000 instances run in about a minute.

Printed per size: when the first full picture (a refresh that left no
instance's details unread) came, how long each refresh took against its
interval, requests per steady refresh against list pages + instances that
changed (a backup running: their backups are re-read each refresh) + the
sweep's share (every instance's details re-read within
details_refresh_interval), 429s answered, and refreshes lost.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import threading
import time

from common import ROOT, table

sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from exporter import profiles  # noqa: E402
from exporter.config import CloudConfig  # noqa: E402
from exporter.poller import Poller  # noqa: E402
from exporter.sources.linode.source import LinodeSource  # noqa: E402
from fakes.linode_api import PUBLISHED_LIMITS, FakeLinodeAPI, RateLimiter, synthetic_scenario  # noqa: E402

TOKEN_ENV = "IMAGING_BENCH_LINODE_TOKEN"
PAGE = 500                      # exporter.sources.linode.PAGE_SIZE


class SimClock:
    """Epoch seconds: a start, plus the real time elapsed, plus the simulated waits."""

    def __init__(self, start: float):
        self._start, self._real0, self._skipped = start, time.monotonic(), 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._start + (time.monotonic() - self._real0) + self._skipped

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._skipped += max(0.0, seconds)


class Static(FakeLinodeAPI):
    """The synthetic account never changes: a collection's visible objects are computed once
    (the fake otherwise copies all 5,000 instances for every per-instance request)."""

    def _visible(self, collection, now):
        memo = self.__dict__.setdefault("_memo", {})
        if collection not in memo:
            memo[collection] = super()._visible(collection, now)
        return memo[collection]


def simulate(instances: int, latency: float, hours: float, interval: float, sweep: float) -> dict:
    clock = SimClock(time.time())
    api = Static("empty", clock=clock, rate_limiter=RateLimiter(clock=clock), latency=latency, sleep=clock.advance)
    api.scenario = synthetic_scenario(instances, now=clock())
    api.start()
    os.environ[TOKEN_ENV] = api.token
    cfg = CloudConfig(name="bench", provider="linode", api_url=api.url, token_env=TOKEN_ENV, request_timeout=30.0,
                      refresh_interval=interval, details_refresh_interval=sweep)
    src = LinodeSource(cfg, profiles.get("linode"), clock=clock, wall=clock, sleep=clock.advance)
    poller = Poller(src, "bench", interval, cfg.lookback, clock=clock)
    start = clock()
    rows, lost = [], 0
    try:
        while clock() - start < hours * 3600:
            began, before, rejected = clock(), len(api.requests), api.rate_limiter.rejected
            ok = poller.refresh_once()
            took = clock() - began
            snap = poller.snapshot
            lost += not ok
            rows.append({"at": began - start, "took": took, "ok": ok, "requests": len(api.requests) - before,
                         "reads": src.last_reads, "pending": snap.details_pending if ok and snap else None,
                         "429": api.rate_limiter.rejected - rejected, "delay": poller.next_delay()})
            clock.advance(rows[-1]["delay"])
    finally:
        src.close()
        api.stop()
    scen = api.scenario
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start - cfg.lookback - profiles.common().job_stuck_after))
    events = sum(1 for e in scen["events"] if e["created"] >= since)
    backups = sum(1 for i in scen["instances"] if i["backups"]["enabled"])
    running = sum(1 for b in scen["backups"].values() if any(x["status"] == "running" for x in b))
    pages = (math.ceil(len(scen["images"]) / PAGE) + math.ceil(instances / PAGE) + max(1, math.ceil(events / PAGE)))
    reads = instances + backups
    full = next((i for i, r in enumerate(rows) if r["pending"] == 0), None)
    steady = [r for r in rows[full + 1:]] if full is not None else []
    return {"instances": instances, "latency": latency, "interval": interval, "sweep": sweep, "rows": rows,
            "lost": lost, "pages": pages, "changed": running, "sweep_share": math.ceil(reads * interval / sweep),
            "full": full, "full_at": (rows[full]["at"] + rows[full]["took"]) if full is not None else None,
            "steady": steady, "rejected": sum(r["429"] for r in rows), "hours": hours}


def report(r) -> str:
    steady = r["steady"]
    bound = r["pages"] + r["changed"] + r["sweep_share"]
    lines = [f"{r['instances']} instances: {len(r['rows'])} refreshes in {r['hours']:g} simulated hours; "
             f"refresh_interval {r['interval']:g} s, details_refresh_interval {r['sweep']:g} s, "
             f"{r['latency'] * 1e3:g} ms added per answer"]
    if r["full"] is None:
        lines.append("  no full picture within the run")
    else:
        lines.append(f"  first full picture: refresh {r['full'] + 1}, {r['full_at'] / 60:.1f} simulated minutes "
                     f"after start")
    if steady:
        reqs = [s["requests"] for s in steady]
        lines.append(f"  steady refreshes ({len(steady)}): took {max(s['took'] for s in steady):.0f} s at most "
                     f"(interval {r['interval']:g} s; median {statistics.median(s['took'] for s in steady):.0f} s); "
                     f"requests median {statistics.median(reqs):.0f}, max {max(reqs)}; "
                     f"bound = list pages {r['pages']} + changed {r['changed']} + sweep share {r['sweep_share']} "
                     f"= {bound}; left details pending in {sum(1 for s in steady if s['pending'])}")
    lines.append(f"  429s answered: {r['rejected']} (each waited out inside a refresh); refreshes lost: {r['lost']}")
    return "\n".join(lines)


def timeline(r) -> str:
    rows = [[i + 1, f"{x['at'] / 60:.1f}", f"{x['took']:.0f}", "yes" if x["ok"] else "LOST", x["requests"],
             x["reads"], "-" if x["pending"] is None else x["pending"], x["429"], f"{x['delay']:.0f}"]
            for i, x in enumerate(r["rows"][:12])]
    return table(["refresh", "start min", "took s", "ok", "requests", "detail reads", "pending after", "429s",
                  "next in s"], rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", default="200,1000,5000")
    ap.add_argument("--latency", type=float, default=0.05, help="seconds added to every answer (simulated)")
    ap.add_argument("--hours", type=float, default=2.0, help="simulated hours per size")
    ap.add_argument("--interval", type=float, default=300.0, help="refresh_interval")
    ap.add_argument("--sweep", type=float, default=3600.0, help="details_refresh_interval")
    ap.add_argument("--timeline", action="store_true", help="print the first refreshes of each size")
    a = ap.parse_args(argv)
    lim = ", ".join(f"{k} {n}/{w:g} s" for k, (n, w) in PUBLISHED_LIMITS.items())
    print(f"Linode against the fake enforcing the published limits ({lim}); SIMULATED clock: real elapsed "
          f"time + {a.latency * 1e3:g} ms per answer + waits (see bench/linode_limits.py)")
    for n in (int(x) for x in a.instances.split(",")):
        r = simulate(n, a.latency, a.hours, a.interval, a.sweep)
        print(report(r))
        if a.timeline:
            print(timeline(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
