"""TinyCloud: a minimal fourth provider that exists only in the tests.

It shows what docs/architecture.md's "Adding a provider" says a contributor
writes: this package (metadata here, the source in source.py), a fake API
(api.py) and tests (tests/test_provider_registry.py), then one registry
line. Being a test, it is registered at run time through the registry's
public entry point, exporter.sources.registry.register(PROVIDER), instead of
a line in BUILTIN; it borrows the shipped `generic` profile and needs no
extra (its "SDK" is the standard library's urllib).
"""
from __future__ import annotations

from typing import List

from exporter.sources import provider as p

NAME = "tinycloud"


def preflight(cfg) -> List[str]:
    """Nothing to check without the network but the URL, which the option already checked."""
    return [] if cfg.options["url"] else [f"provider {NAME}: url is empty"]


PROVIDER = p.Provider(
    name=NAME,
    source=f"{__name__}.source:TinyCloudSource",
    extra="tinycloud",
    sdk="urllib (the standard library)",
    profile="generic",
    options={"url": p.Option("", p.http_url, "the TinyCloud API, e.g. http://127.0.0.1:8080")},
    preflight=preflight,
    quiet_loggers=("tinycloud",),
)
