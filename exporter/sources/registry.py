"""The cloud providers the exporter knows: one line each.

Shared modules (config, app, cli, logs, the host source) ask this registry and
never name a provider. Each line is a package under exporter/sources/ whose
`__init__.py` declares `PROVIDER` (exporter.sources.provider) without
importing its SDK. `register()` adds one more at run time (the tests' fourth
provider uses it).
"""
from __future__ import annotations

import importlib
from typing import Callable, Dict, Tuple

from ..errors import ConfigError
from .provider import Provider

BUILTIN = (
    "openstack",          # OpenStack clouds (and Rackspace's): Glance, Nova, Cinder
    "linode",             # Linode (Akamai): private images, Backup Service, disks
    "rackspace_backup",   # Rackspace Cloud Backup: agents, configurations, backups
)

_providers: Dict[str, Provider] = {}


def _load() -> Dict[str, Provider]:
    if not _providers:      # first use: the built-in ones, each package's metadata only
        for name in BUILTIN:
            provider = importlib.import_module(f"{__package__}.{name}").PROVIDER
            _providers[provider.name] = provider
    return _providers


def register(provider: Provider) -> Provider:
    """Add a provider after the built-in ones; its name must be new."""
    if provider.name in _load():
        raise ValueError(f"provider {provider.name!r} is already registered")
    _providers[provider.name] = provider
    return provider


def unregister(name: str) -> None:
    """Remove a provider added by register() (tests clean up with it)."""
    if name in BUILTIN:
        raise ValueError(f"{name!r} is a built-in provider")
    _load().pop(name, None)


def names() -> Tuple[str, ...]:
    return tuple(_load())


def get(name: str) -> Provider:
    """The provider called `name`; an unknown one is one ConfigError listing the known ones."""
    providers = _load()
    if name not in providers:
        raise ConfigError(f"must be one of {', '.join(providers)}, not {name!r}")
    return providers[name]


def quiet_loggers() -> Tuple[str, ...]:
    """Every provider's SDK loggers that would print request details at debug level."""
    return tuple(dict.fromkeys(n for p in _load().values() for n in p.quiet_loggers))


def server_id_detectors() -> Tuple[Callable[[str], str], ...]:
    """instance-id -> server id functions of the providers that have one (exporter.sources.host)."""
    return tuple(p.server_id for p in _load().values() if p.server_id is not None)


def build_source(cfg, profile):
    """The source polling one cloud of the config; its SDK is imported here."""
    return get(cfg.provider).source_class()(cfg, profile)
