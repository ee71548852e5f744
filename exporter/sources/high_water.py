"""High-water marks of used bytes, recorded as the host is read.

A Windows virtual disk "cannot shrink once it has expanded" (Rackspace,
"Cloud Server Image Limitations"), so the limit holds the highest used bytes
ever seen, kept across restarts in the state file. The marks are recorded
here, when the host is read, and travel in the snapshot: collectors only
turn snapshots into families and never write state.
"""
from __future__ import annotations

from ..models import HostSnapshot
from ..state import State


class HighWaterSource:
    """A host source (Linux or Windows) whose reads also record each filesystem's peak."""

    def __init__(self, source, state: State):
        self.source, self.state = source, state

    def quick(self) -> bool:
        """The wrapped reader's answer (HostSource.quick): a reader that cannot tell is not quick."""
        quick = getattr(self.source, "quick", None)
        return bool(quick and quick())

    def read(self) -> HostSnapshot:
        snap = self.source.read()
        marks = tuple((fs.device, fs.mountpoint, self.state.high_water(fs.device, fs.mountpoint, fs.used_bytes))
                      for fs in snap.filesystems)
        return snap._replace(high_water=marks)
