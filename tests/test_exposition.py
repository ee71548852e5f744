"""The /metrics body: cloud metrics cached per refresh, joined with per-scrape metrics."""
import gzip

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from exporter.exposition import CloudCache
from exporter.models import CloudSnapshot, FinishedJob, Image
from exporter.poller import Poller
from exporter.render import negotiate
from exporter.state import State
from conftest import parse_metrics, samples
from scripted_cloud import ScriptedSource, build, snapshot

OPENMETRICS = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"


def test_cached_cloud_part_follows_each_refresh(tmp_path):
    job = FinishedJob("j1", "image", "srv", 100.0, 700.0, True)
    poller, exp = build(tmp_path, snapshot(3, [job]), snapshot(5, [job]))
    assert not samples(parse_metrics(exp.raw().decode()), "imaging_images")   # before the first refresh
    poller.refresh_once()
    m = parse_metrics(exp.raw().decode())
    assert samples(m, "imaging_images", status="active") == {frozenset({("cloud", "c1"), ("project", "p1"),
                                                                        ("status", "active")}): 3}
    assert list(samples(m, "imaging_job_duration_seconds_count").values()) == [1]
    poller.refresh_once()
    m = parse_metrics(exp.raw().decode())
    assert list(samples(m, "imaging_images", status="active").values()) == [5]
    assert list(samples(m, "imaging_job_duration_seconds_count").values()) == [1], "each job observed once"
    assert list(samples(m, "imaging_source_up").values()) == [1]


def test_text_body_equals_a_full_render(tmp_path):
    poller, exp = build(tmp_path, snapshot(4))
    poller.refresh_once()
    full = CollectorRegistry()
    full.register(exp.collector)
    full.register(exp.cloud.collector)
    ours, theirs = parse_metrics(exp.raw().decode()), parse_metrics(generate_latest(full).decode())
    drop = lambda m: {k: v for k, v in m.items() if k[0] != "imaging_scrape_duration_seconds"}  # noqa: E731
    assert drop(ours) == drop(theirs)


def test_openmetrics_has_one_eof_and_parses(tmp_path):
    poller, exp = build(tmp_path, snapshot(2))
    poller.refresh_once()
    exp.render(OPENMETRICS)           # first scrape in this format renders it ...
    poller.snapshots = None
    headers, chunks = exp.render(OPENMETRICS)
    text = b"".join(chunks).decode()
    assert dict(headers)["Content-Type"].startswith("application/openmetrics-text")
    assert text.count("# EOF") == 1 and text.endswith("# EOF\n")
    names = {f.name for f in om_parse(text)}
    assert {"imaging_images", "imaging_build_info", "imaging_source_refresh_errors"} <= names


def test_openmetrics_is_rerendered_after_refresh_once_asked_for(tmp_path):
    poller, exp = build(tmp_path, snapshot(2), snapshot(7))
    poller.refresh_once()
    exp.render(OPENMETRICS)
    poller.refresh_once()             # ... and re-rendered by the poller after each refresh
    fams = {f.name: f for f in om_parse(exp.raw(OPENMETRICS).decode())}
    assert [s.value for s in fams["imaging_images"].samples] == [7]


def test_gzip_members_concatenate_to_the_identity_body(tmp_path):
    poller, exp = build(tmp_path, snapshot(3))
    poller.refresh_once()
    headers, chunks = exp.render(None, "gzip, deflate")
    gz = b"".join(chunks)
    assert ("Content-Encoding", "gzip") in headers
    plain = exp.raw(None, None)
    strip = lambda b: [l for l in b.decode().splitlines() if not l.startswith("imaging_scrape_duration")]  # noqa: E731
    assert strip(gzip.decompress(gz)) == strip(plain)


def test_name_filter(tmp_path):
    poller, exp = build(tmp_path, snapshot(3), process=True)
    poller.refresh_once()
    m = parse_metrics(exp.raw(None, None, "name[]=imaging_images&name[]=imaging_build_info").decode())
    assert {name for name, _ in m} == {"imaging_images", "imaging_build_info"}
    m = parse_metrics(exp.raw(None, None, "name[]=process_cpu_seconds_total").decode())
    assert {name for name, _ in m} == {"process_cpu_seconds_total"}


def test_only_gzip_is_kept_until_a_client_asks_for_plain_text(tmp_path):
    poller, exp = build(tmp_path, snapshot(3), snapshot(6))
    poller.refresh_once()
    gz = b"".join(exp.render(OPENMETRICS, "gzip")[1])
    content_type = dict(exp.render(OPENMETRICS, "gzip")[0])["Content-Type"]
    held = exp.cloud.held()[content_type]
    assert held.plain is None and held.gzip, "a gzip scraper does not make the exporter keep plain text"
    plain = exp.raw(OPENMETRICS, None)            # rendered on demand, then kept after refreshes
    strip = lambda b: [l for l in b.splitlines() if not l.startswith(b"imaging_scrape_duration")]  # noqa: E731
    assert strip(gzip.decompress(gz)) == strip(plain)
    poller.refresh_once()
    assert b'imaging_images{cloud="c1",project="p1",status="active"} 6.0' in exp.cloud.held()[content_type].plain
    assert strip(gzip.decompress(b"".join(exp.render(OPENMETRICS, "gzip")[1]))) == strip(exp.raw(OPENMETRICS))


def test_plain_body_is_dropped_when_plain_scrapes_stop(tmp_path):
    now = [0.0]
    poller = Poller(ScriptedSource(*[snapshot(k) for k in (3, 4, 5, 6)]), "c1", 60, 3600,
                    state=State(str(tmp_path / "s.json")), clock=lambda: 1000.0)
    cache = CloudCache([poller], clock=lambda: now[0])    # the cache alone, on a clock of the test's
    poller.on_refresh = cache.refresh
    fmt = negotiate(OPENMETRICS)
    content_type = fmt.content_type
    poller.refresh_once()
    cache.get(fmt, want_gzip=True)                        # Prometheus
    cache.get(fmt, want_gzip=False)                       # one plain scrape (curl) at t=0
    now[0] = 300.0
    poller.refresh_once()
    assert cache.held()[content_type].plain is not None, "kept while plain scrapes may still come"
    now[0] = 700.0
    poller.refresh_once()
    assert cache.held()[content_type].plain is None, "no plain scrape for 700 s: only gzip is rendered"
    assert b'status="active"} 5.0' in b"".join(cache.get(fmt, want_gzip=False)), "a later plain scrape renders it again"
    poller.refresh_once()
    assert b'status="active"} 6.0' in cache.held()[content_type].plain


def test_the_cloud_render_s_duration_and_success_reach_the_health_metrics(tmp_path):
    unrenderable = CloudSnapshot(cloud="c1", project="p1", taken_at=1000.0,
                                 images=(Image("i0", "img-0", "active", 10**9, None),))   # no creation time
    poller, exp = build(tmp_path, snapshot(3), unrenderable)
    exp.raw()                                             # a scrape: its format is rendered after each refresh
    assert poller.refresh_once()
    m = parse_metrics(exp.raw().decode())
    assert list(samples(m, "imaging_scrape_collector_success", collector="cloud").values()) == [1]
    assert list(samples(m, "imaging_scrape_duration_seconds", collector="cloud").values()) == \
        [exp.cloud.stats.last_duration] and exp.cloud.stats.last_duration > 0
    assert not poller.refresh_once(), "data that cannot be rendered is not served"
    m = parse_metrics(exp.raw().decode())
    assert list(samples(m, "imaging_scrape_collector_success", collector="cloud").values()) == [0]
    assert list(samples(m, "imaging_images", status="active").values()) == [3], "the previous rendering stays"
