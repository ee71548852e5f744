"""exporter.web servers for tests: one served in a thread on a free loopback port."""
import contextlib
import threading

from prometheus_client import CollectorRegistry, Gauge, make_wsgi_app

from exporter.web import make_server


def metrics_app():
    registry = CollectorRegistry()
    Gauge("imaging_test_value", "A value for the web tests.", registry=registry).set(42)
    return make_wsgi_app(registry)


@contextlib.contextmanager
def serving(config, app=None, address="127.0.0.1:0", **options):
    """make_server (``options``: its keywords, e.g. max_requests) on a free loopback port,
    served in a thread; yields the port and stops the server afterwards."""
    server = make_server(address, app or metrics_app(), config, **options)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
