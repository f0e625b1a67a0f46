"""``restore`` and ``dump``: get trees and files back out, exactly and safely.

Safety (threat model A4): every file system call goes through a directory fd
opened with ``O_NOFOLLOW`` from the target down, every new name is created
exclusively (``O_EXCL``, mkdir, mknod, symlink fail on an existing name), so
restore never writes outside its target, never follows a link, and never
overwrites what is already there. Hardlinks point only at files this run
restored. Every chunk is verified before its bytes are written; a file whose
data fails verification is removed and the restore stops with the error.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from repofs import fsmeta, spec
from repofs.errors import IntegrityError, RepofsError, UnsafePath
from repofs.model import BLOCK, CHAR, DIR, FIFO, FILE, SYMLINK, Entry, Part
from repofs.patterns import PatternSet
from repofs.repository import Repository

_PREFETCH_MIN = 64 * 1024  # smaller chunks are read by the writing thread itself
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class RestoreOptions:
    includes: PatternSet = field(default_factory=lambda: PatternSet([]))
    excludes: PatternSet = field(default_factory=lambda: PatternSet([]))
    numeric_ids: bool = False


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    others: int = 0
    bytes_written: int = 0
    warnings: list[str] = field(default_factory=list)


class _Prefetch:
    """Reads, decrypts and verifies chunks in worker threads ahead of the writer.

    AES-GCM and zstd release the GIL, so while the main thread writes one file
    the next files' chunks are being fetched. Chunks are queued in the order
    the restore will ask for them; at most ``window`` bytes are in flight.
    Small chunks are read by the writer itself: handing them to a thread costs
    more than reading them.
    """

    def __init__(self, repo: Repository, window: int = 64 * 1024 * 1024) -> None:
        self.repo = repo
        self.window = window
        self.inflight = 0
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="repofs-restore")
        self._queue: deque[tuple[int, bytes, int, Future[bytes]]] = deque()
        self._todo: deque[tuple[int, bytes, int]] = deque()
        self._planned: Counter[int] = Counter()  # file -> its chunks queued or to do

    def plan(self, files: list[Entry]) -> None:
        """Queue the chunks of these files (in restore order) behind what is queued."""
        for e in files:
            for p in e.parts:
                if p.chunk_id is not None and p.size >= _PREFETCH_MIN:
                    self._todo.append((id(e), p.chunk_id, p.size))
                    self._planned[id(e)] += 1
        self._fill()

    def _fill(self) -> None:
        while self._todo and self.inflight < self.window:
            key, chunk_id, size = self._todo.popleft()
            fut = self._pool.submit(self.repo.read_blob, chunk_id, spec.BLOB_DATA)
            self._queue.append((key, chunk_id, size, fut))
            self.inflight += size

    def _take(self) -> tuple[int, bytes, int, Future[bytes]]:
        item = self._queue.popleft()
        self.inflight -= item[2]
        self._planned[item[0]] -= 1
        return item

    def chunk(self, e: Entry, chunk_id: bytes, size: int) -> bytes:
        """The next chunk of ``e``; chunks queued for files that were skipped are dropped."""
        key = id(e)
        if self._planned[key] > 0:
            while True:
                if not self._queue:
                    self._fill()
                if not self._queue or self._queue[0][0] == key:
                    break
                self._take()[3].cancel()  # queued for a file before e that was skipped
            if self._queue and self._queue[0][1] == chunk_id:
                fut = self._take()[3]
                self._fill()
                return fut.result()
        return self.repo.read_blob(chunk_id, spec.BLOB_DATA)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class _Dir:
    """A directory of the restore, created on first use (so --include makes no empty dirs)."""

    def __init__(self, restorer: Restorer, parent: _Dir | None, name: bytes,
                 entry: Entry | None, fd: int | None = None) -> None:
        self.r, self.parent, self.name, self.entry = restorer, parent, name, entry
        self._fd = fd
        self.created = False

    def parts(self) -> list[bytes]:
        if self.parent is None:
            return []
        return [*self.parent.parts(), self.name]

    def fd(self) -> int:
        if self._fd is None:
            assert self.parent is not None
            pfd = self.parent.fd()
            try:
                os.mkdir(self.name, 0o700, dir_fd=pfd)
                self.created = True
            except FileExistsError:
                st = os.stat(self.name, dir_fd=pfd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise UnsafePath(f"{self.r.shown(self.parts())} exists and is not a "
                                     "directory; not restoring into it") from None
            try:
                self._fd = os.open(self.name, _DIR_FLAGS, dir_fd=pfd)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise UnsafePath(f"{self.r.shown(self.parts())} is a symlink; "
                                     "not restoring through it") from None
                raise
        return self._fd

    @property
    def opened(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Restorer:
    """Restore a snapshot (or a part of it) under a target directory."""

    def __init__(self, repo: Repository, target: Path, options: RestoreOptions,
                 progress: Callable[[RestoreStats], None] | None = None) -> None:
        self.repo = repo
        self.target = target
        self.opts = options
        self.stats = RestoreStats()
        self.progress = progress
        self._as_root = os.geteuid() == 0
        # hardlink group -> (where its first member was restored, that member's content)
        self._links: dict[int, tuple[list[bytes], tuple[Part, ...]]] = {}
        self._prefetch = _Prefetch(repo)

    def shown(self, parts: list[bytes]) -> str:
        path = os.path.join(os.fsencode(self.target), *parts)
        return path.decode("utf-8", "backslashreplace")

    def warn(self, parts: list[bytes], message: str) -> None:
        self.stats.warnings.append(f"{self.shown(parts)}: {message}")

    def run(self, entry: Entry, path: bytes) -> RestoreStats:
        """Restore ``entry`` (found at ``path`` in the snapshot): a directory's contents go
        straight into the target, a single file goes into the target under its name."""
        self.target.mkdir(parents=True, exist_ok=True)
        root_fd = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        root = _Dir(self, None, b"", None, root_fd)
        try:
            if entry.type == DIR:
                self._restore_children(root, entry, path, 0)
            elif self._selected(path):
                self._prefetch.plan([entry])
                self._restore_entry(root, entry, path)
        finally:
            root.close()
            self._prefetch.close()
        return self.stats

    # -- traversal -------------------------------------------------------------------
    def _selected(self, path: bytes) -> bool:
        if self.opts.excludes and self.opts.excludes.matches(path):
            return False
        return not self.opts.includes or self.opts.includes.matches_or_under(path)

    def _restore_children(self, d: _Dir, entry: Entry, path: bytes, depth: int) -> None:
        assert entry.subtree is not None
        if depth > spec.MAX_TREE_DEPTH:
            raise IntegrityError("tree", entry.subtree.hex(), "nested too deep")
        children = self.repo.load_tree(entry.subtree)
        self._prefetch.plan([
            c for c in children
            if c.type == FILE and self._selected(path.rstrip(b"/") + b"/" + c.name)
            and (c.hardlink is None or c.hardlink not in self._links)
        ])
        # Files first, then subdirectories: the order the prefetcher queued them in.
        for child in sorted(children, key=lambda c: c.type == DIR):
            child_path = path.rstrip(b"/") + b"/" + child.name
            if self.opts.excludes and self.opts.excludes.matches(child_path):
                continue
            if child.type != DIR:
                if self._selected(child_path):
                    self._restore_entry(d, child, child_path)
                continue
            sub = _Dir(self, d, child.name, child)
            try:
                if self._selected(child_path):
                    sub.fd()
                self._restore_children(sub, child, child_path, depth + 1)
                if sub.created:  # a directory that was already there keeps its metadata
                    self._finish_dir(d, sub, child)
            except UnsafePath as e:
                self.stats.warnings.append(str(e))
            finally:
                sub.close()

    def _finish_dir(self, parent: _Dir, sub: _Dir, entry: Entry) -> None:
        self.stats.dirs += 1
        fd = sub.fd()
        self._apply(parent, entry, fd, sub.parts())

    def _restore_entry(self, d: _Dir, e: Entry, path: bytes) -> None:
        try:
            dfd = d.fd()
        except UnsafePath as err:
            self.stats.warnings.append(str(err))
            return
        parts = [*d.parts(), e.name]
        try:
            if e.type == FILE:
                self._restore_file(d, dfd, e, parts)
                return
            if e.type == SYMLINK:
                assert e.target is not None
                os.symlink(e.target, e.name, dir_fd=dfd)
            elif e.type in (BLOCK, CHAR):
                kind = stat.S_IFBLK if e.type == BLOCK else stat.S_IFCHR
                os.mknod(e.name, kind | 0o600, e.rdev, dir_fd=dfd)
            elif e.type == FIFO:
                os.mkfifo(e.name, 0o600, dir_fd=dfd)
            self.stats.others += 1
            self._apply(d, e, None, parts)
        except FileExistsError:
            self.warn(parts, "exists, not overwritten")
        except OSError as err:
            self.warn(parts, f"not restored: {err.strerror}")

    def _restore_file(self, d: _Dir, dfd: int, e: Entry, parts: list[bytes]) -> None:
        first = self._links.get(e.hardlink) if e.hardlink is not None else None
        if first is not None:
            if first[1] == e.parts:
                self._link(dfd, e, first[0])
                return
            # a crafted tree: members of one group with different contents. Restore what
            # this entry says, as its own file, so restore and dump agree.
            self.warn(parts, "hardlink group members differ in content; restored unlinked")
        fd = os.open(e.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            try:
                offset = end = 0
                for p in e.parts:
                    if p.chunk_id is not None:
                        data = self._prefetch.chunk(e, p.chunk_id, p.size)
                        if len(data) != p.size:
                            raise IntegrityError("chunk", p.chunk_id.hex(),
                                                 "size differs from the tree")
                        _pwrite_all(fd, data, offset)
                        end = offset + p.size
                        self.stats.bytes_written += len(data)
                        if self.progress:
                            self.progress(self.stats)
                    offset += p.size
                if end != e.size:  # a hole at the end (or an empty file: a no-op)
                    os.ftruncate(fd, e.size)
            except (IntegrityError, RepofsError, OSError):
                os.unlink(e.name, dir_fd=dfd)  # ours (O_EXCL): never leave partial data
                raise
            self.stats.files += 1
            self._apply(d, e, fd, parts)
        finally:
            os.close(fd)
        if e.hardlink is not None and first is None:
            self._links[e.hardlink] = (parts, e.parts)

    def _link(self, dfd: int, e: Entry, src: list[bytes]) -> None:
        """Hardlink to a file restored earlier in this run, reached from the target down."""
        fd = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for comp in src[:-1]:
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nfd
            os.link(src[-1], e.name, src_dir_fd=fd, dst_dir_fd=dfd, follow_symlinks=False)
            self.stats.files += 1
        finally:
            os.close(fd)

    # -- metadata ----------------------------------------------------------------------
    def _ids(self, e: Entry) -> tuple[int, int]:
        """Stored ids, or the local ids of the stored names (as tar and rsync do)."""
        if self.opts.numeric_ids:
            return e.uid, e.gid
        uid = fsmeta.uid_of(e.user) if e.user is not None else None
        gid = fsmeta.gid_of(e.group) if e.group is not None else None
        return (e.uid if uid is None else uid), (e.gid if gid is None else gid)

    def _apply(self, d: _Dir, e: Entry, fd: int | None, parts: list[bytes]) -> None:
        """Owner, xattrs (ACLs), mode, then times: the order that keeps each one."""
        dfd = d.fd()
        if self._as_root:
            uid, gid = self._ids(e)
            try:
                if fd is not None:
                    os.fchown(fd, uid, gid)
                else:
                    fsmeta.apply_owner(dfd, e.name, uid, gid)
            except OSError as err:
                self.warn(parts, f"owner not set: {err.strerror}")
        for w in fsmeta.apply_xattrs(dfd, e.name, fd, e.xattrs):
            self.warn(parts, w)
        if e.type != SYMLINK:
            fsmeta.apply_mode(dfd, e.name, e.mode, fd)
        if fd is not None:
            os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
        else:
            fsmeta.apply_times(dfd, e.name, e.mtime_ns)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def dump(repo: Repository, entry: Entry, out: BinaryIO) -> int:
    """Write one file's content to ``out``; each chunk is verified before it is written."""
    if entry.type != FILE:
        raise RepofsError(f"{os.fsdecode(entry.name)} is not a regular file")
    written = 0
    zeros = bytes(1024 * 1024)
    for _offset, data, size in repo.iter_chunks(entry):
        if data is not None:
            out.write(data)
        else:
            for i in range(0, size, len(zeros)):
                out.write(zeros[: min(len(zeros), size - i)])
        written += size
    out.flush()
    return written
