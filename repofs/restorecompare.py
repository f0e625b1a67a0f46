"""Is a file already in the target the one a snapshot entry holds?

Two answers, as rsync gives them. The quick check (``same_quick``) compares what
``stat`` says: a regular file of the entry's size, modification time and mode. It
decides whether a resumed restore skips a file. The content check
(``content_mismatch``) reads the file and compares it to the entry without reading
the repository: each stored part's bytes must hash to that part's chunk id (the
repository's keyed id, ``Repository.blob_id``), and a hole must read as zeros. It is
what ``--overwrite if-changed`` falls back on when the quick check differs, and what
``--verify`` checks every restored file with.
"""

from __future__ import annotations

import os
import stat

from repofs import spec
from repofs.model import BLOCK, CHAR, FIFO, FILE, SYMLINK, Entry
from repofs.repository import Repository

READ_MAX = 16 * 1024 * 1024  # one read's size at most; a part is read in pieces beyond


def same_quick(st: os.stat_result, e: Entry, mode: int) -> bool:
    """Size, modification time and permission bits as stored (``mode``: as restore would
    apply them, privileges removed unless asked)."""
    return (stat.S_ISREG(st.st_mode) and st.st_size == e.size
            and st.st_mtime_ns == e.mtime_ns and stat.S_IMODE(st.st_mode) == mode)


def same_entry(st: os.stat_result, e: Entry, mode: int, link_target: bytes | None) -> bool:
    """The quick check for any entry: a file by ``same_quick``; a symbolic link by its
    target (``link_target``: what the existing link holds); a FIFO or device by its type,
    device number and mode."""
    if e.type == FILE:
        return same_quick(st, e, mode)
    if e.type == SYMLINK:
        return stat.S_ISLNK(st.st_mode) and link_target == e.target
    kinds = {FIFO: stat.S_ISFIFO, BLOCK: stat.S_ISBLK, CHAR: stat.S_ISCHR}
    check = kinds.get(e.type)
    return (check is not None and check(st.st_mode) and stat.S_IMODE(st.st_mode) == mode
            and (e.type == FIFO or st.st_rdev == e.rdev))


def content_mismatch(repo: Repository, fd: int, e: Entry) -> str | None:
    """What differs between the open file ``fd`` and the entry's content (``None``: the
    same): its size, or the first part (by offset) whose bytes are not the stored ones."""
    size = os.fstat(fd).st_size
    if size != e.size:
        return f"size {size}, stored {e.size}"
    offset = 0
    for p in e.parts:
        if p.chunk_id is None:
            if not _zeros(fd, offset, p.size):
                return f"content differs in bytes {offset}+{p.size} (a hole in the snapshot)"
        elif p.size > spec.MAX_BLOB_RAW:  # no chunk is that large: the tree is wrong
            return f"the stored part at byte {offset} is larger than any chunk"
        else:
            data = _read(fd, offset, p.size)
            if len(data) != p.size or repo.blob_id(data, spec.BLOB_DATA) != p.chunk_id:
                return f"content differs in bytes {offset}+{p.size}"
        offset += p.size
    return None


def _zeros(fd: int, offset: int, size: int) -> bool:
    end = offset + size
    try:  # holes read as zeros: skip to the first data at or after offset
        offset = max(offset, os.lseek(fd, offset, os.SEEK_DATA))
    except OSError:  # ENXIO: nothing but a hole up to the end of the file
        return os.fstat(fd).st_size >= end
    while offset < end:
        data = os.pread(fd, min(end - offset, READ_MAX), offset)
        if not data or data.count(0) != len(data):
            return False
        offset += len(data)
    return True


def _read(fd: int, offset: int, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        data = os.pread(fd, min(size - len(out), READ_MAX), offset + len(out))
        if not data:
            break
        out += data
    return bytes(out)


__all__ = ["content_mismatch", "same_entry", "same_quick"]
