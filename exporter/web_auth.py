"""Basic auth for the web server: bcrypt hashes from the web config file.

A bcrypt check is slow on purpose (tens to hundreds of ms), so:
- a success is remembered per user as an HMAC of the password under a
  per-process key (never the password itself) and checked in constant time
  on the event loop: a user who logged in once is never delayed again,
  however many wrong passwords arrive meanwhile;
- an unknown user is checked against a dummy hash of the same cost as the
  configured users' (the highest), so the answer time does not reveal
  which user names exist;
- the slow checks run on a few threads of their own, never on the threads
  that render /metrics, with a bounded queue (503 past it).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Optional, Tuple

import bcrypt

REALM = "imaging-exporter"
BCRYPT_THREADS = 2          # bcrypt releases the GIL; more threads than cores gains nothing
MAX_PENDING_CHECKS = 32     # slow checks queued or running; more answer 503


def _cost(hashed: bytes) -> int:
    m = re.match(rb"^\$2[abxy]\$(\d\d)\$", hashed)
    return int(m.group(1)) if m else 10


class BasicAuth:
    def __init__(self, users: Dict[str, str]):
        self.users = {u: h.encode() if isinstance(h, str) else h for u, h in users.items()}
        self._key = os.urandom(32)
        self._verified: Dict[str, bytes] = {}    # user -> HMAC of the last good password
        cost = max((_cost(h) for h in self.users.values()), default=10)
        self.dummy_hash = bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(cost))
        self.pool = ThreadPoolExecutor(BCRYPT_THREADS, thread_name_prefix="bcrypt")
        self._pending = 0
        self._pending_lock = threading.Lock()

    def _digest(self, password: bytes) -> bytes:
        return hmac.new(self._key, password, hashlib.sha256).digest()

    def remembered(self, user: str, password: bytes) -> bool:
        """Fast path: this user's password was verified before."""
        known = self._verified.get(user)
        return known is not None and hmac.compare_digest(known, self._digest(password))

    def check_slow(self, user: str, password: bytes) -> bool:
        """The bcrypt check (blocking); remembers a success."""
        hashed = self.users.get(user)
        try:
            ok = bcrypt.checkpw(password, hashed or self.dummy_hash) and hashed is not None
        except ValueError:            # e.g. a malformed hash
            ok = False
        if ok:
            self._verified[user] = self._digest(password)
        return ok

    def check(self, user: str, password: bytes) -> bool:
        return self.remembered(user, password) or self.check_slow(user, password)

    def try_reserve(self) -> bool:
        with self._pending_lock:
            if self._pending >= MAX_PENDING_CHECKS:
                return False
            self._pending += 1
            return True

    def release(self) -> None:
        with self._pending_lock:
            self._pending -= 1

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def basic_credentials(header: Optional[str]) -> Optional[Tuple[str, bytes]]:
    """'Basic dXNlcjpwdw==' -> ("user", b"pw"); None if absent or malformed."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).partition(b":")
        return (user.decode("utf-8"), password) if sep else None
    except ValueError:                   # bad base64, non-ASCII, not UTF-8
        return None
