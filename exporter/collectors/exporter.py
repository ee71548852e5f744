"""The per-scrape collector: host mode (collectors.host.HostCollector), timed, and the exporter's own health.

A host read that raises yields imaging_scrape_collector_success 0 and no
host metrics; the scrape still answers 200 with the health and cloud
metrics. Cloud metrics are rendered per refresh (exporter.exposition).
"""
from __future__ import annotations

import logging
import time

from ..errors import SourceError
from . import host as host_mod
from .spec import FamilySet, counter, gauge

log = logging.getLogger(__name__)

BUILD_INFO = gauge("imaging_build_info", "Build information; always 1.", "version")
SCRAPE_DURATION = gauge("imaging_scrape_duration_seconds",
                        "How long a collector took: host per scrape, cloud per refresh (its rendering is cached).",
                        "collector")
SCRAPE_SUCCESS = gauge("imaging_scrape_collector_success", "1 when the collector's last run succeeded.",
                       "collector")
SOURCE_LABELS = ("source", "cloud")
SOURCE_UP = gauge("imaging_source_up", "1 when the source's last refresh or read succeeded.", *SOURCE_LABELS)
SOURCE_LAST_SUCCESS = gauge("imaging_source_last_success_timestamp_seconds",
                            "When the source last refreshed successfully.", *SOURCE_LABELS)
SOURCE_DURATION = gauge("imaging_source_refresh_duration_seconds", "How long the source's last refresh took.",
                        *SOURCE_LABELS)
SOURCE_INTERVAL = gauge("imaging_source_refresh_interval_seconds", "The source's configured refresh interval.",
                        *SOURCE_LABELS)
SOURCE_ERRORS = counter("imaging_source_refresh_errors_total", "Failed refreshes of the source, by reason.",
                        *SOURCE_LABELS, "reason")

# Only in --once output: a textfile that stops being rewritten must alert, and node_exporter
# gives the file the time it reads it, not the time it was written.
TEXTFILE_TIMESTAMP = gauge("imaging_textfile_timestamp_seconds",
                           "When imaging-exporter --once wrote this output (textfile collector mode).")

SPECS = (BUILD_INFO, SCRAPE_DURATION, SCRAPE_SUCCESS, SOURCE_UP, SOURCE_LAST_SUCCESS, SOURCE_DURATION,
         SOURCE_INTERVAL, SOURCE_ERRORS, TEXTFILE_TIMESTAMP)


class ExporterCollector:        # a prometheus_client collector (describe, collect)
    def __init__(self, version, host=None, pollers=(), cloud_render=None, process_metrics=True):
        self.version = version
        self.host = host
        self.pollers = list(pollers)
        self.cloud_render = cloud_render   # models.RenderStats: cloud metrics are rendered per refresh, not here
        # The exporter's own CPU, memory and open files, as every Prometheus exporter
        # reports them (--web.disable-exporter-metrics turns them off, as in node_exporter).
        self.process = None
        if process_metrics:
            from .process import ProcessFamilies
            self.process = ProcessFamilies()

    def describe(self):
        # The families without samples: registration needs only the names.
        # Cloud families are collectors.cloud.CloudCollector's (rendered per refresh).
        own = [spec.family() for spec in host_mod.SPECS + SPECS]
        return own + (list(self.process) if self.process else [])

    def family_sets(self):
        """This scrape's family sets (collectors.spec.FamilySet): host, then health, then process_*."""
        sets = []
        health = FamilySet(SPECS)
        health.add(BUILD_INFO, (self.version,), 1)
        if self.host:
            started = time.perf_counter()
            try:
                sets.append(self.host.families())
                ok = 1
            except Exception:  # noqa: BLE001 - a failing host read must not fail the scrape
                log.exception("collector host failed")
                ok = 0
            health.add(SCRAPE_DURATION, ("host",), time.perf_counter() - started)
            health.add(SCRAPE_SUCCESS, ("host",), ok)
        if self.cloud_render is not None:
            health.add(SCRAPE_DURATION, ("cloud",), self.cloud_render.last_duration)
            health.add(SCRAPE_SUCCESS, ("cloud",), 1 if self.cloud_render.ok else 0)
        if self.host:
            h = self.host
            health.add(SOURCE_UP, ("host", ""), 1 if h.up else 0)
            if h.last_success:
                health.add(SOURCE_LAST_SUCCESS, ("host", ""), h.last_success)
                health.add(SOURCE_DURATION, ("host", ""), h.last_duration)
        for p in self.pollers:
            s, hl = (p.provider, p.name), p.health
            health.add(SOURCE_UP, s, 1 if hl.up else 0)
            if hl.last_success:
                health.add(SOURCE_LAST_SUCCESS, s, hl.last_success)
            health.add(SOURCE_DURATION, s, hl.last_duration)
            health.add(SOURCE_INTERVAL, s, p.interval)
            for reason in SourceError.REASONS:
                health.add(SOURCE_ERRORS, s + (reason,), hl.errors.get(reason, 0))
        sets.append(health)
        if self.process:
            sets.append(self.process)
        return sets

    def collect(self):
        for family_set in self.family_sets():
            yield from family_set
