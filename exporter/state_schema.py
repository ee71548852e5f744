"""What a state file may hold, checked structurally on load.

The file is ours, but disks fill, people edit files and versions change,
so nothing in it is trusted: every number must be finite, every key a
string, nesting shallow and sizes bounded. The sections the ledger reads
have exact shapes; any other key inside a cloud's section (a newer
version's, another module's) is kept if it maps strings to finite numbers,
strings, or lists of those.

check() returns the document with every bad part removed, and the list of
problems (one line each), so one bad entry costs that entry, not the
high-water marks.
"""
from __future__ import annotations

import math
from typing import Any, List, Tuple

MAX_DEPTH = 8
MAX_STRING = 4096                # characters in a key or string value
MAX_NUMBER = 2.0 ** 63           # bytes, counts, timestamps, durations all fit
# Job-duration histogram bounds in seconds, counted by the ledger; the state file keeps one count per
# bound, so a loaded file's bucket lists are checked against them. Imaging "can take several hours"
# (Rackspace, "Cloud Server Image Limitations") and is stuck after 24 h.
BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 21600.0, 43200.0, 86400.0, 172800.0)


def depth(obj, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a loaded JSON value, iteratively (no recursion limit to hit)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return deepest


def _number(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if isinstance(v, int):          # compared as an int: a 400-digit one does not fit a float
        return -MAX_NUMBER < v < MAX_NUMBER
    return math.isfinite(v) and -MAX_NUMBER < v < MAX_NUMBER


def _string(v) -> bool:
    return isinstance(v, str) and len(v) <= MAX_STRING


def _scalar(v) -> bool:
    return _number(v) or _string(v)


def _extra_value(v) -> bool:
    """An unknown section's value: a finite number, a string, or a flat list of those."""
    return _scalar(v) or (isinstance(v, list) and all(_scalar(x) for x in v))


def _histogram(v, n_buckets: int) -> bool:
    return (isinstance(v, dict) and set(v) == {"buckets", "count", "sum"}
            and isinstance(v["buckets"], list) and len(v["buckets"]) == n_buckets
            and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < MAX_NUMBER for b in v["buckets"])
            and isinstance(v["count"], int) and not isinstance(v["count"], bool) and 0 <= v["count"] < MAX_NUMBER
            and _number(v["sum"]))


def _section_checks(n_buckets: int):
    return {
        "counted": _number,
        "last_success": lambda v: isinstance(v, list) and len(v) == 2 and all(_number(x) for x in v),
        "histogram": lambda v: _histogram(v, n_buckets),
        "failed": lambda v: (isinstance(v, list) and len(v) == 3 and _string(v[0]) and _string(v[1])
                             and _number(v[2])),
    }


def _mapping(where: str, raw, valid, problems: List[str]) -> dict:
    if not isinstance(raw, dict):
        problems.append(f"{where} is not a mapping")
        return {}
    out = {}
    for k, v in raw.items():
        if _string(k) and valid(v):
            out[k] = v
        else:
            problems.append(f"{where}[{str(k)[:60]!r}] has a bad value")
    return out


def check(doc: Any, version: int, n_buckets: int) -> Tuple[dict, List[str]]:
    """(the valid part of ``doc``, problems). Raises ValueError if nothing can be kept."""
    if not isinstance(doc, dict):
        raise ValueError("the top level is not a mapping")
    if doc.get("version") != version:
        raise ValueError(f"version is {str(doc.get('version'))[:20]!r}, not {version}")
    if depth(doc) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    problems: List[str] = []
    hw = _mapping("high_water", doc.get("high_water", {}),
                  lambda v: _number(v) and v >= 0, problems)
    jobs_raw = doc.get("jobs", {})
    jobs = {}
    checks = _section_checks(n_buckets)
    if not isinstance(jobs_raw, dict):
        problems.append("jobs is not a mapping")
        jobs_raw = {}
    for cloud, sec in jobs_raw.items():
        if not _string(cloud) or not isinstance(sec, dict):
            problems.append(f"jobs[{str(cloud)[:60]!r}] is not a mapping")
            continue
        kept = {}
        for name, part in sec.items():
            if not _string(name):
                problems.append(f"jobs[{cloud!r}] has a key that is not a string")
                continue
            valid = checks.get(name, _extra_value)
            kept[name] = _mapping(f"jobs[{cloud!r}][{name!r}]", part, valid, problems)
        jobs[cloud] = kept
    unknown = [k for k in doc if k not in ("version", "high_water", "jobs")]
    if unknown:
        problems.append(f"unknown top-level keys {', '.join(repr(str(k)[:40]) for k in unknown[:5])}")
    return {"version": version, "high_water": {k: int(v) for k, v in hw.items()}, "jobs": jobs}, problems
