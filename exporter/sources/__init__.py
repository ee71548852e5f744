"""Sources read one system and return an immutable snapshot (exporter.models).

Cloud providers live in modules of their own and need an optional dependency
(`pip install 'imaging-exporter[openstack]'`, `[linode]`): host mode installs
and imports neither SDK.
"""
from __future__ import annotations

import importlib

from ..errors import ConfigError

# provider name -> (module under exporter.sources, the pip extra that installs its SDK, the SDK)
PROVIDER_MODULES = {
    "openstack": ("openstack", "openstack", "openstacksdk"),
    "linode": ("linode", "linode", "linode_api4"),
    "rackspace_backup": ("rackspace_backup.source", "rackspace", "keystoneauth1 and rackspaceauth"),
}


def provider_module(provider: str):
    """The module of a cloud provider; a missing SDK is one ConfigError naming the extra."""
    module, extra, sdk = PROVIDER_MODULES[provider]
    try:
        return importlib.import_module(f"{__name__}.{module}")
    except ImportError as e:
        missing = getattr(e, "name", None) or str(e)
        raise ConfigError(f"provider {provider} needs {sdk}, which is not installed ({missing} is missing): "
                          f"pip install 'imaging-exporter[{extra}]'") from None
