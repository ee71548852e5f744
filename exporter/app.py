"""Assembles the exporter from a config: sources, pollers, state, registry, WSGI app."""
from __future__ import annotations

import logging
from typing import List, Optional

from . import __version__, limits as limits_mod, profiles
from .collectors.exporter import ExporterCollector, HostPart
from .config import Config
from .exposition import Exposition
from .sources import registry
from .sources.host import HostSource, detect_server_id, platform_source
from .state import State, default_path

log = logging.getLogger(__name__)


def _cloud_source(cfg):
    # The provider's SDK is imported here, so host mode never pays for it.
    profile = profiles.get(cfg.profile or registry.get(cfg.provider).profile)
    return registry.build_source(cfg, profile)


class Exporter:
    def __init__(self, config: Config, collectors: dict, host_source: Optional[HostSource] = None,
                 process_metrics: bool = True):
        self.config = config
        self.state = State(config.state_file or default_path())
        self.pollers: List[Poller] = []
        host = None
        if collectors.get("host", True):
            hc = config.host
            profile = profiles.get(hc.profile)
            limits = limits_mod.host_limits_in_force(profile.host_limits(), hc.limits, hc.disabled_limits)
            # The account's image-count limit is shown too (imaging_limit_images), for dashboards.
            limits += tuple(l for l in profile.limits if l.measure == "image_count"
                            and l.name not in hc.disabled_limits)
            server_id = hc.server_id or detect_server_id(hc.root_path or "/")
            host = HostPart(host_source or platform_source(hc), self.state, limits, hc.profile, server_id)
        self.cloud_cache = None
        for cc in config.clouds:
            if not collectors.get(cc.provider, True):
                continue
            # Imported here: host mode (and --once from cron) never pays for them.
            from .exposition import CloudCache
            from .poller import Poller
            if self.cloud_cache is None:
                self.cloud_cache = CloudCache(self.pollers)
            self.pollers.append(Poller(_cloud_source(cc), cc.name, cc.refresh_interval, cc.lookback,
                                       state=self.state, on_refresh=self.cloud_cache.refresh))
        self.collector = ExporterCollector(__version__, host=host, pollers=self.pollers, cloud_cache=self.cloud_cache,
                                           process_metrics=process_metrics)
        self.exposition = Exposition(self.collector, self.cloud_cache)

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
            the app on its event loop then): no cloud part, and a host read that needs
            no stat under the mount deadline."""
            if environ.get("PATH_INFO") != telemetry_path:
                return True
            host = self.collector.host
            return self.cloud_cache is None and (host is None or getattr(host.source, "quick", _never)())
        app.quick = quick
        return app


def _never() -> bool:
    return False


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
