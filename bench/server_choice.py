#!/usr/bin/env python3
"""The server choice (docs/architecture.md): cheroot against exporter.web (aiohttp).

Each server answers a constant 3 KB body under RLIMIT_NOFILE 1024, the limit a
unit without LimitNOFILE gets. Printed: keep-alive and new-connection p50 of
800 GETs, then 1,100 slow-loris connections (a request line, then a header
line every second) and how many of 13 scrapes during them are answered.
All on loopback. Needs cheroot (pip install cheroot; not a dependency).

    python bench/server_choice.py
"""
import sys, subprocess, time, http.client, statistics, os, socket, contextlib, resource, threading
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
SERVERS = {
"cheroot": r'''
import sys
from cheroot import wsgi
body = b"x" * 3000
def app(environ, sr):
    sr("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
s = wsgi.Server(("127.0.0.1", int(sys.argv[1])), app, numthreads=16, request_queue_size=1024, timeout=10)
s.start()
''',
"aiohttp (exporter.web)": r'''
import sys
from exporter.web import make_server
body = b"x" * 3000
def app(environ, sr):
    sr("200 OK", [("Content-Type", "text/plain")])
    return [body]
make_server("127.0.0.1:" + sys.argv[1], app).serve_forever()
'''}
def port_():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def scrape(port, keep=None):
    c = keep or http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/metrics"); r = c.getresponse(); r.read()
    if keep is None: c.close()
    return r.status
for name, code in SERVERS.items():
    port = port_()
    p = subprocess.Popen([sys.executable, "-c", code, str(port)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)))
    time.sleep(1.5)
    def p50(keep, n=800):
        t = []; c = http.client.HTTPConnection("127.0.0.1", port) if keep else None
        for _ in range(n):
            t0 = time.perf_counter(); scrape(port, c); t.append((time.perf_counter() - t0) * 1000)
        return statistics.median(t)
    p50(True, 100)
    ka, new = p50(True), p50(False)
    flood = []
    for _ in range(1100):
        with contextlib.suppress(OSError):
            s = socket.create_connection(("127.0.0.1", port), timeout=1); s.setblocking(False)
            with contextlib.suppress(OSError): s.send(b"GET /metrics HTTP/1.1\r\n")
            flood.append(s)
    stop = threading.Event()
    def drip():
        while not stop.wait(1.0):
            for s in flood:
                with contextlib.suppress(OSError): s.send(b"X-A: b\r\n")
    threading.Thread(target=drip, daemon=True).start()
    ok, lat = 0, []
    for _ in range(13):
        t0 = time.monotonic()
        try:
            ok += scrape(port) == 200
        except OSError:
            pass
        lat.append(time.monotonic() - t0); time.sleep(0.3)
    stop.set()
    for s in flood: s.close()
    print(f"{name:24s} keep-alive p50 {ka:.3f} ms  new-connection p50 {new:.3f} ms  "
          f"flood of 1,100 slow-loris at nofile=1024: {ok}/13 scrapes answered, worst {max(lat):.1f} s")
    p.terminate(); p.wait()
