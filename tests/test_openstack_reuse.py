"""OpenStackSource reuses the previous snapshot's unchanged objects (exporter/sources/openstack/reuse.py).

At 50k images a refresh built a second copy of every image and server while
the first was still served; the peak RSS crossed issue 8's 150 MB. These
tests hold the reusing source to one that builds everything anew, step by
step through the project scenario (tests/fixtures/openstack/project.yaml),
and check what is shared: unchanged images and servers are the previous
objects, a changed image is a new object whose unchanged strings are the
previous ones.
"""
from __future__ import annotations

import pytest

from openstack_cloud import cloud, make_cloud  # noqa: F401 - fixtures

pytestmark = pytest.mark.filterwarnings(r"ignore::PendingDeprecationWarning:openstack.*")


def by_id(snap):
    return {i.image_id: i for i in snap.images}, {s.server_id: s for s in snap.servers}


def test_snapshots_equal_those_built_anew_at_every_step(cloud):
    reusing, fresh = cloud.source(page_size=2), cloud.source(page_size=2)
    fresh.reuse = False
    before = None
    for step in range(len(cloud.fake.scenario.steps) + 1):
        if step:
            cloud.fake.step()
        snap, anew = reusing.refresh(), fresh.refresh()
        assert snap == anew, f"step {step}"
        if before is not None:
            # Built anew, no object is the previous snapshot's.
            old_images, old_servers = by_id(before)
            assert not any(i is old_images.get(i.image_id) for i in anew.images)
            assert not any(s is old_servers.get(s.server_id) for s in anew.servers)
        before = anew


def test_unchanged_objects_are_the_previous_ones(cloud):
    src = cloud.source(page_size=3)
    first = src.refresh()
    cloud.fake.step()          # 5 minutes on: img-web-today queued -> saving, img-app-weekly created
    second = src.refresh()
    old_images, old_servers = by_id(first)
    images, servers = by_id(second)

    assert old_images["img-web-today"].status == "queued" and images["img-web-today"].status == "saving"
    assert images["img-web-today"] is not old_images["img-web-today"]
    # The changed image's record took the previous strings where they are equal.
    assert images["img-web-today"].name is old_images["img-web-today"].name
    assert images["img-web-today"].image_id is old_images["img-web-today"].image_id
    assert images["img-web-today"].server_id is old_images["img-web-today"].server_id
    assert "img-app-weekly" not in old_images and images["img-app-weekly"].status == "queued"

    unchanged = set(old_images) - {"img-web-today"}
    assert unchanged and all(images[i] is old_images[i] for i in unchanged)
    # A server's task state is not in the snapshot's Server: all four are the previous objects.
    assert set(servers) == set(old_servers) == {"srv-web", "srv-app", "srv-db", "srv-legacy"}
    assert all(servers[s] is old_servers[s] for s in servers)


def test_an_image_changed_in_a_field_is_not_reused(cloud):
    src = cloud.source()
    first = src.refresh()
    cloud.fake.step()
    cloud.fake.step()          # 20 minutes on: img-web-today active with its size
    third = src.refresh()
    old, new = by_id(first)[0]["img-web-today"], by_id(third)[0]["img-web-today"]
    assert (old.status, old.size_bytes) == ("queued", None)
    assert (new.status, new.size_bytes) == ("active", 4 * 2**30)


def test_a_failed_refresh_leaves_the_last_good_snapshot_to_reuse(cloud):
    from exporter.errors import SourceError
    from fakes.faults import Fault

    src = cloud.source()
    first = src.refresh()
    cloud.fake.add_fault(Fault("error", r"/servers/detail$", 503, times=1))     # after the images
    with pytest.raises(SourceError):
        src.refresh()
    again = src.refresh()
    assert again == first
    assert all(a is b for a, b in zip(again.images, first.images))


def test_records_share_repeated_words_and_take_any_status_as_before():
    from exporter.sources.openstack import jobs

    def item(i, status):
        # Strings built at run time, as a JSON decoder makes them: equal, not the same objects.
        return {"id": f"img-{i}", "name": f"n{i}", "status": "".join(status), "owner": "".join(["pro", "ject"]),
                "created_at": "2024-05-01T12:00:00Z"}
    a, b = jobs.image_record(item(1, ["act", "ive"])), jobs.image_record(item(2, ["ac", "tive"]))
    assert a.status == "active" and a.status is b.status and a.owner is b.owner
    odd = jobs.image_record({**item(3, ["x"]), "status": 5})
    assert odd.status == 5            # not a string: kept as it is, as before interning
