"""assemble(): the exporter from a config (state file, host collector, cloud pollers, /metrics) and its WSGI app."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, List, Optional, Sequence

from . import __version__, limits as limits_mod, profiles
from .collectors.exporter import ExporterCollector
from .collectors.host import HostCollector
from .config import Config
from .exposition import Exposition
from .sources import registry
from .sources.high_water import HighWaterSource
from .sources.host import detect_server_id, platform_source
from .state import State, default_path

if TYPE_CHECKING:
    from .poller import Poller

log = logging.getLogger(__name__)


def _cloud_source(cfg):
    # The provider's SDK is imported here, so host mode never pays for it.
    profile = profiles.get(cfg.profile or registry.get(cfg.provider).profile)
    return registry.build_source(cfg, profile)


class Exporter:
    """The assembled exporter (see assemble()): the state file, the cloud pollers and /metrics."""

    def __init__(self, state: State, pollers: List[Poller], exposition: Exposition):
        self.state = state
        self.pollers = pollers
        self.exposition = exposition

    def start(self):
        for p in self.pollers:
            p.start()

    def refresh_all(self):
        """One synchronous refresh of every cloud (for --once)."""
        for p in self.pollers:
            p.refresh_once()

    def stop(self, deadline: float = 3.0):
        """Stop the pollers, waiting at most ``deadline`` seconds in all (a hung cloud
        API is not waited for), then save the state."""
        import time
        for p in self.pollers:
            p.request_stop()
        end = time.monotonic() + deadline
        for p in self.pollers:
            p.stop(timeout=max(0.0, end - time.monotonic()))
        self.state.flush()

    def wsgi_app(self, telemetry_path: str = "/metrics"):
        metrics = self.exposition.wsgi_app()
        landing = _landing_page(telemetry_path)

        def app(environ, start_response):
            path = environ.get("PATH_INFO") or "/"
            if path == telemetry_path:
                return metrics(environ, start_response)
            if path == "/":
                start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
                return [landing]
            if path in ("/-/healthy", "/-/ready"):
                start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
                return [b"OK\n"]
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"404 page not found\n"]

        def quick(environ) -> bool:
            """True when answering cannot wait on anything (exporter.web_handler calls
            the app on its event loop then): a host read that needs no stat under the mount
            deadline, and a cloud part read as held, not rendered. During a refresh every
            hand-off between threads waits for the GIL, up to one decoded API page (~8 ms)
            each: a cloud scrape on the loop has one hand-off instead of three."""
            if environ.get("PATH_INFO") != telemetry_path:
                return True
            host = self.exposition.collector.host
            return (host is None or host.source.quick()) and self.exposition.answered_from_held(
                environ.get("HTTP_ACCEPT"), environ.get("HTTP_ACCEPT_ENCODING"), environ.get("QUERY_STRING", ""))
        app.quick = quick
        return app


def assemble(config: Config, collectors: Optional[dict] = None, host_source=None,
             process_metrics: bool = True) -> Exporter:
    """The whole exporter from a config: the state file, host mode (``host_source`` replaces
    the platform's reader), a poller per enabled cloud, and the /metrics exposition.
    ``collectors`` maps "host" and provider names to on/off (all on by default)."""
    collectors = collectors or {}
    state = State(config.state_file or default_path())
    host = host_collector(config.host, state, host_source) if collectors.get("host", True) else None
    pollers = []
    for cc in config.clouds:
        if collectors.get(cc.provider, True):
            from .poller import Poller      # imported here: host mode (and --once from cron) never pays for it
            pollers.append(Poller(_cloud_source(cc), cc.name, cc.refresh_interval, cc.lookback, state=state))
    return Exporter(state, pollers, build_exposition(pollers, host, process_metrics))


def host_collector(host_config, state: State, host_source=None) -> HostCollector:
    """Host mode: the platform's reader (or ``host_source``), recording high-water marks in
    ``state``, against the limits in force."""
    hc = host_config
    limits = limits_mod.limits_in_force(profiles.get(hc.profile), hc)
    server_id = hc.server_id or detect_server_id(hc.root_path or "/")
    source = HighWaterSource(host_source or platform_source(hc), state)
    return HostCollector(source, limits, hc.profile, server_id)


def build_exposition(pollers: Sequence = (), host: Optional[HostCollector] = None,
                     process_metrics: bool = True) -> Exposition:
    """/metrics of a host collector and cloud pollers: host and health rendered per scrape,
    cloud metrics cached and re-rendered after each good refresh of any poller."""
    pollers = list(pollers)
    cloud_cache = None
    if pollers:
        from .exposition import CloudCache
        cloud_cache = CloudCache(pollers)
        for p in pollers:
            p.on_refresh = cloud_cache.refresh
    collector = ExporterCollector(__version__, host=host, pollers=pollers,
                                  cloud_render=cloud_cache.stats if cloud_cache else None,
                                  process_metrics=process_metrics)
    return Exposition(collector, cloud_cache)


def _landing_page(telemetry_path: str) -> bytes:
    import html                 # served mode only: --once never builds the landing page
    p = html.escape(telemetry_path, quote=True)
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>imaging-exporter</title></head>
<body>
<h1>imaging-exporter</h1>
<p>Warns before a cloud server image or backup fails. Version {html.escape(__version__)}.</p>
<ul>
<li><a href="{p}">Metrics</a></li>
<li><a href="/-/healthy">Health</a></li>
</ul>
</body>
</html>
""".encode()
