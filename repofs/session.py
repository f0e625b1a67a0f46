"""A write session: dedup, compress and pack blobs, then index them and commit.

Why threads: zstd, BLAKE3 and AES-GCM release the GIL, so compressing runs on
the second core while the caller reads and chunks the next file, and packs
are sealed and written by a third thread. Queues are bounded, so memory stays
at a few packs whatever the size of the backup.

Why it reads the trailers of packs no index segment lists: a create killed after writing
packs and before its segment leaves them unlisted; the next create reuses their blobs
(``recovery``) instead of storing the same data again, and lists them in its segment.

Why it reads condemn records: a prune on another host may condemn packs while
this session runs (repofs-format(5), PRUNING). Blobs found only in condemned
packs count as absent and are stored again, and just before the snapshot is
written the records are read once more: if a pack this session wrote, or the
only live copy of a blob it reused, was condemned meanwhile, nothing is
committed (``PruneConflict``), so no snapshot can come to depend on data a
prune is about to delete. No lock is involved, so there is none to delete.

Why a dry run is a session too (``create --dry-run``): ids, dedup and the counts of new
blobs are the session's; a dry session decides all of that as a real one would, and
stops where bytes would be compressed and written, so it writes nothing at all.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from repofs import signed, spec
from repofs.compression import Codec
from repofs.errors import PruneConflict
from repofs.model import Snapshot, SnapshotBody
from repofs.pack import BlobEntry, PackBuilder
from repofs.repository import Repository

_MAX_QUEUED = 8
_MAX_WRITES = 1
# Workers release the GIL for every chunk they hash, compress or seal; with the
# default 5 ms switch interval each of them then waits behind the walking thread
# (the convoy effect). 1 ms measured ~25% faster creates on 2 cores.
_SWITCH_INTERVAL = 0.001
# Blobs smaller than this are compressed in batches: one thread hand-off per blob cost
# more than compressing it, and compressing them in the caller's thread made the
# caller (which also reads and chunks) the bottleneck of trees of small files.
_SMALL_BELOW = 64 * 1024
_BATCH_BYTES = 1024 * 1024
_BATCH_BLOBS = 256
_HASH_AHEAD = 4  # chunks of a stream hashed ahead of the caller
# An index segment is written after this many packs (512 MiB), not only at the end: what a
# killed create stored is then reusable by the next, except its last few packs.
CHECKPOINT_PACKS = 32


@dataclass
class WriteStats:
    blobs_new: int = 0
    blobs_dedup: int = 0
    bytes_new_raw: int = 0
    bytes_stored: int = 0
    packs: int = 0
    packs_adopted: int = 0  # packs no segment listed whose blobs this session could reuse


def _compress(codec: Codec, blobs: list[memoryview | bytes]) -> list[tuple[int, bytes]]:
    out = []
    for data in blobs:
        c, payload = codec.compress(data)
        out.append((c, bytes(payload)))  # never keep a view into the caller's read buffer
    return out


class WriteSession:
    """Adds blobs to a repository; ``commit`` writes the index segment and the snapshot."""

    def __init__(self, repo: Repository, codec: Codec, dry_run: bool = False) -> None:
        self.repo = repo
        self.codec = codec
        self.dry_run = dry_run
        self.stats = WriteStats()
        sys.setswitchinterval(min(sys.getswitchinterval(), _SWITCH_INTERVAL))
        self._cpu = ThreadPoolExecutor(2, thread_name_prefix="repofs-compress")
        # packs sealed and written one at a time, or as many as the store asks for
        # (``parallel_writes``: over a network each put waits a round trip)
        self._uploads = max(1, min(int(getattr(repo.store, "parallel_writes", 1)), 8))
        self._io = ThreadPoolExecutor(self._uploads, thread_name_prefix="repofs-pack")
        self._stats_lock = threading.Lock()
        self._hash = ThreadPoolExecutor(1, thread_name_prefix="repofs-hash")
        # (id, type, raw length) of each blob of a job, and the job's (codec, payload)s
        self._queue: deque[tuple[list[tuple[bytes, int, int]],
                                 Future[list[tuple[int, bytes]]]]] = deque()
        self._batch: list[tuple[bytes, int, memoryview | bytes]] = []  # small blobs
        self._batch_bytes = 0
        self._builders = {spec.BLOB_DATA: PackBuilder(), spec.BLOB_TREE: PackBuilder()}
        self._writes: deque[Future[tuple[str, list[BlobEntry]]]] = deque()
        self._written: list[tuple[str, list[BlobEntry]]] = []
        self._seen: dict[int, set[bytes]] = {t: set() for t in self._builders}
        self._reused: set[tuple[int, bytes]] = set()  # index hits this session relies on
        self._packs: set[str] = set()  # every pack this session wrote
        self._condemned = self._read_condemned()
        # Packs no index segment lists: an interrupted create's, or a lost segment's. Their
        # blobs are located from their trailers (repository.recover_locations), reused like
        # indexed ones (never those of condemned packs: _live_copy), and listed by this
        # session's segment, so the next open finds them indexed. A write-only key opens
        # the trailers of format 2 packs only: in a format 1 repository it does not even
        # list them.
        self._adopted = (sorted(self.repo.recover_locations().packs.items())
                         if self.repo.can_read or self.repo.version >= 2 else [])
        self.stats.packs_adopted = len(self._adopted)

    def add(self, blob_type: int, data: bytes | memoryview) -> bytes:
        """Store a blob unless the repository has it; return its id."""
        return self._add(blob_type, data, self.repo.blob_id(data, blob_type))

    def add_stream(self, blob_type: int,
                   chunks: Iterable[memoryview]) -> Iterator[tuple[bytes, int]]:
        """Store a stream's chunks in order; yield (id, length) of each.

        Each chunk is hashed in a worker thread (BLAKE3 releases the GIL) while the
        caller reads and chunks the next ones: hashing in the caller's thread kept
        one core waiting on the other for every large file.
        """
        pending: deque[tuple[memoryview, Future[bytes]]] = deque()
        for data in chunks:
            pending.append((data, self._hash.submit(self.repo.blob_id, data, blob_type)))
            if len(pending) > _HASH_AHEAD:
                data, fut = pending.popleft()
                yield self._add(blob_type, data, fut.result()), len(data)
        while pending:
            data, fut = pending.popleft()
            yield self._add(blob_type, data, fut.result()), len(data)

    def _add(self, blob_type: int, data: bytes | memoryview, blob_id: bytes) -> bytes:
        if self.known(blob_id, blob_type):  # by type: a chunk never stands in for a tree
            self.stats.blobs_dedup += 1
            return blob_id
        self._seen[blob_type].add(blob_id)
        self.stats.blobs_new += 1
        self.stats.bytes_new_raw += len(data)
        if self.dry_run:
            return blob_id
        if len(data) < _SMALL_BELOW:
            self._batch.append((blob_id, blob_type, data))
            self._batch_bytes += len(data)
            if self._batch_bytes >= _BATCH_BYTES or len(self._batch) >= _BATCH_BLOBS:
                self._submit_batch()
        else:
            self._submit([(blob_id, blob_type, data)])
        return blob_id

    def _submit_batch(self) -> None:
        if self._batch:
            batch, self._batch, self._batch_bytes = self._batch, [], 0
            self._submit(batch)

    def _submit(self, blobs: list[tuple[bytes, int, memoryview | bytes]]) -> None:
        """Compress in a worker thread; at most _MAX_QUEUED jobs wait, bounding memory."""
        fut = self._cpu.submit(_compress, self.codec, [data for _, _, data in blobs])
        self._queue.append(([(i, t, len(data)) for i, t, data in blobs], fut))
        while len(self._queue) > _MAX_QUEUED:
            self._drain_one()

    def known(self, blob_id: bytes, blob_type: int = spec.BLOB_DATA) -> bool:
        if blob_id in self._seen[blob_type]:
            return True
        if self._live_copy(blob_id, blob_type):
            self._reused.add((blob_type, blob_id))
            return True
        return False

    def _live_copy(self, blob_id: bytes, blob_type: int) -> bool:
        """Is the blob indexed in a pack no prune has condemned?"""
        if not self.repo.index.has(blob_id, blob_type):
            return False
        if not self._condemned:
            return True
        return any(loc.pack not in self._condemned
                   for loc in self.repo.index.locations(blob_id, blob_type))

    def _read_condemned(self) -> frozenset[str]:
        records = signed.read_condemnations(self.repo.store, self.repo.keys, self.repo.damage)
        return frozenset(p for r in records.records for p in r.packs)

    def exclude_packs(self, packs: set[str]) -> None:
        """Treat blobs only in ``packs`` as absent (prune, repacking them)."""
        self._condemned = self._condemned | packs

    def recheck_condemned(self) -> None:
        """Refuse to commit if a prune condemned what this session depends on meanwhile."""
        now = self._read_condemned()
        if now <= self._condemned:
            return
        self._condemned = self._condemned | now
        self.repo.load_index()  # a prune that repacked live blobs indexed their new packs
        lost = self._packs & now
        for blob_type, blob_id in self._reused:
            if not lost and not self._live_copy(blob_id, blob_type):
                lost = {blob_id.hex()}
        if lost:
            raise PruneConflict("a prune condemned data this backup relies on while it ran; "
                                "nothing was committed: run create again (it stores that "
                                "data anew)")

    def _drain_one(self) -> None:
        blobs, fut = self._queue.popleft()
        for (blob_id, blob_type, raw_len), (codec, payload) in zip(blobs, fut.result(),
                                                                   strict=True):
            self._pack(blob_id, blob_type, codec, payload, raw_len)

    def _pack(self, blob_id: bytes, blob_type: int, codec: int, payload: bytes,
              raw_len: int) -> None:
        builder = self._builders[blob_type]
        builder.add(blob_id, blob_type, codec, payload, raw_len)
        if builder.full():
            self._flush(blob_type)

    def _flush(self, blob_type: int) -> None:
        builder = self._builders[blob_type]
        if not len(builder):
            return
        self._builders[blob_type] = PackBuilder()
        self._writes.append(self._io.submit(self._write_pack, builder))
        while len(self._writes) > _MAX_WRITES * self._uploads:
            self._written.append(self._writes.popleft().result())
        if len(self._written) >= CHECKPOINT_PACKS:
            self._list_written()

    def _write_pack(self, builder: PackBuilder) -> tuple[str, list[BlobEntry]]:
        data, entries = builder.seal(*self.repo.new_pack_cipher())
        name = self.repo.put_object(spec.NS_DATA, data)
        with self._stats_lock:
            self.stats.bytes_stored += len(data)
            self.stats.packs += 1
        return name, entries

    def flush(self) -> None:
        """Write every pending blob and pack, then this session's index segment."""
        if self.dry_run:
            return
        self._submit_batch()
        while self._queue:
            self._drain_one()
        for t in self._builders:
            self._flush(t)
        while self._writes:
            self._written.append(self._writes.popleft().result())
        self._list_written()

    def _list_written(self) -> None:
        """Write an index segment for the packs written (all durable) and not listed yet,
        and for the packs adopted: at the end, and every CHECKPOINT_PACKS packs, so a
        create killed midway leaves most of its packs listed for the next one to reuse,
        whatever its key (a write-only key cannot recover them from format 1 trailers)."""
        adopted = [(p, e) for p, e in self._adopted if p not in self._condemned]
        self._adopted = []
        if self._written or adopted:
            self._packs.update(pack for pack, _ in self._written)
            name = self.repo.write_index_segment(adopted + self._written)
            size = self.repo.store.size(spec.NS_INDEX, name)
            with self._stats_lock:  # pack writes may be running
                self.stats.bytes_stored += size
            for pack, entries in self._written:
                self.repo.index.add_pack(pack, entries)
            self._written = []

    def commit(self, body: SnapshotBody, time_ns: int) -> Snapshot:
        """Packs, then index, then the snapshot: the write order of repofs-format(5)."""
        if self.dry_run:
            raise RuntimeError("a dry-run session commits nothing")
        self.flush()
        self.recheck_condemned()
        return self.repo.snapshots.commit(body, time_ns)

    def close(self) -> None:
        for _, fut in self._queue:
            fut.cancel()
        self._cpu.shutdown(wait=True, cancel_futures=True)
        self._io.shutdown(wait=True, cancel_futures=True)
        self._hash.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> WriteSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
