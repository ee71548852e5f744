"""Limit profiles: the shipped data file, loaded into NamedTuples (cheap to define: exporter.models).

profiles.yaml is the data as written (with its sources); profiles.json is
the same data generated from it (`python -m exporter.profiles`, checked by
`--check` and tests/test_profiles_data.py), read at run time with the json
module every mode imports anyway: PyYAML's import was ~10 ms of a 90 ms
`--once` run, which needs it for nothing else when there is no config file.
"""
from __future__ import annotations

import functools
import json
import os
import sys
from typing import Dict, NamedTuple, Optional, Tuple

from .units import parse_count, parse_duration, parse_size

HOST_MEASURES = ("used_bytes", "used_high_water_bytes", "system_disk_bytes", "used_inodes")
CLOUD_MEASURES = ("image_count", "image_bytes_total", "image_size")
MEASURES = HOST_MEASURES + CLOUD_MEASURES
COUNT_MEASURES = ("used_inodes", "image_count")

PROFILES_FILE = os.path.join(os.path.dirname(__file__), "profiles.yaml")
PROFILES_DATA = os.path.join(os.path.dirname(__file__), "profiles.json")    # generated from PROFILES_FILE


class Limit(NamedTuple):
    name: str
    measure: str
    value: int                      # bytes, inodes or images
    source: str = ""                # the sentence and where it is from
    mountpoints: Optional[str] = None   # regex; None = the system filesystems

    @property
    def unit(self) -> str:
        return {"used_inodes": "inodes", "image_count": "images"}.get(self.measure, "bytes")


class Profile(NamedTuple):
    name: str
    description: str
    limits: Tuple[Limit, ...] = ()
    note: str = ""
    # profiles.yaml's `common: job_stuck_after`, here so that sources read no global data
    job_stuck_after: float = 24 * 3600.0

    def host_limits(self):
        return tuple(l for l in self.limits if l.measure in HOST_MEASURES)

    def cloud_limit(self, measure):
        for l in self.limits:
            if l.measure == measure:
                return l
        return None


class Common(NamedTuple):
    job_stuck_after: float
    repeated_failures: int
    retry_after: float


def parse_limit_value(measure, value):
    if measure in COUNT_MEASURES:
        return parse_count(value)
    return parse_size(value)


def _cite(sources, ref):
    if not ref:
        return ""
    doc, sentence = ref
    return f'"{sentence}" ({sources.get(str(doc), doc)})'


def read_yaml(path=PROFILES_FILE) -> dict:
    """profiles.yaml as written (for the generator and the tests)."""
    import yaml
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def json_text(data: dict) -> str:
    """profiles.json's text for the data of profiles.yaml: keys in file order, one line per
    limit or citation, so a change to profiles.yaml is a readable change here too."""
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


@functools.lru_cache(maxsize=None)
def _load(path=PROFILES_DATA):
    with open(path, encoding="utf-8") as f:
        return build(json.load(f), path)


def build(data: dict, path: str = PROFILES_FILE):
    """(profiles by name, common facts) from the data of profiles.yaml."""
    sources = {str(k): v for k, v in data["sources"].items()}
    c = data["common"]
    common = Common(job_stuck_after=parse_duration(c["job_stuck_after"]),
                    repeated_failures=int(c["repeated_failures"]),
                    retry_after=parse_duration(c["retry_after"]))
    profiles = {}
    for name, p in data["profiles"].items():
        unknown = {l["measure"] for l in p.get("limits") or ()} - set(MEASURES)
        if unknown:   # shipped data: a typo must fail the tests, not drop a limit silently
            raise ValueError(f"{path}: profile {name}: unknown measure {', '.join(sorted(unknown))}")
        limits = tuple(
            Limit(name=l["name"], measure=l["measure"],
                  value=parse_limit_value(l["measure"], l["value"]),
                  source=_cite(sources, l.get("source")))
            for l in p.get("limits") or ())
        profiles[name] = Profile(name=name, description=p.get("description", ""), limits=limits,
                                 note=_cite(sources, p.get("note")), job_stuck_after=common.job_stuck_after)
    return profiles, common


def profiles() -> Dict[str, Profile]:
    return _load()[0]


def common() -> Common:
    return _load()[1]


def get(name) -> Profile:
    return profiles()[name]


def main(argv=None) -> int:
    """Write profiles.json from profiles.yaml; with --check, only say whether it is out of date."""
    from .generated import write_or_check
    argv = sys.argv[1:] if argv is None else argv
    return write_or_check({PROFILES_DATA: json_text(read_yaml())}, "--check" in argv, "python -m exporter.profiles")


if __name__ == "__main__":
    sys.exit(main())
