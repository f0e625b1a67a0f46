"""``restore``: get trees back out, exactly and safely (``dumper`` gets one file).

Safety (threat model A4): every file system call goes through a directory fd
opened with ``O_NOFOLLOW`` from the target down (``restoredir``), every new name is
created exclusively (``O_EXCL``, mkdir, mknod, symlink fail on an existing name), so
restore never writes outside its target, never follows a link, and never
overwrites what is already there. Hardlinks point only at files this run
restored. Powers a planted snapshot could carry (set-user-ID, capabilities,
devices) are not recreated unless asked (``restorable``).

Damage stays local (repofs-format(5), DAMAGE): every chunk is verified before its
bytes are written. A chunk that does not verify (or that storage cannot return)
costs only the files that use it: such a file is not created (removed again if it
was begun), or with ``partial`` it keeps what verified and the damaged ranges stay
holes; each damaged object is reported once through ``repo.damage``, each file it
cost is listed, and the restore goes on. A directory whose tree does not verify
costs only its contents. Only the tree the user asked for is needed whole.

Nothing here recurses: a tree as deep as the format allows is walked with an
explicit stack.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from repofs import fsmeta, restorable, spec
from repofs.errors import IntegrityError, UnsafePath
from repofs.model import BLOCK, CHAR, DIR, FIFO, FILE, SYMLINK, Entry, Part
from repofs.packcheck import blob_failure
from repofs.patterns import PatternSet
from repofs.prefetch import Prefetch
from repofs.repository import Repository
from repofs.restoredir import DIR_FLAGS, TargetDir


@dataclass
class RestoreOptions:
    includes: PatternSet = field(default_factory=lambda: PatternSet([]))
    excludes: PatternSet = field(default_factory=lambda: PatternSet([]))
    numeric_ids: bool = False
    partial: bool = False  # keep what verified of a damaged file, the rest left as holes
    special: bool = False  # recreate set-user-ID/-group-ID bits, capabilities, devices


@dataclass(frozen=True)
class DamagedFile:
    """A file that did not verify: its damaged byte ranges, and whether it was kept
    (``partial``: restored with those ranges left as holes) or not created."""

    path: bytes  # in the target
    ranges: tuple[tuple[int, int], ...]
    kept: bool


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    others: int = 0
    bytes_written: int = 0
    damaged: list[DamagedFile] = field(default_factory=list)
    damaged_dirs: list[bytes] = field(default_factory=list)  # contents lost with their tree
    skipped: int = 0  # entries not restored for a reason of the target (exists, refused)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Frame:
    """A directory being restored: where it goes, its entry, the subdirectories left."""

    dir: TargetDir
    entry: Entry
    subdirs: list[Entry]
    tree: bytes


@dataclass(frozen=True)
class _Restored:
    """The first restored member of a hardlink group."""

    where: list[bytes]
    parts: tuple[Part, ...]
    lost: tuple[tuple[int, int], ...]


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
        self._links: dict[int, _Restored] = {}
        self._prefetch = Prefetch(repo)
        self._base = b"/"
        self._consequence = ("the damaged ranges of the files using it are left as holes"
                             if options.partial else "the files using it are not restored")

    def warn(self, d: TargetDir, parts: list[bytes] | None, message: str) -> None:
        self.stats.warnings.append(f"{d.shown(parts)}: {message}")

    def run(self, entry: Entry, path: bytes) -> RestoreStats:
        """Restore ``entry`` (found at ``path`` in the snapshot): a directory's contents go
        straight into the target, a single file goes into the target under its name.
        Raises if the tree of ``entry`` itself does not verify: nothing asked is usable."""
        self.target.mkdir(parents=True, exist_ok=True)
        root_fd = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        root = TargetDir(None, b"", root_fd, os.fsencode(self.target))
        self._base = path
        try:
            if entry.type == DIR:
                assert entry.subtree is not None
                self._walk(root, entry, self._load_tree(entry.subtree))
            elif self._selected(path):
                self._prefetch.plan([entry])
                self._restore_entry(root, entry, None)
        finally:
            root.close()
            self._prefetch.close()
        return self.stats

    # -- traversal -------------------------------------------------------------------
    def _selected(self, path: bytes) -> bool:
        if self.opts.excludes and self.opts.excludes.matches(path):
            return False
        return not self.opts.includes or self.opts.includes.matches_or_under(path)

    def _path(self, d: TargetDir, name: bytes) -> bytes:
        """The snapshot path of ``name`` in ``d``; only computed when patterns need it
        (kept on no frame: deep trees of long names would cost depth² bytes)."""
        if not self.opts.includes and not self.opts.excludes:
            return b""
        return b"/".join([self._base.rstrip(b"/"), *d.parts(), name])

    def _load_tree(self, tree_id: bytes) -> list[Entry]:
        try:
            self._prefetch.tree_loaded(tree_id)
            return self.repo.load_tree(tree_id)
        except (IntegrityError, OSError) as e:
            raise blob_failure(self.repo, e, tree_id, spec.BLOB_TREE) from None

    def _walk(self, root: TargetDir, entry: Entry, children: list[Entry]) -> None:
        assert entry.subtree is not None
        stack = [self._enter(root, entry, children)]
        while stack:
            top = stack[-1]
            if not top.subdirs:
                stack.pop()
                if stack:
                    self._leave(stack[-1].dir, top)
                continue
            child = top.subdirs.pop()
            assert child.subtree is not None
            sub = TargetDir(top.dir, child.name)
            try:
                if self._selected(self._path(top.dir, child.name)):
                    sub.fd()
                stack.append(self._enter(sub, child, self._children(sub, child, len(stack))))
            except UnsafePath as e:
                self.stats.warnings.append(str(e))
                self.stats.skipped += 1
                sub.close()
            except OSError as e:  # the target refused the directory (ENOSPC, EACCES, ...)
                self.warn(sub, None, f"not restored: {e.strerror}")
                self.stats.skipped += 1
                sub.close()

    def _children(self, sub: TargetDir, entry: Entry, depth: int) -> list[Entry]:
        """A subdirectory's entries; none if its tree does not verify (named, counted)."""
        assert entry.subtree is not None
        try:
            if depth > spec.MAX_TREE_DEPTH:
                raise IntegrityError("tree", entry.subtree.hex(), "nested too deep")
            return self._load_tree(entry.subtree)
        except IntegrityError as err:
            self.repo.damage.report(err, "the contents of its directory are not restored")
            self.stats.damaged_dirs.append(sub.path())
            self.warn(sub, None, "contents not restored: its tree is damaged")
            return []

    def _enter(self, d: TargetDir, entry: Entry, children: list[Entry]) -> _Frame:
        """Restore a directory's non-directories now; its subdirectories are left to the
        walk (files first, the order the prefetcher queues them in)."""
        assert entry.subtree is not None
        tree = entry.subtree
        files = [c for c in children if c.type == FILE
                 and self._selected(self._path(d, c.name))
                 and (c.hardlink is None or c.hardlink not in self._links)]
        self._prefetch.plan(files)
        subdirs = []
        for child in children:
            if child.type == DIR:
                if not (self.opts.excludes and self.opts.excludes.matches(
                        self._path(d, child.name))):
                    subdirs.append(child)
            elif self._selected(self._path(d, child.name)):
                self._restore_entry(d, child, tree)
        subdirs.reverse()  # popped from the end: restored in name order
        self._prefetch.trees([c.subtree for c in reversed(subdirs) if c.subtree])
        return _Frame(d, entry, subdirs, tree)

    def _leave(self, parent: TargetDir, done: _Frame) -> None:
        """A directory's contents are done: its stored metadata now (read-only ones too)."""
        sub = done.dir
        try:
            if sub.opened:
                parent.reopen_from(sub.fd())
            if sub.created:  # a directory that was already there keeps its metadata
                self.stats.dirs += 1
                self._apply(parent, done.entry, sub.fd(), sub.parts())
        except UnsafePath as e:
            self.stats.warnings.append(str(e))
        finally:
            sub.close()

    # -- entries -----------------------------------------------------------------------
    def _restore_entry(self, d: TargetDir, e: Entry, tree: bytes | None) -> None:
        try:
            dfd = d.fd()
        except UnsafePath as err:
            self.stats.warnings.append(str(err))
            self.stats.skipped += 1
            return
        parts = [*d.parts(), e.name]
        problem = restorable.entry_problem(e)
        if problem is not None:
            where = tree.hex() if tree is not None else d.shown(parts)
            self.repo.damage.report(IntegrityError("tree", where, f"entry "
                                    f"{e.name.decode('utf-8', 'backslashreplace')} "
                                    f"{problem}"), "that entry is not restored")
            self.stats.damaged.append(DamagedFile(d.path(parts), (), False))
            self.warn(d, parts, f"not restored: its entry is damaged ({problem})")
            return
        try:
            if e.type == FILE:
                self._restore_file(d, dfd, e, parts)
                return
            if e.type == SYMLINK:
                assert e.target is not None
                os.symlink(e.target, e.name, dir_fd=dfd)
            elif e.type in (BLOCK, CHAR):
                if not self.opts.special:
                    self.warn(d, parts, "device node not created (--special creates it)")
                    self.stats.skipped += 1
                    return
                kind = stat.S_IFBLK if e.type == BLOCK else stat.S_IFCHR
                os.mknod(e.name, kind | 0o600, e.rdev, dir_fd=dfd)
            elif e.type == FIFO:
                os.mkfifo(e.name, 0o600, dir_fd=dfd)
            self.stats.others += 1
            self._apply(d, e, None, parts)
        except FileExistsError:
            self.warn(d, parts, "exists, not overwritten")
            self.stats.skipped += 1
        except OSError as err:
            self.warn(d, parts, f"not restored: {err.strerror}")
            self.stats.skipped += 1

    def _restore_file(self, d: TargetDir, dfd: int, e: Entry, parts: list[bytes]) -> None:
        first = self._links.get(e.hardlink) if e.hardlink is not None else None
        if first is not None:
            if first.parts == e.parts:
                self._link(dfd, e, first.where)
                if first.lost:
                    self._damaged(d, parts, first.lost, kept=True)
                return
            # a crafted tree: members of one group with different contents. Restore what
            # this entry says, as its own file, so restore and dump agree.
            self.warn(d, parts, "hardlink group members differ in content; restored unlinked")
        fd = os.open(e.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            try:
                lost = self._write_content(fd, e)
            except BaseException:
                os.unlink(e.name, dir_fd=dfd)  # ours (O_EXCL): never leave partial data
                raise
            if lost and not self.opts.partial:
                os.unlink(e.name, dir_fd=dfd)
                self._damaged(d, parts, lost, kept=False)
                return
            self.stats.files += 1
            if lost:
                self._damaged(d, parts, lost, kept=True)
            self._apply(d, e, fd, parts, times=not lost)
        finally:
            os.close(fd)
        if e.hardlink is not None and first is None:
            self._links[e.hardlink] = _Restored(parts, e.parts, tuple(lost))

    def _write_content(self, fd: int, e: Entry) -> list[tuple[int, int]]:
        """Write every chunk that verifies; the (offset, length) ranges of those that did
        not (without ``partial``, up to the first one only: the file is given up)."""
        lost: list[tuple[int, int]] = []
        offset = end = 0
        for p in e.parts:
            if p.chunk_id is not None:
                try:
                    data = self._prefetch.chunk(e, p.chunk_id)
                    if len(data) != p.size:
                        raise IntegrityError("chunk", p.chunk_id.hex(),
                                             "size differs from the tree")
                except IntegrityError as err:
                    self.repo.damage.report(err, self._consequence)
                    if lost and lost[-1][0] + lost[-1][1] == offset:
                        lost[-1] = (lost[-1][0], lost[-1][1] + p.size)
                    else:
                        lost.append((offset, p.size))
                    if not self.opts.partial:
                        return lost
                else:
                    _pwrite_all(fd, data, offset)
                    end = offset + p.size
                    self.stats.bytes_written += len(data)
                    if self.progress:
                        self.progress(self.stats)
            offset += p.size
        if end != e.size:  # a hole or a lost range at the end (or an empty file: a no-op)
            os.ftruncate(fd, e.size)
        return lost

    def _damaged(self, d: TargetDir, parts: list[bytes], lost: tuple[tuple[int, int], ...]
                 | list[tuple[int, int]], kept: bool) -> None:
        self.stats.damaged.append(DamagedFile(d.path(parts), tuple(lost), kept))
        ranges = ", ".join(f"{o}+{n}" for o, n in lost)
        if kept:
            self.warn(d, parts, f"damaged; restored with holes at (offset+length) {ranges}")
        else:
            self.warn(d, parts, f"not restored: its content is damaged (from byte {lost[0][0]})")

    def _link(self, dfd: int, e: Entry, src: list[bytes]) -> None:
        """Hardlink to a file restored earlier in this run, reached from the target down."""
        fd = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for comp in src[:-1]:
                nfd = os.open(comp, DIR_FLAGS, dir_fd=fd)
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

    def _apply(self, d: TargetDir, e: Entry, fd: int | None, parts: list[bytes],
               times: bool = True) -> None:
        """Owner, xattrs (ACLs), mode, then times: the order that keeps each one. A file
        kept with holes gets no stored time: tools that compare size and time must not
        take it for the original."""
        dfd = d.fd()
        mode, xattrs = e.mode, e.xattrs
        if not self.opts.special:
            powers = restorable.privileges(e)
            if powers:
                self.warn(d, parts, f"{' and '.join(powers)} not restored (--special "
                                    "restores them)")
                mode, xattrs = restorable.without_privileges(e)
        if self._as_root:
            uid, gid = self._ids(e)
            try:
                if fd is not None:
                    os.fchown(fd, uid, gid)
                else:
                    fsmeta.apply_owner(dfd, e.name, uid, gid)
            except OSError as err:
                self.warn(d, parts, f"owner not set: {err.strerror}")
        for w in fsmeta.apply_xattrs(dfd, e.name, fd, xattrs):
            self.warn(d, parts, w)
        if e.type != SYMLINK:
            fsmeta.apply_mode(dfd, e.name, mode, fd)
        if not times:
            return
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


__all__ = ["DamagedFile", "RestoreOptions", "RestoreStats", "Restorer"]
