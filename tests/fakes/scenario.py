"""One scenario format for every fake cloud API: a start, objects, and a timeline of changes.

A scenario file (tests/fixtures/<provider>/*.yaml) reads:

    about: what happens, in words
    start: 2024-05-01T12:00:00Z     # time zero: the fake's clock starts here
    account: {...}                  # anything else at the top is the provider's own
                                    # (OpenStack: project, limits; Linode: account)
    objects:                        # the state at start: kind -> id -> fields
      images:
        img-1: {name: web-1, status: saving, created: -25h}
    steps:                          # changes later on, in time order
      - at: 5m                      # offset from start
        images:
          img-1: {status: active}   # fields merge into the object; ~ deletes it

Times: in the fields a fake names as its time fields (at any depth), a
duration ("-25h", "90s", "+2d", "-23h30m"), a number of seconds, or null is
read relative to the time of the step that sets it (start for `objects`); a
date and time is taken as it is. The loader hands the fake Unix seconds, and
the fake writes them in its API's own format. A fake may name stamp fields
(created, updated): a new object gets created = its step's time and every
patched object updated = its step's time, unless the patch sets them.

Step 0 is the state at start; step k is the state after the k-th change.
A fake walks the timeline by step (OpenStack: goto/step) or by its clock
(Linode: every change whose time has passed). For tests of the exporter as a
process, whose clock is the real one, rebased(t) moves the whole scenario so
that it starts at t.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import yaml

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
DEFAULT_START = 1714564800.0                 # 2024-05-01T12:00:00Z

_DURATION = re.compile(r"^([+-]?)((?:\d+(?:\.\d+)?[dhms])+)$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

State = Dict[str, Dict[object, dict]]          # kind -> id -> fields


def parse_offset(value) -> float:
    """"25h", "-23h30m", "+2d", "0s" or a number of seconds -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value).strip())
    if not m:
        raise ValueError(f"bad duration {value!r}; use e.g. 90s, 5m, -23h30m, 2d")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(m.group(2)))
    return -seconds if m.group(1) == "-" else seconds


def timestamp(value) -> float:
    """Unix seconds of a date and time (naive: UTC), as YAML or ISO 8601 text gives it."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        return value.replace(tzinfo=value.tzinfo or timezone.utc).timestamp()
    return float(value)


@dataclass(frozen=True)
class Scenario:
    """A start (Unix seconds), the objects at start and the steps after it, as the module says."""
    start: float = DEFAULT_START
    objects: State = field(default_factory=dict)
    steps: Tuple[dict, ...] = ()
    about: str = ""
    header: dict = field(default_factory=dict)     # the provider's own top-level keys

    def __post_init__(self):
        # In time order; changes at the same time keep the order they were given in.
        object.__setattr__(self, "steps", tuple(sorted(self.steps, key=lambda s: parse_offset(s.get("at", 0)))))

    @classmethod
    def load(cls, path) -> "Scenario":
        """A scenario file (each fake's load_scenario(name) reads tests/fixtures/<provider>/<name>.yaml)."""
        with open(path, encoding="utf-8") as f:
            return cls.from_document(yaml.safe_load(f))

    @classmethod
    def from_document(cls, doc: dict) -> "Scenario":
        doc = dict(doc)
        start = timestamp(doc.pop("start", DEFAULT_START))
        return cls(start=start, objects=doc.pop("objects", None) or {}, steps=tuple(doc.pop("steps", None) or ()),
                   about=doc.pop("about", ""), header=doc)

    def rebased(self, start: float) -> "Scenario":
        return replace(self, start=float(start))

    def with_step(self, at: float, changes: dict) -> "Scenario":
        """This scenario with one more change at `at` (Unix seconds), after those at the same time."""
        return replace(self, steps=self.steps + (dict(changes, at=at - self.start),))

    # ---- the timeline ---------------------------------------------------------------------

    def times(self) -> List[float]:
        """The time of step 0 (start) and of each change after it."""
        return [self.start] + [self.start + parse_offset(s.get("at", 0)) for s in self.steps]

    def step_at(self, now: float) -> int:
        """How many changes have happened by `now`."""
        return sum(1 for t in self.times()[1:] if t <= now)

    def state(self, step: int, time_fields: Iterable[str] = (), stamps: Optional[Tuple[str, str]] = None) -> State:
        """Objects by kind and id at `step`, times in Unix seconds."""
        time_fields = frozenset(time_fields) | frozenset(stamps or ())
        times = self.times()
        timeline = [(self.start, self.objects)] + list(zip(times[1:], self.steps))
        state: State = {}
        for t, changes in timeline[:step + 1]:
            for kind, objs in changes.items():
                if kind == "at":
                    continue
                into = state.setdefault(kind, {})
                for oid, patch in (objs or {}).items():
                    if patch is None:
                        into.pop(oid, None)
                        continue
                    patch = _resolve(copy.deepcopy(patch), t, time_fields)
                    if stamps:
                        created, updated = stamps
                        if oid not in into:
                            patch.setdefault(created, t)
                        patch.setdefault(updated, t)
                    into.setdefault(oid, {}).update(patch)
        return state


def _resolve(value, at: float, time_fields, key=None):
    """`value` with the times in `time_fields` turned into Unix seconds, offsets taken from `at`."""
    if isinstance(value, dict):
        return {k: _resolve(v, at, time_fields, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, at, time_fields, key) for v in value]
    if key in time_fields and value is not None:
        if isinstance(value, datetime) or (isinstance(value, str) and not _DURATION.match(value.strip())):
            return timestamp(value)
        return at + parse_offset(value)
    return value
