"""CachedThreads: a thread per call, idle threads reused, none kept forever."""
import threading

import pytest

from conftest import wait_until
from exporter.threads import CachedThreads


def test_sequential_calls_reuse_one_thread():
    threads = CachedThreads("t")
    seen = []
    for _ in range(5):
        done = threading.Event()
        threads.run(lambda: (seen.append(threading.get_ident()), done.set()))
        assert done.wait(5)
        wait_until(lambda: threads.idle() == 1, timeout=5, what="the thread to be idle again")
    assert len(set(seen)) == 1


def test_blocked_calls_never_hold_up_a_new_one():
    threads = CachedThreads("t")
    release = threading.Event()
    started = []
    for _ in range(20):
        threads.run(lambda: (started.append(threading.get_ident()), release.wait(10)))
    quick = threads.submit(lambda: "answered")
    assert quick.result(timeout=2) == "answered", "a call waits behind none of the 20 blocked ones"
    wait_until(lambda: len(started) == 20, timeout=5, what="all 20 blocked calls to run")
    assert len(set(started)) == 20
    release.set()


def test_idle_threads_exit():
    threads = CachedThreads("t", idle_seconds=0.2)
    before = threading.active_count()
    release = threading.Event()
    for _ in range(4):
        threads.run(release.wait, 5)
    wait_until(lambda: threading.active_count() == before + 4, timeout=5, what="4 threads")
    release.set()
    wait_until(lambda: threading.active_count() == before and threads.idle() == 0, timeout=5,
               what="idle threads to exit")


def test_a_failing_call_leaves_its_thread_working(caplog):
    threads = CachedThreads("t")
    threads.run(lambda: 1 / 0)
    wait_until(lambda: threads.idle() == 1, timeout=5, what="the thread to survive")
    assert "call failed" in caplog.text
    fut = threads.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        fut.result(timeout=5)
    assert threads.submit(lambda: 42).result(timeout=5) == 42
