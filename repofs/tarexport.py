"""``dump --archive tar``: a snapshot's directory as a PAX tar stream, never a byte
that did not verify.

Why PAX, through the standard library's ``tarfile``: it is the one tar format that
holds everything a tree entry keeps (names of any length and any bytes, mtimes to
the nanosecond, ids past 2^21, sizes past 8 GiB, extended attributes and with them
POSIX ACLs, as ``SCHILY.xattr.*`` records that GNU tar ``--xattrs`` and bsdtar read).

Why files are verified before their header (repofs-dump(1), DAMAGE): a tar header
states the member's size, and a stream cannot take bytes back. So every file's
chunks are read and verified first: a file of up to ``DUMP_BUFFER`` bytes is kept
in memory and written from there; a larger one (its size must not cost memory) is
read twice, once to verify, once to write. A damaged file is left out of the archive
before anything of it is written (named through ``repo.damage``, listed in the
stats): the archive stays well formed, the command ends with warnings. Only if a
large file's chunk that verified a moment ago fails on the second read (storage
changed under us) is the archive given up: ``ArchiveAborted``, no end-of-archive
marker, so no tar takes the truncated stream for a whole one.
"""

from __future__ import annotations

import io
import itertools
import os
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from repofs import restorable, treewalk
from repofs.dumper import DUMP_BUFFER
from repofs.errors import IntegrityError, RepofsError
from repofs.model import BLOCK, CHAR, DIR, FIFO, FILE, SYMLINK, Entry, Part
from repofs.prefetch import Prefetch, read_chunk
from repofs.repository import Repository

_TYPES = {DIR: tarfile.DIRTYPE, SYMLINK: tarfile.SYMTYPE, CHAR: tarfile.CHRTYPE,
          BLOCK: tarfile.BLKTYPE, FIFO: tarfile.FIFOTYPE, FILE: tarfile.REGTYPE}
_COPY = 1024 * 1024  # bytes tarfile moves per read of a member's content
_BATCH = 256  # members whose files are planned for the prefetcher at once
_DEV_LIMIT = 8**7  # ustar's device number fields (7 octal digits); PAX has no record for them


class ArchiveAborted(RepofsError):
    """The archive was given up in the middle of a member; its stream is incomplete."""


@dataclass
class TarStats:
    members: int = 0
    bytes_written: int = 0  # file content, holes included
    left_out: list[bytes] = field(default_factory=list)  # snapshot paths of damaged files
    warnings: list[str] = field(default_factory=list)


def export_tar(repo: Repository, entry: Entry, path: bytes, out: BinaryIO) -> TarStats:
    """Write ``entry`` (found at ``path`` in the snapshot) and, for a directory,
    everything below it to ``out`` as a PAX tar stream. Members are named by their
    path in the snapshot without the leading ``/``; the snapshot's root itself is no
    member. Raises ``ArchiveAborted`` if the stream had to be cut (module doc)."""
    stats = TarStats()
    tar = tarfile.TarFile(fileobj=_Sink(out), mode="w", format=tarfile.PAX_FORMAT,  # type: ignore[arg-type]
                          encoding="utf-8", errors="surrogateescape", copybufsize=_COPY)
    links: dict[int, tuple[str, tuple[Part, ...]]] = {}
    base = b"/" + path.strip(b"/")
    prefetch = Prefetch(repo)
    try:
        for batch in _batches(_members(repo, entry, base)):
            prefetch.plan(_to_read(batch, links))
            for p, e in batch:
                _add(repo, prefetch, tar, p, e, links, stats)
                tar.members.clear()  # type: ignore[attr-defined]  # kept for reading back
    finally:
        prefetch.close()
    tar.close()  # the end-of-archive marker: only once every member is whole
    out.flush()
    return stats


def _batches(members: Iterator[tuple[bytes, Entry]]) -> Iterator[list[tuple[bytes, Entry]]]:
    while batch := list(itertools.islice(members, _BATCH)):
        yield batch


def _to_read(batch: Sequence[tuple[bytes, Entry]],
             links: dict[int, tuple[str, tuple[Part, ...]]]) -> list[Entry]:
    """The files of a batch whose content will be read whole in one pass (a large file
    is read twice: not worth the prefetcher's window), once per hardlink group."""
    out, groups = [], set(links)
    for _, e in batch:
        if e.type == FILE and e.size <= DUMP_BUFFER and e.hardlink not in groups:
            out.append(e)
            if e.hardlink is not None:
                groups.add(e.hardlink)
    return out


def _members(repo: Repository, entry: Entry, base: bytes) -> Iterator[tuple[bytes, Entry]]:
    if base != b"/":
        yield base, entry
    if entry.type == DIR and entry.subtree is not None:
        yield from treewalk.walk(repo, entry.subtree, base if base != b"/" else b"")


def _shown(path: bytes) -> str:
    return path.decode("utf-8", "backslashreplace")


def _add(repo: Repository, prefetch: Prefetch, tar: tarfile.TarFile, path: bytes, e: Entry,
         links: dict[int, tuple[str, tuple[Part, ...]]], stats: TarStats) -> None:
    name = path.lstrip(b"/").decode("utf-8", "surrogateescape")
    problem = restorable.entry_problem(e)
    if problem is not None:
        repo.damage.report(IntegrityError("entry", _shown(path), problem),
                           "left out of the archive")
        stats.left_out.append(path)
        return
    if e.type in (BLOCK, CHAR) and max(os.major(e.rdev), os.minor(e.rdev)) >= _DEV_LIMIT:
        stats.warnings.append(f"{_shown(path)}: device node left out: its number "
                              f"{os.major(e.rdev)}:{os.minor(e.rdev)} does not fit a tar header")
        return
    info = _info(e, name, path, stats)
    if e.type != FILE:
        tar.addfile(info)
        stats.members += 1
        return
    first = links.get(e.hardlink) if e.hardlink is not None else None
    if first is not None and first[1] == e.parts:
        info.type, info.linkname, info.size = tarfile.LNKTYPE, first[0], 0
        tar.addfile(info)
        stats.members += 1
        return
    if first is not None:  # a crafted tree: one group, two contents; as restore does
        stats.warnings.append(f"{_shown(path)}: hardlink group members differ in content; "
                              "archived unlinked")
    content = _verified(repo, prefetch, e, path, stats)
    if content is None:
        return
    info.size = e.size
    tar.addfile(info, content)
    stats.members += 1
    stats.bytes_written += e.size
    if e.hardlink is not None and first is None:
        links[e.hardlink] = (name, e.parts)


def _info(e: Entry, name: str, path: bytes, stats: TarStats) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = _TYPES[e.type]
    info.mode = e.mode & 0o7777
    info.uid, info.gid = e.uid, e.gid
    info.uname, info.gname = e.user or "", e.group or ""
    info.mtime = max(0, e.mtime_ns // 10**9)
    pax = {"mtime": pax_time(e.mtime_ns)}
    if e.type == SYMLINK and e.target is not None:
        info.linkname = e.target.decode("utf-8", "surrogateescape")
    if e.type in (BLOCK, CHAR):
        info.devmajor, info.devminor = os.major(e.rdev), os.minor(e.rdev)
    for k, v in e.xattrs:
        key = xattr_keyword(k)
        if key is None:
            stats.warnings.append(f"{_shown(path)}: extended attribute {_shown(k)} left "
                                  "out: a tar record name must be UTF-8")
            continue
        pax[key] = v.decode("utf-8", "surrogateescape")
    info.pax_headers = pax
    return info


def pax_time(ns: int) -> str:
    """A PAX time record, exact to the nanosecond (POSIX: ``[-]seconds.fraction``)."""
    sign = "-" if ns < 0 else ""
    sec, frac = divmod(abs(ns), 10**9)
    return f"{sign}{sec}.{frac:09d}"


def xattr_keyword(name: bytes) -> str | None:
    """The ``SCHILY.xattr.`` record name for an attribute, ``%`` and ``=`` escaped as GNU
    tar writes and reads them; None if the name is not UTF-8 (keywords must be)."""
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "SCHILY.xattr." + text.replace("%", "%25").replace("=", "%3D")


def _verified(repo: Repository, prefetch: Prefetch, e: Entry, path: bytes,
              stats: TarStats) -> io.RawIOBase | None:
    """A reader over the file's verified content, or None (reported) if any chunk fails."""
    buffered = e.size <= DUMP_BUFFER
    held: list[bytes | int] = []
    try:
        for p in e.parts:
            if p.chunk_id is None:
                held.append(p.size)
                continue
            data = _chunk(repo, p, prefetch if buffered else None, e)
            if buffered:
                held.append(data)
    except IntegrityError as err:
        repo.damage.report(err, "the files using it are left out of the archive")
        stats.left_out.append(path)
        return None
    if buffered:
        return _Content(iter(held))
    return _Content(_streamed(repo, e, path))


def _chunk(repo: Repository, p: Part, prefetch: Prefetch | None = None,
           e: Entry | None = None) -> bytes:
    assert p.chunk_id is not None
    data = (prefetch.chunk(e, p.chunk_id) if prefetch is not None and e is not None
            else read_chunk(repo, p.chunk_id))
    if len(data) != p.size:
        raise IntegrityError("chunk", p.chunk_id.hex(), "size differs from the tree")
    return data


def _streamed(repo: Repository, e: Entry, path: bytes) -> Iterator[bytes | int]:
    for p in e.parts:
        if p.chunk_id is None:
            yield p.size
            continue
        try:
            yield _chunk(repo, p)
        except IntegrityError as err:
            raise ArchiveAborted(f"{_shown(path)}: archive aborted in the middle of this "
                                 f"file: {err} (it verified a moment ago; the archive "
                                 "written so far is incomplete)") from None


class _Sink:
    """``out`` as tarfile's write mode wants it: with ``tell`` (a pipe has none). Not
    tarfile's own stream mode, whose buffer a destructor flushes after an error."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._pos = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos


class _Content(io.RawIOBase):
    """A file's content from verified chunks and holes (sizes), as tarfile reads it."""

    def __init__(self, pieces: Iterator[bytes | int]) -> None:
        self._pieces = pieces
        self._cur: memoryview | bytes = b""
        self._hole = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        assert size >= 0
        out = bytearray()
        while len(out) < size:
            if self._hole:
                n = min(self._hole, size - len(out))
                out += bytes(n)
                self._hole -= n
                continue
            if not self._cur:
                piece = next(self._pieces, None)
                if piece is None:
                    break
                if isinstance(piece, int):
                    self._hole = piece
                else:
                    self._cur = memoryview(piece)
                continue
            n = min(len(self._cur), size - len(out))
            out += self._cur[:n]
            self._cur = self._cur[n:]
        return bytes(out)


__all__ = ["ArchiveAborted", "TarStats", "export_tar", "pax_time", "xattr_keyword"]
