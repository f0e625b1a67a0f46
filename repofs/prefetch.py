"""Chunks read, decrypted and verified in worker threads ahead of restore's writer.

AES-GCM and zstd release the GIL, so while restore writes one file the next
files' chunks are being fetched. Chunks are queued in the order the restore will
ask for them; at most ``window`` bytes are in flight. Small chunks are read by the
writer itself: handing them to a thread costs more than reading them (unless the
store asks for ``parallel_reads``: over S3 every read waits a round trip).

A read the storage could not serve (an ``OSError`` such as EIO, wherever in the
repository it happened) comes back as ``errors.Unreadable``, so the restore treats
it like any damaged chunk: that file's loss, not the run's end.
"""

from __future__ import annotations

from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor

from repofs import spec
from repofs.errors import IntegrityError
from repofs.model import Entry
from repofs.packcheck import blob_failure
from repofs.repository import Repository

PREFETCH_MIN = 64 * 1024  # smaller chunks are read by the writing thread itself
_TREES_AHEAD = 256  # trees loaded ahead of the walk (the repository caches 512)


def read_chunk(repo: Repository, chunk_id: bytes) -> bytes:
    """A data blob's verified plaintext. A failure names the object that is damaged: the
    chunk, or its whole pack if that cannot be opened (``packcheck.blob_failure``: the
    rule check follows too); a storage I/O error becomes ``Unreadable``."""
    try:
        return repo.read_blob(chunk_id, spec.BLOB_DATA)
    except (IntegrityError, OSError) as e:
        raise blob_failure(repo, e, chunk_id, spec.BLOB_DATA) from None


class Prefetch:
    """Reads the chunks of the files ``plan`` names, in that order, in two threads (or as
    many as the store asks for: ``parallel_reads``, where each read waits a round trip)."""

    def __init__(self, repo: Repository, window: int = 64 * 1024 * 1024) -> None:
        self.repo = repo
        self.window = window
        self.inflight = 0
        threads = max(2, min(int(getattr(repo.store, "parallel_reads", 2)), 16))
        # where a read waits a round trip, a small chunk costs that too: prefetch them all
        self._min = PREFETCH_MIN if threads == 2 else 0
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="repofs-restore")
        # and the trees of the subdirectories ahead of the walk, in their own threads
        self._tree_pool = None if threads == 2 else ThreadPoolExecutor(
            threads, thread_name_prefix="repofs-trees")
        self._trees: dict[bytes, Future[None]] = {}
        self._queue: deque[tuple[int, bytes, int, Future[bytes]]] = deque()
        self._todo: deque[tuple[int, bytes, int]] = deque()
        self._planned: Counter[int] = Counter()  # file -> its chunks queued or to do

    def plan(self, files: list[Entry]) -> None:
        """Queue the chunks of these files (in restore order) behind what is queued."""
        for e in files:
            for p in e.parts:
                if p.chunk_id is not None and p.size >= self._min:
                    self._todo.append((id(e), p.chunk_id, p.size))
                    self._planned[id(e)] += 1
        self._fill()

    def _fill(self) -> None:
        while self._todo and self.inflight < self.window:
            key, chunk_id, size = self._todo.popleft()
            fut = self._pool.submit(read_chunk, self.repo, chunk_id)
            self._queue.append((key, chunk_id, size, fut))
            self.inflight += size

    def _take(self) -> tuple[int, bytes, int, Future[bytes]]:
        item = self._queue.popleft()
        self.inflight -= item[2]
        self._planned[item[0]] -= 1
        return item

    def chunk(self, e: Entry, chunk_id: bytes) -> bytes:
        """The next chunk of ``e``; chunks queued for files given up are dropped."""
        key = id(e)
        if self._planned[key] > 0:
            while True:
                if not self._queue:
                    self._fill()
                if not self._queue or self._queue[0][0] == key:
                    break
                self._take()[3].cancel()  # queued for a file before e that was given up
            if self._queue and self._queue[0][1] == chunk_id:
                fut = self._take()[3]
                self._fill()
                return fut.result()
        return read_chunk(self.repo, chunk_id)

    def trees(self, tree_ids: list[bytes]) -> None:
        """Load these trees ahead into the repository's tree cache (parallel stores only;
        at most ``_TREES_AHEAD`` at a time)."""
        if self._tree_pool is None:
            return
        for tree_id in tree_ids:
            if len(self._trees) >= _TREES_AHEAD:
                return
            if tree_id not in self._trees:
                self._trees[tree_id] = self._tree_pool.submit(self._warm, tree_id)

    def _warm(self, tree_id: bytes) -> None:
        try:  # damage is the walk's to report, when it loads the tree itself
            self.repo.load_tree(tree_id, [])
        except (IntegrityError, OSError):
            pass

    def tree_loaded(self, tree_id: bytes) -> None:
        """Wait for a tree loaded ahead, if it was (the walk then finds it cached)."""
        fut = self._trees.pop(tree_id, None)
        if fut is not None:
            fut.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._tree_pool is not None:
            self._tree_pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["PREFETCH_MIN", "Prefetch", "read_chunk"]
