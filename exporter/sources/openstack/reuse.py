"""The previous snapshot's objects, reused for what a refresh finds unchanged.

A refresh of 50k images and 20k servers decodes ~300k strings and built as
many new Image and Server objects, nearly all equal to those of the snapshot
still being served. Both lived at once until the refresh ended, and CPython's
allocator keeps the heap at its high-water mark: the peak RSS crossed the
150 MB target (issue 8 after issue 19). Now a record takes the previous
object's strings where they are equal (jobs.image_record, jobs.server_record),
so a page's decoded strings die with the page, and an unchanged image or
server is the previous object itself. CloudCache compares the runs of a
snapshot with the last ones (exporter.pieces.Run); identical objects compare
without a field-by-field look.
"""
from __future__ import annotations

from typing import Dict, Optional

from ...models import CloudSnapshot, Image, Server
from .jobs import OsImage, OsServer


class Previous:
    """The last good snapshot's images and servers by id, for one refresh (then dropped)."""

    def __init__(self, snap: Optional[CloudSnapshot]):
        self.images: Dict[str, Image] = {i.image_id: i for i in snap.images} if snap else {}
        self.servers: Dict[str, Server] = {s.server_id: s for s in snap.servers} if snap else {}

    def same_image_id(self, oid: str) -> str:
        """The equal id string the previous snapshot holds (or the id itself)."""
        old = self.images.get(oid)
        return oid if old is None else old.image_id

    def same_server_id(self, oid: str) -> str:
        old = self.servers.get(oid)
        return oid if old is None else old.server_id

    def image(self, i: OsImage) -> Image:
        old = self.images.get(i.image_id)
        if (old is not None and old.name == i.name and old.status == i.status and old.created == i.created
                and old.server_id == i.server_id and old.stored_bytes is None
                and type(old.size_bytes) is type(i.size) and old.size_bytes == i.size):
            return old
        return Image(image_id=i.image_id, name=i.name, status=i.status, size_bytes=i.size, created=i.created,
                     server_id=i.server_id)

    def server(self, s: OsServer) -> Server:
        old = self.servers.get(s.server_id)
        if (old is not None and old.name == s.name and old.boot_from_volume is s.boot_from_volume
                and old.backups_enabled is None and old.last_backup_success is None):
            return old
        return Server(server_id=s.server_id, name=s.name, boot_from_volume=s.boot_from_volume)
