"""``create``: walk source trees, store what changed, commit a snapshot.

The walk never follows a symlink (lstat, ``O_NOFOLLOW``, ``dir_fd``), reads
each file once, and skips reading files the files cache knows unchanged.
Trees are built bottom-up; identical directories give identical tree blobs
and dedup like chunks. Problems with single files (unreadable, vanished,
changed while read, sockets) become warnings: the rest is still saved.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

from repofs import fsmeta, retention, spec
from repofs.chunker import Chunker
from repofs.errors import IntegrityError, RepofsError, SourceFailed
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
from repofs.patterns import PatternSet
from repofs.session import WriteSession

CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


@dataclass
class CreateOptions:
    """What to back up and how; the CLI fills it from its flags."""

    paths: Sequence[bytes] = ()
    excludes: PatternSet = field(default_factory=lambda: PatternSet([]))
    exclude_caches: bool = False
    one_file_system: bool = False
    host: str | None = None
    tags: Sequence[str] = ()
    name: str | None = None
    stdin_name: bytes | None = None
    stdin_command: Sequence[str] | None = None
    use_files_cache: bool = True


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
        self.chunker = Chunker(repo.keys.chunker_key)
        self.cache = FilesCache(cache_dir(repo.id) / "files", repo.keys.id_key)
        self._hardlinks: dict[tuple[int, int], tuple[int, tuple[Part, ...], int]] = {}
        self._hl_counts: dict[int, int] = {}
        self._last_progress = 0.0

    # -- entry points ------------------------------------------------------------------
    def run(self) -> Snapshot:
        start = time.time_ns()
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
            paths = _outermost(self.opts.paths)
            root = self._paths_root(paths)
        tree_id = self.session.add(spec.BLOB_TREE, self._tree(b"/", root))
        s = self.stats
        empty = not (self.opts.stdin_name is None or self.opts.stdin_command or s.bytes_total)
        body = SnapshotBody(
            tree=tree_id, paths=tuple(paths), host=host, user=_current_user(), name=self.opts.name,
            tags=retention.stdin_tags(self.opts.tags, empty, lambda w: self.warn(paths[0], w)),
            hardlinks={k: v for k, v in self._hl_counts.items() if v > 1},
            stats={"files": s.files, "dirs": s.dirs, "others": s.others,
                   "files_unchanged": s.files_unchanged, "bytes_total": s.bytes_total,
                   "bytes_read": s.bytes_read},
        )
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
            try:
                proc = subprocess.Popen(list(self.opts.stdin_command), stdout=subprocess.PIPE)
            except OSError as e:
                raise SourceFailed(f"cannot run {self.opts.stdin_command[0]}: {e.strerror}") \
                    from None
            assert proc.stdout is not None
            parts, size = self._store_stream(proc.stdout)
            rc = proc.wait()
            if rc != 0:
                raise SourceFailed(f"command {self.opts.stdin_command[0]!r} exited with {rc}; "
                                   "no snapshot was saved")
        else:
            parts, size = self._store_stream(sys.stdin.buffer)
        now = time.time_ns()
        self.stats.files += 1
        self.stats.bytes_total += size
        return [Entry(name=name, type=FILE, mode=0o600, uid=os.getuid(), gid=os.getgid(),
                      mtime_ns=now, ctime_ns=now, user=fsmeta.user_name(os.getuid()),
                      group=fsmeta.group_name(os.getgid()), size=size, parts=parts)]

    def _store_stream(self, stream: IO[bytes],
                      size_hint: int | None = None) -> tuple[tuple[Part, ...], int]:
        parts = []
        size = 0
        chunks = self.chunker.chunks(stream.readinto, size_hint)  # type: ignore[attr-defined]
        for blob_id, n in self.session.add_stream(spec.BLOB_DATA, chunks):
            parts.append(Part(blob_id, n))
            size += n
            self.stats.bytes_read += n
            self._maybe_progress(b"")
        return tuple(parts), size

    # -- paths -------------------------------------------------------------------------
    def _paths_root(self, paths: Sequence[bytes]) -> list[Entry]:
        """The snapshot root: the given paths under their parent directories."""
        if paths == [b"/"]:
            fd = os.open(b"/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                return self._children(fd, b"/", os.fstat(fd).st_dev, 0)
            finally:
                os.close(fd)
        nested: dict[bytes, object] = {}
        for p in paths:
            node = nested
            for comp in p.strip(b"/").split(b"/"):
                node = node.setdefault(comp, {})  # type: ignore[assignment]
            node[b""] = p  # marks a path to archive whole
        return self._virtual_dir(b"", nested)

    def _virtual_dir(self, prefix: bytes, node: dict[bytes, object]) -> list[Entry]:
        entries = []
        for comp, child in sorted(node.items()):
            if comp == b"":
                continue
            path = prefix + b"/" + comp
            assert isinstance(child, dict)
            if b"" in child:
                e = self._archive_top(path)
            else:
                e = self._synthetic_dir(path, self._virtual_dir(path, child))
            if e is not None:
                entries.append(e)
        return entries

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
        t = fsmeta.entry_type(st)
        if t == fsmeta.SOCKET:
            self.warn(path, "socket skipped")
            return None
        if t == DIR:
            return self._archive_dir(dfd, name, path, st, root_dev, depth)
        if t == FILE:
            return self._archive_file(dfd, name, path, st)
        self.stats.others += 1
        target = os.readlink(name, dir_fd=dfd) if t == SYMLINK else None
        return self._entry(name, st, t, target=target,
                           xattrs=self._xattrs(dfd, name, None, path))

    def _xattrs(self, dfd: int, name: bytes, fd: int | None,
                path: bytes) -> tuple[tuple[bytes, bytes], ...]:
        try:
            return fsmeta.read_xattrs(dfd, name, fd)
        except OSError as e:
            self.warn(path, f"xattrs not read: {e.strerror}")
            return ()

    def _archive_dir(self, dfd: int, name: bytes, path: bytes, st: os.stat_result,
                     root_dev: int, depth: int) -> Entry | None:
        self.stats.dirs += 1
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=dfd)
        except OSError as e:
            self.warn(path, f"directory not read: {e.strerror}")
            return None
        try:
            xattrs = self._xattrs(dfd, name, fd, path)
            children: list[Entry] = []
            if depth >= spec.MAX_TREE_DEPTH:
                self.warn(path, "directory nesting too deep, contents skipped")
            elif not (self.opts.one_file_system and st.st_dev != root_dev):
                children = self._children(fd, path, root_dev, depth)
            sub = self.session.add(spec.BLOB_TREE, self._tree(path, children))
            return self._entry(name, st, DIR, subtree=sub, xattrs=xattrs)
        finally:
            os.close(fd)

    def _children(self, fd: int, path: bytes, root_dev: int, depth: int) -> list[Entry]:
        try:
            names = sorted(os.fsencode(n) for n in os.listdir(fd))
        except OSError as e:
            self.warn(path, f"directory not listed: {e.strerror}")
            return []
        if self.opts.exclude_caches and _is_cache_dir(fd, names):
            names = [b"CACHEDIR.TAG"]
        out: list[Entry] = []
        for n in names:
            child = (path if path != b"/" else b"") + b"/" + n
            if self.opts.excludes and self.opts.excludes.matches(child):
                continue
            try:
                cst = os.stat(n, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # vanished since listing: not a problem
            except OSError as e:
                self.warn(child, e.strerror or str(e))
                continue
            entry = self._archive(fd, n, child, cst, root_dev, depth + 1)
            if entry is not None:
                out.append(entry)
        return out

    def _archive_file(self, dfd: int, name: bytes, path: bytes,
                      st: os.stat_result) -> Entry | None:
        self.stats.files += 1
        self.stats.bytes_total += st.st_size
        hlid = None
        if st.st_nlink > 1:
            known = self._hardlinks.get((st.st_dev, st.st_ino))
            if known is not None:
                hlid, parts, size = known
                self._hl_counts[hlid] += 1
                return self._entry(name, st, FILE, parts=parts, size=size, hardlink=hlid,
                                   xattrs=self._xattrs(dfd, name, None, path))
            hlid = len(self._hardlinks)
        cached = self._unchanged(path, st)
        if cached is not None:  # not even opened: the lstat matched the files cache
            return self._file_entry(dfd, name, path, st, None, cached, hlid)
        try:
            fd = os.open(name, _OPEN_FLAGS | getattr(os, "O_NOATIME", 0), dir_fd=dfd)
        except PermissionError:
            try:
                fd = os.open(name, _OPEN_FLAGS, dir_fd=dfd)
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
            if not _one_read(st.st_size, st.st_blocks):
                fst = os.fstat(fd)
                if not _same_file(fst, st):
                    raise _Replaced
            parts = self._read_file(fd, fst.st_size, st.st_blocks, st)
            after = os.fstat(fd)
            if not _same_file(after, st):
                raise _Replaced
            if (after.st_mtime_ns, after.st_size, after.st_ctime_ns) != (
                fst.st_mtime_ns, fst.st_size, fst.st_ctime_ns):
                self.warn(path, "changed while being read")
            elif self.opts.use_files_cache:
                self.cache.remember(path, after, parts)
            return self._file_entry(dfd, name, path, after, fd, parts, hlid)
        except _Replaced:
            self.warn(path, "replaced while being read, skipped")
            return None
        except OSError as e:
            self.warn(path, f"read error: {e.strerror}")
            return None
        finally:
            os.close(fd)

    def _read_small(self, fd: int, size: int) -> tuple[Part, ...] | None:
        """A file that is one chunk at most, in one read: most files of a source tree.

        Size + 1 bytes are asked for; exactly ``size`` back means the whole file was
        read (a file that changes meanwhile is caught by the fstat after reading).
        Anything else (a short read, a file that grew) returns None for the general
        path, which reads until EOF. No chunker, buffer or stream object is made:
        their cost per file was most of the time of a tree of small files.
        """
        data = os.read(fd, size + 1)
        if len(data) != size:
            return None
        self.stats.bytes_read += size
        self._maybe_progress(b"")
        return (Part(self.session.add(spec.BLOB_DATA, data), size),) if size else ()

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
        if hlid is not None:
            self._hardlinks[(st.st_dev, st.st_ino)] = (hlid, parts, size)
            self._hl_counts[hlid] = 1
        return self._entry(name, st, FILE, parts=parts, size=size, hardlink=hlid,
                           xattrs=self._xattrs(dfd, name, fd, path))

    def _read_file(self, fd: int, size: int, blocks: int,
                   st: os.stat_result | None = None) -> tuple[Part, ...]:
        """The file's content list; ``st`` (its lstat), if given, is what the fd must be
        before it is read past ``size`` (it was not checked before the one small read)."""
        self.stats.files_read += 1
        if _one_read(size, blocks):
            whole = self._read_small(fd, size)
            if whole is not None:
                return whole
            # short read or grown: read on (until EOF) only if it is that file
            if st is not None and not _same_file(os.fstat(fd), st):
                raise _Replaced
            os.lseek(fd, 0, os.SEEK_SET)
        if blocks * 512 >= size or size == 0:
            stream = os.fdopen(fd, "rb", buffering=0, closefd=False)
            return self._store_stream(stream, size)[0]
        parts: list[Part] = []
        pos = 0
        for off, length in fsmeta.data_extents(fd, size):
            if off > pos:
                parts.append(Part(None, off - pos))
            os.lseek(fd, off, os.SEEK_SET)
            remaining = length

            def readinto(view: memoryview, _fd: int = fd) -> int:
                nonlocal remaining
                n = os.readv(_fd, [view[: min(len(view), remaining)]]) if remaining else 0
                remaining -= n
                return n

            chunks = self.chunker.chunks(readinto, length)
            for blob_id, n in self.session.add_stream(spec.BLOB_DATA, chunks):
                parts.append(Part(blob_id, n))
                self.stats.bytes_read += n
            pos = off + length - remaining
        if pos < size:
            parts.append(Part(None, size - pos))
        self._maybe_progress(b"")
        return tuple(parts)

    def _entry(self, name: bytes, st: os.stat_result, t: str, **kw: object) -> Entry:
        self._maybe_progress(name)
        return Entry(
            name=name, type=t, mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid,
            mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, user=fsmeta.user_name(st.st_uid),
            group=fsmeta.group_name(st.st_gid),
            rdev=st.st_rdev if t in ("b", "c") else 0, **kw,  # type: ignore[arg-type]
        )

    def _maybe_progress(self, name: bytes) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self._last_progress >= 0.2:
            self._last_progress = now
            self.progress(self.stats, name)


class _Replaced(Exception):
    """The opened file is not the one lstat saw (swapped in between)."""


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def _one_read(size: int, blocks: int) -> bool:
    """Read in one bounded read: at most one chunk, and no holes to skip."""
    return size <= spec.CHUNK_MIN and blocks * 512 >= size


def _outermost(paths: Sequence[bytes]) -> list[bytes]:
    """Absolute, normalised paths with those inside another given path dropped."""
    norm = sorted({os.path.normpath(os.path.abspath(p)) for p in paths})
    out: list[bytes] = []
    for p in norm:
        if not any(p == o or p.startswith(o.rstrip(b"/") + b"/") for o in out):
            out.append(p)
    return out


def _is_cache_dir(fd: int, names: list[bytes]) -> bool:
    if b"CACHEDIR.TAG" not in names:
        return False
    try:
        tfd = os.open(b"CACHEDIR.TAG", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    except OSError:
        return False
    try:
        return os.read(tfd, len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
    finally:
        os.close(tfd)


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
