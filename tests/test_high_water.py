"""High-water marks are recorded when the host is read, not when it is rendered."""
from exporter.collectors.host import host_families
from exporter.models import Filesystem, HostSnapshot
from exporter.sources.high_water import HighWaterSource
from exporter.state import State


class ScriptedHost:
    """A host reader whose "/" uses the next of ``used`` bytes at each read."""

    def __init__(self, *used):
        self.used = list(used)

    def read(self):
        used = self.used.pop(0)
        return HostSnapshot(filesystems=(Filesystem("/dev/vda1", "/", "ext4", "system", 1000, 1000 - used,
                                                    1000 - used, 10, 5),))


def high_water(fams):
    (family,) = [f for f in fams if f.name == "imaging_filesystem_used_high_water_bytes"]
    return [(s.labels["device"], s.labels["mountpoint"], s.value) for s in family.samples]


def test_the_read_records_the_peak_and_a_restart_keeps_it(tmp_path):
    path = str(tmp_path / "state.json")
    source = HighWaterSource(ScriptedHost(600, 400), State(path))
    assert source.read().high_water == (("/dev/vda1", "/", 600),)
    shrunk = source.read()
    assert shrunk.high_water == (("/dev/vda1", "/", 600),), "the mark never goes down"
    assert high_water(host_families(shrunk, (), "generic", "")) == [("/dev/vda1", "/", 600)]
    source.state.flush()
    again = HighWaterSource(ScriptedHost(100), State(path)).read()
    assert again.high_water == (("/dev/vda1", "/", 600),), "kept across a restart"


def test_a_snapshot_without_marks_renders_no_high_water_series():
    bare = ScriptedHost(700).read()
    assert bare.high_water == ()
    assert "imaging_filesystem_used_high_water_bytes" not in {f.name for f in host_families(bare, (), "generic", "")}
