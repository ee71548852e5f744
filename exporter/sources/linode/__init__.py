"""Linode (Akamai), as a provider: metadata only, no SDK import.

The source (linode_api4) is `source.py`; `records.py` turns SDK objects into
records and jobs, `details.py` keeps per-instance disks and backups.
"""
from __future__ import annotations

import os
from typing import List

from .. import provider as p


def preflight(cfg) -> List[str]:
    """Problems --check-config can see without calling the API."""
    name = cfg.options["token_env"]
    if not os.environ.get(name, "").strip():
        return [f"environment variable {name} (token_env) is not set or empty"]
    return []


PROVIDER = p.Provider(
    name="linode",
    source=f"{__name__}.source:LinodeSource",
    extra="linode",
    sdk="linode_api4",
    profile="linode",
    options={
        "token_env": p.Option("LINODE_TOKEN", p.env_name, "environment variable holding the API token"),
        "api_url": p.Option("https://api.linode.com/v4", p.http_url, "API base URL"),
        "details_refresh_interval": p.Option(3600.0, p.positive_duration,
                                             "every instance's disks and backups re-read at least this often"),
    },
    preflight=preflight,
    quiet_loggers=("linode_api4", "urllib3", "requests"),
)
