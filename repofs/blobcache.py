"""The local cache of the blob table: open a big repository without decoding every segment.

Decoding every index segment at each open took 2.5 s a million blobs. The table's
columns (``blobtable``) are written to ``$XDG_CACHE_HOME/repofs/<repository id>/
blobtable`` with the names of the segments they hold, and mapped at the next open:
only the segments not named there are read. The mapping is shared, so the mount's
forked decoders use the same pages, and pages never looked at are never read.

The cache is not part of the repository (repofs(1), FILES) and it is hostile input
like everything else: a keyed BLAKE3 over the whole file, under a key derived from
the repository's shared key (every key holds it, write-only ones too), is checked
before it is used; one that does not verify is ignored with a warning and rebuilt.
A cache naming a segment the repository no longer lists (prune deleted it) is
rebuilt too: its rows could name deleted packs, and dedup must never trust those.
Every location is still verified on read (keyed ids), so losing or corrupting the
cache costs time, never correctness.

Layout (little-endian)::

    header | pack ids (32 bytes each) | segment names (32 bytes each) | columns | MAC

with each column (``blobtable.COLUMNS``, then the directory) padded to 8 bytes.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
import struct
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from repofs import crypto
from repofs.blobtable import BlobTable, column_sizes
from repofs.filescache import cache_dir

log = logging.getLogger(__name__)

_MAGIC = b"repofsBT"
_HEADER = struct.Struct("<8sI32sQQQQ")  # magic, version, repository id, rows, pairs, packs, segs
_VERSION = 1
_MAC_LEN = 32
_HEX = re.compile(r"[0-9a-f]{64}\Z")
_READ = 16 << 20  # bytes hashed at a time
MIN_GROWTH = 1 << 16  # new blobs (or an eighth of the cached ones) before the cache is rewritten


def _pad(n: int) -> int:
    return -n % 8


class BlobCache:
    """One repository's cached table: ``load`` it at open, ``save`` it when it grew."""

    def __init__(self, path: Path, repo_id: bytes, shared_key: bytes) -> None:
        self.path = path
        self._repo_id = repo_id
        self._key = crypto.hkdf(shared_key, repo_id, b"repofs v1 local blob table cache")

    @classmethod
    def of(cls, repo_id: bytes, shared_key: bytes) -> BlobCache | None:
        """The cache of this repository for this user; None without a home to keep it in."""
        try:
            return cls(cache_dir(repo_id.hex()) / "blobtable", repo_id, shared_key)
        except (RuntimeError, KeyError):  # no $HOME and no password entry (a bare service)
            return None

    @staticmethod
    def worth_saving(cached: int, now: int) -> bool:
        """Whether a table of ``now`` blobs is worth writing over a cache of ``cached``: a
        few small segments are cheaper to decode at each open than the table to write."""
        return not cached or now - cached >= max(cached // 8, MIN_GROWTH)

    def load(self, listed: set[str]) -> tuple[BlobTable, frozenset[str]] | None:
        """The cached table and the segments it holds; None when there is none to use."""
        mapped = None
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                why = self._check(f, f.read(_HEADER.size), size)
                if why is None:
                    mapped = mmap.mmap(f.fileno(), size, mmap.MAP_SHARED, mmap.PROT_READ)
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("index cache %s: %s: ignored", self.path, e.strerror or e)
            return None
        if mapped is None:
            log.warning("index cache %s %s: ignored, rebuilt from the index segments",
                        self.path, why)
            return None
        table, segments = self._table(memoryview(mapped))
        if not segments <= listed:
            log.info("index cache %s names a segment prune deleted: rebuilt", self.path)
            return None
        return table, segments

    def _check(self, f: BinaryIO, head: bytes, size: int) -> str | None:
        """Why the file cannot be used, or None: its size, then its MAC."""
        if len(head) < _HEADER.size:
            return "is truncated"
        magic, version, repo_id, rows, _, packs, segs = _HEADER.unpack(head)
        if magic != _MAGIC or version != _VERSION:
            return "is not a repofs index cache of this version"
        if not crypto.same(repo_id, self._repo_id):
            return "is of another repository"
        if size != _size(rows, packs, segs):
            return "has the wrong size (truncated or damaged)"
        mac = crypto.KeyedDigest(self._key)
        mac.update(head)
        left = size - _HEADER.size - _MAC_LEN
        read = f.read
        while left:
            part = read(min(left, _READ))
            if not part:
                return "is truncated"
            mac.update(part)
            left -= len(part)
        if not crypto.same(mac.digest(), read(_MAC_LEN)):
            return "does not verify (damaged, or written under another key)"
        return None

    def _table(self, data: memoryview) -> tuple[BlobTable, frozenset[str]]:
        _, _, _, rows, pairs, npacks, nsegs = _HEADER.unpack(data[:_HEADER.size])
        pos = _HEADER.size
        packs = [data[pos + 32 * i:pos + 32 * i + 32].hex() for i in range(npacks)]
        pos += 32 * npacks
        segs = frozenset(data[pos + 32 * i:pos + 32 * i + 32].hex() for i in range(nsegs))
        pos += 32 * nsegs
        pos += _pad(pos)
        bufs = []
        for n in column_sizes(rows):
            bufs.append(data[pos:pos + n])
            pos += n + _pad(n)
        return BlobTable.mapped(packs, pairs, bufs), segs

    def save(self, table: BlobTable, segments: Iterable[str]) -> BlobTable | None:
        """Write the table and the segments it holds (temp file, then rename: a reader sees
        the old file or the new one); the table mapped from it, or None if not written."""
        packs, pairs, bufs = table.export()
        segs = sorted(segments)
        if not all(_HEX.match(n) for n in [*packs, *segs]):
            return None  # not names from a repository (a test's table): nothing to cache
        rows = len(bufs[0]) // 8
        head = _HEADER.pack(_MAGIC, _VERSION, self._repo_id, rows, pairs, len(packs), len(segs))
        parts: list[bytes | memoryview] = [head, *(bytes.fromhex(p) for p in packs),
                                           *(bytes.fromhex(s) for s in segs)]
        pos = sum(len(p) for p in parts)
        parts.append(bytes(_pad(pos)))
        for b in bufs:
            parts += [b, bytes(_pad(len(b)))]
        mac = crypto.KeyedDigest(self._key)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".blobtable.")
            try:
                with os.fdopen(fd, "w+b") as f:
                    for p in parts:
                        mac.update(p)
                        f.write(p)
                    f.write(mac.digest())
                    f.flush()
                    mapped = mmap.mmap(f.fileno(), 0, mmap.MAP_SHARED, mmap.PROT_READ)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            log.warning("index cache %s: not written: %s", self.path, e.strerror or e)
            return None
        return self._table(memoryview(mapped))[0]


def _size(rows: int, packs: int, segs: int) -> int:
    n = _HEADER.size + 32 * (packs + segs)
    n += _pad(n)
    return n + sum(c + _pad(c) for c in column_sizes(rows)) + _MAC_LEN


__all__ = ["BlobCache"]
