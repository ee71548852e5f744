"""Files generated from others (profiles.json, docs/metrics.md, the rules, the mixin, the
PrometheusRule, the dashboards): written, or with --check only compared, in one place.

Each generator builds its texts and calls write_or_check(); a stale file under --check is
one line on stderr and exit 1, which the tests and CI rely on.
"""
from __future__ import annotations

import os
import sys
from typing import Dict


def write_or_check(outputs: Dict[str, str], check: bool, command: str) -> int:
    """Write each path's text (atomically: a temporary file, then rename) unless it is already
    there; with ``check``, write nothing and return 1 if any differs, naming ``command``."""
    stale = []
    for path, text in outputs.items():
        try:
            with open(path, encoding="utf-8") as f:
                if f.read() == text:
                    continue
        except FileNotFoundError:
            pass
        stale.append(path)
        if not check:
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
    if check and stale:
        print(f"out of date: {', '.join(stale)} (run {command})", file=sys.stderr)
        return 1
    return 0
