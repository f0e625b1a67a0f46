"""What a name in a mount stands for, and the attributes shown for it.

Four kinds of node make up a mount: entries of a snapshot's tree (``Stored``),
directories of the layout built from the snapshot list (``Virtual``: ``ids/``,
``hosts/<host>/``, ...), the ``latest`` symlink (``Link``), and the directories
of the history view (``History``). A stored entry never changes, so the kernel
may cache its attributes for a day; the layout changes when snapshots appear,
so it is cached for a second only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field

from repofs.model import BLOCK, CHAR, DIR, FIFO, FILE, SYMLINK, Entry

LONG_TTL = 86400.0  # stored entries are immutable
SHORT_TTL = 1.0  # the layout follows new snapshots
BLOCK_SIZE = 4096  # st_blocks of a data extent is rounded up to this, as on ext4 or tmpfs

TYPE_BITS = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK,
             BLOCK: stat.S_IFBLK, CHAR: stat.S_IFCHR, FIFO: stat.S_IFIFO}


@dataclass(frozen=True, eq=False, slots=True)
class SnapCtx:
    """One readable snapshot as the mount shows it; compared by identity (one per id)."""

    id: str
    time_ns: int
    dirname: bytes  # its name under snapshots/, hosts/<h>/ and tags/<t>/, unique in the mount
    tree: bytes
    host: str
    tags: tuple[str, ...]
    hardlinks: Mapping[int, int]  # hardlink id -> number of links in this snapshot

    def root(self) -> Entry:
        """The snapshot's root directory: the tree has no entry of its own."""
        return Entry(name=b"", type=DIR, mode=0o755, uid=0, gid=0, mtime_ns=self.time_ns,
                     ctime_ns=self.time_ns, subtree=self.tree)


@dataclass(frozen=True, slots=True)
class Stored:
    """An entry of a snapshot's tree (a snapshot's root is one too)."""

    ctx: SnapCtx
    entry: Entry

    def key(self, parent: int, name: bytes) -> tuple[object, ...]:
        """Hardlinked files share one inode per snapshot; everything else has its own."""
        hl = self.entry.hardlink
        if hl is not None and self.ctx.hardlinks.get(hl, 1) > 1:
            return ("hardlink", self.ctx.id, hl)
        return (parent, name)


@dataclass(frozen=True, slots=True)
class Virtual:
    """A directory of the layout, e.g. ``(b"hosts", b"web1")``."""

    path: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Link:
    """A symlink of the layout (``snapshots/latest``)."""

    target: bytes


@dataclass(frozen=True, slots=True)
class History:
    """``history/<path>/``; with ``versions`` set, the ``.versions`` directory of a directory."""

    path: bytes  # stored path without a leading '/'; b"" is history/ itself
    versions: bool = False


Spec = Stored | Virtual | Link | History


@dataclass(frozen=True, slots=True)
class Attr:
    """What stat(2) shows, and how long the kernel may trust it and the name leading to it."""

    mode: int  # type and permission bits
    uid: int
    gid: int
    nlink: int = 1
    size: int = 0
    blocks: int = 0
    rdev: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    attr_ttl: float = SHORT_TTL
    entry_ttl: float = SHORT_TTL


@dataclass(frozen=True, slots=True)
class Presentation:
    """Overrides of stored owners and modes (``--uid``, ``--gid``, ``--umask``).

    ``owner`` owns the layout's directories: the user running the mount.
    """

    uid: int | None = None
    gid: int | None = None
    umask: int = 0
    owner: tuple[int, int] = field(default_factory=lambda: (os.getuid(), os.getgid()))

    def ids(self, uid: int, gid: int) -> tuple[int, int]:
        return (uid if self.uid is None else self.uid), (gid if self.gid is None else self.gid)

    def perms(self, mode: int) -> int:
        return mode & 0o7777 & ~self.umask


def sparse_blocks(entry: Entry) -> int:
    """512-byte blocks of the stored data: holes take none, as in the source."""
    blocks = 0
    run = 0
    for p in entry.parts:
        if p.chunk_id is None:
            blocks += -(-run // BLOCK_SIZE) * (BLOCK_SIZE // 512)
            run = 0
        else:
            run += p.size
    return blocks + -(-run // BLOCK_SIZE) * (BLOCK_SIZE // 512)


def stored_attr(s: Stored, view: Presentation) -> Attr:
    e = s.entry
    uid, gid = view.ids(e.uid, e.gid)
    nlink = s.ctx.hardlinks.get(e.hardlink, 1) if e.hardlink is not None else 1
    size = e.size if e.type == FILE else len(e.target or b"") if e.type == SYMLINK else 0
    return Attr(mode=TYPE_BITS[e.type] | view.perms(e.mode), uid=uid, gid=gid,
                nlink=max(nlink, 1), size=size,
                blocks=sparse_blocks(e) if e.type == FILE else 0, rdev=e.rdev,
                mtime_ns=e.mtime_ns, ctime_ns=e.ctime_ns, attr_ttl=LONG_TTL, entry_ttl=LONG_TTL)


def layout_attr(view: Presentation, time_ns: int, link: bytes | None = None) -> Attr:
    """A layout directory (r-x for everyone: it only names snapshots) or symlink."""
    uid, gid = view.ids(*view.owner)
    if link is not None:
        return Attr(mode=stat.S_IFLNK | 0o777, uid=uid, gid=gid, size=len(link),
                    mtime_ns=time_ns, ctime_ns=time_ns)
    return Attr(mode=stat.S_IFDIR | view.perms(0o555), uid=uid, gid=gid, mtime_ns=time_ns,
                ctime_ns=time_ns)


def safe_name(text: str) -> bytes:
    """A host, tag or snapshot name as one path component; '%', '/' and NUL are escaped."""
    raw = text.encode("utf-8", "surrogateescape")
    raw = raw.replace(b"%", b"%25").replace(b"/", b"%2F").replace(b"\0", b"%00")
    if raw in (b"", b".", b".."):
        return raw.replace(b".", b"%2E") or b"%"  # unambiguous: a real '%' became '%25'
    return raw
