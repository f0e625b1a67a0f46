"""``history/``: every distinct version of every stored path, across all snapshots.

``history/<path>/`` of a path that was never a directory lists its versions:
one entry per distinct content, named after the first snapshot that holds it
(its directory name under ``snapshots/``), so "the file as it was before
Tuesday" is one ``ls`` away. A version is the stored entry itself, with its
own owner, mode and times. ``history/<path>/`` of a path that was a directory
in some snapshot lists the union of the names it ever held, each again a
history directory, plus ``.versions``: that directory's versions, whole trees
(a real child named ``.versions`` wins over it).

The versions of a path come from walking the path down in every snapshot.
A tree shared by many snapshots is searched once, so the cost follows the
number of distinct versions, not the number of snapshots.

Permissions (threat model A5): a history directory must not show a name that
some snapshot hid. It is owned by the path's owner when every version agrees
(else by root), and keeps only the permission bits every version has; for a
file, "readable" becomes "readable and searchable".
"""

from __future__ import annotations

import bisect
import stat
import threading
from collections import OrderedDict
from typing import Protocol

from repofs.model import DIR, Entry
from repofs.vfs.layout import Layout
from repofs.vfs.nodes import (
    SHORT_TTL,
    Attr,
    History,
    Presentation,
    SnapCtx,
    Spec,
    Stored,
    layout_attr,
)

VERSIONS = b".versions"
Occurrence = tuple[SnapCtx, Entry]


class TreeSource(Protocol):
    def load_tree(self, tree_id: bytes) -> list[Entry]: ...


def find(entries: list[Entry], name: bytes) -> Entry | None:
    """Binary search: tree entries are sorted by name (the decoder enforces it)."""
    i = bisect.bisect_left(entries, name, key=lambda e: e.name)
    return entries[i] if i < len(entries) and entries[i].name == name else None


def _join(path: bytes, name: bytes) -> bytes:
    return path + b"/" + name if path else name


def _content(e: Entry) -> tuple[object, ...]:
    """What makes two versions differ: content, not metadata such as times or modes."""
    return (e.type, e.parts, e.target, e.rdev, e.subtree)


class HistoryView:
    """Listings, lookups and attributes of the history directories."""

    def __init__(self, source: TreeSource, view: Presentation, memo_size: int = 256) -> None:
        self._source = source
        self._view = view
        self._memo: OrderedDict[tuple[int, bytes], list[Occurrence]] = OrderedDict()
        self._memo_size = memo_size
        self._lock = threading.Lock()

    def occurrences(self, layout: Layout, path: bytes) -> list[Occurrence]:
        """(snapshot, entry) for every snapshot holding ``path``, oldest first."""
        parts = path.split(b"/") if path else []
        occ = [(c, c.root()) for c in layout.ctxs]
        depth = len(parts)  # find the longest prefix already known
        with self._lock:
            while depth > 0:
                hit = self._memo.get((layout.generation, b"/".join(parts[:depth])))
                if hit is not None:
                    occ = hit
                    break
                depth -= 1
        for i in range(depth, len(parts)):
            occ = self._step(occ, parts[i])
            with self._lock:
                self._memo[(layout.generation, b"/".join(parts[: i + 1]))] = occ
                while len(self._memo) > self._memo_size:
                    self._memo.popitem(last=False)
        return occ

    def _step(self, occ: list[Occurrence], name: bytes) -> list[Occurrence]:
        found: dict[bytes, Entry | None] = {}
        out = []
        for ctx, e in occ:
            if e.type != DIR or e.subtree is None:
                continue
            if e.subtree not in found:
                found[e.subtree] = find(self._source.load_tree(e.subtree), name)
            child = found[e.subtree]
            if child is not None:
                out.append((ctx, child))
        return out

    @staticmethod
    def versions(occ: list[Occurrence]) -> list[tuple[bytes, Spec]]:
        """One entry per distinct content, named after the first snapshot holding it."""
        seen: set[tuple[object, ...]] = set()
        out: list[tuple[bytes, Spec]] = []
        for ctx, e in occ:
            key = _content(e)
            if key not in seen:
                seen.add(key)
                out.append((ctx.dirname, Stored(ctx, e)))
        return out

    def listing(self, layout: Layout, h: History) -> list[tuple[bytes, Spec]]:
        occ = self.occurrences(layout, h.path)
        if h.versions or (h.path and not any(e.type == DIR for _, e in occ)):
            return self.versions(occ)
        names: set[bytes] = set()
        done: set[bytes] = set()
        for _, e in occ:
            if e.type == DIR and e.subtree is not None and e.subtree not in done:
                done.add(e.subtree)
                names.update(c.name for c in self._source.load_tree(e.subtree))
        items: list[tuple[bytes, Spec]] = [(n, History(_join(h.path, n))) for n in names]
        if h.path and VERSIONS not in names:
            items.append((VERSIONS, History(h.path, versions=True)))
        items.sort(key=lambda item: item[0])
        return items

    def child(self, layout: Layout, h: History, name: bytes) -> Spec | None:
        occ = self.occurrences(layout, h.path)
        if h.versions or (h.path and not any(e.type == DIR for _, e in occ)):
            return next((s for n, s in self.versions(occ) if n == name), None)
        if self.occurrences(layout, _join(h.path, name)):
            return History(_join(h.path, name))
        if name == VERSIONS and h.path and occ:
            return History(h.path, versions=True)
        return None

    def attr(self, layout: Layout, h: History) -> Attr:
        if not h.path:
            return layout_attr(self._view, layout.time_ns)
        occ = self.occurrences(layout, h.path)
        perms = 0o777 if occ else 0
        for _, e in occ:
            p = e.mode & 0o777
            if e.type != DIR:
                r = p & 0o444
                p = r | (r >> 2)
            perms &= p
        uids = {e.uid for _, e in occ}
        gids = {e.gid for _, e in occ}
        if len(gids) != 1:
            perms &= ~0o070
        uid, gid = self._view.ids(uids.pop() if len(uids) == 1 else 0,
                                  gids.pop() if len(gids) == 1 else 0)
        mtime = max((e.mtime_ns for _, e in occ), default=layout.time_ns)
        return Attr(mode=stat.S_IFDIR | self._view.perms(perms), uid=uid, gid=gid,
                    mtime_ns=mtime, ctime_ns=mtime, attr_ttl=SHORT_TTL, entry_ttl=SHORT_TTL)
