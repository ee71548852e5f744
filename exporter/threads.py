"""A thread per call, with idle threads reused.

The host source gives each statvfs its own thread, so that a hung mount
holds only its own thread and nothing waits behind it (the HTTP server,
on aiohttp since issue 15, no longer needs a thread per connection). Starting a Python thread
costs ~0.1 ms, about a tenth of a host scrape; handing a call to a thread
that is already waiting costs a fifth of that. So finished threads wait
for the next call, and exit after ``idle_seconds`` without one.
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
from concurrent.futures import Future
from typing import Callable, List

log = logging.getLogger(__name__)


class CachedThreads:
    """Runs every call at once on a thread of its own: an idle one, or a new one.

    There is no limit and no queue: callers bound what they submit (one
    per mount that is not known to be stuck).
    """

    def __init__(self, name: str, idle_seconds: float = 60.0):
        self.name, self.idle_seconds = name, idle_seconds
        self._idle: List[queue.SimpleQueue] = []    # inboxes of waiting threads, most recent last
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)

    def run(self, fn: Callable, *args) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._work, args=(inbox,), daemon=True,
                             name=f"{self.name}-{next(self._numbers)}").start()
        inbox.put((fn, args))

    def submit(self, fn: Callable, *args) -> Future:
        """``fn(*args)`` on its own thread; a Future of its outcome, cancellable until it starts."""
        fut: Future = Future()

        def call():
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(*args))
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    fut.set_exception(e)
        self.run(call)
        return fut

    def idle(self) -> int:
        with self._lock:
            return len(self._idle)

    def _work(self, inbox: queue.SimpleQueue) -> None:
        while True:
            try:
                fn, args = inbox.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    if any(q is inbox for q in self._idle):
                        self._idle = [q for q in self._idle if q is not inbox]
                        return
                continue            # handed a call as the wait ended: it is in the inbox
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - a call's own error must not end the thread
                log.exception("%s: call failed", self.name)
            fn = args = None        # hold no connection or result while idle
            with self._lock:
                self._idle.append(inbox)
