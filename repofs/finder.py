"""Which snapshots hold paths matching a pattern (``repofs find``), as restic find.

Patterns are those of ``--exclude`` (repofs.patterns): without ``/`` a pattern matches
any single name, with ``/`` a whole path from the root; ``*`` stops at ``/``, ``**``
does not. Only the entry itself is matched, not its parents.

Why it is fast across many snapshots: consecutive snapshots share most of their trees.
The matches below a directory depend only on its tree id and its path, so they are
remembered by that pair: a subtree met again, in this snapshot or a later one, is not
read again. Only entries that match or are directories are decoded (``treewalk.listing``):
the name is all a pattern needs. Iterative, every tree hostile (``treewalk``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from repofs.model import DIR, Entry, RawEntry, Snapshot
from repofs.patterns import PatternSet
from repofs.treewalk import Trees, child_path, entry, listing, too_deep

Match = tuple[bytes, Entry]


@dataclass(frozen=True)
class Found:
    """The matches of one snapshot, in path order."""

    snapshot: Snapshot
    matches: tuple[Match, ...]


class Finder:
    """Match one pattern set across snapshots, remembering the matches of every subtree."""

    def __init__(self, trees: Trees, patterns: PatternSet) -> None:
        self.trees = trees
        self.patterns = patterns
        self._memo: dict[tuple[bytes, bytes], tuple[Match, ...]] = {}
        self.trees_read = 0  # for tests and --json: how much work the memo saved

    def search(self, tree_id: bytes) -> tuple[Match, ...]:
        """Every (path, entry) below the root tree ``tree_id`` whose path matches."""
        out: list[Match] = []
        done = self._memo.get((tree_id, b""))
        if done is not None:
            return done
        entries = listing(self.trees, tree_id, b"")
        self.trees_read += 1
        if entries is None:
            return ()
        # A frame: the listing being walked, its path and depth, its tree id, and where
        # its matches start in ``out``; when it is done, out[start:] is its memo.
        stack: list[tuple[Iterator[RawEntry], bytes, int, bytes, int]] = [
            (iter(entries), b"", 0, tree_id, 0)]
        while stack:
            it, path, depth, tid, start = stack[-1]
            item = next(it, None)
            if item is None:
                stack.pop()
                self._memo[(tid, path)] = tuple(out[start:])
                continue
            p = child_path(path, item[0])
            matched = self.patterns.matches(p)
            if not matched and not _maybe_dir(item):
                continue  # neither shown nor descended into: never decoded
            e = entry(self.trees, item, tid)
            if e is None:
                continue
            if matched:
                out.append((p, e))
            if e.type != DIR or e.subtree is None:
                continue
            known = self._memo.get((e.subtree, p))
            if known is not None:
                out.extend(known)
                continue
            if too_deep(self.trees, e.subtree, depth + 1):
                continue
            sub = listing(self.trees, e.subtree, p)
            self.trees_read += 1
            if sub is not None:
                stack.append((iter(sub), p, depth + 1, e.subtree, len(out)))
        return tuple(out)


def _maybe_dir(item: RawEntry) -> bool:
    """Whether an item may be a directory: its stored type field, or a decoded entry's
    type (decoding checks the field before the walk relies on it)."""
    raw = item[1]
    return raw.type == DIR if isinstance(raw, Entry) else bool(raw.get("t") == DIR)


def find(trees: Trees, patterns: PatternSet, snapshots: Iterable[Snapshot]) -> Iterator[Found]:
    """The matches of each snapshot whose body this key can read, in the order given."""
    finder = Finder(trees, patterns)
    for s in snapshots:
        if s.body is None:
            continue
        yield Found(s, finder.search(s.body.tree))


__all__ = ["Found", "Finder", "Match", "find"]
