"""The local files cache: which files are unchanged since an earlier snapshot.

A file whose (inode, size, mtime, ctime) match what an earlier ``create``
recorded is not read again: its content list comes from here. The cache lives
under ``$XDG_CACHE_HOME/repofs/<repository id>/`` and belongs to this machine
only; losing or corrupting it costs time, never correctness, because every
chunk it names is checked against the repository's index before use. Paths
are stored as keyed hashes, so the cache does not list file names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from repofs import crypto, spec
from repofs.errors import IntegrityError
from repofs.model import Part

MAX_AGE = 10  # drop entries not seen for this many creates


def cache_dir(repo_id: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "repofs" / repo_id


def _valid_part(chunk_id: object, size: object) -> bool:
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return False
    if chunk_id is None:
        return True
    return isinstance(chunk_id, bytes) and len(chunk_id) == 32 and size <= spec.CHUNK_MAX


class FilesCache:
    """path -> (stat key, parts); loaded whole, saved whole at the end of a create."""

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self._key = key
        self._old: dict[bytes, list[Any]] = {}
        self._new: dict[bytes, list[Any]] = {}
        self._last: tuple[bytes | None, bytes] = (None, b"")  # lookup, then remember, one path
        try:
            raw = spec.unpack(path.read_bytes(), "files cache", str(path))
            if isinstance(raw, dict):
                self._old = raw
        except (OSError, IntegrityError):
            self._old = {}

    def _k(self, path: bytes) -> bytes:
        if self._last[0] != path:
            self._last = (path, crypto.keyed_id(self._key, b"files-cache\0" + path)[:16])
        return self._last[1]

    def lookup(self, path: bytes, st: os.stat_result) -> tuple[Part, ...] | None:
        row = self._old.get(self._k(path))
        if not (isinstance(row, list) and len(row) == 3 and isinstance(row[2], list)
                and row[1] == [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]):
            return None
        # A damaged cache must cost a re-read, never a crash or a wrong content list.
        if not all(isinstance(p, list) and len(p) == 2 and _valid_part(p[0], p[1])
                   for p in row[2]) or sum(p[1] for p in row[2]) != st.st_size:
            return None
        return tuple(Part(p[0], p[1]) for p in row[2])

    def remember(self, path: bytes, st: os.stat_result, parts: tuple[Part, ...]) -> None:
        self._new[self._k(path)] = [
            0, [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns],
            [[p.chunk_id, p.size] for p in parts],
        ]

    def save(self) -> None:
        """Keep what this run saw, plus older entries until they age out."""
        merged = dict(self._new)
        for k, row in self._old.items():
            if (k not in merged and isinstance(row, list) and row and isinstance(row[0], int)
                    and row[0] + 1 < MAX_AGE):
                merged[k] = [row[0] + 1, *row[1:]]
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(spec.pack(merged))
        os.replace(tmp, self.path)
