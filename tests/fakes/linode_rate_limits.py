"""The Linode API's per-user rate limits, as the fake Linode API enforces them when a test asks."""
from __future__ import annotations

import math
import re
import threading
import time
from typing import Dict, Tuple

# Per-user limits as Akamai's "Rate limits" page for the Linode API words them: GETs of
# paginated collections have their own per-minute budget, every other request another.
PUBLISHED_LIMITS = {"collection": (200, 60.0), "other": (800, 60.0)}
_COLLECTIONS = re.compile(r"^/v4/(images|linode/instances|account/events|linode/instances/\d+/disks)$")


class RateLimiter:
    """Fixed windows per request class; answers the X-RateLimit-* headers and 429 + Retry-After.

    limits: class -> (requests, window seconds). The windows run on `clock`
    (the real time by default: rate limits are about real request pacing).
    """

    def __init__(self, limits=None, clock=time.time):
        self.limits = dict(limits or PUBLISHED_LIMITS)
        self.clock = clock
        self._windows: Dict[str, Tuple[float, int]] = {}     # class -> (window start, used)
        self.rejected = 0
        self._lock = threading.Lock()

    def take(self, path: str) -> Tuple[bool, Dict[str, str]]:
        cls = "collection" if _COLLECTIONS.match(path) else "other"
        limit, window = self.limits[cls]
        now = self.clock()
        with self._lock:
            start, used = self._windows.get(cls, (now, 0))
            if now - start >= window:
                start, used = now, 0
            ok = used < limit
            if ok:
                used += 1
            else:
                self.rejected += 1
            self._windows[cls] = (start, used)
        reset = start + window
        headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(limit - used),
                   "X-RateLimit-Reset": str(int(math.ceil(reset)))}
        if not ok:
            headers["Retry-After"] = str(max(1, int(math.ceil(reset - now))))
        return ok, headers
