"""A repository's snapshots as one read-only tree of inodes: the model behind mount.

No FUSE here: ``repofs.fuse`` turns kernel requests into calls of SnapshotFS,
and tests call it directly. Inodes are allocated when the kernel first meets
a name (lookup or readdir) and dropped when it forgets them, so memory follows
what the kernel holds, not the size of the repository. A directory's tree is
loaded on the first lookup or listing inside it: the first listing of a
snapshot's root costs one tree, whatever the size of the snapshot.

Methods may be called from several threads at once. The inode table is
guarded by a lock that is never held while the repository is read. Errors
are OSError with the errno the caller should see; errors of the repository
(IntegrityError: corrupt or tampered) pass through unchanged.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from repofs import spec
from repofs.model import DIR, FILE, SYMLINK, Entry, Snapshot
from repofs.vfs.history import HistoryView, find
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
from repofs.vfs.reader import CACHE_BYTES, ChunkCache, OpenFile, ReadPlan

ROOT = 1
REFRESH_SECONDS = 3.0
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


class _Node:
    __slots__ = ("attr", "ino", "key", "lookups", "spec")

    def __init__(self, ino: int, spec: Spec, key: tuple[object, ...], attr: Attr) -> None:
        self.ino, self.spec, self.key, self.attr, self.lookups = ino, spec, key, attr, 0


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
        self._history = HistoryView(source, self.view)
        self._refresh_seconds, self._clock = refresh_seconds, clock
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._nodes: dict[int, _Node] = {}
        self._by_key: dict[tuple[object, ...], _Node] = {}
        self._inos = itertools.count(ROOT + 1)
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
        node = _Node(ROOT, root, ("root",), self._attr(root))
        node.lookups = 1  # the kernel never forgets the root
        self._nodes[ROOT] = node

    # -- the snapshot list ------------------------------------------------------------
    def _list(self, old: Layout) -> Layout:
        snaps = self._source.snapshots.list()
        if {s.id for s in snaps if s.body is not None} == set(old.by_id):
            return old
        self._source.load_index()  # blobs of new snapshots are in segments not read yet
        return Layout(contexts(snaps, old.by_id), old.generation + 1)

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
                with self._lock:
                    self._nodes[ROOT].attr = self._attr(self._nodes[ROOT].spec)
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

    def _node(self, ino: int) -> _Node:
        node = self._nodes.get(ino)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, f"inode {ino} is not known")
        return node

    def _obtain(self, parent: int, name: bytes, s: Spec, attr: Attr | None) -> _Node:
        """The node for ``name`` in ``parent``; the caller holds the lock."""
        key = s.key(parent, name) if isinstance(s, Stored) else (parent, name)
        node = self._by_key.get(key)
        if node is None:
            node = _Node(next(self._inos), s, key, attr or self._attr(s))
            self._nodes[node.ino] = node
            self._by_key[key] = node
        elif not isinstance(s, Stored):  # the layout may have changed since
            node.spec, node.attr = s, attr or self._attr(s)
        return node

    def _drop(self, node: _Node) -> None:
        if node.lookups <= 0 and node.ino != ROOT:
            self._nodes.pop(node.ino, None)
            if self._by_key.get(node.key) is node:
                del self._by_key[node.key]

    def forget(self, items: Iterable[tuple[int, int]]) -> None:
        with self._lock:
            for ino, n in items:
                node = self._nodes.get(ino)
                if node is not None and ino != ROOT:
                    node.lookups -= n
                    self._drop(node)

    def getattr(self, ino: int) -> Attr:
        with self._lock:
            return self._node(ino).attr

    # -- directories ------------------------------------------------------------------
    def _tree(self, s: Spec) -> list[Entry]:
        if not isinstance(s, Stored) or s.entry.type != DIR or s.entry.subtree is None:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")
        return self._source.load_tree(s.entry.subtree)

    def lookup(self, parent: int, name: bytes) -> tuple[int, Attr]:
        """Find ``name`` in directory ``parent``; the kernel now holds one more reference."""
        with self._lock:
            pspec = self._node(parent).spec
        child: Spec | None
        attr = None
        if isinstance(pspec, Stored):
            e = find(self._tree(pspec), name)
            child = Stored(pspec.ctx, e) if e is not None else None
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
        with self._lock:
            node = self._obtain(parent, name, child, attr)
            node.lookups += 1
            return node.ino, node.attr

    def opendir(self, ino: int) -> int:
        with self._lock:
            s = self._node(ino).spec
        if isinstance(s, Stored):
            h = _DirHandle(ino, [], s, self._tree(s))
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
            with self._lock:
                node = self._obtain(h.ino, name, s, attr)
                if not reply(name, node.ino, node.attr, i + 1):
                    self._drop(node)
                    return
                node.lookups += 1

    def releasedir(self, fh: int) -> None:
        with self._lock:
            self._dirs.pop(fh, None)

    # -- symlinks and xattrs ----------------------------------------------------------
    def readlink(self, ino: int) -> bytes:
        with self._lock:
            s = self._node(ino).spec
        if isinstance(s, Link):
            return s.target
        if isinstance(s, Stored) and s.entry.type == SYMLINK and s.entry.target is not None:
            return s.entry.target
        raise OSError(errno.EINVAL, "not a symlink")

    def _xattrs(self, ino: int) -> tuple[tuple[bytes, bytes], ...]:
        """Stored xattrs; ACLs are hidden when owners or modes are overridden, so the
        permissions the kernel checks are the ones shown."""
        with self._lock:
            s = self._node(ino).spec
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
    def _path(self, ino: int) -> str:
        """Where an inode was found, for log lines (best effort: from the keys)."""
        names: list[bytes] = []
        node = self._nodes.get(ino)
        while node is not None and len(node.key) == 2 and isinstance(node.key[1], bytes):
            names.append(node.key[1])
            parent = node.key[0]
            node = self._nodes.get(parent) if isinstance(parent, int) else None
        if node is not None and node.ino != ROOT and isinstance(node.spec, Stored):
            names.append(node.spec.entry.name)  # a hardlink: its first name
        return os.fsdecode(b"/".join(reversed(names)))

    def open(self, ino: int, flags: int) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise OSError(errno.EROFS, "read-only file system")
        with self._lock:
            node = self._node(ino)
            s = node.spec
            if not isinstance(s, Stored) or s.entry.type != FILE:
                raise IsADirectoryError(errno.EISDIR, "not a regular file")
            fh = next(self._handles)
            self._files[fh] = OpenFile(s.entry, f"{self._path(ino)} (snapshot {s.ctx.id})")
        return fh

    def release(self, fh: int) -> None:
        with self._lock:
            self._files.pop(fh, None)

    def plan_read(self, fh: int, offset: int, size: int) -> ReadPlan:
        """Which chunks a read needs; fetching them is the caller's (``read`` does it)."""
        return self._files[fh].plan(offset, size)

    def read(self, fh: int, offset: int, size: int) -> bytes | memoryview:
        """Read with blocking fetches, one chunk after the other."""
        plan = self.plan_read(fh, offset, size)
        return plan.assemble({cid: self.cache.get(cid, n) for cid, n in plan.needed()})

    def statfs(self) -> FsStats:
        with self._lock:
            return FsStats(inodes=len(self._nodes))


__all__ = ["LONG_TTL", "ROOT", "FsStats", "SnapshotFS", "Source"]
