"""Which entries ``create`` stores: the rules beyond name patterns (tag files, sizes, the
``nodump`` flag, case-insensitive patterns) and the path lists of ``--files-from``.

Why apart from the archiver: choosing what to leave out is one job, with rules users
compare to restic's and borg's; the archiver only asks ``skip_*`` and counts the answer.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from repofs.immutable import read_flags
from repofs.patterns import PatternSet

FS_NODUMP_FL = 0x00000040  # <linux/fs.h>; chattr +d
_UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}
_SIZE = re.compile(r"([0-9]{1,20})([KMGT]?)(?:I?B)?", re.IGNORECASE)
_FLAG_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

# the reasons an entry is left out without a warning, as --json names them
SOCKET = "sockets"
TOO_LARGE = "larger_than"
NODUMP = "nodump"
TAGGED = "if_present"
REASONS = (SOCKET, TOO_LARGE, NODUMP, TAGGED)


def parse_size(text: str) -> int:
    """``123``, ``10K``, ``1m``, ``2GiB``, ``1TB``: bytes, with binary units (K = 1024).
    Raises ValueError for anything else (no fractions, no signs, no spaces)."""
    m = _SIZE.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a size: give a whole number with an optional "
                         "unit K, M, G or T (binary: 1K = 1024 bytes)")
    return int(m.group(1)) << _UNITS[m.group(2).upper()]


def read_path_list(data: bytes, nul: bool) -> list[bytes]:
    """The paths of a ``--files-from`` (one a line) or ``--files-from0`` (NUL-separated)
    file, verbatim: no white space is trimmed and there are no comments, so any file name
    can be given; empty entries are ignored."""
    return [p for p in data.split(b"\0" if nul else b"\n") if p]


class CasefoldPatterns:
    """Patterns matched regardless of case (``--iexclude``): both pattern and path are
    lowered, bytes that are not UTF-8 kept as they are."""

    def __init__(self, patterns: Iterable[bytes]) -> None:
        self._set = PatternSet([_lower(p) for p in patterns])

    def __bool__(self) -> bool:
        return bool(self._set)

    def matches(self, path: bytes) -> bool:
        return self._set.matches(_lower(path))


def _lower(b: bytes) -> bytes:
    return os.fsencode(os.fsdecode(b).lower()) if not b.isascii() else b.lower()


@dataclass
class Selection:
    """The rules of one ``create`` run; all empty: everything is stored."""

    excludes: PatternSet = field(default_factory=lambda: PatternSet([]))
    iexcludes: CasefoldPatterns = field(default_factory=lambda: CasefoldPatterns([]))
    if_present: Sequence[bytes] = ()
    larger_than: int | None = None
    nodump: bool = False

    def excluded(self, path: bytes) -> bool:
        """Left out by a name pattern (``--exclude``, ``--iexclude``)."""
        return bool((self.excludes and self.excludes.matches(path))
                    or (self.iexcludes and self.iexcludes.matches(path)))

    def too_large(self, size: int) -> bool:
        return self.larger_than is not None and size > self.larger_than

    def tagged(self, names: Sequence[bytes]) -> bool:
        """A directory holding one of the ``--exclude-if-present`` names (of any type)."""
        return any(n in names for n in self.if_present)

    def skip_nodump(self, dfd: int, name: bytes) -> bool:
        """Has the file or directory ``name`` (not followed) the ``nodump`` flag?

        Only asked with ``--exclude-nodump``, and only of regular files and directories:
        the flags are read through an open descriptor, and opening a device may act on it.
        A file that cannot be opened or a file system that keeps no flags: not nodump (the
        walk then reports what it meets itself)."""
        if not self.nodump:
            return False
        try:
            fd = os.open(name, _FLAG_OPEN, dir_fd=dfd)
        except OSError:
            return False
        try:
            return bool(read_flags(fd) & FS_NODUMP_FL)
        except OSError:
            return False
        finally:
            os.close(fd)


def empty_skipped() -> dict[str, int]:
    return dict.fromkeys(REASONS, 0)
