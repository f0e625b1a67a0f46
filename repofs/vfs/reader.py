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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from repofs.errors import IntegrityError
from repofs.model import Entry

CACHE_BYTES = 64 * 1024 * 1024
READAHEAD_BYTES = 8 * 1024 * 1024

BATCH_MAX = 256 * 1024  # get_many hands chunks up to this size to fetch_many
Chunk = bytes | memoryview  # a plaintext: its own bytes, or a view of a decoder's batch
FetchMany = Callable[[Sequence[bytes]], Sequence[Chunk | None] | None]


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

    def assemble(self, chunks: Mapping[bytes, Chunk]) -> bytes | memoryview:
        """The bytes of the read; a read inside one chunk is a view, not a copy.

        The one place the mount's content is cut from chunks, so the one place a chunk's
        length is held against the part the tree names: a chunk cached for another file
        is the right chunk, but this file's tree may claim more (or fewer) bytes of it.
        Such a read is an IntegrityError (EIO), never short or other bytes.
        """
        if len(self.pieces) == 1 and self.pieces[0].chunk_id is not None:
            p = self.pieces[0]
            return memoryview(_sized(chunks[self.pieces[0].chunk_id], p))[p.start : p.end]
        out: list[bytes | memoryview] = []
        for p in self.pieces:
            if p.chunk_id is None:
                out.append(bytes(p.end - p.start))
            else:
                out.append(memoryview(_sized(chunks[p.chunk_id], p))[p.start : p.end])
        return b"".join(out)


def _sized(data: Chunk, piece: Piece) -> Chunk:
    if len(data) != piece.size:
        assert piece.chunk_id is not None
        raise IntegrityError("chunk", piece.chunk_id.hex(), "size differs from the tree")
    return data


class OpenFile:
    """An open file: its parts with their offsets, and where the last read ended."""

    __slots__ = ("_next", "alone", "entry", "ino", "label", "offsets")

    def __init__(self, entry: Entry, label: object, ino: int = 0) -> None:
        self.entry = entry
        self.label = label
        self.ino = ino
        self.alone = False  # no other handle of the inode was open when this one was
        parts = entry.parts
        self.offsets = [0, parts[0].size] if len(parts) == 1 else \
            list(itertools.accumulate((p.size for p in parts), initial=0))
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

    def __init__(self, done: threading.Event | None = None) -> None:
        self.done = done or threading.Event()  # chunks fetched in one batch share one
        self.data: Chunk | None = None
        self.error: BaseException | None = None


class ChunkCache:
    """Verified chunk plaintexts by id, at most ``max_bytes`` of them; thread-safe."""

    def __init__(self, fetch: Callable[[bytes], bytes], max_bytes: int = CACHE_BYTES) -> None:
        self._fetch = fetch
        self.fetch_many: FetchMany | None = None  # a batch fetcher for get_many (decoders)
        self.max_bytes = max_bytes
        self._data: OrderedDict[bytes, Chunk] = OrderedDict()
        self._pending: dict[bytes, _Pending] = {}
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.fetches = 0
        self.fetched_bytes = 0

    def peek(self, chunk_id: bytes) -> Chunk | None:
        """The chunk if cached; never blocks."""
        with self._lock:
            return self._hit(chunk_id)

    def _hit(self, chunk_id: bytes) -> Chunk | None:
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

    def get(self, chunk_id: bytes, size: int) -> Chunk:
        """The chunk, fetched (blocking) unless cached or already being fetched. A batch
        that left it out (``get_many``) is no answer: then it is fetched here."""
        while True:
            with self._lock:
                data = self._hit(chunk_id)
                if data is not None:
                    return _same_size(data, chunk_id, size)
                pending = self._pending.get(chunk_id)
                if pending is None:
                    pending = self._pending[chunk_id] = _Pending()
                    break
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            if pending.data is not None:
                return _same_size(pending.data, chunk_id, size)
        try:
            self.fetches += 1
            fetched = _same_size(self._fetch(chunk_id), chunk_id, size)
            pending.data = fetched
            self.fetched_bytes += len(fetched)
            self._insert(chunk_id, fetched)
            return fetched
        except BaseException as e:
            pending.error = e
            raise
        finally:
            with self._lock:
                del self._pending[chunk_id]
            pending.done.set()

    def get_many(self, wanted: Sequence[tuple[bytes, int]]) -> None:
        """Fetch these into the cache unless cached or being fetched already: those up to
        ``BATCH_MAX`` in one batch where ``fetch_many`` is set, the rest here (a large
        chunk costs little Python per byte, and its decoding releases the GIL). For
        read-ahead: what fails is left out and not reported (the reader that needs it
        fetches it with ``get`` and sees the error)."""
        many = self.fetch_many
        batch = threading.Event()
        mine: list[tuple[bytes, int, _Pending]] = []
        with self._lock:
            for cid, n in wanted:
                if cid not in self._data and cid not in self._pending:
                    p = self._pending[cid] = _Pending(
                        batch if many is not None and n <= BATCH_MAX else None)
                    mine.append((cid, n, p))
        if not mine:
            return
        small = [(cid, n, p) for cid, n, p in mine if p.done is batch]
        try:
            got = many([cid for cid, _, _ in small]) if many is not None and small else None
            for i, (cid, n, p) in enumerate(small):  # a batch: its readers are woken at once
                data = got[i] if got is not None else self._fetch_quietly(cid)
                self._keep(cid, n, p, data)
        finally:
            with self._lock:
                for cid, _, _ in small:
                    del self._pending[cid]
            batch.set()
        rest = [(cid, n, p) for cid, n, p in mine if p.done is not batch]
        settled = 0
        try:
            for cid, n, p in rest:  # one after the other, here; each reader woken at once
                self._keep(cid, n, p, self._fetch_quietly(cid))
                self._settle(cid, p)
                settled += 1
        finally:
            for cid, _, p in rest[settled:]:
                self._settle(cid, p)

    def _keep(self, chunk_id: bytes, size: int, pending: _Pending, data: Chunk | None) -> None:
        """A fetched chunk to cache and hand to waiting readers, if it has the right size."""
        if data is not None and len(data) == size:
            pending.data = data
            self.fetches += 1
            self.fetched_bytes += size
            self._insert(chunk_id, data)

    def _settle(self, chunk_id: bytes, pending: _Pending) -> None:
        """The fetch of a chunk is over (with its data or without): wake who waits."""
        with self._lock:
            del self._pending[chunk_id]
        pending.done.set()

    def _fetch_quietly(self, chunk_id: bytes) -> bytes | None:
        try:
            return self._fetch(chunk_id)
        except Exception:
            return None

    def _insert(self, chunk_id: bytes, data: Chunk) -> None:
        with self._lock:
            if chunk_id in self._data or len(data) > self.max_bytes:
                return
            self._data[chunk_id] = data
            self.bytes += len(data)
            while self.bytes > self.max_bytes:
                _, old = self._data.popitem(last=False)
                self.bytes -= len(old)


def _same_size(data: Chunk, chunk_id: bytes, size: int) -> Chunk:
    """``data`` if it is as long as the tree that asks for it says; chunks are cached by
    id alone, and one tree's claim is no proof for another's."""
    if len(data) != size:
        raise IntegrityError("chunk", chunk_id.hex(), "size differs from the tree")
    return data
