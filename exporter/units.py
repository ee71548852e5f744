"""Parsing of sizes, counts and durations written the way operators write them.

Sizes need a unit: "GB" is decimal (10^9, as the providers' documents write
it, and the conservative reading), "GiB" binary. Counts take an optional
k/M/G suffix. Durations are Prometheus durations ("90s", "1h30m", "48h").
"""
import re

_SIZE_UNITS = {
    "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "PIB": 2**50,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)\s*$")
_COUNT_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgG]?)\s*$")
_COUNT_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9}
_DURATION_RE = re.compile(r"^(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m(?!s))?(?:([0-9]+)s)?(?:([0-9]+)ms)?$")


def parse_size(value):
    """Return bytes for "250GB", "40GiB", "512MiB"; raise ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"{value!r} needs a unit, for example \"250GB\" or \"40GiB\"")
    m = _SIZE_RE.match(value)
    if not m or m.group(2).upper() not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size; write it like \"250GB\" or \"40GiB\"")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()])


def parse_count(value):
    """Return an integer for 25, "3M", "3000000", "2.5k"."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a count")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a count; write it like 25 or \"3M\"")
    m = _COUNT_RE.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a count; write it like 25 or \"3M\"")
    return int(float(m.group(1)) * _COUNT_UNITS[m.group(2).upper()])


def parse_duration(value):
    """Return seconds (float) for a Prometheus duration such as "5s" or "48h"."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"{value!r} needs a unit, for example \"30s\" or \"48h\"")
    m = _DURATION_RE.match(value.strip())
    if not value.strip() or not m or not any(m.groups()):
        raise ValueError(f"{value!r} is not a duration; write it like \"30s\", \"5m\" or \"48h\"")
    d, h, mi, s, ms = (int(g) if g else 0 for g in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + s + ms / 1000.0


def format_bytes(n):
    """Short human form used in --list-profiles and messages ("250 GB")."""
    for unit, size in (("PB", 10**15), ("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            v = n / size
            return f"{v:g} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"
