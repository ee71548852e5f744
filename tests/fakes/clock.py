"""The clock every fake API and the sources under test share in a test: time moves when the test says."""
from __future__ import annotations

import threading


class FakeClock:
    """Unix time that only moves when the test says so; callable like time.time."""

    def __init__(self, now: float):
        self._now = float(now)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
