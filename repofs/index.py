"""Index segments and the in-memory blob index (repofs-format(5), INDEX SEGMENTS).

Each ``create`` writes one new segment naming the packs it wrote and where each
blob sits in them. Segments are never rewritten; the index is their union,
loaded at open. A segment is sealed in shared mode so write-only keys can
dedup. Memory grows with the number of blobs only: one packed row of 33 bytes
each (a tuple and a BlobEntry per blob took about twice as much: 374 B a blob).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from repofs import spec
from repofs.envelope import HEADER_LEN, ObjectCipher
from repofs.errors import IntegrityError
from repofs.pack import BlobEntry, entry_from_list


@dataclass(frozen=True, slots=True)
class Location:
    """A blob's place: which pack, and its entry there."""

    pack: str
    entry: BlobEntry


def encode_segment(cipher: ObjectCipher, packs: list[tuple[str, list[BlobEntry]]]) -> bytes:
    record = {
        "v": spec.FORMAT_VERSION,
        "packs": [
            {"id": bytes.fromhex(name), "blobs": [e.to_list() for e in entries]}
            for name, entries in packs
        ],
    }
    return cipher.header + cipher.seal(0, spec.pack(record), b"index")


def decode_segment(cipher: ObjectCipher, data: bytes) -> list[tuple[str, list[BlobEntry]]]:
    name = cipher.object_id
    plain = cipher.open(0, memoryview(data)[HEADER_LEN:], b"index")
    f = spec.Fields(spec.unpack(plain, "index segment", name), "index segment", name)
    if f.integer("v") != spec.FORMAT_VERSION:
        raise f.fail("unknown version")
    out = []
    for p in f.items("packs"):
        pf = spec.Fields(p, "index segment", name)
        pack_id = pf.blob("id", size=32).hex()
        rows = pf.items("blobs", spec.PACK_MAX_BLOBS)
        out.append(
            (pack_id, [entry_from_list(r, "index segment", name, spec.MAX_OBJECT) for r in rows])
        )
    return out


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
