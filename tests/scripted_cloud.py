"""A cloud source that returns the snapshots a test scripts, and the exposition built over it."""
from exporter.app import build_exposition
from exporter.models import CloudSnapshot, Image, Quota, QuotaValue
from exporter.poller import Poller
from exporter.state import State


class ScriptedSource:
    """A source that returns the snapshots it is given, one per refresh."""
    provider = "openstack"

    def __init__(self, *snapshots):
        self.snapshots = list(snapshots)

    def refresh(self):
        return self.snapshots.pop(0)


def snapshot(n_images, finished=()):
    return CloudSnapshot(cloud="c1", project="p1", taken_at=1000.0,
                         images=tuple(Image(f"i{k}", f"img-{k}", "active", 10**9, 900.0) for k in range(n_images)),
                         finished_jobs=tuple(finished),
                         quota=Quota(images=QuotaValue(25, "api")))


def build(tmp_path, *snapshots, process=False):
    """process: with process_* too (readings that move between two renders, so off unless a test wants them)."""
    poller = Poller(ScriptedSource(*snapshots), "c1", 60, 3600, state=State(str(tmp_path / "s.json")),
                    clock=lambda: 1000.0)
    # Without process_* unless asked: their CPU and memory move between two renders.
    return poller, build_exposition([poller], process_metrics=process)
