#!/usr/bin/env python3
"""Where the time goes: cProfile of the hot paths, and a timed breakdown of each.

    python bench/hotpaths.py host  [--requests 2000] [--top 25]
    python bench/hotpaths.py cloud [--images 10000] [--servers 5000] [--top 25]
    python bench/hotpaths.py linode [--instances 500] [--top 25]

host: the exporter's whole request path in this process: the real
exporter.web server class handles GET /metrics on one end of a loopback TCP pair
(request parsing, WSGI, collection, rendering, the response), so cProfile
sees it all in one thread. The breakdown times each layer without the
profiler: the HTTP layer with a constant app, Exposition.render, the host
source's read, the families and the text formatting (ours, and
prometheus_client's encoder on the same families for comparison).

cloud / linode: one warm refresh of the source against the fake API in a
child process (as bench/cloud_scale.py), profiled, then the per-refresh
rendering (CloudCache.refresh) profiled; the breakdown times the JSON
decoding, the cyclic GC's share (the refresh again with gc disabled) and
the rendering's two halves (building the families, formatting them), and
prometheus_client's encoder on the same families for comparison.
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import socket
import sys
import tempfile
import time
import threading

from common import ROOT, table

sys.path.insert(0, ROOT)

REQUEST = (b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\n"
           b"User-Agent: Prometheus/2.45.0\r\n\r\n")


def stats(profile, sort, top) -> str:
    out = io.StringIO()
    pstats.Stats(profile, stream=out).strip_dirs().sort_stats(sort).print_stats(top)
    text = out.getvalue()
    return text[text.index("   ncalls"):].rstrip() if "   ncalls" in text else text


_listener = None


def tcp_pair():
    """Two ends of a loopback TCP connection (the server sets TCP_NODELAY, which a socketpair refuses)."""
    global _listener
    if _listener is None:
        _listener = socket.create_server(("127.0.0.1", 0))
    b = socket.create_connection(_listener.getsockname())
    a, _ = _listener.accept()
    return a, b


def per_call(fn, n) -> float:
    """Milliseconds per call, best of three rounds of n calls."""
    fn()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e3


# ---- host -----------------------------------------------------------------------------

def host(requests: int, top: int) -> None:
    from prometheus_client.exposition import generate_latest

    from exporter.app import assemble
    from exporter.collectors import host as host_mod
    from exporter.config import load as load_config
    from exporter.render import TEXT, render
    from exporter.sources.host import read_mounts
    from exporter.web import make_server

    tmp = tempfile.mkdtemp(prefix="imaging-bench-")
    cfg = os.path.join(tmp, "config.yaml")
    with open(cfg, "w") as f:
        f.write(f"state_file: {tmp}/state.json\nhost:\n  profile: rackspace-firstgen-linux\n")
    exporter = assemble(load_config(cfg), {"host": True})
    server = make_server("127.0.0.1:0", exporter.wsgi_app("/metrics"))
    body_len = len(exporter.exposition.raw())

    def constant_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")])
        return [b"x" * body_len]
    constant = make_server("127.0.0.1:0", constant_app)

    for srv in (server, constant):       # aiohttp's event loop, each on a thread of its own
        threading.Thread(target=srv.serve_forever, daemon=True).start()

    def one(srv):
        b = socket.create_connection(("127.0.0.1", srv.server_address[1]))
        b.sendall(REQUEST)
        b.shutdown(socket.SHUT_WR)       # one request: the server then sees the end
        while b.recv(65536):
            pass
        b.close()

    part = exporter.exposition.collector.host
    reader = part.source.source          # the platform's reader, under the high-water recorder
    snap = part.source.read()
    fams = host_mod.host_families(snap, part.limits, part.profile, part.server_id)

    fixed = _registry_of(fams)
    samples = sum(len(f.samples) for f in fams)
    mounts = [m for _, m, _ in _mounts(reader)]
    n = requests
    rows = [
        ["whole request path (loopback TCP pair, exporter.web + WSGI + render)", per_call(lambda: one(server), n)],
        ["  HTTP layer alone: the same server, a constant app, same body size", per_call(lambda: one(constant), n)],
        ["  Exposition.render (collect + format, host and health)", per_call(exporter.exposition.render, n)],
        ["    HostSource.read (mount table, statvfs, sysfs and /proc caches)", per_call(part.source.read, n)],
        ["      statvfs of the mounts, each on a thread of its own, with the deadline", per_call(
            lambda: reader.statter.stat_all(mounts), n)],
        ["      for comparison: re-reading and parsing the mount table (kept until the kernel reports a change)",
         per_call(lambda: read_mounts(reader.cfg.root_path or "/"), n)],
        ["    host_families (the snapshot into rows)", per_call(
            lambda: host_mod.host_families(snap, part.limits, part.profile, part.server_id), n)],
        [f"    exporter.render of the host families ({samples} samples)", per_call(
            lambda: render([fams], TEXT), n)],
        ["    for comparison: prometheus_client's generate_latest of the same families",
         per_call(lambda: generate_latest(fixed), n)],
        ["a connection's thread: hand-off to an idle one (CachedThreads)", per_call(_handoff, n)],
        ["  for comparison: a new thread, started and joined (socketserver's ThreadingMixIn)", per_call(_thread, n)],
    ]
    print(f"host request path, in-process, best of 3 x {n} calls; body {body_len} bytes, "
          f"{len(snap.filesystems)} filesystems")
    print(table(["layer", "ms per request"], [[r[0], f"{r[1]:.3f}"] for r in rows]))

    profile = cProfile.Profile()
    profile.enable()
    for _ in range(n):
        one(server)
    profile.disable()
    print(f"\ncProfile of {n} requests, by own time (the profiler roughly doubles every figure):")
    print(stats(profile, "tottime", top))
    print("\nby cumulative time:")
    print(stats(profile, "cumulative", top))


def _registry_of(fams):
    """prometheus_client's registry of fixed families, to time its encoder on them."""
    from prometheus_client import CollectorRegistry
    families = list(fams)

    class Fixed:
        def collect(self):
            return families
    fixed = CollectorRegistry(auto_describe=False)
    fixed.register(Fixed())
    return fixed


def _mounts(source):
    return [(d, m, t) for d, m, t in source.mount_table.read() if source.filter.wanted(m, t)]


_threads = None


def _handoff():
    global _threads
    import threading
    from exporter.threads import CachedThreads
    if _threads is None:
        _threads = CachedThreads("bench")
    done = threading.Lock()
    done.acquire()
    _threads.run(done.release)
    done.acquire()


def _thread():
    import threading
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()


# ---- cloud -----------------------------------------------------------------------------

def cloud(provider: str, images: int, servers: int, top: int) -> None:
    import json

    from prometheus_client.exposition import generate_latest

    import cloud_scale
    from exporter.collectors import cloud as cloud_mod
    from exporter.render import TEXT, render

    fake = cloud_scale.Fake(provider, images, servers)
    h = cloud_scale.Harness(fake)
    try:
        h.refresh()                                       # cold: token, discovery
        src = h.source.source
        decoded = {"seconds": 0.0, "bytes": 0}
        real_loads = json.loads

        def timed_loads(s, *a, **kw):                     # requests' Response.json() calls json.loads
            t = time.perf_counter()
            try:
                return real_loads(s, *a, **kw)
            finally:
                decoded["seconds"] += time.perf_counter() - t
                decoded["bytes"] += len(s)
        json.loads = timed_loads
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            snap = src.refresh()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            json.loads = real_loads
        gc.disable()
        try:
            nogc = time.process_time()
            snap = src.refresh()
            nogc = time.process_time() - nogc
        finally:
            gc.enable()
        h.poller.snapshot = snap
        families = per_call(lambda: cloud_mod.cloud_families([h.poller]), 1)
        fams = cloud_mod.cloud_families([h.poller])
        formatting = per_call(lambda: render([fams], TEXT), 1)
        fixed = _registry_of(fams)
        library = per_call(lambda: generate_latest(fixed), 1)
        rendering = per_call(h.cache.refresh, 1)
        profile = cProfile.Profile()
        profile.enable()
        src.refresh()
        profile.disable()
        rprofile = cProfile.Profile()
        rprofile.enable()
        h.cache.refresh()
        rprofile.disable()
    finally:
        h.close()
        fake.stop()
    kind = "servers" if provider == "openstack" else "instances"
    print(f"{provider}, {len(snap.images)} images, {len(snap.servers)} {kind}: one warm refresh, then its rendering")
    rows = [
        ["refresh, wall (includes waiting for the fake API)", f"{wall * 1e3:.0f}"],
        ["refresh, CPU of this process", f"{cpu * 1e3:.0f}"],
        [f"  json.loads of {decoded['bytes'] / 2**20:.1f} MiB of answers", f"{decoded['seconds'] * 1e3:.0f}"],
        ["  refresh CPU with the cyclic GC off (the difference is the GC's share)", f"{nogc * 1e3:.0f}"],
        ["rendering (CloudCache.refresh: families, text, gzip)", f"{rendering:.0f}"],
        ["  cloud_families (the snapshot into rows)", f"{families:.0f}"],
        ["  exporter.render of those families (text)", f"{formatting:.0f}"],
        ["  for comparison: prometheus_client's generate_latest of the same", f"{library:.0f}"],
    ]
    print(table(["step", "ms"], rows))
    print("\ncProfile of the refresh, by own time (the fake runs in another process; "
          "socket reads are waits for it):")
    print(stats(profile, "tottime", top))
    print("\nby cumulative time:")
    print(stats(profile, "cumulative", top))
    print("\ncProfile of the rendering, by own time:")
    print(stats(rprofile, "tottime", top))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("host", "cloud", "linode"))
    ap.add_argument("--requests", type=int, default=2000, help="host: requests per measurement")
    ap.add_argument("--images", type=int, default=None, help="cloud: images (default 10000; Linode instances/2)")
    ap.add_argument("--servers", type=int, default=5000, help="cloud: servers")
    ap.add_argument("--instances", type=int, default=500, help="linode: instances")
    ap.add_argument("--top", type=int, default=25, help="functions to list per profile")
    a = ap.parse_args()
    if a.what == "host":
        host(a.requests, a.top)
    elif a.what == "cloud":
        cloud("openstack", a.images or 10_000, a.servers, a.top)
    else:
        cloud("linode", a.images if a.images is not None else a.instances // 2, a.instances, a.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
