"""The blob index as it was before ``repofs.blobtable``: a dict of packed rows.

Kept as the reference the table is compared with (test_blobtable.py drives both with
the same operations and compares every answer), and by bench/bench_index.py as "the
old index". It answers exactly as repofs did up to 0.1: per (type, id), the first
place seen, then every later place that differs from it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from repofs import spec
from repofs.blobtable import Location
from repofs.errors import IntegrityError
from repofs.pack import BlobEntry

# pack number, then a BlobEntry without its id (the dict key): type, nonce, offset,
# length, raw length. Wide enough for any entry a pack or segment can hold.
_ROW = struct.Struct("<IBIQQQ")
_TYPE = 4  # byte offset of the type in a row


def _row(no: int, e: BlobEntry) -> bytes:
    return _ROW.pack(no, e.blob_type, e.nonce, e.offset, e.length, e.raw_len)


def _unrow(blob_id: bytes, row: bytes) -> tuple[int, BlobEntry]:
    no, blob_type, nonce, offset, length, raw_len = _ROW.unpack(row)
    return no, BlobEntry(blob_id, blob_type, nonce, offset, length, raw_len)


class BlobIndex:
    """blob id -> location, the union of every segment read plus what this session wrote."""

    def __init__(self) -> None:
        self._packs: list[str] = []
        self._pack_no: dict[str, int] = {}
        self._blobs: dict[bytes, bytes] = {}  # id -> _ROW of its first place
        # A chunk and a tree with the same plaintext share their keyed id (a file may hold
        # a tree's exact bytes): the type seen second lives here, so neither hides the other.
        self._other: dict[tuple[int, bytes], tuple[int, BlobEntry]] = {}
        # Further places the same (type, id) is indexed at: two writers that stored one chunk
        # at once, or a writer that planted a lying entry. Reads fall back to these, so an
        # entry that sorts first cannot hide the real blob (repofs serve attack suite).
        self._more: dict[tuple[int, bytes], list[tuple[int, BlobEntry]]] = {}

    def __len__(self) -> int:
        return len(self._blobs) + len(self._other)

    def __contains__(self, blob_id: bytes) -> bool:
        return blob_id in self._blobs

    def has(self, blob_id: bytes, blob_type: int) -> bool:
        row = self._blobs.get(blob_id)
        return row is not None and (row[_TYPE] == blob_type
                                    or (blob_type, blob_id) in self._other)

    def add_pack(self, pack: str, entries: Iterable[BlobEntry]) -> None:
        no = self._pack_no.get(pack)
        if no is None:
            no = self._pack_no[pack] = len(self._packs)
            self._packs.append(pack)
        for e in entries:
            row = _row(no, e)
            first = self._blobs.setdefault(e.blob_id, row)
            if first[_TYPE] != e.blob_type:
                if self._other.setdefault((e.blob_type, e.blob_id), (no, e)) != (no, e):
                    self._more.setdefault((e.blob_type, e.blob_id), []).append((no, e))
            elif first != row:
                self._more.setdefault((e.blob_type, e.blob_id), []).append((no, e))

    def lookup(self, blob_id: bytes, blob_type: int) -> Location:
        row = self._blobs.get(blob_id)
        hit = None if row is None else _unrow(blob_id, row)
        if hit is not None and hit[1].blob_type != blob_type:
            hit = self._other.get((blob_type, blob_id), hit)
        name = spec.BLOB_NAMES.get(blob_type, "blob")
        if hit is None:
            raise IntegrityError(name, blob_id.hex(), "not in any index segment (missing)")
        no, entry = hit
        if entry.blob_type != blob_type:
            raise IntegrityError(name, blob_id.hex(), "indexed with another type")
        return Location(self._packs[no], entry)

    def locations(self, blob_id: bytes, blob_type: int) -> list[Location]:
        """Every place a blob of this type and id is indexed at, the first one first."""
        first = self.lookup(blob_id, blob_type)
        more = self._more.get((blob_type, blob_id), [])
        return [first, *(Location(self._packs[no], e) for no, e in more)]

    def entries(self) -> Iterator[tuple[str, BlobEntry]]:
        """(pack, entry) for every entry indexed, duplicates included (check --read-data)."""
        for blob_id, row in self._blobs.items():
            no, e = _unrow(blob_id, row)
            yield self._packs[no], e
        for no, e in self._other.values():
            yield self._packs[no], e
        for more in self._more.values():
            for no, e in more:
                yield self._packs[no], e

    def packs(self) -> Iterator[str]:
        return iter(self._packs)
