"""The cloud part reuses the text of unchanged runs of objects and stays the bytes of a full render.

CloudCache renders again only the pieces (runs of images, servers, disks)
whose objects changed since the last refresh (exporter.pieces); these tests
change, add, remove and relabel objects between refreshes and compare every
body, gzip and plain, text and OpenMetrics, with a render from scratch.
"""
import gzip
import itertools
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as om_latest

from exporter import pieces
from exporter.collectors import cloud as cloud_mod
from exporter.exposition import CloudCache
from exporter.models import CloudSnapshot, Disk, Image, Quota, QuotaValue, Server
from exporter.poller import Poller
from exporter.render import EOF, FORMATS, OPENMETRICS, render
from exporter.state import State

TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OM_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"


class ScriptedSource:
    provider = "openstack"

    def __init__(self):
        self.next = None

    def refresh(self):
        return self.next


def account(images=3000, servers=900, disks=700, cloud="c1", project="p1"):
    return CloudSnapshot(
        cloud=cloud, project=project, taken_at=1000.0,
        images=tuple(Image(f"img-{k:05d}", f"snap-{k}", "active" if k % 50 else "saving",
                           None if k % 50 == 0 else 10**9 + k, 500.0 + k, server_id=f"srv-{k % servers}")
                     for k in range(images)),
        servers=tuple(Server(f"srv-{k}", f"server-{k}", boot_from_volume=k % 7 == 0,
                             backups_enabled=None if k % 3 else True) for k in range(servers)),
        disks=tuple(Disk(f"srv-{k}", f"server-{k}", f"disk-{k}", "root", 25 * 2**30 + k) for k in range(disks)),
        quota=Quota(images=QuotaValue(100000, "api")))


@pytest.fixture
def cloud(tmp_path):
    source = ScriptedSource()
    poller = Poller(source, "c1", 60, 3600, state=State(str(tmp_path / "s.json")), clock=lambda: 1000.0)
    cache = CloudCache([poller])
    poller.on_refresh = cache.refresh

    def refresh(snap):
        source.next = snap
        assert poller.refresh_once(), poller.health.last_error
    return poller, cache, refresh


def full_render(poller, kind):
    """From scratch: the rows rendered without pieces (FamilySet.rows expands them)."""
    body = render([cloud_mod.cloud_families([poller])], kind)
    return body + (EOF.encode() if kind == OPENMETRICS else b"")


def library_render(poller, kind):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CloudCache([poller]).collector)
    return generate_latest(registry) if kind != OPENMETRICS else om_latest(registry)


def bodies(cache):
    """Each format's gzip body (decompressed) and plain body, as a scrape gets them."""
    out = {}
    for content_type in (TEXT_TYPE, OM_TYPE):
        fmt = FORMATS[content_type]
        out[content_type] = (gzip.decompress(b"".join(cache.get(fmt, True))), b"".join(cache.get(fmt, False)))
    return out


def changes(snap):
    """A few images changed, added (at the top) and removed, labels that need escaping, a server renamed,
    a disk resized: what a real account does between two refreshes."""
    imgs, n = list(snap.images), len(snap.images)
    imgs[10] = replace(imgs[10], status="killed")
    imgs[n // 2 + 1] = replace(imgs[n // 2 + 1], size_bytes=imgs[n // 2 + 1].size_bytes + 1)
    imgs[n * 3 // 4] = replace(imgs[n * 3 // 4], name='new "name"\nwith\\escapes ✓')
    del imgs[n * 9 // 10]
    del imgs[n // 7:n // 7 + 3]
    imgs.insert(0, Image("img-new", "brand new", "queued", None, 99999.0, server_id="srv-1"))
    servers = list(snap.servers)
    servers[len(servers) // 3] = replace(servers[len(servers) // 3], name="renamed")
    disks = list(snap.disks)
    if disks:
        disks[len(disks) * 6 // 7] = replace(disks[len(disks) * 6 // 7], size_bytes=1)
    return replace(snap, images=tuple(imgs), servers=tuple(servers), disks=tuple(disks))


def check_equal_to_full_render(poller, cache):
    for content_type, (from_gzip, plain) in bodies(cache).items():
        kind = FORMATS[content_type].kind
        expected = full_render(poller, kind)
        assert from_gzip == expected, content_type
        assert plain == expected, content_type
        assert expected == library_render(poller, kind), content_type


def rendered(cache, content_type):
    """(pieces rendered, pieces in the body) at the last refresh."""
    return cache.pieces_rendered[content_type]


def runs_changed(old, new):
    """(pieces of `new` not in `old`, pieces of `new`): images and servers fill two families each, disks one."""
    again = of = 0
    for objects, identity, families in (("images", "image_id", 2), ("servers", "server_id", 2), ("disks", "disk_id", 1)):
        key = lambda o, a=identity: getattr(o, a)  # noqa: E731
        was = set(pieces.runs(getattr(old, objects), key))
        now = list(pieces.runs(getattr(new, objects), key))
        again += families * sum(1 for r in now if r not in was)
        of += families * len(now)
    return again, of


def test_after_changes_removals_and_relabels_the_body_is_a_full_render(cloud):
    poller, cache, refresh = cloud
    first = account()
    refresh(first)
    check_equal_to_full_render(poller, cache)       # asks for both formats, plain and gzip
    refresh(first)                                  # the same account again: everything reused
    check_equal_to_full_render(poller, cache)
    assert rendered(cache, OM_TYPE)[0] == 0 and rendered(cache, TEXT_TYPE)[0] == 0
    changed = changes(first)
    refresh(changed)
    check_equal_to_full_render(poller, cache)
    # Only the runs with a change are rendered again (cuts follow str hashes, which change
    # per process: the expected counts come from the same cuts); the others are reused.
    again, of = rendered(cache, OM_TYPE)
    assert (again, of) == runs_changed(first, changed) and again < of, (again, of)
    assert b'image_name="new \\"name\\"\\nwith\\\\escapes \xe2\x9c\x93"' in bodies(cache)[TEXT_TYPE][1]
    assert b'image_id="img-02700"' not in bodies(cache)[TEXT_TYPE][1]       # 3000 * 9 // 10
    refresh(first)                                  # and back
    check_equal_to_full_render(poller, cache)


def test_a_changed_cloud_or_project_label_renders_every_run_again(cloud):
    poller, cache, refresh = cloud
    refresh(account(images=1200, servers=300, disks=0))
    check_equal_to_full_render(poller, cache)
    refresh(account(images=1200, servers=300, disks=0, project="renamed-project"))
    check_equal_to_full_render(poller, cache)
    again, of = rendered(cache, TEXT_TYPE)
    assert again == of > 5
    assert b'project="renamed-project"' in bodies(cache)[TEXT_TYPE][1]


def test_a_family_whose_runs_all_became_empty_is_not_written(cloud):
    poller, cache, refresh = cloud
    snap = account(images=800, servers=10, disks=0)
    refresh(snap)
    check_equal_to_full_render(poller, cache)
    no_sizes = replace(snap, images=tuple(replace(i, size_bytes=None, status="saving") for i in snap.images))
    refresh(no_sizes)
    check_equal_to_full_render(poller, cache)
    assert b"imaging_image_size_bytes" not in bodies(cache)[TEXT_TYPE][1]
    refresh(replace(snap, images=()))
    check_equal_to_full_render(poller, cache)
    assert b"imaging_image_created_timestamp_seconds" not in bodies(cache)[OM_TYPE][1]
    refresh(snap)
    check_equal_to_full_render(poller, cache)


def test_plain_text_kept_only_while_asked_for_and_reused_with_it(cloud):
    poller, cache, refresh = cloud
    fmt = FORMATS[OM_TYPE]
    snap = account(images=1000, servers=100, disks=0)
    refresh(snap)
    gz_only = gzip.decompress(b"".join(cache.get(fmt, True)))
    held = cache.held()[OM_TYPE]
    assert held.pieces and held.pieces_with_plain == 0
    plain = b"".join(cache.get(fmt, False))          # a plain scrape: the pieces are rendered with their text
    assert plain == gz_only == full_render(poller, OPENMETRICS)
    held = cache.held()[OM_TYPE]
    assert held.pieces and held.pieces_with_plain == held.pieces
    refresh(changes(account(images=1000, servers=400, disks=0)))
    assert b"".join(cache.get(fmt, False)) == gzip.decompress(b"".join(cache.get(fmt, True))) \
        == full_render(poller, OPENMETRICS)


def test_reuse_off_renders_everything_in_one_gzip_stream_with_the_same_text(cloud):
    poller, cache, refresh = cloud
    snap = account(images=1000, servers=100, disks=50)
    refresh(snap)
    with_reuse = bodies(cache)
    cache.reuse = False
    refresh(changes(snap))
    refresh(snap)
    assert bodies(cache) == with_reuse
    assert cache.held()[TEXT_TYPE].pieces == 0


def test_runs_are_cut_by_identity_so_an_insertion_moves_no_later_cut():
    identity = lambda i: i.image_id  # noqa: E731
    objs = [Image(f"i{k}", "n", "active", 1, 1.0) for k in range(5000)]
    before = list(pieces.runs(objs, identity))
    # str hashes change per process: take a run its last identity cut (a cut at RUN_MOST counts
    # positions, so an insertion may move it) and a new image whose identity is no cut.
    k = next(k for k, r in enumerate(before) if hash(identity(r.items[-1])) % pieces.RUN_EVERY == 0)
    new = next(Image(f"new-{n}", "n", "active", 1, 1.0) for n in itertools.count()
               if hash(f"new-{n}") % pieces.RUN_EVERY)
    at = sum(len(r) for r in before[:k])
    after = list(pieces.runs(objs[:at] + [new] + objs[at:], identity))
    assert after[:k] == before[:k] and after[k + 1:] == before[k + 1:]
    assert after[k] != before[k] and after[k].items == (new,) + before[k].items
    assert max(len(r) for r in before) <= pieces.RUN_MOST and len(before) > 5000 / pieces.RUN_MOST
    assert sum(len(r) for r in before) == 5000


def test_a_run_with_a_changed_field_is_not_equal_though_it_hashes_alike():
    objs = tuple(Image(f"i{k}", "n", "active", 1, 1.0) for k in range(10))
    changed = objs[:4] + (replace(objs[4], created=2.0),) + objs[5:]
    # Cuts follow str hashes, which change per process: the same ids cut alike, so compare run by run.
    before, after = list(pieces.runs(objs, lambda i: i.image_id)), list(pieces.runs(changed, lambda i: i.image_id))
    assert len(before) == len(after)
    pairs = [(a, b) for a, b in zip(before, after) if objs[4] in a.items]
    assert len(pairs) == 1
    a, b = pairs[0]
    assert hash(a) == hash(b) and a != b
    assert [r for r in before if r is not a] == [r for r in after if r is not b]
    assert before == list(pieces.runs(list(objs), lambda i: i.image_id))
