#!/usr/bin/env python3
"""Generate the Grafana dashboards of imaging-exporter with grafana-foundation-sdk.

    pip install -e '.[dashboards]'          # grafana-foundation-sdk, pinned to its Grafana 10.4 build
    python dashboards/generate.py           # rewrite dashboards/*.json
    python dashboards/generate.py --check   # exit 1 if a committed dashboard is out of date

- imaging-overview.json  "Imaging / Overview" (dashboards/overview.py): the fleet.
- imaging-server.json    "Imaging / Server" (dashboards/server.py): one server, from its host
  exporter, its cloud account or both, joined on server_id.

The panels are built with Grafana Labs' typed builders and written from the SDK's
schema models (Grafana 10.4, schemaVersion 39; Grafana 11 imports them as they are).
Thresholds, the fill-up prediction and runbook links come from the alerts
(alerts/generate.py) through dashboards/alerting.py. Every query goes through the
`datasource` variable: no data source UID is stored, so the JSON imports into any
Grafana with a Prometheus data source, by file, provisioning or the HTTP API.

Only this generator needs the SDK; the exporter does not.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

try:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
except ImportError:  # pragma: no cover - depends on the environment
    JSONEncoder = None

# Grafana version whose schema the pinned SDK build (pyproject's `dashboards` extra) models.
GRAFANA_SCHEMA = "10.4"


def dashboards() -> dict:
    from dashboards import overview, server
    return {"imaging-overview.json": overview.build, "imaging-server.json": server.build}


def render(build) -> str:
    return json.dumps(build(), cls=JSONEncoder, indent=2) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="fail if a committed dashboard is out of date")
    p.add_argument("--output-dir", default=HERE)
    a = p.parse_args(argv)
    if JSONEncoder is None:
        print("grafana-foundation-sdk is not installed: pip install -e '.[dashboards]'", file=sys.stderr)
        return 2
    from exporter.generated import write_or_check
    return write_or_check({os.path.join(a.output_dir, name): render(build) for name, build in dashboards().items()},
                          a.check, "python dashboards/generate.py")


if __name__ == "__main__":
    sys.exit(main())
