"""A source file's content into stored chunks: one read for a small file, extents for a
sparse one, the chunker for the rest.

Why apart from the archiver: how bytes are read and cut is one job (the fast path for
trees of small files lives here); which files to read, and what their entries say, is
the walk's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import IO

from repofs import fsmeta, spec
from repofs.chunker import Chunker
from repofs.model import Part
from repofs.session import WriteSession
from repofs.sourcetree import Replaced, one_read, same_file


class ContentReader:
    """Reads content into ``session``; ``counted(n)`` hears of every ``n`` bytes read."""

    def __init__(self, session: WriteSession, chunker: Chunker,
                 counted: Callable[[int], None]) -> None:
        self.session = session
        self.chunker = chunker
        self.counted = counted

    def stream(self, stream: IO[bytes],
               size_hint: int | None = None) -> tuple[tuple[Part, ...], int]:
        """Everything ``stream`` gives until its end: the parts and their total size."""
        parts = []
        size = 0
        chunks = self.chunker.chunks(stream.readinto, size_hint)  # type: ignore[attr-defined]
        for blob_id, n in self.session.add_stream(spec.BLOB_DATA, chunks):
            parts.append(Part(blob_id, n))
            size += n
            self.counted(n)
        return tuple(parts), size

    def small(self, fd: int, size: int) -> tuple[Part, ...] | None:
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
        self.counted(size)
        return (Part(self.session.add(spec.BLOB_DATA, data), size),) if size else ()

    def read_file(self, fd: int, size: int, blocks: int,
                  st: os.stat_result | None = None) -> tuple[Part, ...]:
        """The file's content list; ``st`` (its lstat), if given, is what the fd must be
        before it is read past ``size`` (it was not checked before the one small read).
        Raises Replaced if it is not."""
        if one_read(size, blocks):
            whole = self.small(fd, size)
            if whole is not None:
                return whole
            # short read or grown: read on (until EOF) only if it is that file
            if st is not None and not same_file(os.fstat(fd), st):
                raise Replaced
            os.lseek(fd, 0, os.SEEK_SET)
        if blocks * 512 >= size or size == 0:
            stream = os.fdopen(fd, "rb", buffering=0, closefd=False)
            return self.stream(stream, size)[0]
        return self._sparse(fd, size)

    def _sparse(self, fd: int, size: int) -> tuple[Part, ...]:
        """Only the data extents are read; the holes between them become hole parts."""
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
                self.counted(n)
            pos = off + length - remaining
        if pos < size:
            parts.append(Part(None, size - pos))
        return tuple(parts)
