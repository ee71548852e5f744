"""Each profile gives the right headroom on synthetic host snapshots."""
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter import limits, profiles
from exporter.collectors.host import host_families
from exporter.config import HostConfig
from exporter.models import BlockDevice, Filesystem, HostSnapshot
from exporter.profiles import Limit
from conftest import parse_metrics, samples

GB = 10**9


def fs(mountpoint="/", used=0, size=300 * GB, inodes=10_000_000, inodes_used=0, role="system", device="/dev/vda1"):
    return Filesystem(device=device, mountpoint=mountpoint, fstype="ext4", role=role, size_bytes=size,
                      free_bytes=size - used, avail_bytes=size - used, inodes=inodes,
                      inodes_free=inodes - inodes_used)


def snap(*filesystems, disk=300 * GB):
    return HostSnapshot(filesystems=tuple(filesystems), disks=(BlockDevice("vda", "system", disk),))


def by_limit(rows):
    return {(r.limit, r.mountpoint): r for r in rows}


def test_firstgen_linux_bytes_and_inodes():
    rows = by_limit(limits.evaluate(profiles.get("rackspace-firstgen-linux").host_limits(),
                                    snap(fs(used=240 * GB, inodes_used=3_200_000)), {}))
    vol, ino = rows[("volume_size", "/")], rows[("inode_usage", "/")]
    assert vol.headroom == 10 * GB and vol.ratio == pytest.approx(0.04)
    assert ino.unit == "inodes" and ino.headroom == -200_000 and ino.ratio == pytest.approx(-200_000 / 3_000_000)


def test_firstgen_linux_ignores_data_filesystems():
    rows = by_limit(limits.evaluate(profiles.get("rackspace-firstgen-linux").host_limits(),
                                    snap(fs(used=10 * GB), fs("/data", used=900 * GB, role="data")), {}))
    assert ("volume_size", "/data") not in rows and rows[("volume_size", "/")].headroom == 240 * GB


def test_firstgen_windows_uses_the_high_water_mark():
    limit = profiles.get("rackspace-firstgen-windows").host_limits()
    s = snap(fs(used=100 * GB))
    row = by_limit(limits.evaluate(limit, s, {("/dev/vda1", "/"): 260 * GB}))[("disk_usage", "/")]
    assert row.measured == 260 * GB and row.headroom == -10 * GB   # current use is low, the disk never shrank


def test_standard_has_no_limits():
    assert limits.evaluate(profiles.get("rackspace-standard").host_limits(), snap(fs(used=999 * GB)), {}) == []


@pytest.mark.parametrize("profile", ["rackspace-general-purpose", "rackspace-io"])
def test_general_purpose_and_io_hold_the_system_disk_to_40gb(profile):
    row = by_limit(limits.evaluate(profiles.get(profile).host_limits(), snap(fs(used=5 * GB), disk=80 * GB),
                                   {}))[("system_volume", "/")]
    assert row.measured == 80 * GB and row.headroom == -40 * GB and row.ratio == pytest.approx(-1.0)


def test_linode_used_bytes_against_6gb():
    row = by_limit(limits.evaluate(profiles.get("linode").host_limits(), snap(fs(used=4_500_000_000)), {}))
    assert row[("custom_image_size", "/")].headroom == 1_500_000_000
    assert row[("custom_image_size", "/")].ratio == pytest.approx(0.25)


def test_generic_and_openstack_have_no_host_limits():
    for name in ("generic", "openstack"):
        assert profiles.get(name).host_limits() == ()


def test_config_limit_with_mountpoint_regex_and_override():
    custom = (Limit("volume_size", "used_bytes", 100 * GB, "config"),
              Limit("srv", "used_bytes", 50 * GB, "config", mountpoints="^/srv"))
    in_force = limits.limits_in_force(profiles.get("rackspace-firstgen-linux"), HostConfig(limits=custom))
    assert sorted((l.name, l.value) for l in in_force) == [("inode_usage", 3_000_000), ("srv", 50 * GB),
                                                           ("volume_size", 100 * GB)]
    rows = by_limit(limits.evaluate(in_force, snap(fs(used=90 * GB), fs("/srv", used=60 * GB, role="data")), {}))
    assert rows[("volume_size", "/")].headroom == 10 * GB
    assert rows[("srv", "/srv")].headroom == -10 * GB


def test_limits_in_force_are_the_profile_s_host_and_image_count_limits_less_those_turned_off():
    linode = profiles.get("linode")
    assert [(l.name, l.value) for l in limits.limits_in_force(linode, HostConfig())] == \
        [("custom_image_size", 6 * GB), ("images_per_account", 25)]
    smaller = Limit("custom_image_size", "used_bytes", 5 * GB, "config")
    assert [(l.name, l.value, l.source) for l in limits.limits_in_force(linode, HostConfig(limits=(smaller,)))] == \
        [("custom_image_size", 5 * GB, "config"), ("images_per_account", 25, linode.cloud_limit("image_count").source)]
    off = HostConfig(disabled_limits=("custom_image_size", "images_per_account"))
    assert limits.limits_in_force(linode, off) == ()
    firstgen = profiles.get("rackspace-firstgen-linux")
    assert [l.name for l in limits.limits_in_force(firstgen, HostConfig(disabled_limits=("inode_usage",)))] == \
        ["volume_size"]
    assert limits.limits_in_force(profiles.get("generic"), HostConfig()) == ()


def test_filesystem_without_inode_counts_is_skipped():
    rows = limits.evaluate(profiles.get("rackspace-firstgen-linux").host_limits(),
                           snap(fs(used=1 * GB, inodes=0)), {})
    assert [r.limit for r in rows] == ["volume_size"]


def test_host_metrics_for_a_profile():
    s = snap(fs(used=240 * GB, inodes_used=3_200_000), fs("/data", used=7 * GB, role="data", device="/dev/vdb"))
    registry = CollectorRegistry()

    class HostFamilies:
        def collect(self):
            return host_families(s, profiles.get("rackspace-firstgen-linux").host_limits(),
                                 "rackspace-firstgen-linux", "srv-1")
    registry.register(HostFamilies())
    m = parse_metrics(generate_latest(registry).decode())
    assert samples(m, "imaging_limit_bytes") == {frozenset({("limit", "volume_size")}): 250 * GB}
    assert samples(m, "imaging_limit_inodes") == {frozenset({("limit", "inode_usage")}): 3_000_000}
    assert samples(m, "imaging_headroom_bytes", limit="volume_size", mountpoint="/") == \
        {frozenset({("limit", "volume_size"), ("mountpoint", "/")}): 10 * GB}
    assert list(samples(m, "imaging_headroom_ratio", limit="volume_size").values()) == [pytest.approx(0.04)]
    assert list(samples(m, "imaging_headroom_inodes").values()) == [-200_000]
    assert samples(m, "imaging_uncovered_bytes") == \
        {frozenset({("mountpoint", "/data"), ("reason", "data_filesystem")}): 7 * GB}
    assert samples(m, "imaging_host_info", profile="rackspace-firstgen-linux", server_id="srv-1")
    assert HostConfig().profile == "generic"


def test_linode_host_mode_shows_the_account_image_limit(tmp_path):
    from exporter.app import assemble
    from exporter.config import Config
    exp = assemble(Config(host=HostConfig(profile="linode"), state_file=str(tmp_path / "s.json")), {"host": True})
    m = parse_metrics(exp.exposition.raw().decode())
    assert samples(m, "imaging_limit_images") == {frozenset({("limit", "images_per_account")}): 25}
    assert samples(m, "imaging_limit_bytes") == {frozenset({("limit", "custom_image_size")}): 6 * GB}


def test_system_filesystems_add_up_once_per_device():
    """/, /boot and /var on the system disk are one image: 200 + 1 + 60 GB against 250 GB."""
    s = snap(fs(used=200 * GB, inodes_used=2_000_000, device="/dev/vda1"),
             fs("/boot", used=1 * GB, inodes_used=500_000, device="/dev/vda2"),
             fs("/var", used=60 * GB, inodes_used=600_000, device="/dev/vda3"),
             fs("/srv/www", used=60 * GB, inodes_used=600_000, device="/dev/vda3"),   # a bind mount of /var's
             fs("/data", used=500 * GB, inodes_used=9_000_000, role="data", device="/dev/vdb"))
    rows = by_limit(limits.evaluate(profiles.get("rackspace-firstgen-linux").host_limits(), s, {}))
    assert set(rows) == {("volume_size", "/"), ("inode_usage", "/")}
    assert rows[("volume_size", "/")].measured == 261 * GB and rows[("volume_size", "/")].headroom == -11 * GB
    assert rows[("inode_usage", "/")].headroom == 3_000_000 - 3_100_000


def test_windows_high_water_marks_add_up_too():
    s = snap(fs(used=100 * GB, device="/dev/vda1"), fs("/boot", used=1 * GB, device="/dev/vda2"))
    rows = by_limit(limits.evaluate(profiles.get("rackspace-firstgen-windows").host_limits(), s,
                                    {("/dev/vda1", "/"): 240 * GB, ("/dev/vda2", "/boot"): 20 * GB}))
    assert rows[("disk_usage", "/")].measured == 260 * GB and rows[("disk_usage", "/")].headroom == -10 * GB


def test_a_config_limit_with_a_regex_holds_each_filesystem_it_picks():
    custom = (Limit("srv", "used_bytes", 50 * GB, "config", mountpoints="^/srv"),)
    rows = by_limit(limits.evaluate(custom, snap(fs("/srv/a", used=40 * GB, device="/dev/vdb", role="data"),
                                                 fs("/srv/b", used=30 * GB, device="/dev/vdc", role="data")), {}))
    assert {k: r.headroom for k, r in rows.items()} == {("srv", "/srv/a"): 10 * GB, ("srv", "/srv/b"): 20 * GB}
