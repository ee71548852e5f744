"""Rackspace Cloud Backup, as a provider: what the exporter needs to know before importing any SDK.

Everything here is plain data and functions of the standard library, so the
provider registry (exporter.sources.registry) can read it in host mode
without keystoneauth1 or rackspaceauth installed. The source itself is in
`source.py`, imported when a cloud of this provider is polled.

Authentication is the Rackspace cloud's own: one clouds.yaml entry with
`auth_type: rackspace_apikey` (PyPI `rackspaceauth`), the same entry the
OpenStack source uses for the account's servers and images. The Cloud Backup
API v1.0 endpoint is the service catalog's `rax:backup` entry of the region
("Service access endpoints", Rackspace Cloud Backup API v1.0).
"""
from __future__ import annotations

import os
import re
from typing import List

from .. import provider as p

NAME = "rackspace_backup"
EXTRA = "rackspace"                          # pip install 'imaging-exporter[rackspace]'
SDK = "keystoneauth1 and rackspaceauth"
CATALOG_TYPE = "rax:backup"
AUTH_TYPES = ("rackspace_apikey", "rackspace_password", "rackspace_token")


def _region(v):
    v = p.string(v)
    if v and not re.fullmatch(r"[A-Za-z0-9_-]+", v):
        raise ValueError(f"{v!r} is not a region name (DFW, ORD, IAD, LON, HKG, SYD)")
    return v.upper()


def _api_url(v):
    return p.http_url(v, required=False)


def preflight(cfg) -> List[str]:
    """Problems --check-config can see without the network: the clouds.yaml entry and its auth plugin."""
    try:
        from openstack import config as os_config
    except ImportError:
        return [f"provider {NAME} needs {SDK}: pip install 'imaging-exporter[{EXTRA}]'"]
    loader = os_config.OpenStackConfig()
    name = cfg.options["cloud"] or os.environ.get("OS_CLOUD") or ""
    entry = (getattr(loader, "cloud_config", None) or {}).get("clouds", {}).get(name) if name else None
    if isinstance(entry, dict) and entry.get("auth_type") not in AUTH_TYPES:
        # Before get_one(), which fails on the plugin's options with a less useful message.
        return [_wrong_auth_type(name, entry.get("auth_type"))]
    try:
        region = loader.get_one(cloud=name or None)
    except Exception as e:  # noqa: BLE001 - openstacksdk and keystoneauth raise several kinds
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = loader.config_filename or "no clouds.yaml found"
        return [f"clouds.yaml: {first} ({where})"]
    auth_type = region.config.get("auth_type") or ""
    if auth_type not in AUTH_TYPES:
        return [_wrong_auth_type(name, auth_type)]
    auth = region.config.get("auth") or {}
    needed = {"rackspace_apikey": ("username", "api_key"), "rackspace_password": ("username", "password"),
              "rackspace_token": ("tenant_id", "token")}[auth_type]
    missing = [k for k in needed if not str(auth.get(k) or "").strip()]
    if missing:
        return [f"clouds.yaml entry {name or '(OS_CLOUD)'}: auth has no {' or '.join(missing)}"]
    return []


def _wrong_auth_type(name, auth_type) -> str:
    return (f"clouds.yaml entry {name or '(OS_CLOUD)'}: auth_type is {auth_type or 'not set'!r}; "
            f"Cloud Backup needs one of {', '.join(AUTH_TYPES)} (pip install rackspaceauth)")


PROVIDER = p.Provider(
    name=NAME,
    source=f"{__name__}.source:RackspaceBackupSource",
    extra=EXTRA,
    sdk=SDK,
    profile="rackspace_backup",
    options={
        "cloud": p.Option("", p.string, "clouds.yaml entry (auth_type rackspace_apikey); empty: OS_CLOUD"),
        "region": p.Option("", _region, "catalog region of the Cloud Backup endpoint; empty: the entry's "
                                        "region_name"),
        "api_url": p.Option("", _api_url, "Cloud Backup endpoint with the tenant (https://dfw.backup.api."
                                          "rackspacecloud.com/v1.0/123456), instead of the catalog's"),
    },
    preflight=preflight,
    # The SDK's loggers that print request lines (with the token's owner) at debug, warnings at info.
    quiet_loggers=("keystoneauth", "rackspaceauth", "openstack.config", "urllib3"),
)
