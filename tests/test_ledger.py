"""The job ledger: each job observed once, across refreshes and restarts."""
from exporter.ledger import BUCKETS, JobLedger
from exporter.models import FinishedJob
from exporter.state import State

H = 3600.0


def ok(job_id, server, start, end, kind="image"):
    return FinishedJob(job_id, kind, server, start, end, True)


def failed(job_id, server, end, kind="image"):
    return FinishedJob(job_id, kind, server, end - 60, end, False)


def test_each_job_is_observed_once_and_survives_a_restart(tmp_path):
    path = str(tmp_path / "state.json")
    ledger = JobLedger(State(path), "c", lookback=48 * H)
    jobs = [ok("a", "s1", 0, 1200), ok("b", "s2", 0, 30 * H), failed("x", "s1", 2000)]
    assert ledger.observe(jobs, now=31 * H) == 3
    assert ledger.observe(jobs, now=31 * H) == 0              # the next refresh sees them again
    ledger = JobLedger(State(path), "c", lookback=48 * H)               # restart
    assert ledger.observe(jobs, now=32 * H) == 0
    rows, count, total = ledger.histogram()["image"]
    assert count == 2 and total == 1200 + 30 * H
    cumulative = dict(rows)
    assert cumulative[1800.0] == 1 and cumulative[86400.0] == 1 and cumulative[172800.0] == 2
    assert cumulative[float("inf")] == 2 and len(rows) == len(BUCKETS) + 1
    assert ledger.last_success() == {("s1", "image"): (1200, 1200), ("s2", "image"): (30 * H, 30 * H)}
    assert ledger.failures(now=32 * H) == {("s1", "image"): (1, 2000)}


def test_a_failure_seen_once_is_kept_until_it_leaves_the_lookback(tmp_path):
    path = str(tmp_path / "state.json")
    ledger = JobLedger(State(path), "c", lookback=48 * H)
    ledger.observe([failed("gone", "s1", 10 * H)], now=10 * H)   # e.g. deleted before active
    ledger.observe([], now=11 * H)                               # no longer in any listing
    ledger = JobLedger(State(path), "c", lookback=48 * H)
    assert ledger.failures(now=11 * H) == {("s1", "image"): (1, 10 * H)}
    ledger.observe([], now=59 * H)
    assert ledger.failures(now=59 * H) == {}


def test_last_success_outlives_the_lookback_but_not_the_server(tmp_path):
    ledger = JobLedger(State(str(tmp_path / "s.json")), "c", lookback=48 * H)
    ledger.observe([ok("b1", "s1", 0, 600, kind="backup")], now=H, servers=["s1", "s2"])
    ledger.observe([], now=100 * H, servers=["s1", "s2"])
    assert ledger.last_success() == {("s1", "backup"): (600, 600)}
    ledger.observe([], now=101 * H, servers=["s2"])             # s1 was deleted
    assert ledger.last_success() == {}


def running(job_id, server, started, kind="image"):
    from exporter.models import RunningJob
    return RunningJob(job_id, kind, server, server, "queued", started)


def test_a_requeued_job_keeps_its_first_start_across_restarts(tmp_path):
    path = str(tmp_path / "state.json")
    ledger = JobLedger(State(path), "c", lookback=48 * H)
    assert ledger.track_running([running("img-1", "s1", 10 * H)], now=10 * H) == {("image", "img-1"): 10 * H}
    # The provider re-queues the job under the same id: its own start moves to 30 h.
    ledger = JobLedger(State(path), "c", lookback=48 * H)              # and the exporter restarted
    assert ledger.track_running([running("img-1", "s1", 30 * H)], now=30 * H) == {("image", "img-1"): 10 * H}
    assert ledger.first_start("image", "img-1", 30 * H) == 10 * H
    assert ledger.first_start("image", "other", 31 * H) == 31 * H
    # Finished: forgotten once its first start is older than the lookback.
    ledger.track_running([], now=50 * H)
    assert ledger.first_start("image", "img-1", 70 * H) == 10 * H
    ledger.track_running([], now=59 * H)
    assert ledger.first_start("image", "img-1", 70 * H) == 70 * H
    assert State(path).jobs("c")["first_start"] == {}


def test_consecutive_failures_reset_by_a_later_success(tmp_path):
    path = str(tmp_path / "state.json")
    ledger = JobLedger(State(path), "c", lookback=48 * H)
    ledger.observe([failed("f1", "s1", 1 * H), failed("f2", "s1", 2 * H)], now=3 * H)
    assert ledger.consecutive_failures() == {("s1", "image"): 2}
    ledger = JobLedger(State(path), "c", lookback=48 * H)              # restart keeps the count
    ledger.observe([ok("ok1", "s1", 3 * H, 4 * H)], now=5 * H)
    assert ledger.consecutive_failures() == {("s1", "image"): 0}
    # failure, success, failure: one in a row, not two
    ledger.observe([failed("f3", "s1", 6 * H)], now=7 * H)
    assert ledger.consecutive_failures() == {("s1", "image"): 1}
    # a failure that ended before the success, seen late, changes nothing
    ledger.observe([failed("late", "s1", 3.5 * H)], now=8 * H)
    assert ledger.consecutive_failures() == {("s1", "image"): 1}
    # backups count apart from images; one refresh holding both, out of order
    ledger.observe([ok("b2", "s1", 9 * H, 10 * H, kind="backup"), failed("b1", "s1", 9 * H, kind="backup")],
                   now=11 * H)
    assert ledger.consecutive_failures()[("s1", "backup")] == 0
    # a deleted server is forgotten
    ledger.observe([], now=12 * H, servers=["s2"])
    assert ledger.consecutive_failures() == {}
    for key in ("consecutive_failures", "consecutive_at", "first_start"):
        section = State(path).jobs("c")[key]
        assert all(isinstance(k, str) and isinstance(v, (int, float)) for k, v in section.items())
