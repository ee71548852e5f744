"""Pieces of a family's rows that a key determines, so their text can be reused.

A 50k-image account is 120k series, and between two refreshes almost none of
them change; re-rendering them all cost ~0.55 s of CPU per refresh (issue 19).
A collector hands such rows over as a Piece: a key (the snapshot objects the
rows come from, with everything else they depend on) and a function that
makes the rows from it. exporter.exposition.CloudCache keeps each piece's
rendered text by key and renders again only the pieces whose key changed.

The key is compared exactly (==, field by field, on the frozen dataclasses of
exporter.models), never by a hash alone, so a reused piece is the text a full
render would write. Equal values render equally (floatToGoString(float(v)))
with one exception no source produces: 0.0 == -0.0.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

# Objects are cut into runs where hash(identity) % RUN_EVERY == 0: the cuts move
# with the objects, so an image created, changed or deleted re-renders the run it
# is in, not every run after it. ~256 objects a run: at 50k images ~200 gzip members
# of 2-5 KiB; smaller runs cost more in per-member framing than they save.
RUN_EVERY = 256
RUN_MOST = 4 * RUN_EVERY        # a run is cut here anyway (a long unlucky stretch)


class Run:
    """A tuple of snapshot objects, compared by their values.

    Hashed by its objects' identities (image id, server id...), which runs()
    hashes anyway: two runs of the same objects with a changed field hash
    alike and are told apart by ==, field by field."""
    __slots__ = ("items", "_hash")

    def __init__(self, items: tuple, hash_: int):
        self.items, self._hash = items, hash_

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return type(other) is Run and self._hash == other._hash and self.items == other.items

    def __len__(self):
        return len(self.items)


def runs(objects: Sequence, identity: Callable) -> Iterator[Run]:
    """`objects` in order, cut into Runs after each object whose identity hashes to a multiple of RUN_EVERY."""
    start, hashes = 0, []
    for i, obj in enumerate(objects):
        h = hash(identity(obj))
        hashes.append(h)
        if h % RUN_EVERY == 0 or len(hashes) >= RUN_MOST:
            yield Run(tuple(objects[start:i + 1]), hash(tuple(hashes)))
            start, hashes = i + 1, []
    if hashes:
        yield Run(tuple(objects[start:]), hash(tuple(hashes)))


class Piece:
    """Rows of one family that ``make()`` builds; they depend on nothing but ``key``."""
    __slots__ = ("key", "make")

    def __init__(self, key, make: Callable[[], list]):
        self.key, self.make = key, make


def expand(rows: list) -> list:
    """The rows of a family's list with each Piece replaced by its own rows."""
    out = []
    for row in rows:
        if type(row) is Piece:
            out.extend(row.make())
        else:
            out.append(row)
    return out
