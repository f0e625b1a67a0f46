"""``create``: walk source trees, store what changed, commit a snapshot.

The walk never follows a symlink (lstat, ``O_NOFOLLOW``, ``dir_fd``), reads
each file once, and skips reading files the files cache knows unchanged.
Trees are built bottom-up; identical directories give identical tree blobs
and dedup like chunks. Problems with single files (unreadable, vanished,
changed while read) become warnings: the rest is still saved. Sockets, which no
restore could bring back, are counted as skipped, with what ``selection`` leaves out.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from repofs import fsmeta, retention, spec
from repofs.chunker import Chunker
from repofs.commandsource import command_output
from repofs.content import ContentReader
from repofs.errors import IntegrityError, RepofsError
from repofs.filescache import FilesCache, cache_dir
from repofs.model import (
    DIR,
    FILE,
    SYMLINK,
    Entry,
    Part,
    Snapshot,
    SnapshotBody,
    check_labels,
    check_name,
    encode_tree,
)
from repofs.selection import NODUMP, SOCKET, TAGGED, TOO_LARGE, Selection, empty_skipped
from repofs.session import WriteSession
from repofs.sourcetree import (
    OPEN_FLAGS,
    DirFrame,
    Replaced,
    allow_deep_walks,
    is_cache_dir,
    one_read,
    outermost,
    same_file,
)


@dataclass
class CreateOptions:
    """What to back up and how; the CLI fills it from its flags."""

    paths: Sequence[bytes] = ()
    selection: Selection = field(default_factory=Selection)
    exclude_caches: bool = False
    one_file_system: bool = False
    host: str | None = None
    tags: Sequence[str] = ()
    name: str | None = None
    stdin_name: bytes | None = None
    stdin_command: Sequence[str] | None = None
    use_files_cache: bool = True
    dry_run: bool = False  # walk, read and count, but store nothing (the session's too)


@dataclass
class CreateStats:
    files: int = 0
    dirs: int = 0
    others: int = 0
    files_unchanged: int = 0
    files_read: int = 0
    bytes_read: int = 0
    bytes_total: int = 0
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=empty_skipped)  # left out, no warning


Progress = Callable[[CreateStats, bytes], None]


class Archiver:
    """One ``create`` run over a write session."""

    def __init__(self, session: WriteSession, options: CreateOptions,
                 progress: Progress | None = None) -> None:
        self.session = session
        self.opts = options
        self.stats = CreateStats()
        self.progress = progress
        repo = session.repo
        self.content = ContentReader(session, Chunker(repo.keys.chunker_key), self._counted)
        self.cache = FilesCache(cache_dir(repo.id) / "files", repo.keys.id_key)
        self._hardlinks: dict[tuple[int, int], tuple[int, tuple[Part, ...], int]] = {}
        self._hl_counts: dict[int, int] = {}
        self._last_progress = 0.0

    # -- entry points ------------------------------------------------------------------
    def run(self) -> Snapshot | None:
        """The snapshot written; None for a dry run, which commits nothing."""
        start = time.time_ns()
        allow_deep_walks()
        host = self.opts.host or socket.gethostname()
        try:
            check_labels(self.opts.name, host, self.opts.tags)
        except ValueError as e:
            raise RepofsError(str(e)) from None
        if self.opts.stdin_name is not None:
            try:
                check_name(self.opts.stdin_name, "stdin name", "")
            except IntegrityError:
                raise RepofsError("--stdin-name must be a file name of at most 255 bytes, "
                                  "without '/'") from None
        if self.opts.name is not None:
            self.session.repo.snapshots.ensure_name_free(self.opts.name)
        paths: list[bytes]
        if self.opts.stdin_name is not None:
            root, paths = self._stdin_root(), [b"/" + self.opts.stdin_name]
        else:
            paths = outermost(self.opts.paths)
            root = self._paths_root(paths)
        tree_id = self.session.add(spec.BLOB_TREE, self._tree(b"/", root))
        s = self.stats
        empty = not (self.opts.stdin_name is None or self.opts.stdin_command or s.bytes_total)
        body = SnapshotBody(
            tree=tree_id, paths=tuple(paths), host=host, user=fsmeta.current_user(),
            name=self.opts.name,
            tags=retention.stdin_tags(self.opts.tags, empty, lambda w: self.warn(paths[0], w)),
            hardlinks={k: v for k, v in self._hl_counts.items() if v > 1},
            stats={"files": s.files, "dirs": s.dirs, "others": s.others,
                   "files_unchanged": s.files_unchanged, "bytes_total": s.bytes_total,
                   "bytes_read": s.bytes_read},
        )
        if self.opts.dry_run:
            return None  # the files cache is not saved either: nothing it names was stored
        snapshot = self.session.commit(body, start)
        if self.opts.use_files_cache and self.opts.stdin_name is None:
            self.cache.save()  # only once the chunks it names are committed
        return snapshot

    def warn(self, path: bytes, message: str) -> None:
        self.stats.warnings.append(f"{path.decode('utf-8', 'backslashreplace')}: {message}")

    def _tree(self, path: bytes, entries: list[Entry]) -> bytes:
        try:
            return encode_tree(entries)
        except ValueError as e:
            raise RepofsError(f"{path.decode('utf-8', 'backslashreplace')}: {e}") from None

    # -- stdin -------------------------------------------------------------------------
    def _stdin_root(self) -> list[Entry]:
        assert self.opts.stdin_name is not None
        name = self.opts.stdin_name
        if self.opts.stdin_command:
            with command_output(self.opts.stdin_command) as out:
                parts, size = self.content.stream(out)
        else:
            parts, size = self.content.stream(sys.stdin.buffer)
        now = time.time_ns()
        self.stats.files += 1
        self.stats.bytes_total += size
        return [Entry(name=name, type=FILE, mode=0o600, uid=os.getuid(), gid=os.getgid(),
                      mtime_ns=now, ctime_ns=now, user=fsmeta.user_name(os.getuid()),
                      group=fsmeta.group_name(os.getgid()), size=size, parts=parts)]

    # -- paths -------------------------------------------------------------------------
    def _paths_root(self, paths: Sequence[bytes]) -> list[Entry]:
        """The snapshot root: the given paths under their parent directories."""
        if paths == [b"/"]:
            fd = os.open(b"/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            top = DirFrame(fd=fd, name=b"/", path=b"/", st=None, xattrs=(), depth=0,
                       names=self._listing(fd, b"/") or [])
            try:
                return self._walk(top, os.fstat(fd).st_dev)
            finally:
                os.close(fd)
        nested: dict[bytes, object] = {}
        for p in paths:
            node = nested
            for comp in p.strip(b"/").split(b"/"):
                node = node.setdefault(comp, {})  # type: ignore[assignment]
            node[b""] = p  # marks a path to archive whole
        return self._virtual_root(nested)

    def _virtual_root(self, nested: dict[bytes, object]) -> list[Entry]:
        """The given paths' parents, bottom-up, without recursion (a path may have
        thousands of components)."""
        # each frame: (path, the node's children still to visit, the entries made)
        stack: list[tuple[bytes, list[tuple[bytes, object]], list[Entry]]] = [
            (b"", sorted(nested.items(), reverse=True), [])]
        while True:
            prefix, todo, entries = stack[-1]
            if not todo:
                stack.pop()
                if not stack:
                    return entries
                e = self._synthetic_dir(prefix, entries)
                if e is not None:
                    stack[-1][2].append(e)
                continue
            comp, child = todo.pop()
            if comp == b"":
                continue
            path = prefix + b"/" + comp
            assert isinstance(child, dict)
            if b"" in child:
                top = self._archive_top(path)
                if top is not None:
                    entries.append(top)
            else:
                stack.append((path, sorted(child.items(), reverse=True), []))

    def _synthetic_dir(self, path: bytes, children: list[Entry]) -> Entry | None:
        """A parent of a given path: its own metadata, but only the given children."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            self.warn(path, e.strerror or str(e))
            return None
        try:
            st = os.fstat(fd)
            xattrs = self._xattrs(-1, b"", fd, path)
        finally:
            os.close(fd)
        sub = self.session.add(spec.BLOB_TREE, self._tree(path, children))
        return self._entry(path.rsplit(b"/", 1)[1], st, DIR, subtree=sub, xattrs=xattrs)

    def _archive_top(self, path: bytes) -> Entry | None:
        parent, name = path.rsplit(b"/", 1)
        try:
            dfd = os.open(parent or b"/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise RepofsError(f"cannot open {os.fsdecode(parent or b'/')}: {e.strerror}") \
                from None
        try:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                raise RepofsError(f"{os.fsdecode(path)}: no such file or directory") from None
            return self._archive(dfd, name, path, st, st.st_dev, 0)
        finally:
            os.close(dfd)

    # -- the walk ----------------------------------------------------------------------
    def _archive(self, dfd: int, name: bytes, path: bytes, st: os.stat_result,
                 root_dev: int, depth: int) -> Entry | None:
        """One item given on the command line, and everything below it."""
        entry, top = self._visit(dfd, name, path, st, root_dev, depth)
        if top is None:
            return entry
        try:
            children = self._walk(top, root_dev)
        except BaseException:
            os.close(top.fd)
            raise
        return self._finish_dir(top, children)

    def _visit(self, dfd: int, name: bytes, path: bytes, st: os.stat_result,
               root_dev: int, depth: int) -> tuple[Entry | None, DirFrame | None]:
        """Archive a non-directory (its entry), or open a directory (its frame)."""
        t = fsmeta.entry_type(st)
        sel = self.opts.selection
        if t == fsmeta.SOCKET:
            return self._skip(SOCKET)
        if t in (DIR, FILE) and sel.skip_nodump(dfd, name):
            return self._skip(NODUMP)
        if t == FILE and sel.too_large(st.st_size):
            return self._skip(TOO_LARGE)
        if t == DIR:
            return None, self._open_dir(dfd, name, path, st, root_dev, depth)
        if t == FILE:
            return self._archive_file(dfd, name, path, st), None
        self.stats.others += 1
        target = os.readlink(name, dir_fd=dfd) if t == SYMLINK else None
        return self._entry(name, st, t, target=target,
                           xattrs=self._xattrs(dfd, name, None, path)), None

    def _skip(self, reason: str) -> tuple[None, None]:
        self.stats.skipped[reason] += 1
        return None, None

    def _walk(self, top: DirFrame, root_dev: int) -> list[Entry]:
        """The entries of ``top``'s directory, its subdirectories archived depth first.

        Iterative, with one frame (and one open directory) per level: a real tree may
        be as deep as spec.MAX_TREE_DEPTH, far past Python's recursion limit. ``top``
        stays open: its caller owns it.
        """
        stack = [top]
        try:
            while True:
                frame = stack[-1]
                if frame.pos == len(frame.names):
                    stack.pop()
                    if not stack:
                        return frame.children
                    stack[-1].children.append(self._finish_dir(frame, frame.children))
                    continue
                n = frame.names[frame.pos]
                frame.pos += 1
                child = (frame.path if frame.path != b"/" else b"") + b"/" + n
                if self.opts.selection.excluded(child):
                    continue
                try:
                    cst = os.stat(n, dir_fd=frame.fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # vanished since listing: not a problem
                except OSError as e:
                    self.warn(child, e.strerror or str(e))
                    continue
                entry, sub = self._visit(frame.fd, n, child, cst, root_dev, frame.depth + 1)
                if sub is not None:
                    stack.append(sub)
                elif entry is not None:
                    frame.children.append(entry)
        finally:
            for frame in stack[1:]:
                os.close(frame.fd)

    def _xattrs(self, dfd: int, name: bytes, fd: int | None,
                path: bytes) -> tuple[tuple[bytes, bytes], ...]:
        try:
            return fsmeta.read_xattrs(dfd, name, fd)
        except OSError as e:
            self.warn(path, f"xattrs not read: {e.strerror}")
            return ()

    def _open_dir(self, dfd: int, name: bytes, path: bytes, st: os.stat_result,
                  root_dev: int, depth: int) -> DirFrame | None:
        """A frame for a directory: opened, its xattrs read, its names listed; None if
        it cannot be opened, or holds an ``--exclude-if-present`` name."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=dfd)
        except OSError as e:
            self.stats.dirs += 1
            self.warn(path, f"directory not read: {e.strerror}")
            return None
        try:
            deep = depth >= spec.MAX_TREE_DEPTH
            names: list[bytes] | None = []
            if not deep and not (self.opts.one_file_system and st.st_dev != root_dev):
                names = self._listing(fd, path)
            if names is None:  # holds an --exclude-if-present name
                os.close(fd)
                self._skip(TAGGED)
                return None
            self.stats.dirs += 1
            xattrs = self._xattrs(dfd, name, fd, path)
            if deep:
                self.warn(path, "directory nesting too deep, contents skipped")
        except BaseException:
            os.close(fd)
            raise
        return DirFrame(fd=fd, name=name, path=path, st=st, xattrs=xattrs, depth=depth,
                    names=names)

    def _finish_dir(self, frame: DirFrame, children: list[Entry]) -> Entry:
        """The directory's entry, once all below it is stored; closes its descriptor."""
        try:
            assert frame.st is not None
            sub = self.session.add(spec.BLOB_TREE, self._tree(frame.path, children))
            return self._entry(frame.name, frame.st, DIR, subtree=sub, xattrs=frame.xattrs)
        finally:
            os.close(frame.fd)
            frame.fd = -1

    def _listing(self, fd: int, path: bytes) -> list[bytes] | None:
        """The names to visit, sorted; None if the directory holds an
        ``--exclude-if-present`` name (it is then left out whole)."""
        try:
            names = sorted(os.fsencode(n) for n in os.listdir(fd))
        except OSError as e:
            self.warn(path, f"directory not listed: {e.strerror}")
            return []
        if self.opts.selection.tagged(names):
            return None
        if self.opts.exclude_caches and is_cache_dir(fd, names):
            names = [b"CACHEDIR.TAG"]
        return names

    def _archive_file(self, dfd: int, name: bytes, path: bytes,
                      st: os.stat_result) -> Entry | None:
        hlid = None
        if st.st_nlink > 1:
            known = self._hardlinks.get((st.st_dev, st.st_ino))
            if known is not None:
                hlid, parts, size = known
                self._hl_counts[hlid] += 1
                self._stored_file(size)
                return self._entry(name, st, FILE, parts=parts, size=size, hardlink=hlid,
                                   xattrs=self._xattrs(dfd, name, None, path))
            hlid = len(self._hardlinks)
        cached = self._unchanged(path, st)
        if cached is not None:  # not even opened: the lstat matched the files cache
            return self._file_entry(dfd, name, path, st, None, cached, hlid)
        try:
            fd = os.open(name, OPEN_FLAGS | getattr(os, "O_NOATIME", 0), dir_fd=dfd)
        except PermissionError:
            try:
                fd = os.open(name, OPEN_FLAGS, dir_fd=dfd)
            except OSError as e:
                self.warn(path, f"not read: {e.strerror}")
                return None
        except OSError as e:
            self.warn(path, f"not read: {e.strerror}")
            return None
        try:
            # What was opened must be what lstat saw. A file read in one bounded read is
            # checked by the fstat after it (a system call less per file, most of a tree
            # of small files); a file that may be read at length is checked first.
            fst = st
            if not one_read(st.st_size, st.st_blocks):
                fst = os.fstat(fd)
                if not same_file(fst, st):
                    raise Replaced
            parts = self.content.read_file(fd, fst.st_size, st.st_blocks, st)
            self.stats.files_read += 1
            after = os.fstat(fd)
            if not same_file(after, st):
                raise Replaced
            if (after.st_mtime_ns, after.st_size, after.st_ctime_ns) != (
                fst.st_mtime_ns, fst.st_size, fst.st_ctime_ns):
                self.warn(path, "changed while being read")
            elif self.opts.use_files_cache:
                self.cache.remember(path, after, parts)
            return self._file_entry(dfd, name, path, after, fd, parts, hlid)
        except Replaced:
            self.warn(path, "replaced while being read, skipped")
            return None
        except OSError as e:
            self.warn(path, f"read error: {e.strerror}")
            return None
        finally:
            os.close(fd)

    def _unchanged(self, path: bytes, st: os.stat_result) -> tuple[Part, ...] | None:
        """The content list from the files cache, if the file and all its chunks are known."""
        if not self.opts.use_files_cache:
            return None
        cached = self.cache.lookup(path, st)
        if cached is None or not all(
            p.chunk_id is None or self.session.known(p.chunk_id) for p in cached
        ):
            return None
        self.stats.files_unchanged += 1
        self.cache.remember(path, st, cached)
        return cached

    def _file_entry(self, dfd: int, name: bytes, path: bytes, st: os.stat_result,
                    fd: int | None, parts: tuple[Part, ...], hlid: int | None) -> Entry:
        size = sum(p.size for p in parts)
        self._stored_file(size)
        if hlid is not None:
            self._hardlinks[(st.st_dev, st.st_ino)] = (hlid, parts, size)
            self._hl_counts[hlid] = 1
        return self._entry(name, st, FILE, parts=parts, size=size, hardlink=hlid,
                           xattrs=self._xattrs(dfd, name, fd, path))

    def _stored_file(self, size: int) -> None:
        """Count a file in the snapshot: only once its entry is made (a file that could
        not be read is a warning, not a file backed up)."""
        self.stats.files += 1
        self.stats.bytes_total += size

    def _entry(self, name: bytes, st: os.stat_result, t: str, **kw: object) -> Entry:
        self._maybe_progress(name)
        return Entry(
            name=name, type=t, mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid,
            mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, user=fsmeta.user_name(st.st_uid),
            group=fsmeta.group_name(st.st_gid),
            rdev=st.st_rdev if t in ("b", "c") else 0, **kw,  # type: ignore[arg-type]
        )

    def _counted(self, n: int) -> None:
        self.stats.bytes_read += n
        self._maybe_progress(b"")

    def _maybe_progress(self, name: bytes) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self._last_progress >= 0.2:
            self._last_progress = now
            self.progress(self.stats, name)

