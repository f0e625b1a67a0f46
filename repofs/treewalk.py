"""Reading snapshot trees for commands that only look (diff, find, stats): iteratively,
with every tree treated as hostile.

Why one module: each of these commands walks trees a writer may have planted or that
storage may have damaged. The rule is the same for all (repofs-format(5), DAMAGE): a
tree that does not load is named once through ``damage`` with what was left out, and
the walk goes on with everything else. Walks keep an explicit stack, never recursion,
so a deep tree costs memory in proportion to its depth and never the Python stack, and
depth is capped at ``spec.MAX_TREE_DEPTH`` as the decoders cap everything else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from repofs import spec
from repofs.damage import DamageLog
from repofs.errors import IntegrityError
from repofs.model import DIR, Entry, RawEntry, bad_entry, decode_raw


class Trees(Protocol):
    """What a walker needs of a repository: trees by id, and where to report damage."""

    damage: DamageLog

    def load_tree(self, tree_id: bytes) -> list[Entry]: ...


class RawTrees(Trees, Protocol):
    """A repository that can also hand out trees undecoded (``model.split_tree``)."""

    def load_tree_raw(self, tree_id: bytes) -> list[RawEntry]: ...


def listing(trees: Trees, tree_id: bytes, path: bytes) -> list[RawEntry] | None:
    """A tree's entries, undecoded where the repository can (a ``RawTrees``): whole-tree
    rules (names, order) checked now, each entry's own fields only when ``entry`` is
    asked for it. A tree that does not verify is reported and None; see ``load``."""
    raw = getattr(trees, "load_tree_raw", None)  # not isinstance: slow on a Protocol
    if raw is None:
        entries = load(trees, tree_id, path)
        return None if entries is None else [(e.name, e) for e in entries]
    try:
        return raw(tree_id)  # type: ignore[no-any-return]
    except IntegrityError as e:
        trees.damage.report(e, f"left out: {show(path)} and everything below it")
        return None


def entry(trees: Trees, item: RawEntry, tree_id: bytes) -> Entry | None:
    """The decoded entry of a ``listing`` item, or None when it breaks a per-entry rule:
    then it alone is left out and named, as ``Repository.load_tree`` does."""
    try:
        return decode_raw(item, tree_id.hex())
    except IntegrityError as e:
        trees.damage.report(bad_entry(item, tree_id.hex(), e), "entry left out")
        return None


def show(path: bytes) -> str:
    return path.decode("utf-8", errors="backslashreplace") or "/"


def load(trees: Trees, tree_id: bytes, path: bytes) -> list[Entry] | None:
    """The entries of one tree, or None when it does not verify (reported as damage)."""
    try:
        return trees.load_tree(tree_id)
    except IntegrityError as e:
        trees.damage.report(e, f"left out: {show(path)} and everything below it")
        return None


def too_deep(trees: Trees, tree_id: bytes, depth: int) -> bool:
    """True (and reported) past the depth any reader accepts."""
    if depth <= spec.MAX_TREE_DEPTH:
        return False
    trees.damage.report(IntegrityError("tree", tree_id.hex(), "nested too deep"),
                        "left out with everything below it")
    return True


def child_path(parent: bytes, name: bytes) -> bytes:
    return parent.rstrip(b"/") + b"/" + name


def walk(trees: Trees, tree_id: bytes, base: bytes = b"",
         depth: int = 0) -> Iterator[tuple[bytes, Entry]]:
    """(path, entry) for everything below the tree ``tree_id``, whose own path is ``base``
    (``b""`` for a snapshot's root) at ``depth``, depth first in name order: a directory's
    contents follow it, before its next sibling. Damaged trees are reported, left out."""
    stack: list[tuple[Iterator[Entry], bytes, int]] = []
    entries = None if too_deep(trees, tree_id, depth) else load(trees, tree_id, base)
    if entries is not None:
        stack.append((iter(entries), base, depth))
    while stack:
        it, path, d = stack[-1]
        e = next(it, None)
        if e is None:
            stack.pop()
            continue
        p = child_path(path, e.name)
        yield p, e
        if e.type == DIR and e.subtree is not None and not too_deep(trees, e.subtree, d + 1):
            sub = load(trees, e.subtree, p)
            if sub is not None:
                stack.append((iter(sub), p, d + 1))


__all__ = ["RawTrees", "Trees", "child_path", "entry", "listing", "load", "show", "too_deep",
           "walk"]
