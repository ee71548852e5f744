#!/usr/bin/env python3
"""Host-mode scrape latency against node_exporter's filesystem collector.

Starts Debian's prometheus-node-exporter (--collector.disable-defaults
--collector.filesystem) and imaging-exporter in host mode on loopback ports,
scrapes them in alternation (so machine noise hits both alike), and prints
p50/p99 of GET /metrics and the ratio, in three modes (see MODES): a new
connection per scrape, one kept-alive connection, and one kept-alive
connection asking what Prometheus asks (OpenMetrics, gzip). Target: ratio
of p50s <= 1.0.

A third server, the "HTTP floor", is the exporter's own HTTP stack
(exporter.web) answering a constant copy of the exporter's body: the
difference between it and imaging-exporter is what collecting and
rendering cost per scrape.

    python bench/host_scrape.py [--requests 500] [--no-floor]
    python bench/host_scrape.py --interval 15 --rounds 10     # paced, as Prometheus scrapes

--interval scrapes each exporter once per interval, as Prometheus does,
instead of back to back, and reports each process's CPU seconds per hour
over the whole window (scrapes and everything its timers do in between)
beside the scrape latency, and that CPU thread by thread (the event loop, the
database recount, the state writer). node_exporter runs twice: as briefed
(--collector.disable-defaults --collector.filesystem) and like for like
(also --web.disable-exporter-metrics, so it serves only filesystem series).
"""
from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            scrape(port)
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing answered on port {port}")


PLAIN = {"Accept-Encoding": "identity"}
# What Prometheus 3 sends (it negotiates OpenMetrics and gzip).
PROMETHEUS = {"Accept": "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
                        "application/openmetrics-text;version=0.0.1;q=0.4,"
                        "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
              "Accept-Encoding": "gzip", "User-Agent": "Prometheus/3"}
# label -> (keep the connection, request headers)
MODES = {"new": (False, PLAIN), "keep-alive": (True, PLAIN), "prometheus": (True, PROMETHEUS)}


def scrape(port, conn=None, headers=PLAIN):
    """One GET /metrics; a new connection unless one is given (keep-alive)."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics", headers=headers)
    r = c.getresponse()
    body = r.read()
    if r.status != 200:
        raise OSError(f"status {r.status}")
    if conn is None:
        c.close()
    return len(body)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def measure(ports, n, keepalive, headers=PLAIN):
    times = {name: [] for name in ports}
    conns = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=10) for name, port in ports.items()} \
        if keepalive else {}
    for _ in range(n):
        for name, port in ports.items():
            t = time.perf_counter()
            scrape(port, conns.get(name), headers)   # http.client reconnects if a server closed
            times[name].append((time.perf_counter() - t) * 1000)
    for c in conns.values():
        c.close()
    return times


def node_exporter_binary():
    return shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")


def node_exporter_version(node_bin=None) -> str:
    node_bin = node_bin or node_exporter_binary()
    if not node_bin:
        return "not installed"
    try:
        out = subprocess.run([node_bin, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return ((out.stdout or out.stderr).strip().splitlines() or ["unknown"])[0]


FLOOR = """
import gzip, sys
from exporter.web import make_server
body = open(sys.argv[2], "rb").read()
def app(environ, start_response):
    # The same work a real response has beyond collecting: gzip when asked.
    gz = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
    start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")]
                   + ([("Content-Encoding", "gzip")] if gz else []))
    return [gzip.compress(body, 6) if gz else body]
make_server("127.0.0.1:" + sys.argv[1], app).serve_forever()
"""


def get_body(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics", headers=PLAIN)
    body = c.getresponse().read()
    c.close()
    return body


def run(requests=500, floor=True):
    """The exporters side by side; returns ({mode: {name: [ms, ...]}}, node_exporter's path), modes as MODES.

    floor: a third server, exporter.web with a constant body, to separate the HTTP stack from the work."""
    node_bin = node_exporter_binary()
    if not node_bin:
        raise SystemExit("prometheus-node-exporter is not installed (apt-get install prometheus-node-exporter)")
    ports = {"node_exporter": free_port(), "imaging-exporter": free_port()}
    tmp = tempfile.mkdtemp()
    cfg = os.path.join(tmp, "config.yaml")
    with open(cfg, "w") as f:
        f.write(f"state_file: {tmp}/state.json\nhost:\n  profile: rackspace-firstgen-linux\n")
    procs = [
        subprocess.Popen([node_bin, f"--web.listen-address=127.0.0.1:{ports['node_exporter']}",
                          "--collector.disable-defaults", "--collector.filesystem"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{ports['imaging-exporter']}",
                          f"--config.file={cfg}"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        for port in ports.values():
            wait_ready(port)
        if floor:
            # The exporter's own HTTP server (exporter.web) answering with a constant copy of
            # its /metrics body: what serving costs before the exporter does any work.
            body = os.path.join(tmp, "body")
            with open(body, "wb") as f:
                f.write(get_body(ports["imaging-exporter"]))
            ports["HTTP floor"] = free_port()
            procs.append(subprocess.Popen([sys.executable, "-c", FLOOR, str(ports["HTTP floor"]), body], cwd=ROOT,
                                          env=dict(os.environ, PYTHONPATH=ROOT)))
            wait_ready(ports["HTTP floor"])
        measure(ports, 50, keepalive=False)     # warm up all
        results = {label: measure(ports, requests, keepalive, headers)
                   for label, (keepalive, headers) in MODES.items()}
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    return results, node_bin


def ratios(results):
    return {label: pct(times["imaging-exporter"], 50) / pct(times["node_exporter"], 50)
            for label, times in results.items()}


def report(results, requests, node_bin) -> str:
    lines = [f"host scrape latency, {requests} scrapes each, alternating; "
             f"{os.cpu_count()} CPUs; node_exporter = {node_bin}",
             f"{'connection':<12} {'exporter':<18} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}"]
    for label, times in results.items():
        for name, t in times.items():
            lines.append(f"{label:<12} {name:<18} {pct(t, 50):>8.3f} {pct(t, 99):>8.3f} {statistics.mean(t):>8.3f}")
    floor = {label: pct(times["HTTP floor"], 50) for label, times in results.items() if "HTTP floor" in times}
    if floor:
        lines.append(f"HTTP floor = exporter.web serving a constant copy of the body (no collection): "
                     f"{floor['new']:.3f} ms p50; the exporter's own work per scrape is about "
                     f"{pct(results['new']['imaging-exporter'], 50) - floor['new']:.3f} ms on top")
    for label, r in ratios(results).items():
        lines.append(f"ratio p50 imaging-exporter / node_exporter ({label}): {r:.2f} "
                     f"({'meets' if r <= 1.0 else 'misses'} the <= 1.0 target)")
    lines.append("new: a connection per scrape; keep-alive: one connection, plain text; prometheus: one "
                 "connection, Prometheus 3's Accept (OpenMetrics) and gzip, as a real scrape")
    return "\n".join(lines)


def cpu_seconds(pid):
    """CPU seconds of a whole process (Linux's per-process CPU clock, nanosecond resolution;
    MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED), which Python has no binding for)."""
    return time.clock_gettime(((~pid) << 3) | 2)


def thread_cpu(pid) -> dict:
    """{thread id: CPU seconds} of a process's live threads (/proc/PID/task/TID/schedstat,
    nanoseconds on CPU): where a process's CPU went, thread by thread."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[int(tid)] = int(f.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
    return out


def thread_shares(pid, before, after, total, rounds) -> str:
    """ms of CPU per scrape by thread: the main thread (the event loop), others by id, and
    threads that ended in the window (the difference to the process's total)."""
    shares = {("main" if tid == pid else f"thread {tid - pid:+d}"): after[tid] - before.get(tid, 0.0)
              for tid in after}
    shares["ended threads"] = total - sum(shares.values())
    return ", ".join(f"{name} {cpu / rounds * 1000:.3f}" for name, cpu in
                     sorted(shares.items(), key=lambda kv: -kv[1]) if cpu * 1000 / rounds >= 0.005)


def paced(interval=15.0, rounds=10):
    """Each exporter scraped once per ``interval`` for ``rounds`` rounds on a kept-alive connection
    with Prometheus 3's headers; returns ({name: (CPU s/h, [ms, ...])}, node_exporter's path)."""
    node_bin = node_exporter_binary()
    if not node_bin:
        raise SystemExit("prometheus-node-exporter is not installed (apt-get install prometheus-node-exporter)")
    tmp = tempfile.mkdtemp()
    cfg = os.path.join(tmp, "config.yaml")
    with open(cfg, "w") as f:
        f.write(f"state_file: {tmp}/state.json\nhost:\n  profile: rackspace-firstgen-linux\n")
    node = [node_bin, "--collector.disable-defaults", "--collector.filesystem"]
    ours = [sys.executable, "-m", "exporter", f"--config.file={cfg}"]
    commands = {
        "imaging-exporter": ours,
        "imaging-exporter (like for like)": ours + ["--web.disable-exporter-metrics"],
        "node_exporter (as briefed)": node,
        "node_exporter (like for like)": node + ["--web.disable-exporter-metrics"],
    }
    ports, procs = {}, {}
    try:
        for name, cmd in commands.items():
            ports[name] = free_port()
            procs[name] = subprocess.Popen(cmd + [f"--web.listen-address=127.0.0.1:{ports[name]}"], cwd=ROOT,
                                           env=dict(os.environ, PYTHONPATH=ROOT),
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in ports.values():
            wait_ready(port)
        conns = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=10) for name, port in ports.items()}
        for name in ports:                   # one scrape each before the window: imports and first reads done
            scrape(ports[name], conns[name], PROMETHEUS)
        times = {name: [] for name in ports}
        start = time.monotonic()
        cpu0 = {name: cpu_seconds(p.pid) for name, p in procs.items()}
        threads0 = {name: thread_cpu(p.pid) for name, p in procs.items()}
        for i in range(rounds):
            order = list(ports) if i % 2 == 0 else list(reversed(ports))   # neither always goes first
            for name in order:
                t = time.perf_counter()
                scrape(ports[name], conns[name], PROMETHEUS)
                times[name].append((time.perf_counter() - t) * 1000)
            time.sleep(max(0.0, start + (i + 1) * interval - time.monotonic()))
        window = time.monotonic() - start
        used = {name: cpu_seconds(p.pid) - cpu0[name] for name, p in procs.items()}
        threads = {name: thread_shares(p.pid, threads0[name], thread_cpu(p.pid), used[name], rounds)
                   for name, p in procs.items()}
        cpu = {name: used[name] / window * 3600 for name in procs}
        for c in conns.values():
            c.close()
    finally:
        for p in procs.values():
            p.terminate()
            p.wait(10)
    return {name: (cpu[name], times[name], threads[name]) for name in ports}, node_bin, window


def paced_report(results, interval, rounds, node_bin, window) -> str:
    lines = [f"host mode paced as Prometheus scrapes: every {interval:g} s, {rounds} rounds ({window:.0f} s), "
             f"kept-alive connection, OpenMetrics + gzip; loopback; {os.cpu_count()} CPUs shared; "
             f"node_exporter = {node_bin}",
             f"{'exporter':<32} {'CPU s/h':>8} {'p50 ms':>8} {'max ms':>8}"]
    for name, (cpu, t, _) in results.items():
        lines.append(f"{name:<32} {cpu:>8.3f} {pct(t, 50):>8.3f} {max(t):>8.3f}")
    pairs = [("imaging-exporter", "node_exporter (as briefed)"),
             ("imaging-exporter (like for like)", "node_exporter (like for like)")]
    for mine, theirs in pairs:
        ours, peer = results[mine], results[theirs]
        lines.append(f"ratio {mine} / {theirs}: CPU {ours[0] / peer[0]:.2f}, "
                     f"p50 {pct(ours[1], 50) / pct(peer[1], 50):.2f}")
    lines.append("CPU ms per scrape by thread (schedstat; includes what runs between scrapes):")
    for name, (_, _, shares) in results.items():
        lines.append(f"  {name:<32} {shares}")
    lines.append("as briefed: both with their process metrics; like for like: both with "
                 "--web.disable-exporter-metrics. CPU s/h: each process over the whole window, scrapes "
                 "and whatever it does in between")
    return "\n".join(lines)


_IN_NAMESPACE = "IMAGING_BENCH_EXTRA_FILESYSTEMS"


def with_filesystems(extra: int, argv) -> int:
    """Run this benchmark again in a private mount namespace with `extra` more ext4 filesystems.

    Each is a 16 MiB image file in a temporary directory, mkfs.ext4'd and loop-mounted
    there by `unshare -m -p -f --mount-proc --propagation private`: the mounts exist only inside that
    namespace and go (with their loop devices, autoclear) when it ends; nothing is
    written outside the temporary directory. Root only (mount needs CAP_SYS_ADMIN).
    """
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("mkfs.ext4"):
        raise SystemExit("--filesystems needs root, unshare and mkfs.ext4 (loop mounts in a private namespace)")
    tmp = tempfile.mkdtemp(prefix="imaging-bench-fs-")
    script = []
    for i in range(extra):
        img, mnt = os.path.join(tmp, f"fs{i}.img"), os.path.join(tmp, f"mnt{i}")
        os.mkdir(mnt)
        with open(img, "wb") as f:
            f.truncate(16 * 2**20)
        subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True)
        script.append(f"mount -o loop {img} {mnt}")
    script.append(" ".join([sys.executable, os.path.abspath(__file__)] + [f"'{a}'" for a in argv]))
    try:
        # A PID namespace too (its /proc mounted): both exporters read PID 1's mount table,
        # which is then this namespace's shell, with the loop mounts.
        return subprocess.run(["unshare", "-m", "-p", "-f", "--mount-proc", "--propagation", "private",
                               "sh", "-ec", " && ".join(script)],
                              env=dict(os.environ, **{_IN_NAMESPACE: str(extra)})).returncode
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--no-floor", dest="floor", action="store_false",
                    help="leave out the constant-body server (exporter.web without collection)")
    ap.add_argument("--interval", type=float, default=0.0,
                    help="scrape once per INTERVAL seconds (e.g. 15) and report CPU s/h instead of back to back")
    ap.add_argument("--rounds", type=int, default=10, help="with --interval: how many scrapes of each")
    ap.add_argument("--filesystems", type=int, default=1,
                    help="N > 1: add N-1 ext4 filesystems (loop mounts of image files in a temporary "
                         "directory, in a private mount namespace: unshare -m, root only)")
    args = ap.parse_args()
    if args.filesystems > 1 and not os.environ.get(_IN_NAMESPACE):
        return with_filesystems(args.filesystems - 1, sys.argv[1:])
    if os.environ.get(_IN_NAMESPACE):
        print(f"filesystems: / and {os.environ[_IN_NAMESPACE]} loop-mounted ext4 (private mount namespace)")
    if args.interval > 0:
        results, node_bin, window = paced(args.interval, args.rounds)
        print(paced_report(results, args.interval, args.rounds, node_bin, window))
        return
    results, node_bin = run(args.requests, args.floor)
    print(report(results, args.requests, node_bin))


if __name__ == "__main__":
    sys.exit(main())
