"""``dump``: one file's content to a stream, never a byte that did not verify.

Why its own rule about what is written: a stream cannot take bytes back. A file of
up to ``DUMP_BUFFER`` bytes is verified whole before its first byte goes out, so a
damaged one writes nothing; a larger one is streamed (its size must not cost
memory), each chunk verified before it is written, and damage ends it after a
verified prefix whose length the error says. Either way a damaged file raises an
error naming the damaged object: dump has nothing else to report, so one line.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from repofs import restorable
from repofs.errors import IntegrityError, RepofsError
from repofs.model import FILE, Entry
from repofs.prefetch import read_chunk
from repofs.repository import Repository

DUMP_BUFFER = 64 * 1024 * 1024  # dump verifies a file this large whole before writing it


def dump(repo: Repository, entry: Entry, out: BinaryIO, shown: str | None = None) -> int:
    """Write one file's content to ``out``; never a byte that did not verify.

    A file of up to ``DUMP_BUFFER`` bytes is read and verified whole before its first
    byte is written, so a damaged one writes nothing. A larger one is streamed, each
    chunk verified before it is written: damage ends it after a verified prefix (the
    error says how long). Either way a damaged file raises an error that names the
    damaged object (one line: dump has nothing else to report).
    """
    shown = shown or entry.name.decode("utf-8", "backslashreplace")
    if entry.type != FILE:
        raise RepofsError(f"{shown} is not a regular file")
    problem = restorable.entry_problem(entry)
    if problem is not None:
        raise IntegrityError("entry", shown, problem)
    buffered = entry.size <= DUMP_BUFFER
    pending: list[bytes | int] = []  # chunks, or sizes of holes
    written = 0
    try:
        for p in entry.parts:
            if p.chunk_id is None:
                pending.append(p.size)
            else:
                data = read_chunk(repo, p.chunk_id)
                if len(data) != p.size:
                    raise IntegrityError("chunk", p.chunk_id.hex(), "size differs from the tree")
                pending.append(data)
            if not buffered:
                written += _emit(out, pending)
    except IntegrityError as err:  # one line: the error names the damaged object
        raise RepofsError(f"{shown}: not written: {err} ("
                          + (f"only its first {written} bytes were written)" if written
                             else "nothing was written)")) from None
    written += _emit(out, pending)
    out.flush()
    return written


def _emit(out: BinaryIO, pending: list[bytes | int]) -> int:
    zeros = bytes(1024 * 1024)
    n = 0
    for item in pending:
        if isinstance(item, int):
            for i in range(0, item, len(zeros)):
                out.write(zeros[: min(len(zeros), item - i)])
            n += item
        else:
            out.write(item)
            n += len(item)
    pending.clear()
    return n


@contextlib.contextmanager
def output_file(path: Path) -> Iterator[BinaryIO]:
    """``dump -o FILE``: write to a new file beside ``path``, renamed onto it only when
    the dump completed. Why: a damaged or interrupted dump must never leave a truncated
    file (or archive) under the name a script then uses, nor spoil one already there.
    Mode 0600, as it may hold other users' files."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink()
        raise


__all__ = ["DUMP_BUFFER", "dump", "output_file"]
