"""Fetching chunks before a reader asks for them: the mount's read-ahead.

Two kinds of reader matter. One reads a large file from start to end (``dd``,
``cp`` of an image): its next chunks are fetched while it reads the current
one. The other walks a tree and reads every file in it (``tar``, ``cp -a``,
``rsync``): it opens the files in the order readdir gave them, depth first,
and most of them are small, so what it waits for is a round trip per file,
not bandwidth. For it, a walk of the same tree runs ahead in the background
and fetches the first chunks of the files it will open next; its opens then
find their contents cached, and the FUSE adapter hands them to the kernel's
page cache before the reader asks, so reading them needs no round trip.

The fetching runs in a few threads of this object's own, which take their
jobs from it (a sequential reader's chunks first: the reader waits for
them; then the walk). A walk plans files in steps of up to 32 and fetches
their chunks in one batch (``ChunkCache.get_many``), which the mount hands
to decoding processes (``decoder``), so their Python does not hold the
GIL the FUSE event loop needs. The walk stays a bounded distance ahead of
the reader (in bytes and files), well inside the chunk cache, so what it
fetches is still cached when the reader gets there. A fetch that fails is
not cached and is not reported here: the reader that needs the chunk
fetches it again and gets the error (EIO naming the object), never wrong data.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence

from repofs.model import DIR, FILE, Entry
from repofs.vfs.reader import BATCH_MAX, ChunkCache

log = logging.getLogger(__name__)

THREADS = 2  # fetching threads: more only contend for the GIL (measured on 2 cores)
WALK_BYTES = 16 * 1024 * 1024  # how far a walk may run ahead of its reader (cache: 64 MiB)
WALK_FILES = 1024
FIRST_WALK_FILES = 8  # a new walk's reach, doubled each time the reader meets what it fetched
FIRST_BYTES = 1024 * 1024  # of each file ahead, the chunks covering this much of its start
QUEUE_CHUNKS = 64  # queued chunks of sequential readers, at most
BATCH_CHUNKS = 4  # queued chunks fetched in one batch
STEP_FILES = 32  # files a walk plans in one step, fetched in one batch
STEP_BYTES = 1024 * 1024  # ... or fewer, once their chunks come to this much
IDLE_SECONDS = 5.0  # an idle thread exits after this long; a new job starts one again

FileKey = tuple[bytes, bytes]  # a file's place: the tree id of its directory, its name there
Chain = Sequence[FileKey]  # a file's place, then its directory's, and so on up, innermost first
LoadTree = Callable[[bytes], list[Entry]]


def files_after(load_tree: LoadTree, chain: Chain) -> Iterator[tuple[FileKey, Entry]]:
    """The regular files after ``chain[0]`` in the order a depth-first walk in readdir
    order meets them: the rest of its directory (and the directories in it), then the
    rest of the directory above, and so on. Trees are loaded as the walk reaches them."""
    for tree_id, name in chain:
        entries = load_tree(tree_id)
        stack = [(tree_id, entries, bisect.bisect_right(entries, name, key=lambda e: e.name))]
        while stack:
            tid, ents, i = stack.pop()
            if i >= len(ents):
                continue
            stack.append((tid, ents, i + 1))
            e = ents[i]
            if e.type == FILE:
                yield (tid, e.name), e
            elif e.type == DIR and e.subtree is not None:
                stack.append((e.subtree, load_tree(e.subtree), 0))


def head_chunks(entry: Entry, limit: int = FIRST_BYTES) -> list[tuple[bytes, int]]:
    """The chunks covering the first ``limit`` bytes of a file (holes take no fetch)."""
    out: list[tuple[bytes, int]] = []
    covered = 0
    for p in entry.parts:
        if covered >= limit:
            break
        if p.chunk_id is not None:
            out.append((p.chunk_id, p.size))
        covered += p.size
    return out


class _Walk:
    """One walk ahead of one reader; its bookkeeping is guarded by ReadAhead's lock."""

    def __init__(self, files: Iterator[tuple[FileKey, Entry]], max_bytes: int,
                 max_files: int, reach: int = FIRST_WALK_FILES) -> None:
        self.files = files
        # how far ahead it may go: small at first, so a reader that opens files here and
        # there does not cost a burst of reads for each; doubled while the reader follows
        self.max_files = min(reach, max_files)
        self.max_bytes = max_bytes * self.max_files // max_files
        self.busy = False  # a thread is advancing ``files`` (a generator: one at a time)
        self.done = False
        self.resting = False  # ran far enough ahead: wait until the reader comes closer
        self.seq: dict[FileKey, int] = {}  # files planned and not passed by the reader yet
        self.planned: deque[tuple[int, FileKey, int]] = deque()  # (seq, key, bytes)
        self.ahead_bytes = 0
        self.next_seq = 0

    def reader_at(self, seq: int) -> None:
        """The reader opened the file numbered ``seq``: what lies before it is passed."""
        while self.planned and self.planned[0][0] < seq:
            _, key, nbytes = self.planned.popleft()
            self.ahead_bytes -= nbytes
            self.seq.pop(key, None)


class ReadAhead:
    """Chunks fetched ahead of readers into ``cache``, by threads of its own."""

    def __init__(self, cache: ChunkCache, load_tree: LoadTree, threads: int = THREADS,
                 walk_bytes: int = WALK_BYTES, walk_files: int = WALK_FILES) -> None:
        self._cache = cache
        self._load_tree = load_tree
        self._max_threads = threads
        self._walk_bytes, self._walk_files = walk_bytes, walk_files
        self._cond = threading.Condition()
        self._queue: deque[tuple[bytes, int]] = deque()
        self._queued: set[bytes] = set()
        self._walk: _Walk | None = None
        self._threads = 0
        self._idle = 0
        self._closed = False

    # -- what readers tell it ---------------------------------------------------------
    def chunks(self, wanted: Iterable[tuple[bytes, int]]) -> None:
        """Fetch these soon, before anything of a walk: a sequential reader's next chunks."""
        with self._cond:
            added = False
            for cid, n in wanted:
                if len(self._queue) >= QUEUE_CHUNKS:
                    break
                if cid not in self._queued and not self._cache.busy(cid):
                    self._queue.append((cid, n))
                    self._queued.add(cid)
                    added = True
            if added:
                self._wake()

    def opened(self, key: FileKey, chain: Callable[[], Chain]) -> None:
        """The file at ``key`` was opened: the walk's reader is there now; if the walk did
        not plan this file, a new walk starts after it, at ``chain()`` (the reader went
        elsewhere). Threads are woken only when there is work: this runs at every open."""
        with self._cond:
            walk = self._walk
            seq = walk.seq.get(key) if walk is not None else None
            if walk is not None and seq is not None:
                walk.reader_at(seq)
                walk.max_files = min(2 * walk.max_files, self._walk_files)
                walk.max_bytes = min(2 * walk.max_bytes, self._walk_bytes)
            else:
                # half the reach of the walk before: a reader that overtook its walk keeps
                # most of it; one that opens files here and there soon has little
                reach = max(FIRST_WALK_FILES, walk.max_files // 2 if walk else 0)
                walk = self._walk = _Walk(files_after(self._load_tree, list(chain())),
                                          self._walk_bytes, self._walk_files, reach)
            if self._ready(walk):
                self._wake()

    def close(self) -> None:
        """Stop the threads once their current jobs are done."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._queued.clear()
            self._walk = None
            self._cond.notify_all()

    # -- the threads ------------------------------------------------------------------
    def _wake(self) -> None:
        """Hand the new work to an idle thread, or start one; the caller holds the lock."""
        if self._closed:
            return
        if self._idle:
            self._cond.notify()
        elif self._threads < self._max_threads:
            self._threads += 1
            threading.Thread(target=self._run, name="repofs-ahead", daemon=True).start()

    def _take(self) -> list[tuple[bytes, int]] | _Walk | None:
        """The next job (the caller holds the lock): queued chunks, or a step of the walk."""
        batch: list[tuple[bytes, int]] = []
        while self._queue and len(batch) < BATCH_CHUNKS:
            cid, n = self._queue[0]
            if batch and n > BATCH_MAX:
                break  # a large chunk is a job of its own: two threads fetch two at once
            self._queue.popleft()
            self._queued.discard(cid)
            if not self._cache.busy(cid):
                batch.append((cid, n))
                if n > BATCH_MAX:
                    break
        if batch:
            return batch
        w = self._walk
        if w is None or not self._ready(w):
            return None
        w.busy = True
        return w

    def _ready(self, w: _Walk) -> bool:
        """Whether the walk may take a step now (the caller holds the lock). Once far
        enough ahead it rests until the reader has used half of that."""
        if w.busy or w.done:
            return False
        if w.ahead_bytes >= w.max_bytes or len(w.planned) >= w.max_files:
            w.resting = True
        elif w.resting and (w.ahead_bytes < w.max_bytes // 2
                            and len(w.planned) < w.max_files // 2):
            w.resting = False
        return not w.resting

    def _run(self) -> None:
        while True:
            with self._cond:
                job = None if self._closed else self._take()
                while job is None:
                    if self._closed:
                        self._threads -= 1
                        return
                    self._idle += 1
                    woken = self._cond.wait(IDLE_SECONDS)
                    self._idle -= 1
                    job = None if self._closed else self._take()
                    if job is None and not woken:
                        self._threads -= 1
                        return
            if isinstance(job, _Walk):
                self._step(job)
            else:
                self._fetch(job)

    def _fetch(self, chunks: list[tuple[bytes, int]]) -> None:
        try:
            self._cache.get_many(chunks)
        except Exception as e:  # the reader that needs them fetches them and reports
            log.debug("read-ahead of %d chunks failed: %s", len(chunks), e)

    def _step(self, walk: _Walk) -> None:
        """Plan the walk's next files, then fetch the start of each in one batch.

        One thread at a time plans a walk (it is a generator), and only while the walk
        is not too far ahead; it lets go before fetching, so the next batch can be
        planned and fetched by another thread meanwhile. Once far enough ahead the
        walk rests until the reader has used half of that: fetching in bursts, rather
        than one file per open, keeps the event loop from waiting at every request."""
        wanted: list[tuple[bytes, int]] = []
        try:
            for _ in range(STEP_FILES):
                try:
                    key, entry = next(walk.files)
                except StopIteration:
                    entry = None
                except Exception as e:  # a damaged tree ends the walk; the reader will see it
                    log.debug("walking ahead of a reader stopped: %s", e)
                    entry = None
                chunks = head_chunks(entry) if entry is not None else []
                with self._cond:
                    if entry is None:
                        walk.done = True
                        break
                    if walk is not self._walk:
                        return
                    seq = walk.next_seq
                    walk.next_seq += 1
                    walk.seq[key] = seq
                    nbytes = sum(n for _, n in chunks)
                    walk.planned.append((seq, key, nbytes))
                    walk.ahead_bytes += nbytes
                    wanted.extend(chunks)
                    if sum(n for _, n in wanted) >= STEP_BYTES or (
                            walk.ahead_bytes >= walk.max_bytes
                            or len(walk.planned) >= walk.max_files):
                        break
        finally:
            with self._cond:
                walk.busy = False
                if self._ready(walk):
                    self._wake()
        if wanted:
            self._fetch(wanted)


__all__ = ["ReadAhead", "files_after", "head_chunks"]
