"""Reading files of a mount: which chunks a read needs, and a bounded cache of them.

The kernel asks for byte ranges (128 KiB at a time, typically); chunks are
about 1 MiB. A read finds the parts it covers by binary search over their
offsets, takes whole chunks from a cache bounded in bytes (least recently
used out), and slices them. A chunk wanted by several readers at once is
fetched once. Every fetch is verified by the repository; a chunk that fails
is an error for the read that needs it, never zeros, and is not cached, so
the next read tries again.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from repofs.errors import IntegrityError
from repofs.model import Entry

CACHE_BYTES = 64 * 1024 * 1024
READAHEAD_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Piece:
    """The slice ``[start, end)`` of one part of a file (a chunk, or a hole when no id)."""

    chunk_id: bytes | None
    size: int
    start: int
    end: int


@dataclass
class ReadPlan:
    """What one read needs: its pieces in order, and the chunks likely to be read next."""

    label: object  # str() of it names the file, for log lines
    pieces: list[Piece] = field(default_factory=list)
    ahead: list[tuple[bytes, int]] = field(default_factory=list)
    passed: list[bytes] = field(default_factory=list)  # chunks a sequential reader is done with

    def needed(self) -> list[tuple[bytes, int]]:
        """Distinct (chunk id, size) pairs, in file order."""
        seen: dict[bytes, int] = {}
        for p in self.pieces:
            if p.chunk_id is not None:
                seen.setdefault(p.chunk_id, p.size)
        return list(seen.items())

    def assemble(self, chunks: Mapping[bytes, bytes]) -> bytes | memoryview:
        """The bytes of the read; a read inside one chunk is a view, not a copy."""
        if len(self.pieces) == 1 and self.pieces[0].chunk_id is not None:
            p = self.pieces[0]
            return memoryview(chunks[self.pieces[0].chunk_id])[p.start : p.end]
        out: list[bytes | memoryview] = []
        for p in self.pieces:
            if p.chunk_id is None:
                out.append(bytes(p.end - p.start))
            else:
                out.append(memoryview(chunks[p.chunk_id])[p.start : p.end])
        return b"".join(out)


class OpenFile:
    """An open file: its parts with their offsets, and where the last read ended."""

    def __init__(self, entry: Entry, label: object) -> None:
        self.entry = entry
        self.label = label
        self.offsets = list(itertools.accumulate((p.size for p in entry.parts), initial=0))
        self._next = 0

    def pieces(self, offset: int, size: int) -> tuple[list[Piece], int]:
        """The pieces of ``[offset, offset + size)``, and the index of the part after them."""
        end = min(offset + size, self.entry.size)
        if offset < 0 or offset >= end:
            return [], len(self.entry.parts)
        parts, offsets = self.entry.parts, self.offsets
        out = []
        i = bisect.bisect_right(offsets, offset) - 1
        while i < len(parts) and offsets[i] < end:
            start, stop = max(offset, offsets[i]), min(end, offsets[i + 1])
            if stop > start:
                p = parts[i]
                out.append(Piece(p.chunk_id, p.size, start - offsets[i], stop - offsets[i]))
            i += 1
        return out, i

    def plan(self, offset: int, size: int) -> ReadPlan:
        plan = ReadPlan(self.label)
        plan.pieces, i = self.pieces(offset, size)
        if not plan.pieces:
            return plan
        if offset == self._next:  # sequential: the next chunks will be wanted soon
            plan.passed = [p.chunk_id for p in plan.pieces
                           if p.chunk_id is not None and p.end == p.size]
            parts = self.entry.parts
            budget = READAHEAD_BYTES
            while i < len(parts) and budget > 0:
                cid = parts[i].chunk_id
                if cid is not None:
                    plan.ahead.append((cid, parts[i].size))
                    budget -= parts[i].size
                i += 1
        self._next = offset + sum(p.end - p.start for p in plan.pieces)
        return plan


class _Pending:
    __slots__ = ("data", "done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.data: bytes | None = None
        self.error: BaseException | None = None


class ChunkCache:
    """Verified chunk plaintexts by id, at most ``max_bytes`` of them; thread-safe."""

    def __init__(self, fetch: Callable[[bytes], bytes], max_bytes: int = CACHE_BYTES) -> None:
        self._fetch = fetch
        self.max_bytes = max_bytes
        self._data: OrderedDict[bytes, bytes] = OrderedDict()
        self._pending: dict[bytes, _Pending] = {}
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.fetches = 0
        self.fetched_bytes = 0

    def peek(self, chunk_id: bytes) -> bytes | None:
        """The chunk if cached; never blocks."""
        with self._lock:
            return self._hit(chunk_id)

    def _hit(self, chunk_id: bytes) -> bytes | None:
        """A cached chunk, counted and marked recently used; the caller holds the lock."""
        data = self._data.get(chunk_id)
        if data is not None:
            self._data.move_to_end(chunk_id)
            self.hits += 1
        return data

    def demote(self, chunk_ids: list[bytes]) -> None:
        """Make these the first to go: a sequential reader is past them, and a large file
        read once should not push out what was fetched ahead for other files."""
        with self._lock:
            for cid in chunk_ids:
                if cid in self._data:
                    self._data.move_to_end(cid, last=False)

    def busy(self, chunk_id: bytes) -> bool:
        """Cached or being fetched: no need to start another fetch."""
        with self._lock:
            return chunk_id in self._data or chunk_id in self._pending

    def get(self, chunk_id: bytes, size: int) -> bytes:
        """The chunk, fetched (blocking) unless cached or already being fetched."""
        with self._lock:
            data = self._hit(chunk_id)
            if data is not None:
                return data
            pending = self._pending.get(chunk_id)
            owner = pending is None
            if pending is None:
                pending = self._pending[chunk_id] = _Pending()
        if not owner:
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            assert pending.data is not None
            return pending.data
        try:
            self.fetches += 1
            data = self._fetch(chunk_id)
            if len(data) != size:
                raise IntegrityError("chunk", chunk_id.hex(), "size differs from the tree")
            pending.data = data
            self.fetched_bytes += len(data)
            self._insert(chunk_id, data)
            return data
        except BaseException as e:
            pending.error = e
            raise
        finally:
            with self._lock:
                del self._pending[chunk_id]
            pending.done.set()

    def _insert(self, chunk_id: bytes, data: bytes) -> None:
        with self._lock:
            if chunk_id in self._data or len(data) > self.max_bytes:
                return
            self._data[chunk_id] = data
            self.bytes += len(data)
            while self.bytes > self.max_bytes:
                _, old = self._data.popitem(last=False)
                self.bytes -= len(old)
