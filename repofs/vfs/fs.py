"""A repository's snapshots as one read-only tree of inodes: the model behind mount.

No FUSE here: ``repofs.fuse`` turns kernel requests into calls of SnapshotFS,
and tests call it directly. Inodes are allocated when the kernel first meets
a name (lookup or readdir) and dropped when it forgets them, so memory follows
what the kernel holds, not the size of the repository. A directory's tree is
loaded on the first lookup or listing inside it: the first listing of a
snapshot's root costs one tree, whatever the size of the snapshot.

Methods may be called from several threads at once; the inode table has its
own lock (``inodes``), never held while the repository is read. Errors are
OSError with the errno the caller should see; errors of the repository
(IntegrityError: corrupt or tampered) pass through unchanged.

Lookups and listings take ``block=False`` from a caller that must not wait
for the repository (the FUSE adapter's event loop): the answer comes from
memory when the directory's tree is loaded, else WouldBlock says to ask
again from a thread that may wait. Both ways run the same code, so the
answers are the same. Reads are fetched ahead of readers (``ahead``).
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from repofs import spec
from repofs.model import DIR, FILE, SYMLINK, Entry, Snapshot
from repofs.snapshots import latest
from repofs.vfs.ahead import ReadAhead
from repofs.vfs.decoder import Decoders
from repofs.vfs.history import HistoryView, find
from repofs.vfs.inodes import ROOT, InodeTable
from repofs.vfs.layout import Layout, contexts
from repofs.vfs.nodes import (
    LONG_TTL,
    Attr,
    History,
    Link,
    Presentation,
    Spec,
    Stored,
    Virtual,
    layout_attr,
    stored_attr,
)
from repofs.vfs.reader import CACHE_BYTES, Chunk, ChunkCache, OpenFile, ReadPlan

REFRESH_SECONDS = 3.0
PUSH_LIMIT = 1 << 20  # files up to this size are handed to the page cache when opened
_PUSHED = 1 << 18  # inodes remembered as handed on (forgotten all at once beyond)
TREES = 512  # loaded trees kept, so lookups and listings in them need no repository read
_ACL_XATTRS = (b"system.posix_acl_access", b"system.posix_acl_default")
log = logging.getLogger(__name__)


class _SnapshotList(Protocol):
    def list(self) -> list[Snapshot]: ...


class Source(Protocol):
    """What a mount needs of a repository (``Repository`` is one)."""

    @property
    def snapshots(self) -> _SnapshotList: ...

    def load_tree(self, tree_id: bytes) -> list[Entry]: ...

    def read_blob(self, blob_id: bytes, blob_type: int) -> bytes: ...

    def load_index(self) -> None: ...

    @property
    def fork_safe(self) -> bool:
        """Whether a forked copy may read blobs too (no connection to share)."""
        ...


@dataclass
class _DirHandle:
    """An open directory: its listing is fixed while open, so offsets stay valid."""

    ino: int
    items: list[tuple[bytes, Spec, Attr | None]]
    stored: Stored | None = None  # a stored directory: its entries, made into specs lazily
    entries: list[Entry] | None = None

    def __len__(self) -> int:
        return len(self.entries) if self.entries is not None else len(self.items)

    def item(self, i: int) -> tuple[bytes, Spec, Attr | None]:
        if self.entries is not None and self.stored is not None:
            e = self.entries[i]
            return e.name, Stored(self.stored.ctx, e), None
        return self.items[i]


class WouldBlock(Exception):
    """The answer needs a repository read, and the caller said it must not wait."""


class _Label:
    """An open file's name for log lines, worked out only when one is written: walking
    up the inode table at every open would cost more than the open."""

    __slots__ = ("_ino", "_path", "_snapshot")

    def __init__(self, path: Callable[[int], str], ino: int, snapshot: str) -> None:
        self._path, self._ino, self._snapshot = path, ino, snapshot

    def __str__(self) -> str:
        return f"{self._path(self._ino)} (snapshot {self._snapshot})"


@dataclass(frozen=True)
class FsStats:
    inodes: int
    name_max: int = 255


class SnapshotFS:
    """Every readable snapshot (or just ``snapshot``) as an immutable tree of inodes."""

    def __init__(self, source: Source, view: Presentation | None = None,
                 snapshot: Snapshot | None = None, cache_bytes: int = CACHE_BYTES,
                 refresh_seconds: float = REFRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self.view = view or Presentation()
        self.cache = ChunkCache(lambda cid: source.read_blob(cid, spec.BLOB_DATA), cache_bytes)
        self._trees: OrderedDict[bytes, list[Entry]] = OrderedDict()
        self._trees_lock = threading.Lock()
        self.ahead = ReadAhead(self.cache, self.load_tree)
        self._decoders: Decoders | None = None
        self._pushed: set[int] = set()  # inodes whose content content_now gave out
        self._open_inos: dict[int, int] = {}  # inode -> its open handles
        self._history = HistoryView(source, self.view)
        self._refresh_seconds, self._clock = refresh_seconds, clock
        self._lock = threading.Lock()  # guards the open handles
        self._refreshing = threading.Lock()
        self._handles = itertools.count(1)
        self._dirs: dict[int, _DirHandle] = {}
        self._files: dict[int, OpenFile] = {}
        self._layout = Layout([])
        self._listed = clock()
        if snapshot is not None:
            ctx = contexts([snapshot], {})
            if not ctx:
                raise PermissionError(errno.EACCES, "this key cannot read snapshot contents")
            root: Spec = Stored(ctx[0], ctx[0].root())
            self._fixed = True
        else:
            root, self._fixed = Virtual(()), False
            self._layout = self._list(self._layout)
        self._inodes = InodeTable(root, self._attr(root), self._attr)

    # -- the snapshot list ------------------------------------------------------------
    def _list(self, old: Layout) -> Layout:
        snaps = self._source.snapshots.list()
        newest = latest([s for s in snaps if s.body is not None])  # may change with the clock
        newest_id = newest.id if newest is not None else None
        if {s.id for s in snaps if s.body is not None} == set(old.by_id) and \
                newest_id == old.latest:
            return old
        self._source.load_index()  # blobs of new snapshots are in segments not read yet
        return Layout(contexts(snaps, old.by_id), old.generation + 1, newest_id)

    def refresh(self, force: bool = False) -> Layout:
        """The current layout, re-listing snapshots at most every few seconds."""
        if self._fixed or (not force and self._clock() - self._listed < self._refresh_seconds):
            return self._layout
        if not self._refreshing.acquire(blocking=False):
            return self._layout  # another thread is listing: use what we have
        try:
            layout = self._list(self._layout)
            if layout is not self._layout:
                self._layout = layout
                self._inodes.set_attr(ROOT, self._attr(self._inodes.spec(ROOT)))
        except Exception:
            log.exception("listing snapshots failed; showing the snapshots known before")
        finally:
            self._listed = self._clock()
            self._refreshing.release()
        return self._layout

    # -- inodes -----------------------------------------------------------------------
    def _attr(self, s: Spec) -> Attr:
        if isinstance(s, Stored):
            return stored_attr(s, self.view)
        if isinstance(s, Link):
            return layout_attr(self.view, self._layout.time_ns, s.target)
        if isinstance(s, History):
            return self._history.attr(self._layout, s)
        return layout_attr(self.view, self._layout.time_ns)

    def forget(self, items: Iterable[tuple[int, int]]) -> None:
        self._inodes.forget(items)

    def getattr(self, ino: int) -> Attr:
        return self._inodes.attr(ino)

    # -- directories ------------------------------------------------------------------
    def load_tree(self, tree_id: bytes, block: bool = True) -> list[Entry]:
        """A tree, from memory if loaded lately (else WouldBlock unless ``block``)."""
        with self._trees_lock:
            t = self._trees.get(tree_id)
            if t is not None:
                self._trees.move_to_end(tree_id)
                return t
        if not block:
            raise WouldBlock
        t = self._source.load_tree(tree_id)
        with self._trees_lock:
            self._trees[tree_id] = t
            while len(self._trees) > TREES:
                self._trees.popitem(last=False)
        return t

    def _tree(self, s: Spec, block: bool = True) -> list[Entry]:
        if not isinstance(s, Stored) or s.entry.type != DIR or s.entry.subtree is None:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")
        return self.load_tree(s.entry.subtree, block)

    def lookup(self, parent: int, name: bytes, block: bool = True) -> tuple[int, Attr]:
        """Find ``name`` in directory ``parent``; the kernel now holds one more reference.
        Only names in stored directories are found without blocking (the layout and
        history may list snapshots or load many trees)."""
        pspec = self._inodes.spec(parent)
        child: Spec | None
        attr = None
        if isinstance(pspec, Stored):
            e = find(self._tree(pspec, block), name)
            child = Stored(pspec.ctx, e) if e is not None else None
        elif not block:
            raise WouldBlock
        elif isinstance(pspec, Virtual):
            child = self.refresh().child(pspec.path, name)
        elif isinstance(pspec, History):
            layout = self.refresh()
            child = self._history.child(layout, pspec, name)
            if isinstance(child, History):
                attr = self._history.attr(layout, child)
        else:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")
        if child is None:
            raise FileNotFoundError(errno.ENOENT, "no such entry")
        return self._inodes.take(parent, name, child, attr)

    def opendir(self, ino: int, block: bool = True) -> int:
        s = self._inodes.spec(ino)
        if isinstance(s, Stored):
            h = _DirHandle(ino, [], s, self._tree(s, block))
        elif not block:
            raise WouldBlock
        elif isinstance(s, Virtual):
            h = _DirHandle(ino, [(n, c, None) for n, c in self.refresh().listing(s.path)])
        elif isinstance(s, History):
            layout = self.refresh()
            h = _DirHandle(ino, [(n, c, self._history.attr(layout, c) if isinstance(c, History)
                                  else None) for n, c in self._history.listing(layout, s)])
        else:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")
        with self._lock:
            fh = next(self._handles)
            self._dirs[fh] = h
        return fh

    def readdir(self, fh: int, start: int, reply: Callable[[bytes, int, Attr, int], bool]) -> None:
        """Call ``reply(name, inode, attr, next offset)`` from entry ``start`` on, until it
        returns False (the kernel's buffer is full); each accepted entry is one reference."""
        with self._lock:
            h = self._dirs[fh]
        for i in range(start, len(h)):
            name, s, attr = h.item(i)

            def accept(ino: int, a: Attr, name: bytes = name, i: int = i) -> bool:
                return reply(name, ino, a, i + 1)

            if not self._inodes.offer(h.ino, name, s, attr, accept):
                return

    def releasedir(self, fh: int) -> None:
        with self._lock:
            self._dirs.pop(fh, None)

    # -- symlinks and xattrs ----------------------------------------------------------
    def readlink(self, ino: int) -> bytes:
        s = self._inodes.spec(ino)
        if isinstance(s, Link):
            return s.target
        if isinstance(s, Stored) and s.entry.type == SYMLINK and s.entry.target is not None:
            return s.entry.target
        raise OSError(errno.EINVAL, "not a symlink")

    def _xattrs(self, ino: int) -> tuple[tuple[bytes, bytes], ...]:
        """Stored xattrs; ACLs are hidden when owners or modes are overridden, so the
        permissions the kernel checks are the ones shown."""
        s = self._inodes.spec(ino)
        if not isinstance(s, Stored):
            return ()
        v = self.view
        if v.uid is None and v.gid is None and v.umask == 0:
            return s.entry.xattrs
        return tuple(x for x in s.entry.xattrs if x[0] not in _ACL_XATTRS)

    def listxattr(self, ino: int) -> list[bytes]:
        return [k for k, _ in self._xattrs(ino)]

    def getxattr(self, ino: int, name: bytes) -> bytes:
        for k, value in self._xattrs(ino):
            if k == name:
                return value
        raise OSError(errno.ENODATA, "no such attribute")

    # -- files ------------------------------------------------------------------------
    def open(self, ino: int, flags: int) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC):
            raise OSError(errno.EROFS, "read-only file system")
        s, found = self._inodes.spec_and_parent(ino)
        if not isinstance(s, Stored) or s.entry.type != FILE:
            raise IsADirectoryError(errno.EISDIR, "not a regular file")
        f = OpenFile(s.entry, _Label(self._inodes.path, ino, s.ctx.id), ino)
        with self._lock:
            fh = next(self._handles)
            self._files[fh] = f
            opened = self._open_inos.get(ino, 0)
            self._open_inos[ino] = opened + 1
            f.alone = opened == 0
        if found is not None and isinstance(found[0], Stored) and found[0].entry.subtree:
            # tar, cp -a and rsync open the files that follow next
            self.ahead.opened((found[0].entry.subtree, found[1]), lambda: self.place(ino))
        return fh

    def content_now(self, fh: int) -> Chunk | None:
        """The content of a file just opened, for the open handler itself to hand to the
        page cache: if it is small, cached, not handed on already, and no other handle of
        it was open. Only then may a handler do it: the kernel makes the hand-over wait
        for reads of the same pages still to be answered, and with no other handle open
        none can be pending (a file's RELEASE comes after its last READ)."""
        with self._lock:
            f = self._files[fh]
        if not f.alone or f.ino in self._pushed or not 0 < f.entry.size <= PUSH_LIMIT:
            return None
        data = self._content(f.entry, f.label)
        if data is not None:
            with self._lock:
                if len(self._pushed) >= _PUSHED:
                    self._pushed.clear()
                self._pushed.add(f.ino)
        return data

    def place(self, ino: int) -> list[tuple[bytes, bytes]]:
        """Where a stored entry is: (tree id of its directory, its name there), then the same
        for that directory, up to the snapshot's root; empty for a hardlinked file, which
        has no single place. Never reads the repository."""
        out = []
        for spec_, name in self._inodes.ancestry(ino):
            if not isinstance(spec_, Stored) or spec_.entry.subtree is None:
                break
            out.append((spec_.entry.subtree, name))
        return out

    def release(self, fh: int) -> None:
        with self._lock:
            f = self._files.pop(fh, None)
            if f is not None:
                left = self._open_inos.get(f.ino, 1) - 1
                if left > 0:
                    self._open_inos[f.ino] = left
                else:
                    self._open_inos.pop(f.ino, None)

    def plan_read(self, fh: int, offset: int, size: int) -> ReadPlan:
        """Which chunks a read needs; fetching them is the caller's (``read`` does it).
        The chunks a sequential reader will want next are fetched ahead from here."""
        plan = self._files[fh].plan(offset, size)
        if plan.ahead:
            self.ahead.chunks(plan.ahead)
        return plan

    def done_reading(self, plan: ReadPlan) -> None:
        """The read is answered: chunks a sequential reader has passed go first from the
        cache, before chunks fetched ahead for other files."""
        if plan.passed:
            self.cache.demote(plan.passed)

    def cached_content(self, fh: int, limit: int = 1 << 20) -> bytes | memoryview | None:
        """The whole file if it is at most ``limit`` bytes and its chunks are all cached
        (never blocks)."""
        with self._lock:
            f = self._files[fh]
        if not 0 < f.entry.size <= limit:
            return None
        return self._content(f.entry, f.label)

    def _content(self, entry: Entry, label: object) -> Chunk | None:
        parts = entry.parts
        """The whole content from cached chunks, or None: not all cached, or a chunk is
        not as long as the tree says (then the read that needs it answers EIO)."""
        if len(parts) == 1 and parts[0].chunk_id is not None and parts[0].size == entry.size:
            data = self.cache.peek(parts[0].chunk_id)  # most small files: one chunk, as is
            return data if data is not None and len(data) == entry.size else None
        f = OpenFile(entry, label)
        pieces, _ = f.pieces(0, entry.size)
        chunks = {}
        for p in pieces:
            if p.chunk_id is not None:
                data = self.cache.peek(p.chunk_id)
                if data is None or len(data) != p.size:
                    return None
                chunks[p.chunk_id] = data
        return ReadPlan(label, pieces).assemble(chunks)

    def read(self, fh: int, offset: int, size: int) -> bytes | memoryview:
        """Read with blocking fetches, one chunk after the other."""
        plan = self.plan_read(fh, offset, size)
        data = plan.assemble({cid: self.cache.get(cid, n) for cid, n in plan.needed()})
        self.done_reading(plan)
        return data

    def start_decoders(self, processes: int) -> list[int]:
        """Decode chunks fetched ahead in ``processes`` forked children (``decoder``);
        their pids. Call before starting threads or opening a FUSE device: a child gets
        a copy of everything. Nothing is forked where the source cannot be shared."""
        if processes <= 0 or self._decoders is not None \
                or not getattr(self._source, "fork_safe", False):  # unsaid: not safe
            return []
        source = self._source
        try:
            self._decoders = Decoders(lambda cid: source.read_blob(cid, spec.BLOB_DATA),
                                      source.load_index, processes)
        except OSError as e:  # no fork (out of memory, a process limit): decode here
            log.warning("cannot start the decoding processes (%s); decoding in threads", e)
            return []
        self.cache.fetch_many = self._decoders.decode
        return self._decoders.pids()

    def close(self) -> None:
        """Stop fetching ahead (the mount is going away), and the decoders."""
        self.ahead.close()
        if self._decoders is not None:
            self.cache.fetch_many = None
            self._decoders.close()

    def statfs(self) -> FsStats:
        return FsStats(inodes=len(self._inodes))


__all__ = ["LONG_TTL", "ROOT", "FsStats", "SnapshotFS", "Source", "WouldBlock"]
