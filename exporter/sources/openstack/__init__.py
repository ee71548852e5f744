"""OpenStack clouds (Rackspace's too), as a provider: metadata only, no SDK import.

The source (openstacksdk) is `source.py`; `jobs.py` turns API items into
records and jobs, `vanished.py` follows jobs whose image vanished.
"""
from __future__ import annotations

import os
import re
from typing import List

from .. import provider as p

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def preflight(cfg) -> List[str]:
    """Problems --check-config can see without calling the API: the clouds.yaml entry."""
    from openstack import config as os_config
    from openstack.config import loader
    config = os_config.OpenStackConfig()
    try:
        config.get_one(cloud=cfg.options["cloud"] or None)
    except Exception as e:  # noqa: BLE001 - openstacksdk raises several kinds; the message names the entry
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "rackspace_" in first and "could not be found" in first:
            first += "; Rackspace's API-key auth needs pip install 'imaging-exporter[rackspace]'"
        if config.config_filename:
            return [f"clouds.yaml: {first} (read {config.config_filename})"]
        # Where openstacksdk looks, so the operator can put the file in one of them.
        searched = [os.environ["OS_CLIENT_CONFIG_FILE"]] if os.environ.get("OS_CLIENT_CONFIG_FILE") else []
        searched = dict.fromkeys(searched + list(loader.CONFIG_FILES))
        return [f"clouds.yaml: {first} (no clouds.yaml found; searched {', '.join(searched)})"]
    return []


def server_id(instance_id: str) -> str:
    """cloud-init's instance id is the Nova server UUID on OpenStack: the id cloud mode uses."""
    value = instance_id.strip().lower()
    return value if _UUID.match(value) else ""


PROVIDER = p.Provider(
    name="openstack",
    source=f"{__name__}.source:OpenStackSource",
    extra="openstack",
    sdk="openstacksdk",
    profile="openstack",
    options={
        "cloud": p.Option("", p.string, "clouds.yaml entry; empty: OS_CLOUD / the environment"),
        "all_projects": p.Option(False, p.boolean, "every project's servers and images (admin)"),
        "action_lookups": p.Option(10, p.count, "Nova instance-action reads per refresh, for jobs that vanished"),
    },
    preflight=preflight,
    quiet_loggers=("keystoneauth", "openstack", "urllib3", "requests", "stevedore"),
    server_id=server_id,
)
