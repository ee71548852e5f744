#!/usr/bin/env python3
"""--once cost: CPU seconds of one `imaging-exporter --once` (textfile mode from cron),
against a plain prometheus_client one-shot doing the same host job.

    python bench/once.py [--runs 20]

The peer reads the mount table, statvfs()es each filesystem and prints the
six filesystem gauges with prometheus_client's generate_latest: what any
small textfile script does. Runs alternate (exporter, peer, exporter, ...)
so both see the same machine load; CPU is user + system of each child
(resource.getrusage), and the ratio of the medians is the figure. The exporter
runs with a config file (YAML: PyYAML is imported to read it) and without one
(the generic profile, no PyYAML). Both
run with their bytecode compiled, as an installed package is (the first,
untimed run writes it under a temporary PYTHONPYCACHEPREFIX).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile

from common import ROOT, table

PEER = r'''
import os
from prometheus_client import CollectorRegistry, Gauge, generate_latest
reg = CollectorRegistry()
labels = ["device", "mountpoint", "fstype"]
g = {n: Gauge(f"peer_filesystem_{n}", n, labels, registry=reg)
     for n in ("size_bytes", "free_bytes", "avail_bytes", "used_bytes", "inodes", "inodes_used")}
with open("/proc/self/mounts") as f:
    for line in f:
        dev, mp, fstype = line.split()[:3]
        if not dev.startswith("/dev/"):
            continue
        try:
            st = os.statvfs(mp)
        except OSError:
            continue
        l = (dev, mp, fstype)
        g["size_bytes"].labels(*l).set(st.f_blocks * st.f_frsize)
        g["free_bytes"].labels(*l).set(st.f_bfree * st.f_frsize)
        g["avail_bytes"].labels(*l).set(st.f_bavail * st.f_frsize)
        g["used_bytes"].labels(*l).set((st.f_blocks - st.f_bfree) * st.f_frsize)
        g["inodes"].labels(*l).set(st.f_files)
        g["inodes_used"].labels(*l).set(st.f_files - st.f_ffree)
os.write(1, generate_latest(reg))
'''


def child_cpu(cmd, env) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(runs: int = 20):
    tmp = tempfile.mkdtemp(prefix="imaging-bench-once-")
    cfg = os.path.join(tmp, "config.yaml")
    with open(cfg, "w") as f:
        f.write(f"state_file: {tmp}/state.json\nhost:\n  profile: rackspace-firstgen-linux\n")
    # As installed (pip and Debian compile the bytecode; the peer's prometheus_client has its .pyc):
    # bytecode is written and reused, under a temporary prefix, even where PYTHONDONTWRITEBYTECODE is set.
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONPYCACHEPREFIX=os.path.join(tmp, "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    exporter = [sys.executable, "-m", "exporter", "--once", f"--config.file={cfg}", "--log.level=warn"]
    # Without a config file (the generic profile; the state file in STATE_DIRECTORY): no YAML to read.
    bare = [sys.executable, "-m", "exporter", "--once", "--log.level=warn"]
    bare_env = dict(env, STATE_DIRECTORY=tmp)
    peer = [sys.executable, "-c", PEER]
    child_cpu(exporter, env), child_cpu(bare, bare_env), child_cpu(peer, env)     # warm the page cache
    ours, ours_bare, theirs = [], [], []
    for _ in range(runs):
        ours.append(child_cpu(exporter, env))
        theirs.append(child_cpu(peer, env))
        ours_bare.append(child_cpu(bare, bare_env))
    return statistics.median(ours), statistics.median(theirs), statistics.median(ours_bare)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    ours, theirs, bare = measure(args.runs)
    print(table(["one-shot", "CPU ms (median)"], [
        ["imaging-exporter --once --config.file (a host profile)", f"{ours * 1000:.0f}"],
        ["imaging-exporter --once (no config file)", f"{bare * 1000:.0f}"],
        ["prometheus_client script", f"{theirs * 1000:.0f}"]]))
    print(f"ratio {ours / theirs:.2f} with a config file, {bare / theirs:.2f} without (target <= 1.1); "
          f"CPU per hour from cron every minute: {ours * 60:.1f} s")


if __name__ == "__main__":
    main()
