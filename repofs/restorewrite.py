"""How restore writes one entry into its target, safely and resumably.

Safety (threat model A4): the entry is made relative to its directory's descriptor
(``restoredir``: opened with ``O_NOFOLLOW`` from the target down), so nothing is
written outside the target and no link is followed. Every entry is made under a
fresh temporary name in its directory (created exclusively), gets its content and
metadata there, and only then takes its real name: by ``link``, which fails on an
existing name, unless ``--overwrite`` lets it ``rename`` over one (atomic). So a
restore killed at any point leaves no truncated file under a real name; the next
restore into the target removes the temporary names left (``restorenames``),
leaves what is there and identical (``restorecompare``: rsync's quick check), and
completes the rest. Hardlinks point only at files this run restored or found
identical. Powers a planted snapshot could carry (set-user-ID, capabilities,
devices) are not recreated unless asked (``restorable``).

Damage stays local (repofs-format(5), DAMAGE): every chunk is verified before its
bytes are written. A chunk that does not verify (or that storage cannot return)
costs only the files that use it: such a file is not given its name (its temporary
one is removed), or with ``partial`` it keeps what verified and the damaged ranges
stay holes; each damaged object is reported once through ``repo.damage``, each file
it cost is listed, and the restore goes on.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from repofs import fsmeta, restorable, restorecompare, restorenames
from repofs.errors import IntegrityError, UnsafePath
from repofs.model import BLOCK, CHAR, FILE, SYMLINK, Entry, Part
from repofs.prefetch import Prefetch
from repofs.repository import Repository
from repofs.restoredir import DIR_FLAGS, TargetDir
from repofs.restoreopts import (
    ALWAYS,
    CREATE,
    DELETE,
    NEVER,
    REPLACE,
    UNCHANGED,
    UPDATE,
    DamagedFile,
    RestoreOptions,
    RestoreStats,
)


@dataclass(frozen=True)
class _Restored:
    """The first restored member of a hardlink group."""

    where: list[bytes]
    parts: tuple[Part, ...]
    lost: tuple[tuple[int, int], ...]
    ident: tuple[int, int] | None  # (st_dev, st_ino), unknown in a dry run


class EntryWriter:
    """Writes entries into directories of the target; owns the counters and warnings."""

    def __init__(self, repo: Repository, target: Path, options: RestoreOptions,
                 progress: Callable[[RestoreStats], None] | None = None) -> None:
        self.repo = repo
        self.target = target
        self.opts = options
        self.stats = RestoreStats()
        self.progress = progress
        self._as_root = os.geteuid() == 0
        self.links: dict[int, _Restored] = {}
        self.prefetch = Prefetch(repo)
        self._consequence = ("the damaged ranges of the files using it are left as holes"
                             if options.partial else "the files using it are not restored")

    def warn(self, d: TargetDir, parts: list[bytes] | None, message: str) -> None:
        self.stats.warnings.append(f"{d.shown(parts)}: {message}")

    def did(self, action: str, d: TargetDir, parts: list[bytes] | None) -> None:
        counter = {CREATE: "created", REPLACE: "replaced", UPDATE: "updated",
                   UNCHANGED: "unchanged", DELETE: "deleted"}[action]
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        if self.opts.record:
            self.stats.actions.append((action, d.path(parts)))

    def restore_entry(self, d: TargetDir, e: Entry, tree: bytes | None) -> None:
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
        if e.type in (BLOCK, CHAR) and not self.opts.special:
            self.warn(d, parts, "device node not created (--special creates it)")
            self.stats.skipped += 1
            return
        damaged = len(self.stats.damaged)
        try:
            action = self._decide(d, dfd, e, parts)
            if action is not None and self.opts.dry_run:
                self.did(action, d, parts)
                if e.type == FILE:
                    self.stats.files += 1
                else:
                    self.stats.others += 1
            elif action == UPDATE:
                self._update(d, dfd, e, parts)
            elif action is not None and e.type == FILE:
                self._restore_file(d, dfd, e, parts, action)
            elif action is not None:
                self._make_other(d, dfd, e, parts, action)
        except FileExistsError:
            self.warn(d, parts, "exists, not overwritten")
            self.stats.skipped += 1
        except UnsafePath as err:  # a directory in the way that cannot be removed safely
            self.warn(d, parts, f"not restored: the directory there {err}")
            self.stats.skipped += 1
        except OSError as err:
            self.warn(d, parts, f"not restored: {err.strerror}")
            self.stats.skipped += 1
        if self.opts.verify and e.type == FILE and len(self.stats.damaged) == damaged:
            self._verify(d, dfd, e, parts)

    def wanted(self, d: TargetDir, e: Entry) -> bool:
        """Whether the file ``e`` may be written, by a first look at the target: the
        prefetcher reads only those (a resumed restore of a tree already there, or a dry
        run, reads no data)."""
        if self.opts.dry_run:
            return False
        try:
            dfd = d.fd()
            if dfd < 0 or self.opts.overwrite == ALWAYS:
                return True
            st = os.stat(e.name, dir_fd=dfd, follow_symlinks=False)
        except (UnsafePath, OSError):  # restore_entry says what it is
            return True
        return self.opts.overwrite != NEVER and not restorecompare.same_quick(
            st, e, self._mode(e)[0])

    def _decide(self, d: TargetDir, dfd: int, e: Entry, parts: list[bytes]) -> str | None:
        """What to do with ``e`` given what the target has under its name: CREATE,
        REPLACE, UPDATE (metadata only), or ``None`` (left as it is: counted here)."""
        if dfd < 0:
            return CREATE
        try:
            st = os.stat(e.name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return CREATE
        mode = self._mode(e)[0]
        if stat.S_ISDIR(st.st_mode):
            if not (self.opts.delete and self.opts.overwrite != NEVER):
                self.warn(d, parts, "exists as a directory, not overwritten (--delete "
                                    "--overwrite replaces it)")
                self.stats.skipped += 1
                return None
            if not self.opts.dry_run:
                restorenames.remove(dfd, e.name)
            return REPLACE
        if self.opts.overwrite == ALWAYS:
            return REPLACE
        first = self.links.get(e.hardlink) if e.hardlink is not None else None
        target = os.readlink(e.name, dir_fd=dfd) if stat.S_ISLNK(st.st_mode) else None
        if (first is not None and first.ident == (st.st_dev, st.st_ino)) \
                or restorecompare.same_entry(st, e, mode, target):
            self.did(UNCHANGED, d, parts)
            self._remember(e, parts, (st.st_dev, st.st_ino), ())
            return None
        if self.opts.overwrite == NEVER:
            self.warn(d, parts, "exists, not overwritten")
            self.stats.skipped += 1
            return None
        if e.type == FILE and stat.S_ISREG(st.st_mode) and st.st_size == e.size:
            fd = self._open_existing(dfd, e.name)
            try:
                if restorecompare.content_mismatch(self.repo, fd, e) is None:
                    return UPDATE
            finally:
                os.close(fd)
        return REPLACE

    @staticmethod
    def _open_existing(dfd: int, name: bytes) -> int:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dfd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "replaced by something that is not a file")
        return fd

    def _remember(self, e: Entry, parts: list[bytes], ident: tuple[int, int] | None,
                  lost: tuple[tuple[int, int], ...]) -> None:
        if e.hardlink is not None and e.hardlink not in self.links:
            self.links[e.hardlink] = _Restored(parts, e.parts, lost, ident)

    def _update(self, d: TargetDir, dfd: int, e: Entry, parts: list[bytes]) -> None:
        """The right content with other metadata (if-changed): set the stored metadata."""
        fd = self._open_existing(dfd, e.name)
        try:
            self.apply(d, e, fd, parts)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        self.did(UPDATE, d, parts)
        self._remember(e, parts, (st.st_dev, st.st_ino), ())

    def _make_other(self, d: TargetDir, dfd: int, e: Entry, parts: list[bytes],
                    action: str) -> None:
        """A symbolic link, FIFO or device: made under a temporary name, then committed."""
        tmp = restorenames.temp_name()
        if e.type == SYMLINK:
            assert e.target is not None
            os.symlink(e.target, tmp, dir_fd=dfd)
        elif e.type in (BLOCK, CHAR):
            kind = stat.S_IFBLK if e.type == BLOCK else stat.S_IFCHR
            os.mknod(tmp, kind | 0o600, e.rdev, dir_fd=dfd)
        else:
            os.mkfifo(tmp, 0o600, dir_fd=dfd)
        done = False
        try:
            self.apply(d, e, None, parts, name=tmp)
            restorenames.commit(dfd, tmp, e.name, action == REPLACE)
            done = True
        finally:
            if not done:
                restorenames.discard(dfd, tmp)
        self.stats.others += 1
        self.did(action, d, parts)

    def _restore_file(self, d: TargetDir, dfd: int, e: Entry, parts: list[bytes],
                      action: str) -> None:
        first = self.links.get(e.hardlink) if e.hardlink is not None else None
        if first is not None:
            if first.parts == e.parts:
                self._link(dfd, e, first.where, action == REPLACE)
                self.did(action, d, parts)
                if first.lost:
                    self._damaged(d, parts, first.lost, kept=True)
                return
            # a crafted tree: members of one group with different contents. Restore what
            # this entry says, as its own file, so restore and dump agree.
            self.warn(d, parts, "hardlink group members differ in content; restored unlinked")
        tmp = restorenames.temp_name()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        done = False
        try:
            lost = self._write_content(fd, e)
            if lost and not self.opts.partial:
                self._damaged(d, parts, lost, kept=False)
                return
            self.apply(d, e, fd, parts, times=not lost)
            restorenames.commit(dfd, tmp, e.name, action == REPLACE)
            done = True
            st = os.fstat(fd)
        finally:
            os.close(fd)
            if not done:  # ours: never leave partial data, under any name
                restorenames.discard(dfd, tmp)
        self.stats.files += 1
        self.did(action, d, parts)
        if lost:
            self._damaged(d, parts, lost, kept=True)
        if first is None:
            self._remember(e, parts, (st.st_dev, st.st_ino), tuple(lost))

    def _write_content(self, fd: int, e: Entry) -> list[tuple[int, int]]:
        """Write every chunk that verifies; the (offset, length) ranges of those that did
        not (without ``partial``, up to the first one only: the file is given up)."""
        lost: list[tuple[int, int]] = []
        offset = end = 0
        for p in e.parts:
            if p.chunk_id is not None:
                try:
                    data = self.prefetch.chunk(e, p.chunk_id)
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

    def _link(self, dfd: int, e: Entry, src: list[bytes], replace: bool) -> None:
        """Hardlink to a file restored earlier in this run, reached from the target down
        (over an existing name, through a temporary one, when ``replace``)."""
        fd = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for comp in src[:-1]:
                nfd = os.open(comp, DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nfd
            name = restorenames.temp_name() if replace else e.name
            os.link(src[-1], name, src_dir_fd=fd, dst_dir_fd=dfd, follow_symlinks=False)
            if replace:
                try:
                    restorenames.commit(dfd, name, e.name, True)
                except BaseException:
                    restorenames.discard(dfd, name)
                    raise
            self.stats.files += 1
        finally:
            os.close(fd)

    def _verify(self, d: TargetDir, dfd: int, e: Entry, parts: list[bytes]) -> None:
        """--verify: the file under its real name must hold the snapshot's bytes."""
        self.stats.verified += 1
        problem: str | None = "missing"
        if dfd >= 0:
            try:
                fd = self._open_existing(dfd, e.name)
                try:
                    problem = restorecompare.content_mismatch(self.repo, fd, e)
                finally:
                    os.close(fd)
            except FileNotFoundError:
                pass
            except OSError as err:
                problem = "not a regular file" if err.errno in (errno.ELOOP, errno.EINVAL) \
                    else f"not readable: {err.strerror}"
        if problem is not None:
            self.stats.mismatches.append((d.path(parts), problem))
            self.warn(d, parts, f"verify: {problem}")

    # -- metadata ----------------------------------------------------------------------
    def _ids(self, e: Entry) -> tuple[int, int]:
        """Stored ids, or the local ids of the stored names (as tar and rsync do)."""
        if self.opts.numeric_ids:
            return e.uid, e.gid
        uid = fsmeta.uid_of(e.user) if e.user is not None else None
        gid = fsmeta.gid_of(e.group) if e.group is not None else None
        return (e.uid if uid is None else uid), (e.gid if gid is None else gid)

    def _mode(self, e: Entry) -> tuple[int, tuple[tuple[bytes, bytes], ...]]:
        """The mode and xattrs restore gives ``e``: privileges left out unless asked."""
        if not self.opts.special and restorable.privileges(e):
            return restorable.without_privileges(e)
        return e.mode, e.xattrs

    def apply(self, d: TargetDir, e: Entry, fd: int | None, parts: list[bytes],
               times: bool = True, name: bytes | None = None) -> None:
        """Owner, xattrs (ACLs), mode, then times: the order that keeps each one. A file
        kept with holes gets no stored time: tools that compare size and time must not
        take it for the original. ``name``: where the entry is made, if not its own."""
        dfd = d.fd()
        name = e.name if name is None else name
        mode, xattrs = self._mode(e)
        powers = [] if self.opts.special else restorable.privileges(e)
        if powers:
            self.warn(d, parts, f"{' and '.join(powers)} not restored (--special "
                                "restores them)")
        if self._as_root:
            uid, gid = self._ids(e)
            try:
                if fd is not None:
                    os.fchown(fd, uid, gid)
                else:
                    fsmeta.apply_owner(dfd, name, uid, gid)
            except OSError as err:
                self.warn(d, parts, f"owner not set: {err.strerror}")
        for w in fsmeta.apply_xattrs(dfd, name, fd, xattrs):
            self.warn(d, parts, w)
        if e.type != SYMLINK:
            fsmeta.apply_mode(dfd, name, mode, fd)
        if not times:
            return
        if fd is not None:
            os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
        else:
            fsmeta.apply_times(dfd, name, e.mtime_ns)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n



__all__ = ["EntryWriter"]
