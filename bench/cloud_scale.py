#!/usr/bin/env python3
"""Cloud mode at scale: refreshing a big project or account, and scraping it.

    python bench/cloud_scale.py [--images 10000] [--servers 5000] [--refreshes 5] [--renders 200]
    python bench/cloud_scale.py --sizes 1k/500,10k/5k,50k/20k [--linode-sizes 100,500,2000]
    python bench/cloud_scale.py --sizes 50k/20k --linode-sizes "" --churn 10   # the account changes between refreshes
    python bench/cloud_scale.py --provider linode --instances 500
    python bench/cloud_scale.py --linode-requests [100,500,2000]   # requests per refresh, before/after, vs rate limits
    python bench/cloud_scale.py --openmetrics        # scrape as Prometheus does (OpenMetrics)
    python bench/cloud_scale.py --images 50000 --servers 20000 --tracemalloc    # minutes: traces 1M blocks

The fake API (tests/fakes/openstack_api.py, tests/fakes/linode_api.py) runs
in a child process, so this process's RSS and CPU time are the exporter side
only. The exporter's own serving path is driven as the exporter drives it: a
Poller refreshes the real source through the unpatched SDK (openstacksdk,
linode_api4) over loopback HTTP and then calls CloudCache.refresh, which
renders the cloud metrics once per refresh; Exposition joins them per scrape.
Measured: a cold refresh (token, discovery) and warm ones: wall and CPU time
of the source's refresh, HTTP requests, the per-refresh rendering, RSS; then
scrapes from the snapshot (Exposition.render, in-process, plain and gzip).

With --sizes, every size runs in a fresh child process (this script with
--json), so the peak RSS (ru_maxrss) is that size's own; one table shows how
each figure grows with size.

Linode has no bulk endpoint for disks or backups: the first refresh costs
two requests per instance (each ~2 ms of SDK and HTTP CPU), later ones
only for the instances that changed plus a sweep's share
(exporter/sources/linode/details.py), so its sizes are instance counts a
hundred times smaller than OpenStack's image counts. --linode-requests
counts the requests of each refresh on the fake's own clock (no waiting),
before (the previous code: every instance every refresh) and after, and
runs the refreshes against the fake enforcing the published rate limits.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psutil
import yaml

from common import ROOT, pct, table

sys.path.insert(0, ROOT)

from exporter import profiles
from exporter.config import CloudConfig, cloud_config

MIB = 2**20
OPENSTACK_PAGE = 1000      # exporter.sources.openstack.source.PAGE_SIZE
LINODE_PAGE = 500          # exporter.sources.linode.source.PAGE_SIZE
DEFAULT_SIZES = "1k/500,10k/5k,50k/20k"
DEFAULT_LINODE_SIZES = "100,500,2000"
LINODE_TOKEN_ENV = "IMAGING_BENCH_LINODE_TOKEN"
# What Prometheus sends: it negotiates OpenMetrics, which the cache then renders after every refresh.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


# ---- the fakes, each in a child process ---------------------------------------------

def serve_fake(conn, images, servers):
    """Child process: the fake OpenStack; answers "count" (requests so far) and "stop"."""
    from tests.fakes.openstack_api import FakeOpenStack
    from tests.fakes.openstack_scenarios import synthetic_scenario
    fake = FakeOpenStack(synthetic_scenario(images=images, servers=servers)).start()
    conn.send((fake.url, fake.user, fake.password))
    _serve_commands(conn, fake, lambda: len(fake.requests))


def serve_fake_linode(conn, instances, images, window):
    """Child process: the fake Linode API with a synthetic account; same commands as serve_fake.

    window: how far back the source asks for events (lookback + the stuck threshold)."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from fakes.linode_api import FakeLinodeAPI, format_time
    from fakes.linode_synthetic import synthetic_scenario

    class Fast(FakeLinodeAPI):
        """The fake lists a collection by copying every object on each request, so each
        per-instance request costs O(instances) in the fake; a synthetic account never
        changes, so what was visible in a second is reused (the answers are the same)."""
        _memo: dict = {}

        def _visible(self, collection, now):
            key = (collection, now)
            if key not in self._memo:
                self._memo.clear() if len(self._memo) > 16 else None
                self._memo[key] = super()._visible(collection, now)
            return self._memo[key]

    fake = Fast(synthetic_scenario(instances, images=images, now=time.time()), clock=time.time)
    fake.start()
    since = format_time(fake.clock() - window)
    running = {b["linode_id"] for b in fake.objects("backups") if b["status"] == "running"}
    conn.send((fake.url, fake.token, sum(1 for e in fake.objects("events") if e["created"] >= since),
               sum(1 for i in fake.objects("instances") if i["backups"]["enabled"]), len(running)))
    _serve_commands(conn, fake, lambda: len(fake.requests))


def churn_openstack(fake, n: int, seed: int) -> None:
    """n images created (newest first, so at the top of the listing), n deleted and n changed
    (a name) at random places, and n // 5 servers renamed: an account's changes between refreshes."""
    import random
    rnd = random.Random(seed)
    with fake._lock:
        imgs, srv = fake._state["images"], fake._state["servers"]
        now = time.time()
        for victim in rnd.sample(sorted(imgs), min(n, len(imgs))):
            del imgs[victim]
        for changed in rnd.sample(sorted(imgs), min(n, len(imgs))):
            imgs[changed] = {**imgs[changed], "name": imgs[changed]["name"] + "-x", "updated_at": now}
        for i in range(n):
            iid = f"new-{seed}-{i}"
            imgs[iid] = {"name": iid, "status": "active", "size": 2_000_000_000 + i, "server": next(iter(srv), ""),
                         "image_type": "snapshot", "project": fake.project_id, "visibility": "private",
                         "created_at": now, "updated_at": now}
        for changed in rnd.sample(sorted(srv), min(n // 5, len(srv))):
            srv[changed] = {**srv[changed], "name": srv[changed]["name"] + "-x"}
        fake._sorted = {kind: sorted(objs, key=lambda oid, o=objs: (o[oid]["created_at"], oid), reverse=True)
                        for kind, objs in fake._state.items()}


def _serve_commands(conn, fake, count):
    while True:
        cmd = conn.recv()
        if cmd == "count":
            conn.send(count())
        elif isinstance(cmd, tuple) and cmd[0] == "churn":     # bench/cloud_refresh.py
            churn_openstack(fake, *cmd[1:])
            conn.send("churned")
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


class Fake:
    """A fake cloud in a child process, and the source that reads it."""

    def __init__(self, provider: str, images: int, servers: int):
        self.provider, self.images, self.servers = provider, images, servers
        self._conn, child = mp.Pipe()
        if provider == "openstack":
            target, args = serve_fake, (child, images, servers)
        else:
            window = CloudConfig.lookback + profiles.common().job_stuck_after
            target, args = serve_fake_linode, (child, servers, images, window)
        self._proc = mp.Process(target=target, args=args, daemon=True)
        self._proc.start()
        hello = self._conn.recv()
        if provider == "openstack":
            os.environ["OS_CLIENT_CONFIG_FILE"] = write_clouds_yaml(*hello)
            self.cfg = cloud_config("openstack", "bench", cloud="bench", request_timeout=30.0)
            self.events, self.backups, self.running = 0, 0, 0
        else:
            url, token, self.events, self.backups, self.running = hello
            os.environ[LINODE_TOKEN_ENV] = token
            self.cfg = cloud_config("linode", "bench", api_url=url, token_env=LINODE_TOKEN_ENV,
                                   request_timeout=30.0)

    def source(self):
        if self.provider == "openstack":
            from exporter.sources.openstack.source import OpenStackSource
            return OpenStackSource(self.cfg, profiles.get("openstack"))
        from exporter.sources.linode.source import LinodeSource
        return LinodeSource(self.cfg, profiles.get("linode"))

    def pages(self) -> int:
        """The requests a warm refresh cannot do without: the listings' pages (each at least one);
        for Linode also the per-instance reads that are due: the instances whose backup is running
        (re-read until it ends) and the sweep's share, ceil(reads x refresh_interval / sweep)."""
        if self.provider == "openstack":
            # images, hidden images, servers, volume snapshots (none hidden or in Cinder here)
            return sum(max(1, math.ceil(n / OPENSTACK_PAGE)) for n in (self.images, 0, self.servers, 0))
        lists = sum(max(1, math.ceil(n / LINODE_PAGE)) for n in (self.images, self.servers, self.events))
        reads = self.servers + self.backups
        sweep = math.ceil(reads * self.cfg.refresh_interval / self.cfg.options["details_refresh_interval"])
        return lists + self.running + sweep

    def requests(self) -> int:
        self._conn.send("count")
        return self._conn.recv()

    def churn(self, n: int, seed: int) -> None:
        """OpenStack: n images created, n deleted, n changed, n // 5 servers renamed (churn_openstack)."""
        self._conn.send(("churn", n, seed))
        self._conn.recv()

    def stop(self):
        self._conn.send("stop")
        self._conn.recv()
        self._proc.join(5)


# ---- measuring, in this process --------------------------------------------------------

def rss_mib() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / MIB


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # KiB on Linux


class Timed:
    """The source, with the wall and CPU time of its last refresh() (the poller adds the rendering)."""

    def __init__(self, source):
        self.source, self.provider, self.last = source, source.provider, (0.0, 0.0)

    def refresh(self):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return self.source.refresh()
        finally:
            self.last = (time.perf_counter() - wall, time.process_time() - cpu)

    def close(self):
        self.source.close()


class Harness:
    """Poller -> CloudCache rendered per refresh -> Exposition joined per scrape, wired by exporter.app."""

    def __init__(self, fake: Fake, accept=None):
        from exporter.app import build_exposition
        from exporter.poller import Poller
        from exporter.state import State

        self.fake, self.accept = fake, accept
        self.source = Timed(fake.source())
        cfg = fake.cfg
        self.poller = Poller(self.source, cfg.name, cfg.refresh_interval, cfg.lookback,
                             state=State(None))
        self.exposition = build_exposition([self.poller])
        self.cache = self.exposition.cloud
        self.render_cpu = 0.0
        self.poller.on_refresh = self._render     # the cache's refresh, with its CPU time taken
        # A scrape before the first refresh, gzipped as Prometheus asks: from now on its
        # format is rendered (and only its gzip kept) after each refresh.
        self.exposition.render(accept, "gzip")

    def _render(self):
        cpu = time.process_time()
        self.cache.refresh()
        self.render_cpu = time.process_time() - cpu

    def refresh(self) -> dict:
        before = self.fake.requests()
        if not self.poller.refresh_once():
            raise SystemExit(f"refresh failed: {self.poller.health.errors} (the reason is logged above)")
        wall, cpu = self.source.last
        return {"wall": wall, "cpu": cpu, "requests": self.fake.requests() - before,
                "render_ms": self.cache.stats.last_duration * 1e3, "render_cpu_ms": self.render_cpu * 1e3}

    def scrapes(self, renders: int) -> dict:
        """Scrape latencies; the first plain scrape (it renders the plain body, kept from then on) untimed."""
        times = {}
        for label, encoding in (("gzip", "gzip"), ("identity", None)):
            self.exposition.render(self.accept, encoding)
            times[label] = []
            for _ in range(renders):
                t = time.perf_counter()
                self.exposition.render(self.accept, encoding)
                times[label].append(time.perf_counter() - t)
        return times

    def close(self):
        self.source.close()


def measure(provider: str, images: int, servers: int, refreshes: int, renders: int, accept=None,
            churn: int = 0) -> dict:
    """Every figure for one size; `servers` is the instance count for Linode; accept: the scrapes' Accept;
    churn: OpenStack images created, deleted and changed (each) before every warm refresh."""
    fake = Fake(provider, images, servers)
    h = None
    try:
        h = Harness(fake, accept)
        rss_base = rss_mib()
        cold = h.refresh()
        rss_cold = rss_mib()
        warm = []
        for seed in range(refreshes):
            if churn:
                fake.churn(churn, seed)
            warm.append(h.refresh())
        rss_warm = rss_mib()
        peak_refreshes = peak_rss_mib()
        times = h.scrapes(renders)
        body = h.exposition.raw(accept)
        # Lines that are not comments, without splitting 100k lines into objects (that would be the peak).
        series = body.count(b"\n") - body.count(b"\n#") - (1 if body.startswith(b"#") else 0)
        body_kib, gzip_kib = len(body) / 1024, len(h.exposition.raw(accept, "gzip")) / 1024
        del body
        snap = h.poller.snapshot
    finally:
        if h is not None:
            h.close()
        fake.stop()
    med = lambda key: statistics.median(w[key] for w in warm)  # noqa: E731
    return {
        "provider": provider, "images": len(snap.images), "servers": len(snap.servers), "disks": len(snap.disks),
        "running_jobs": len(snap.running_jobs), "finished_jobs": len(snap.finished_jobs),
        "pages": fake.pages(), "refreshes": refreshes, "renders": renders,
        "format": "openmetrics" if accept else "text 0.0.4",
        "cold": cold, "warm": {k: med(k) for k in cold}, "warm_requests": warm[-1]["requests"],
        "series": series, "body_kib": body_kib, "gzip_kib": gzip_kib,
        "scrape_ms": {label: {"p50": pct(t, 50) * 1e3, "p99": pct(t, 99) * 1e3, "max": max(t) * 1e3}
                      for label, t in times.items()},
        "rss_base": rss_base, "rss_cold": rss_cold, "rss_warm": rss_warm, "rss_peak_refreshes": peak_refreshes,
        "rss_peak": peak_rss_mib(),
    }


# ---- where the memory goes ------------------------------------------------------------

def memory_report(provider: str, images: int, servers: int, top: int = 10) -> None:
    """tracemalloc of a warm refresh and of its rendering: the peak, and who holds it.

    Each phase runs twice: once to find its peak, once more with a watcher
    thread that takes one snapshot when the traced memory comes within 5% of
    that peak (for a refresh, its last page, just before the records are
    built). Allocations are grouped by their chain of exporter/ frames.
    """
    import tracemalloc

    fake = Fake(provider, images, servers)
    h = Harness(fake)
    try:
        h.refresh()                          # cold: token, discovery, imports
        gc.collect()
        tracemalloc.start(FRAMES)
        phases = []
        for phase in ("source refresh", "rendering (CloudCache.refresh)"):
            peak = 0
            for attempt in ("find the peak", "snapshot near it"):
                gc.collect()
                tracemalloc.reset_peak()
                start = tracemalloc.get_traced_memory()[0]
                got, done = [], threading.Event()

                def watch(level=start + 0.95 * (peak - start)):
                    while not done.wait(0.02):
                        if tracemalloc.get_traced_memory()[0] >= level:
                            got.append(tracemalloc.take_snapshot())
                            return
                watcher = threading.Thread(target=watch, daemon=True) if peak else None
                if watcher:
                    watcher.start()
                if phase == "source refresh":
                    snap = h.source.refresh()
                else:
                    h.cache.refresh()
                done.set()
                if watcher:
                    watcher.join()
                if phase == "source refresh":
                    h.poller.snapshot = snap      # as the poller does: the new snapshot replaces the old
                    del snap
                gc.collect()
                cur, peak = tracemalloc.get_traced_memory()
            phases.append((phase, start, peak, cur, got[0] if got else None))
        held = tracemalloc.take_snapshot()
        tracemalloc.stop()
    finally:
        h.close()
        fake.stop()

    print(f"tracemalloc, {provider}: {images} images, {servers} {'servers' if provider == 'openstack' else 'instances'}"
          f" (traced Python allocations; RSS adds the interpreter, the libraries and allocator slack)\n")
    print(table(["phase", "before MiB", "peak MiB", "after MiB"],
                [[p, f"{s / MIB:.1f}", f"{pk / MIB:.1f}", f"{c / MIB:.1f}"] for p, s, pk, c, _ in phases]))
    for phase, _, _, _, snap in phases:
        if snap is not None:
            print(f"\nnear the peak of the {phase}: {_total(snap) / MIB:.1f} MiB traced")
            print(_attributed(snap, top))
    print(f"\nheld after both (the snapshot, the rendered bytes, the SDK): {_total(held) / MIB:.1f} MiB")
    print(_attributed(held, top))


FRAMES = 8


def _total(snap) -> int:
    return sum(s.size for s in snap.statistics("filename"))


def _attributed(snap, top) -> str:
    """Traced bytes by chain of exporter/ frames (outermost first) and the allocating line."""
    by = {}
    for stat in snap.statistics("traceback"):
        frames = list(stat.traceback)            # oldest first, the allocating frame last
        ours = [f for f in frames if f"{os.sep}exporter{os.sep}" in f.filename]
        chain = " > ".join(_short(f) for f in ours[-3:]) or "(outside exporter/)"
        key = (chain, _short(frames[-1]))
        size, count = by.get(key, (0, 0))
        by[key] = (size + stat.size, count + stat.count)
    rows = sorted(by.items(), key=lambda kv: -kv[1][0])[:top]
    return table(["MiB", "blocks", "exporter frames (outer > inner)", "allocated at"],
                 [[f"{size / MIB:.1f}", count, chain, alloc] for (chain, alloc), (size, count) in rows], left=0)


def _short(frame) -> str:
    path = frame.filename
    for marker in (f"{os.sep}site-packages{os.sep}", ROOT + os.sep, f"{os.sep}lib{os.sep}"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    if path.startswith("exporter/"):
        path = path[len("exporter/"):]
    return f"{path}:{frame.lineno}"


# ---- several sizes, each in a fresh process -------------------------------------------------

def parse_count(text: str) -> int:
    text = text.strip().lower()
    return int(float(text[:-1]) * 1000) if text.endswith("k") else int(text)


def parse_sizes(text: str):
    """"1k/500,10k/5k" -> [(1000, 500), (10000, 5000)]; "100,500" -> [(None, 100), (None, 500)]."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "/" in part:
            a, b = part.split("/", 1)
            out.append((parse_count(a), parse_count(b)))
        else:
            out.append((None, parse_count(part)))
    return out


def run_child(provider, images, servers, refreshes, renders, openmetrics=False, churn=0) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--json", "--provider", provider, "--churn", str(churn),
           "--refreshes", str(refreshes), "--renders", str(renders)] + (["--openmetrics"] if openmetrics else [])
    cmd += ["--images", str(images), "--servers", str(servers)] if provider == "openstack" else \
        ["--instances", str(servers)] + (["--images", str(images)] if images is not None else [])
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[1:])} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def sizes_table(results) -> str:
    rows = []
    for r in results:
        w, s = r["warm"], r["scrape_ms"]
        size = f"{r['images']}/{r['servers']}"
        rows.append([size, f"{w['wall']:.2f}", f"{w['cpu']:.2f}", r["warm_requests"], r["pages"],
                     r["warm_requests"] - r["pages"], f"{r['rss_warm']:.0f}", f"{r['rss_peak_refreshes']:.0f}",
                     f"{r['rss_peak']:.0f}",
                     f"{s['identity']['p50']:.2f}/{s['identity']['p99']:.2f}",
                     f"{s['gzip']['p50']:.2f}/{s['gzip']['p99']:.2f}", f"{w['render_ms']:.0f}",
                     r["series"], f"{r['body_kib']:.0f}"])
    return table(["images/servers" if results and results[0]["provider"] == "openstack" else "images/instances",
                  "refresh s", "CPU s", "requests", "pages", "req-pages", "RSS MiB", "peak RSS", "+plain",
                  "scrape p50/p99 ms", "gzip p50/p99 ms", "render ms", "series", "body KiB"], rows)


def growth(results) -> str:
    """How each figure grows from the smallest to the largest size, against the pages."""
    if len(results) < 2:
        return ""
    a, b = results[0], results[-1]
    f = lambda x, y: f"x{y / x:.1f}" if x else "-"  # noqa: E731
    return (f"smallest -> largest: pages {f(a['pages'], b['pages'])}, refresh wall "
            f"{f(a['warm']['wall'], b['warm']['wall'])}, CPU {f(a['warm']['cpu'], b['warm']['cpu'])}, "
            f"render {f(a['warm']['render_ms'], b['warm']['render_ms'])}, series {f(a['series'], b['series'])}, "
            f"scrape p50 {f(a['scrape_ms']['identity']['p50'], b['scrape_ms']['identity']['p50'])} "
            f"(gzip {f(a['scrape_ms']['gzip']['p50'], b['scrape_ms']['gzip']['p50'])}), "
            f"RSS above the interpreter's {f(a['rss_warm'] - a['rss_base'], b['rss_warm'] - b['rss_base'])}")


def print_sizes(provider, results) -> None:
    if provider == "openstack":
        print(f"OpenStack cloud mode by size (fresh process per size; warm refresh, median of "
              f"{results[0]['refreshes']}; {results[0]['renders']} scrapes per encoding)")
        print("pages = ceil(images/1000) + 1 (hidden images) + ceil(servers/1000) + 1 (volume snapshots); "
              "req-pages = the constant: "
              "Glance usage + an empty last page per listing that ends exactly on a full page")
    else:
        print(f"Linode cloud mode by size (fresh process per size; warm refresh, median of "
              f"{results[0]['refreshes']}; {results[0]['renders']} scrapes per encoding)")
        print("pages = ceil(images/500) + ceil(instances/500) + ceil(events/500) + the per-instance reads due: "
              "instances with a running backup + the sweep's share, ceil(reads x 300 s / 3600 s)")
    print(sizes_table(results))
    print(growth(results))
    base = min(r["rss_base"] for r in results)
    print(f"RSS MiB: after the last warm refresh (gc'd); peak RSS: ru_maxrss of the size's process through its "
          f"refreshes, scraped with gzip as Prometheus does; +plain: ru_maxrss at the end, after plain-text scrapes "
          f"too (a client without gzip makes the exporter keep the plain body as well). "
          f"RSS before the first refresh: {base:.0f} MiB (Python, the SDK, prometheus_client). "
          f"render ms: CloudCache.refresh, once per refresh, {results[0]['format']} format")


# ---- Linode requests per refresh against the published rate limits ----------------------------

def linode_requests(instances: int, steady: int = 12, interval: float = 300.0, sweep: float = 3600.0) -> dict:
    """Requests per Linode refresh, before and after, and refreshes against the rate-limited fake.

    In-process and on fake clocks: the source's clock and the rate limiter's
    windows move by `interval` per refresh without waiting, so only counts
    are measured here (no timing). "before" is the previous code's cost per
    refresh: the listings plus disks of every instance plus backups of every
    instance with the Backup Service (the cold refresh minus the one
    GET /account). The synthetic account has a backup running on every 10th
    instance, whose backups are re-read every refresh until it ends.
    """
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from fakes.clock import FakeClock
    from fakes.linode_api import FakeLinodeAPI
    from fakes.linode_rate_limits import PUBLISHED_LIMITS, RateLimiter
    from fakes.linode_synthetic import synthetic_scenario
    from exporter.sources.linode.source import LinodeSource

    class Memo(FakeLinodeAPI):          # as serve_fake_linode's: the synthetic account never changes
        def _visible(self, collection, now):
            memo = self.__dict__.setdefault("_memo", {})
            if (collection, now) not in memo:
                memo.clear()
                memo[(collection, now)] = super()._visible(collection, now)
            return memo[(collection, now)]

    def run(limited: bool):
        clock, window = FakeClock(time.time()), FakeClock(time.time())
        api = Memo(synthetic_scenario(instances, now=clock()), clock=clock,
                   rate_limiter=RateLimiter(clock=window) if limited else None)
        api.start()
        os.environ[LINODE_TOKEN_ENV] = api.token
        cfg = cloud_config("linode", "bench", api_url=api.url, token_env=LINODE_TOKEN_ENV,
                          request_timeout=30.0, refresh_interval=interval, details_refresh_interval=sweep)
        # A wait for the rate-limit window moves the window clock instead of sleeping.
        waits = []
        src = LinodeSource(cfg, profiles.get("linode"), clock=clock, wall=window,
                           sleep=lambda s: (waits.append(s), window.advance(s)))
        counts, pending = [], []
        try:
            for _ in range(steady + 1):
                before = len(api.requests)
                snap = src.refresh()
                counts.append(len(api.requests) - before)
                pending.append(snap.details_pending)
                clock.advance(interval)
                window.advance(interval)
        finally:
            src.close()
            api.stop()
        backups = sum(1 for i in api.objects("instances") if i["backups"]["enabled"])
        return counts, pending, api.rate_limiter.rejected if limited else 0, backups, sum(waits)

    counts, _, _, backups, _ = run(False)
    lim_counts, lim_pending, rejected, _, waited = run(True)
    full = next((n for n, p in enumerate(lim_pending) if p == 0), None)
    return {"instances": instances, "before": counts[0] - 1, "cold": counts[0],
            "steady": statistics.median(counts[1:]), "steady_max": max(counts[1:]), "backups": backups,
            "interval": interval, "sweep": sweep, "limited_counts": lim_counts, "limited_pending": lim_pending,
            "rejected": rejected, "full_picture_refresh": full, "waited": waited,
            "limits": {k: f"{n}/{w:g}s" for k, (n, w) in PUBLISHED_LIMITS.items()}}


def print_linode_requests(results) -> None:
    r0 = results[0]
    print(f"Linode requests per refresh (fake clocks, refresh every {r0['interval']:g} s, sweep "
          f"{r0['sweep']:g} s; published limits enforced by the fake: {r0['limits']['collection']} paginated "
          f"collection GETs, {r0['limits']['other']} other requests, per user)")
    rows = []
    for r in results:
        per_min = 60.0 / r["interval"]
        rows.append([r["instances"], r["before"], f"{r['before'] * per_min:.0f}", r["cold"], f"{r['steady']:.0f}",
                     r["steady_max"], f"{r['steady'] * per_min:.0f}",
                     "-" if r["full_picture_refresh"] is None else r["full_picture_refresh"] + 1,
                     f"{r['waited']:.0f}", r["rejected"]])
    print(table(["instances", "before /refresh", "before /min", "after: first", "after: steady (median)",
                 "steady max", "steady /min", "refreshes to full picture (limits on)", "s waited for windows", "429s"], rows))
    print("before: every instance's disks and backups every refresh (3 list pages + instances + instances "
          "with the Backup Service); after: the first refresh reads the same plus GET /account, later ones "
          "the list pages + instances whose backup is running (every 10th in the synthetic account) + the "
          "sweep's share (ceil(reads x interval / sweep)). With the limits on, a refresh waits for the "
          "window to reset while X-RateLimit-Remaining is low, up to half its interval in all, then leaves the "
          "rest for the next refresh: 429s counts the fake's refusals.")


# ---- single size, as before ---------------------------------------------------------------

def print_single(r) -> None:
    kind = "servers" if r["provider"] == "openstack" else "instances"
    print(f"{r['provider']} refresh: {r['images']} images, {r['servers']} {kind}, {r['disks']} disks, "
          f"{r['running_jobs']} running jobs, {r['finished_jobs']} finished in the lookback")
    print(f"RSS before the first refresh: {r['rss_base']:.0f} MiB (Python, the SDK, prometheus_client)\n")
    rows = [["cold (token, discovery)", f"{r['cold']['wall']:.2f}", f"{r['cold']['cpu']:.2f}", r["cold"]["requests"],
             f"{r['rss_cold']:.0f}"],
            [f"warm, median of {r['refreshes']}", f"{r['warm']['wall']:.2f}", f"{r['warm']['cpu']:.2f}",
             r["warm_requests"], f"{r['rss_warm']:.0f}"]]
    print(table(["refresh", "wall s", "CPU s", "HTTP requests", "RSS after, MiB"], rows))
    print(f"pages needed: {r['pages']}; warm requests minus pages: {r['warm_requests'] - r['pages']}; "
          f"peak RSS (ru_maxrss) through the refreshes: {r['rss_peak_refreshes']:.0f} MiB, "
          f"after plain-text scrapes too: {r['rss_peak']:.0f} MiB")
    print(f"\nScrape from the snapshot ({r['renders']} scrapes each): {r['series']} series, {r['body_kib']:.0f} KiB "
          f"({r['gzip_kib']:.0f} KiB gzipped, {r['format']}); rendering the cloud part once per refresh took "
          f"{r['warm']['render_ms']:.0f} ms")
    print(table(["encoding", "p50 ms", "p99 ms", "max ms"],
                [[label, f"{t['p50']:.1f}", f"{t['p99']:.1f}", f"{t['max']:.1f}"]
                 for label, t in r["scrape_ms"].items()]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--provider", choices=("openstack", "linode"), default="openstack")
    ap.add_argument("--images", type=parse_count, default=None,
                    help="OpenStack: images (default 10000); Linode: private images (default instances/2)")
    ap.add_argument("--servers", type=parse_count, default=5_000, help="OpenStack servers")
    ap.add_argument("--instances", type=parse_count, default=500, help="Linode instances")
    ap.add_argument("--refreshes", type=int, default=5, help="warm refreshes to time")
    ap.add_argument("--renders", type=int, default=200, help="scrapes to time per encoding")
    ap.add_argument("--sizes", nargs="?", const=DEFAULT_SIZES, default=None,
                    help=f"OpenStack images/servers, comma-separated, each in a fresh process "
                         f"(default {DEFAULT_SIZES}); 'none' to skip")
    ap.add_argument("--linode-sizes", nargs="?", const=DEFAULT_LINODE_SIZES, default=None,
                    help=f"Linode instance counts, each in a fresh process (default {DEFAULT_LINODE_SIZES})")
    ap.add_argument("--linode-requests", nargs="?", const=DEFAULT_LINODE_SIZES, default=None,
                    help=f"requests per Linode refresh before/after and against the rate limits, by instance "
                         f"count (default {DEFAULT_LINODE_SIZES})")
    ap.add_argument("--churn", type=parse_count, default=0,
                    help="OpenStack: images created, deleted and changed (each) before every warm refresh, and a "
                         "fifth as many servers renamed (default 0: the account does not change)")
    ap.add_argument("--openmetrics", action="store_true",
                    help="scrape with Prometheus' Accept header (OpenMetrics) instead of the text format 0.0.4")
    ap.add_argument("--json", action="store_true", help="one size; print its figures as one JSON line")
    ap.add_argument("--tracemalloc", action="store_true", help="one size; where the memory of a refresh goes")
    args = ap.parse_args(argv)

    openstack = args.provider == "openstack"
    images = args.images if args.images is not None else (10_000 if openstack else None)
    servers = args.servers if openstack else args.instances
    if not openstack and images is None:
        images = servers // 2

    if args.linode_requests:
        print_linode_requests([linode_requests(n) for _, n in parse_sizes(args.linode_requests)])
        return 0
    if args.sizes or args.linode_sizes:
        if args.sizes and args.sizes != "none":
            results = [run_child("openstack", i, s, args.refreshes, args.renders, args.openmetrics, args.churn)
                       for i, s in parse_sizes(args.sizes)]
            print_sizes("openstack", results)
        if args.linode_sizes:
            if args.sizes and args.sizes != "none":
                print()
            results = [run_child("linode", i, s, args.refreshes, args.renders, args.openmetrics)
                       for i, s in parse_sizes(args.linode_sizes)]
            print_sizes("linode", results)
        return 0
    if args.tracemalloc:
        memory_report(args.provider, images, servers)
        return 0
    r = measure(args.provider, images, servers, args.refreshes, args.renders,
                PROMETHEUS_ACCEPT if args.openmetrics else None, args.churn if openstack else 0)
    if args.json:
        print(json.dumps(r))
    else:
        print_single(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
