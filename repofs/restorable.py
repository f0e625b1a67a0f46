"""Which stored entries restore can write, and which of their powers it may recreate.

Two rules about entries read from a tree, kept here so that restore, dump and
check apply the same ones (check says what a restore would lose):

- **What a file system can take.** The tree decoder bounds every number, but a
  file may claim up to 2^63 bytes and a device number any integer, more than
  ``off_t`` or ``dev_t`` can hold. Such an entry is damage (a writer planted it):
  named and skipped, before any file is created, never an ``OverflowError``.
- **Privileges.** A snapshot written by a writer key may have been planted
  (threat model A3, A4): a set-user-ID root shell, a file capability, a
  world-writable block device of the system disk. Restore does not recreate those
  powers unless asked (``--special``): set-user-ID and set-group-ID bits are cleared
  on files, the ``security.capability`` attribute is not set, and device nodes are
  not created. Each is named in a warning, so a system restore knows what to fix.
"""

from __future__ import annotations

import stat

from repofs import spec
from repofs.model import BLOCK, CHAR, FILE, Entry

MAX_FILE_SIZE = 2**63 - 1  # the largest off_t
MAX_RDEV = 2**64 - 1  # the largest dev_t
CAPABILITY_XATTR = b"security.capability"
PRIVILEGE_BITS = stat.S_ISUID | stat.S_ISGID


def entry_problem(e: Entry) -> str | None:
    """Why no file system can hold ``e`` as stored, or None if it can."""
    if e.type == FILE:
        if e.size > MAX_FILE_SIZE:
            return f"claims {e.size} bytes, more than a file can hold"
        offset = 0
        for p in e.parts:
            if p.size < 0 or (p.chunk_id is not None and p.size > spec.CHUNK_MAX):
                return "has a part of impossible size"
            offset += p.size
        if offset != e.size:
            return "parts do not add up to its size"
    elif e.type in (BLOCK, CHAR) and not 0 <= e.rdev <= MAX_RDEV:
        return f"claims device number {e.rdev}, more than a device number can hold"
    return None


def privileges(e: Entry) -> list[str]:
    """The powers a restore without ``--special`` does not recreate for ``e``."""
    out = []
    if e.type in (BLOCK, CHAR):
        out.append("device node")
    if e.type == FILE and e.mode & stat.S_ISUID:
        out.append("set-user-ID bit")
    if e.type == FILE and e.mode & stat.S_ISGID:
        out.append("set-group-ID bit")
    if e.type == FILE and any(k == CAPABILITY_XATTR for k, _ in e.xattrs):
        out.append("file capabilities")
    return out


def without_privileges(e: Entry) -> tuple[int, tuple[tuple[bytes, bytes], ...]]:
    """The mode and extended attributes to restore ``e`` with, its powers taken away."""
    if e.type != FILE:
        return e.mode, e.xattrs
    return (e.mode & ~PRIVILEGE_BITS,
            tuple((k, v) for k, v in e.xattrs if k != CAPABILITY_XATTR))


__all__ = ["CAPABILITY_XATTR", "MAX_FILE_SIZE", "MAX_RDEV", "entry_problem", "privileges",
           "without_privileges"]
