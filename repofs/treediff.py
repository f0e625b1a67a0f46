"""What changed between two snapshots (``repofs diff``): added, removed, changed content,
changed metadata, changed type.

Why it is fast: trees are content-addressed, so two directories with the same tree id
hold the same everything below them. The walk compares two trees name by name and
descends only into pairs of subtrees whose ids differ: a 1% change in a large snapshot
reads the trees on the paths to the changes, not the whole snapshot. Below an added
or removed directory every entry is listed, as restic and git do. Within two differing
trees only the entries whose stored bytes differ are decoded (``treewalk.listing``):
decoding every entry of every tree on the way cost ten times reading them.

Iterative (a stack of merged listings), every tree hostile (``treewalk``): a tree that
does not verify is reported through ``damage`` and its subtree left out of the diff.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass

from repofs.model import DIR, FILE, Entry, RawEntry
from repofs.treewalk import Trees, child_path, entry, listing, too_deep, walk

ADDED, REMOVED, CONTENT, METADATA, TYPE = "added", "removed", "content", "metadata", "type"
KINDS = (ADDED, REMOVED, CONTENT, METADATA, TYPE)


@dataclass(frozen=True, slots=True)
class Change:
    """One path that differs; ``old``/``new`` are its entries (None where absent)."""

    kind: str
    path: bytes
    old: Entry | None
    new: Entry | None


def _owner(e: Entry) -> tuple[object, ...]:
    return (e.mode, e.uid, e.gid, e.user, e.group, e.xattrs)


def content_differs(a: Entry, b: Entry) -> bool:
    """Same type assumed. Chunk ids are keyed hashes of the content, so equal parts mean
    equal bytes; a symlink's content is its target, a device's its number."""
    if a.type == FILE:
        return a.size != b.size or a.parts != b.parts
    return a.target != b.target or a.rdev != b.rdev


def metadata_differs(a: Entry, b: Entry) -> bool:
    """Mode, owner, xattrs, and for all but directories the modification time (a
    directory's follows its contents, which the diff lists themselves). The ctime and
    hardlink numbers are not compared: they change with every copy of a tree."""
    return _owner(a) != _owner(b) or (a.type != DIR and a.mtime_ns != b.mtime_ns)


def _merged(trees: Trees, old: list[RawEntry], new: list[RawEntry], old_id: bytes,
            new_id: bytes) -> Iterator[tuple[Entry | None, Entry | None]]:
    """Pairs by name of two sorted listings (the tree decoder enforces the order). A
    name whose stored entry is the same in both is skipped undecoded: it cannot differ,
    and with 1% of a tree changed that is nearly every entry. An entry that breaks a
    per-entry rule is left out (reported), as everywhere."""
    i = j = 0
    n_old, n_new = len(old), len(new)
    while i < n_old and j < n_new:
        if old[i:i + _RUN] == new[j:j + _RUN]:  # compared in C: the common case
            i += _RUN
            j += _RUN
            continue
        (na, ra), (nb, rb) = old[i], new[j]
        if na < nb:
            a, b = entry(trees, old[i], old_id), None
            i += 1
        elif nb < na:
            a, b = None, entry(trees, new[j], new_id)
            j += 1
        else:
            a = b = None
            if ra != rb:
                a, b = entry(trees, old[i], old_id), entry(trees, new[j], new_id)
            i += 1
            j += 1
        if a is not None or b is not None:
            yield a, b
    for k in range(i, n_old):
        if (a := entry(trees, old[k], old_id)) is not None:
            yield a, None
    for k in range(j, n_new):
        if (b := entry(trees, new[k], new_id)) is not None:
            yield None, b


_RUN = 16  # entries compared at once before one is looked at alone


_Frame = tuple[Iterator[tuple[Entry | None, Entry | None]], bytes, int]


def diff(trees: Trees, old: Entry | None, new: Entry | None, path: bytes = b"") -> Iterator[
        Change]:
    """Every change from ``old`` to ``new`` (the entries at ``path`` in two snapshots, a
    snapshot's root being a directory entry), parents before their contents."""
    stack: list[_Frame] = []
    pushed = yield from _pair(trees, old, new, path, -1)
    if pushed is not None:
        stack.append(pushed)
    while stack:
        it, base, depth = stack[-1]
        pair = next(it, None)
        if pair is None:
            stack.pop()
            continue
        a, b = pair
        name = (a or b).name  # type: ignore[union-attr]  # never both None
        pushed = yield from _pair(trees, a, b, child_path(base, name), depth + 1)
        if pushed is not None:
            stack.append(pushed)


def _pair(trees: Trees, a: Entry | None, b: Entry | None, path: bytes,
          depth: int) -> Generator[Change, None, _Frame | None]:
    """The changes of one name; the listing to descend into when both are directories
    whose trees differ (None otherwise)."""
    if a is None or b is None:
        if a is not None:
            yield from _everything(trees, REMOVED, a, path, depth)
        if b is not None:
            yield from _everything(trees, ADDED, b, path, depth)
        return None
    if a.type != b.type:
        yield Change(TYPE, path, a, b)
        for kind, e in ((REMOVED, a), (ADDED, b)):
            if e.type == DIR and e.subtree is not None:
                for p, sub in walk(trees, e.subtree, path, depth + 1):
                    yield Change(kind, p, sub if kind == REMOVED else None,
                                 sub if kind == ADDED else None)
        return None
    if a.type != DIR:
        if content_differs(a, b):
            yield Change(CONTENT, path, a, b)
        elif metadata_differs(a, b):
            yield Change(METADATA, path, a, b)
        return None
    if metadata_differs(a, b):
        yield Change(METADATA, path, a, b)
    if a.subtree == b.subtree or a.subtree is None or b.subtree is None:
        return None  # the same tree id: the same everything below
    if too_deep(trees, b.subtree, depth + 1):
        return None
    old, new = listing(trees, a.subtree, path), listing(trees, b.subtree, path)
    if old is None or new is None:
        return None  # reported: what is below cannot be compared
    return _merged(trees, old, new, a.subtree, b.subtree), path, depth


def _everything(trees: Trees, kind: str, e: Entry, path: bytes,
                depth: int) -> Iterator[Change]:
    """``e`` and, for a directory, everything below it, all as ``kind`` (added/removed)."""
    yield Change(kind, path, e if kind == REMOVED else None, e if kind == ADDED else None)
    if e.type == DIR and e.subtree is not None:
        for p, sub in walk(trees, e.subtree, path, depth + 1):
            yield Change(kind, p, sub if kind == REMOVED else None, sub if kind == ADDED
                         else None)


__all__ = ["ADDED", "CONTENT", "KINDS", "METADATA", "REMOVED", "TYPE", "Change",
           "content_differs", "diff", "metadata_differs"]
