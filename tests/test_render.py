"""exporter.render writes the same bytes as prometheus_client's encoders."""
import gzip
import math

import pytest
from prometheus_client import CollectorRegistry

from exporter.collectors.spec import FamilySet, MetricSpec, counter, gauge, histogram
from exporter.render import EOF, FORMATS, OPENMETRICS, TEXT, negotiate, render
from scripted_cloud import build, snapshot
from exporter.models import FinishedJob

# What Prometheus 2 and 3 send, what curl sends, and the variants in between.
ACCEPTS = {
    None: TEXT,
    "*/*": TEXT,
    "text/plain;version=0.0.4": TEXT,
    "text/plain;version=1.0.0;escaping=allow-utf-8": TEXT,
    "text/plain;version=1.0.0;escaping=underscores": TEXT,
    "application/openmetrics-text": OPENMETRICS,
    "application/openmetrics-text;version=1.0.0": OPENMETRICS,
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8": OPENMETRICS,
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1": OPENMETRICS,                       # Prometheus 2
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
    "text/plain;version=0.0.4;q=0.2,*/*;q=0.1": OPENMETRICS,                         # Prometheus 3
}
# Escaping schemes that rewrite underscores: prometheus_client renders these.

UNSORTED = gauge("t_unsorted", 'Labels declared out of order; help with \\ backslash, "quotes"\nand a newline.',
                 "zone", "alpha", "mid")
ERRORS = counter("t_errors_total", "A counter whose name ends in _total.", "reason")
PLAIN = MetricSpec("t_plain", "gauge", "No labels at all.")
EMPTY = gauge("t_empty", "Never gets a sample, so it is not written.", "x")
HIST = histogram("t_duration_seconds", "A histogram next to the rows.", "kind")
SPECS = (UNSORTED, ERRORS, PLAIN, EMPTY, HIST)

VALUES = [0, 1, -1.5, 1e21, 1234567.0, 12345678.0, 1e-7, 2 ** 53 + 1, float("nan"), float("inf"), float("-inf"),
          True, 0.1 + 0.2]
LABELS = ['with "quotes"', "back\\slash", "new\nline", "ünïcødé ✓", "", 42, "a,b=c}{"]


def tricky_families():
    fams = FamilySet(SPECS)
    for i, value in enumerate(VALUES):
        fams.add(UNSORTED, (LABELS[i % len(LABELS)], f"a{i}", LABELS[(i + 3) % len(LABELS)]), value)
    for reason in ("timeout", "http_5xx"):
        fams.add(ERRORS, (reason,), 3)
    fams.add(PLAIN, (), 7.25)
    fams.add_histogram(HIST, ("image",), [("60.0", 1), ("3600.0", 4), ("+Inf", 5)], 7300.5)
    return fams


class Registry:
    def __init__(self, *families_list):
        self.families_list = families_list

    def collect(self):
        for fams in self.families_list:
            yield from fams


@pytest.mark.parametrize("accept", list(ACCEPTS))
def test_same_bytes_as_prometheus_client(accept):
    fmt = negotiate(accept)
    assert fmt.kind == ACCEPTS[accept]
    fams = tricky_families()
    ours = render([fams], fmt.kind) + (EOF.encode() if fmt.kind == OPENMETRICS else b"")
    theirs = fmt.encoder(Registry(tricky_families()))
    assert ours == theirs
    # The edge cases are really in there.
    assert b"NaN" in ours and b"+Inf" in ours and b"1e+21" in ours and b"1.2345678e+07" in ours and b'\\"quotes\\"' in ours
    assert b"t_empty" not in ours


@pytest.mark.parametrize("accept,served", [
    ("application/openmetrics-text;version=1.0.0;escaping=dots",
     "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"),
    ("application/openmetrics-text; version=1.0.7",
     "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"),
    ("text/plain;version=1.0.0;escaping=values", "text/plain; version=0.0.4; charset=utf-8"),
    ("text/plain; version=x", "text/plain; version=0.0.4; charset=utf-8"),
    ("\x00garbage;;;=,,q=abc", "text/plain; version=0.0.4; charset=utf-8"),
])
def test_any_accept_is_served_in_one_of_the_fixed_formats(accept, served):
    fmt = negotiate(accept)
    assert fmt.content_type == served and fmt in FORMATS.values()


def test_iterating_gives_the_same_prometheus_client_families():
    fams = {f.name: f for f in tricky_families()}
    assert set(fams) == {"t_unsorted", "t_errors", "t_plain", "t_duration_seconds"}
    nan = [s for s in fams["t_unsorted"].samples if math.isnan(s.value)]
    assert nan and nan[0].labels == {"zone": "back\\slash", "alpha": "a8", "mid": ""}
    assert [s.labels for s in fams["t_errors"].samples] == [{"reason": "timeout"}, {"reason": "http_5xx"}]


@pytest.mark.parametrize("name, labels", [("bad-name", ()), ("0lead", ()), ("x.y", ()),
                                          ("ok_name", ("le",)), ("ok_name", ("bad-label",))])
def test_specs_reject_names_the_fast_path_could_not_write(name, labels):
    with pytest.raises(ValueError, match="legacy name"):
        gauge(name, "help", *labels)


@pytest.mark.parametrize("accept", list(ACCEPTS))
@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_whole_body_equals_prometheus_client_rendering_everything(tmp_path, accept, encoding):
    """Host-less exporter with a cloud: per-scrape part + cached cloud part, as one library render."""
    job = FinishedJob("j1", "image", "srv", 100.0, 700.0, True)
    poller, exp = build(tmp_path, snapshot(5, [job]), process=True)
    poller.refresh_once()
    body = exp.raw(accept, encoding)
    if encoding:
        body = gzip.decompress(body)
    full = CollectorRegistry(auto_describe=True)
    full.register(exp.collector)
    full.register(exp.cloud.collector)
    theirs = negotiate(accept).encoder(full)
    # Values that move between the two renders: the host read's duration, the process's CPU and memory.
    moving = (b"imaging_scrape_duration_seconds{collector=\"host", b"process_")
    strip = lambda b: [l.split(b" ")[0] if l.startswith(moving) else l for l in b.splitlines()]  # noqa: E731
    assert strip(body) == strip(theirs)
    assert body.count(b"# EOF") == (1 if b"openmetrics" in negotiate(accept).content_type.encode() else 0)


def test_host_only_openmetrics_ends_with_one_eof():
    from exporter.app import build_exposition
    exp = build_exposition()
    body = exp.raw("application/openmetrics-text;version=1.0.0")
    assert body.endswith(b"# EOF\n") and body.count(b"# EOF") == 1


def test_a_large_family_is_written_in_chunks_with_the_same_bytes():
    from exporter.render import CHUNK_LINES, family_chunks
    fams = FamilySet((UNSORTED, PLAIN))
    for i in range(2 * CHUNK_LINES + 7):
        fams.add(UNSORTED, (f"z{i}", f"a{i}", "m"), i * 1.5)
    fams.add(PLAIN, (), 1)
    chunks = list(family_chunks([fams], TEXT))
    assert len(chunks) == 4 and max(c.count("\n") for c in chunks) <= CHUNK_LINES + 2
    fmt = negotiate(None)
    assert "".join(chunks).encode() == fmt.encoder(Registry(fams))


def test_a_small_family_s_text_is_reused_only_while_its_rows_are_the_same():
    """exporter.render keeps the last text of a small family (issue 19): a scrape after a
    change of value or label must show the change, never the text of the scrape before."""
    spec = gauge("t_reused", "Reused text.", "device")

    def body(*rows):
        fams = FamilySet((spec,))
        for labels, value in rows:
            fams.add(spec, labels, value)
        return render([fams], TEXT).decode()
    first = body((("vda",), 1.5))
    assert body((("vda",), 1.5)) == first
    assert 't_reused{device="vda"} 2.5\n' in body((("vda",), 2.5)), "a new value"
    assert 't_reused{device="vdb"} 2.5\n' in body((("vdb",), 2.5)), "a new label value"
    assert body((("vdb",), 2.5), (("vdc",), 3)).count("t_reused{") == 2, "a new series"
    # Equal rows, different text: 1 and 1.0 as label values are never reused for each other.
    assert 'device="1"' in body(((1,), 1.0))
    assert 'device="1.0"' in body(((1.0,), 1.0))


@pytest.mark.parametrize("name, labels", [("imaging.dotted", ()), ("imaging_ok", ("le",)),
                                          ("imaging_ok", ("quantile",)), ("imaging_ok", ("bad-label",))])
def test_names_outside_the_legacy_set_are_refused_when_declared(name, labels):
    # render() writes names unescaped: a spec whose name an escaping scheme would change is a bug.
    with pytest.raises(ValueError, match="not a plain legacy name"):
        gauge(name, "help", *labels)
