"""Sources read one system and return an immutable snapshot (exporter.models).

The host source is here; each cloud provider is a package of its own
(exporter/sources/<name>/, listed in registry.py) whose SDK is an optional
dependency (`pip install 'imaging-exporter[openstack]'`, `[linode]`, ...):
host mode installs and imports none.
"""
