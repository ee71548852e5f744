"""Issue 14's OpenStack points, each on responses built from the official API-reference samples.

The fake answers every Glance image, Nova server, Nova instance action,
Cinder snapshot, Cinder version document, Glance usage and Keystone v2.0
token in the shape of the samples in tests/fixtures/openstack/samples/
(PROVENANCE.md), and follows the services' documented rules: Glance's
visibility/os_hidden/member_status filters and its usage counting, Nova's
and Cinder's next links on another host, Nova's microversioned
changes-since. Expected values are written out from each story.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from exporter.collectors import cloud as cloud_mod
from exporter.ledger import JobLedger
from exporter.state import State
from fakes.faults import Fault
from fakes.openstack_scenarios import PROJECT_ID, project_scenario
from fakes.openstack_wire import sample
from openstack_cloud import H, M, MIB, START, make_cloud  # noqa: F401 - make_cloud is a fixture

pytestmark = pytest.mark.filterwarnings(r"ignore::PendingDeprecationWarning:openstack.*")

OTHER = "0000000000000000000000000000beef"


def rows(snap, spec):
    """{labels: value} of one family, as the cloud collector writes it for this snapshot."""
    poller = SimpleNamespace(snapshot=snap, ledger=JobLedger(State(None), snap.cloud, 48 * H))
    fams = cloud_mod.cloud_families([poller])
    for s, r in fams.rows():
        if s.name == spec.name:
            return {labels: value for labels, value in r}
    return {}


# ---- 1. quota as Glance counts it ------------------------------------------------

def quota_scenario():
    sizes = {f"img-{n}": n * 50 * MIB for n in range(1, 8)}         # 7 active images, 50..350 MiB
    images = {iid: {"name": iid, "status": "active", "size": size, "image_type": "snapshot",
                    "server": "srv-1", "created_at": "-30d"} for iid, size in sizes.items()}
    images["img-hidden"] = {"name": "hidden", "status": "active", "size": 6 * MIB, "hidden": True,
                            "created_at": "-20d"}
    images["img-queued"] = {"name": "queued", "status": "queued", "size": None, "created_at": "-1h"}
    images["img-killed"] = {"name": "killed", "status": "killed", "size": 10 * MIB, "created_at": "-2h"}
    images["img-2-stores"] = {"name": "two stores", "status": "active", "size": 3 * MIB, "locations": 2,
                              "created_at": "-10d"}
    servers = {"srv-1": {"name": "web-1", "image": "img-base", "created_at": "-60d"}}
    return project_scenario({"servers": servers, "images": images},
                            limits={"image_count_total": 10, "image_size_total": 1500})


def test_quota_is_glances_own_usage_beside_its_limit(make_cloud):
    cloud = make_cloud(quota_scenario())
    snap = cloud.source().refresh()

    # The listing: 7 snapshots, the hidden one (os_hidden=true listing), queued, killed, two-stores.
    assert {i.image_id for i in snap.images} == {f"img-{n}" for n in range(1, 8)} | {
        "img-hidden", "img-queued", "img-killed", "img-2-stores"}
    # Glance counts every image but the killed one: 10 of 10, the next image fails.
    assert snap.quota.images.value == 10 and snap.quota.images.source == "api"
    assert snap.quota.images_used == 10
    # Bytes: 50+..+350 = 1400 MiB, hidden 6, two stores 2 x 3; killed not counted.
    assert snap.quota.bytes.value == 1500 * MIB
    assert snap.quota.bytes_used == (1400 + 6 + 6) * MIB

    used = rows(snap, cloud_mod.QUOTA_IMAGES_USED)
    assert used == {("lab", "demo", "api"): 10}
    assert rows(snap, cloud_mod.QUOTA_BYTES_USED) == {("lab", "demo", "api"): 1412 * MIB}
    assert rows(snap, cloud_mod.QUOTA_IMAGES) == {("lab", "demo", "api"): 10}


def test_the_usage_document_is_the_samples_shape(make_cloud):
    cloud = make_cloud(quota_scenario())
    cloud.source().refresh()
    assert set(sample("glance-usage-response.json")["usage"]) == {
        "image_size_total", "image_count_total", "image_stage_total", "image_count_uploading"}


@pytest.mark.parametrize("usage_api", ["missing", "disabled"])
def test_without_usage_no_used_series_and_the_listing_is_the_fallback(make_cloud, usage_api):
    cloud = make_cloud(quota_scenario())
    cloud.fake.usage_api = usage_api
    snap = cloud.source(image_quota=12).refresh()
    assert snap.quota.images_used is None and snap.quota.bytes_used is None
    assert rows(snap, cloud_mod.QUOTA_IMAGES_USED) == {}
    assert rows(snap, cloud_mod.QUOTA_IMAGES) == {("lab", "demo", "config"): 12}


# ---- 2. volume snapshots are an optional part --------------------------------------

def volume_scenario():
    return project_scenario(
        {"servers": {"srv-db": {"name": "db-1", "image": "img-base", "volumes": ["vol-data"],
                                "created_at": "-60d"},
                     "srv-web": {"name": "web-1", "image": "img-base", "task_state": "image_uploading",
                                 "created_at": "-60d"}},
         "images": {"img-web": {"name": "web-1 snap", "status": "saving", "server": "srv-web",
                                "image_type": "snapshot", "created_at": "-10m"}},
         "volume_snapshots": {"vs-data": {"status": "creating", "volume": "vol-data", "created_at": "-5m"}}},
        [{"at": "10m", "volume_snapshots": {"vs-data": None}}],
        limits={"image_count_total": 50, "image_size_total": 10240})


def test_a_cinder_whose_discovery_fails_is_read_through_its_catalog_url(make_cloud):
    cloud = make_cloud(volume_scenario())
    cloud.fake.cinder_versions = "broken"
    snap = cloud.source().refresh()
    # openstacksdk falls back to the catalog's versioned URL, which answers.
    assert snap.parts == (("volume_snapshots", True),)
    assert ("vs-data", "srv-db") in {(j.job_id, j.server_id) for j in snap.running_jobs}


@pytest.mark.parametrize("break_cinder", ["v1-only", "listing-500", "listing-loops"])
def test_a_broken_cinder_costs_only_the_volume_snapshots(make_cloud, break_cinder):
    cloud = make_cloud(volume_scenario())
    if break_cinder == "v1-only":
        cloud.fake.cinder_versions = "v1"
    elif break_cinder == "listing-500":
        cloud.fake.add_fault(Fault("error", r"/snapshots/detail$", 500))
    else:
        cloud.fake.add_fault(Fault("page_loop", r"/snapshots/detail$"))
    snap = cloud.source(page_size=1).refresh()

    assert snap.parts == (("volume_snapshots", False),)
    assert [(j.job_id, j.server_id, j.phase) for j in snap.running_jobs] == [("img-web", "srv-web", "image_uploading")]
    assert {s.server_id for s in snap.servers} == {"srv-db", "srv-web"}
    assert (snap.quota.images.value, snap.quota.images_used) == (50, 1)
    assert rows(snap, cloud_mod.PART_UP) == {("lab", "demo", "volume_snapshots"): 0}


def test_a_volume_snapshot_is_not_called_vanished_while_cinder_is_down(make_cloud):
    cloud = make_cloud(volume_scenario())
    src = cloud.source()
    first = src.refresh()
    assert rows(first, cloud_mod.PART_UP) == {("lab", "demo", "volume_snapshots"): 1}
    assert ("vs-data", "srv-db") in {(j.job_id, j.server_id) for j in first.running_jobs}
    cloud.fake.add_fault(Fault("error", r"/snapshots/detail$", 503))
    second = src.refresh()
    assert second.parts == (("volume_snapshots", False),)
    assert "vs-data" not in {j.job_id for j in second.finished_jobs}
    # Cinder back, the snapshot gone meanwhile: the job is still remembered, and vanished.
    cloud.fake.clear_faults()
    cloud.fake.step()
    third = src.refresh()
    assert ("vs-data", "volume_snapshot", "srv-db", False) in {
        (j.job_id, j.kind, j.server_id, j.succeeded) for j in third.finished_jobs}


def test_expired_credentials_at_cinder_still_fail_the_refresh(make_cloud):
    from exporter.errors import SourceError
    cloud = make_cloud(volume_scenario())
    cloud.fake.add_fault(Fault("error", r"/snapshots/detail$", 401))
    with pytest.raises(SourceError) as err:
        cloud.source().refresh()
    assert err.value.reason == "auth"


# ---- 3. boot-from-volume snapshots, multi-attach ------------------------------------------

def bfv_scenario():
    return project_scenario({
        "servers": {"srv-bfv": {"name": "bfv-1", "image": "", "volumes": ["vol-root", "vol-logs"],
                                "created_at": "-60d"},
                    "srv-a": {"name": "cluster-a", "image": "", "volumes": ["vol-a", "vol-shared"],
                              "created_at": "-60d"},
                    "srv-b": {"name": "cluster-b", "image": "img-base", "volumes": ["vol-shared"],
                              "created_at": "-60d"}},
        "images": {"img-bfv": {"name": "bfv-1 snap", "status": "active", "size": 0, "bdm": ["vs-root", "vs-logs"],
                               "created_at": "-30m", "updated_at": "-30m"},
                   "img-shared": {"name": "shared snap", "status": "active", "size": 0, "bdm": ["vs-shared"],
                                  "created_at": "-20m", "updated_at": "-20m"}},
        "volume_snapshots": {
            "vs-root": {"status": "creating", "volume": "vol-root", "created_at": "-30m"},
            "vs-logs": {"status": "available", "volume": "vol-logs", "created_at": "-30m", "updated_at": "-25m"},
            "vs-shared": {"status": "creating", "volume": "vol-shared", "created_at": "-20m"}}})


def test_boot_from_volume_images_reach_their_server_through_cinder(make_cloud):
    cloud = make_cloud(bfv_scenario())
    snap = cloud.source().refresh()
    by_id = {i.image_id: i for i in snap.images}
    assert by_id["img-bfv"].server_id == "srv-bfv"
    # A volume attached to two servers: neither is credited (never an arbitrary one).
    assert by_id["img-shared"].server_id == ""
    running = {j.job_id: (j.kind, j.server_id, j.server_name) for j in snap.running_jobs}
    assert running == {"vs-root": ("volume_snapshot", "srv-bfv", "bfv-1"),
                       "vs-shared": ("volume_snapshot", "", "")}
    finished = {j.job_id: (j.kind, j.server_id, j.succeeded) for j in snap.finished_jobs}
    assert finished == {"img-bfv": ("image", "srv-bfv", True), "img-shared": ("image", "", True),
                        "vs-logs": ("volume_snapshot", "srv-bfv", True)}
    sizes = rows(snap, cloud_mod.IMAGE_SIZE)
    assert sizes[("lab", "demo", "img-bfv", "bfv-1 snap", "srv-bfv", "active")] == 0


def test_without_cinder_a_bfv_image_names_no_server(make_cloud):
    cloud = make_cloud(bfv_scenario())
    cloud.fake.cinder_versions = "v1"
    snap = cloud.source().refresh()
    assert {i.image_id: i.server_id for i in snap.images} == {"img-bfv": "", "img-shared": ""}


# ---- 4. a vanished job: failed or deleted after success -----------------------------------

def vanish_scenario():
    saving = {"status": "saving", "image_type": "snapshot", "created_at": "-5m"}
    return project_scenario(
        {"servers": {"srv-ok": {"name": "ok-1", "image": "img-base", "created_at": "-60d",
                                "actions": [{"action": "createImage", "start": "-5m", "end": "3m"},
                                            {"action": "reboot", "start": "-2d", "end": "-2d"}]},
                     "srv-bad": {"name": "bad-1", "image": "img-base", "created_at": "-60d",
                                 "actions": [{"action": "createImage", "start": "-5m", "end": "4m",
                                              "error": True}]},
                     "srv-gone": {"name": "gone-1", "image": "img-base", "created_at": "-60d"}},
         "images": {"img-ok": {**saving, "server": "srv-ok"}, "img-bad": {**saving, "server": "srv-bad"},
                    "img-gone": {**saving, "server": "srv-gone"}}},
        [{"at": "10m", "images": {"img-ok": None, "img-bad": None, "img-gone": None}},
         {"at": "20m"}])


def test_instance_actions_tell_a_failure_from_a_deletion(make_cloud):
    cloud = make_cloud(vanish_scenario())
    src = cloud.source()
    src.refresh()
    assert not [p for p in cloud.fake.paths() if "os-instance-actions" in p]
    cloud.fake.step()
    snap = src.refresh()
    vanished = {j.job_id: (j.server_id, j.succeeded, j.finished) for j in snap.finished_jobs}
    assert vanished == {"img-ok": ("srv-ok", True, START + 3 * M),
                        "img-bad": ("srv-bad", False, START + 4 * M),
                        # no createImage action recorded: cannot tell, counted as before
                        "img-gone": ("srv-gone", False, START + 10 * M)}
    calls = [(p, q, h) for _, p, q, h in cloud.fake.requests if "os-instance-actions" in p]
    assert sorted(p for p, _, _ in calls) == [f"/compute/v2.1/servers/{s}/os-instance-actions"
                                              for s in ("srv-bad", "srv-gone", "srv-ok")]
    assert all(h.get("OpenStack-API-Version") == "compute 2.58" and "changes-since" in q for _, q, h in calls)


def test_action_lookups_are_bounded_per_refresh(make_cloud):
    cloud = make_cloud(vanish_scenario())
    src = cloud.source(action_lookups=1)
    src.refresh()
    cloud.fake.step()
    looked = []
    for _ in range(3):
        before = len(cloud.fake.requests)
        snap = src.refresh()
        looked.append(sum(1 for _, p, _, _ in cloud.fake.requests[before:] if "os-instance-actions" in p))
    assert looked == [1, 1, 1]
    assert {j.job_id: j.succeeded for j in snap.finished_jobs} == {
        "img-ok": True, "img-bad": False, "img-gone": False}


def test_with_lookups_off_a_vanished_job_is_a_failure_at_once(make_cloud):
    cloud = make_cloud(vanish_scenario())
    src = cloud.source(action_lookups=0)
    src.refresh()
    cloud.fake.step()
    snap = src.refresh()
    assert {j.job_id: j.succeeded for j in snap.finished_jobs} == {
        "img-ok": False, "img-bad": False, "img-gone": False}
    assert not [p for p in cloud.fake.paths() if "os-instance-actions" in p]


def test_a_nova_older_than_2_58_is_read_at_the_base_version(make_cloud):
    cloud = make_cloud(vanish_scenario(), nova_max_microversion="2.21")
    src = cloud.source()
    src.refresh()
    cloud.fake.step()
    snap = src.refresh()
    # The message still tells the failure; without updated_at the job ends when it vanished.
    assert {j.job_id: (j.succeeded, j.finished) for j in snap.finished_jobs} == {
        "img-ok": (True, START + 10 * M), "img-bad": (False, START + 10 * M), "img-gone": (False, START + 10 * M)}
    calls = [(q, h) for _, p, q, h in cloud.fake.requests if "os-instance-actions" in p]
    assert len(calls) == 3 and all("changes-since" not in q and "OpenStack-API-Version" not in h
                                   for q, h in calls)


# ---- 7. all_projects counts no one else's catalogue -------------------------------------------

def test_all_projects_keeps_server_images_and_drops_the_catalogue(make_cloud):
    sc = project_scenario({
        "servers": {"srv-mine": {"name": "mine", "image": "img-base", "created_at": "-9d"},
                    "srv-theirs": {"name": "theirs", "image": "img-base", "project": OTHER, "created_at": "-9d"}},
        "images": {
            "img-base": {"name": "base", "status": "active", "size": MIB, "created_at": "-30d"},
            "img-mine-snap": {"name": "s1", "status": "active", "size": MIB, "server": "srv-mine",
                              "image_type": "snapshot", "created_at": "-1d"},
            "img-theirs-snap": {"name": "s2", "status": "active", "size": MIB, "server": "srv-theirs",
                                "image_type": "snapshot", "owner": OTHER, "project": OTHER,
                                "created_at": "-1d"},
            "img-catalogue": {"name": "ubuntu", "status": "active", "size": MIB, "visibility": "public",
                              "owner": OTHER, "project": OTHER, "created_at": "-90d"},
            "img-shared-in": {"name": "vendor", "status": "active", "size": MIB, "visibility": "shared",
                              "owner": OTHER, "project": OTHER, "members": {PROJECT_ID: "accepted"},
                              "created_at": "-90d"}}})
    cloud = make_cloud(sc, admin=True)
    snap = cloud.source(all_projects=True).refresh()
    assert {i.image_id for i in snap.images} == {"img-base", "img-mine-snap", "img-theirs-snap"}
    assert rows(snap, cloud_mod.IMAGES) == {("lab", "demo", "active"): 3}


def test_glance_filters_follow_the_documented_rules(make_cloud):
    """The fake itself: the default list leaves out hidden images and pending shared ones."""
    sc = project_scenario({"images": {
        "a": {"name": "a", "status": "active", "created_at": "-1d"},
        "h": {"name": "h", "status": "active", "hidden": True, "created_at": "-1d"},
        "p": {"name": "p", "visibility": "shared", "owner": OTHER, "project": OTHER,
              "members": {PROJECT_ID: "pending"}, "created_at": "-1d"},
        "c": {"name": "c", "visibility": "community", "owner": OTHER, "project": OTHER, "created_at": "-1d"}}})
    cloud = make_cloud(sc)
    import requests
    src = cloud.source()
    src.refresh()
    token = cloud.fake.tokens_issued[-1]

    def ids(**q):
        r = requests.get(cloud.fake.url + "/image/v2/images", params=q, headers={"X-Auth-Token": token},
                         timeout=5)
        return {i["id"] for i in r.json()["images"]}
    assert ids() == {"a"}
    assert ids(os_hidden="true") == {"h"}
    assert ids(member_status="pending") == {"a", "p"}
    assert ids(visibility="community") == {"c"}
