"""The source file system as ``create`` meets it: how files are opened, how a swapped
file is noticed, which paths are outermost, how deep a walk may hold directories open.

Why apart from the archiver: these are facts about the source tree, not about storing
it; the archiver reads as the walk of one run.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence
from dataclasses import dataclass, field

from repofs import spec
from repofs.model import Entry

CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


@dataclass(eq=False)
class DirFrame:
    """One directory of the walk's stack: open, listed, its entries so far."""

    fd: int
    name: bytes
    path: bytes
    st: os.stat_result | None  # None for "/" given whole: its entry is the root itself
    xattrs: tuple[tuple[bytes, bytes], ...]
    depth: int
    names: list[bytes]
    pos: int = 0
    children: list[Entry] = field(default_factory=list)


class Replaced(Exception):
    """The opened file is not the one lstat saw (swapped in between)."""


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def one_read(size: int, blocks: int) -> bool:
    """Read in one bounded read: at most one chunk, and no holes to skip."""
    return size <= spec.CHUNK_MIN and blocks * 512 >= size


def outermost(paths: Sequence[bytes]) -> list[bytes]:
    """Absolute, normalised paths with those inside another given path dropped."""
    norm = sorted({os.path.normpath(os.path.abspath(p)) for p in paths})
    out: list[bytes] = []
    for p in norm:
        if not any(p == o or p.startswith(o.rstrip(b"/") + b"/") for o in out):
            out.append(p)
    return out


def is_cache_dir(fd: int, names: list[bytes]) -> bool:
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


def allow_deep_walks() -> None:
    """Raise the soft limit of open files so the walk can hold one directory open per
    level down to spec.MAX_TREE_DEPTH (a common soft limit is 1,024), as far as the hard
    limit lets it; below that, a too deep directory is named in a warning and skipped."""
    want = spec.MAX_TREE_DEPTH + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if new > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
