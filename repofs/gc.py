"""What prune must keep: the blobs kept snapshots reach, and which pack keeps each.

Why a module apart from ``prune``: deciding is read-only and can be tested on
its own; ``prune`` only acts on the decision. Liveness is computed from the
snapshots as they are when prune runs; every deletion is re-decided from the
snapshots of its own run (repofs-format(5), PRUNING).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from repofs import spec
from repofs.errors import IntegrityError
from repofs.model import DIR, FILE, Snapshot
from repofs.pack import BlobEntry
from repofs.repository import Repository

BlobKey = tuple[int, bytes]  # (blob type, blob id)


@dataclass
class IndexView:
    """Every decodable index segment, and the packs and blobs each one lists."""

    segments: dict[str, set[str]] = field(default_factory=dict)  # segment -> packs it lists
    damaged: dict[str, IntegrityError] = field(default_factory=dict)
    entries: dict[str, dict[BlobKey, BlobEntry]] = field(default_factory=dict)  # per pack
    from_segment: dict[str, dict[str, list[BlobEntry]]] = field(default_factory=dict)
    lists: dict[str, set[str]] = field(default_factory=dict)  # pack -> segments listing it

    def listed_by(self, pack: str) -> set[str]:
        return self.lists.get(pack, set())


def read_index(repo: Repository) -> IndexView:
    """Read every index segment (a damaged one is set aside, never deleted by prune), and
    add the packs no usable segment lists whose trailers verify (``recovery``): the blobs a
    lost segment listed are still live, and a pack that looks unindexed would be condemned."""
    view = IndexView()
    for seg in repo.segments():
        if seg.error is not None:
            view.damaged[seg.name] = seg.error
            continue
        view.segments[seg.name] = {p for p, _ in seg.packs}
        for p in view.segments[seg.name]:
            view.lists.setdefault(p, set()).add(seg.name)
        view.from_segment[seg.name] = {}
        for pack, rows in seg.packs:
            view.from_segment[seg.name].setdefault(pack, []).extend(rows)
            known = view.entries.setdefault(pack, {})
            for row in rows:
                known.setdefault((row.blob_type, row.blob_id), row)
    for pack, rows in repo.recover_locations(again=True).packs.items():
        if pack not in view.entries:
            view.entries[pack] = {(row.blob_type, row.blob_id): row for row in rows}
    return view


def live_blobs(repo: Repository, snaps: Iterable[Snapshot]) -> set[BlobKey]:
    """Every tree and chunk the snapshots reach; raises on any tree that does not read, so
    prune never decides from a partial picture."""
    live: set[BlobKey] = set()
    stack = []
    for s in snaps:
        if s.body is None:
            raise IntegrityError("snapshot", s.id, "its body cannot be read with this key")
        stack.append(s.body.tree)
    while stack:
        tree = stack.pop()
        if (spec.BLOB_TREE, tree) in live:
            continue
        live.add((spec.BLOB_TREE, tree))
        for e in repo.load_tree(tree):
            if e.type == FILE:
                live.update((spec.BLOB_DATA, p.chunk_id) for p in e.parts
                            if p.chunk_id is not None)
            elif e.type == DIR and e.subtree is not None:
                stack.append(e.subtree)
    return live


def assign(live: set[BlobKey], view: IndexView, present: set[str],
           condemned: set[str]) -> dict[str, set[BlobKey]]:
    """Choose one pack to keep each live blob: packs no prune condemned first, then the
    ones holding the most live bytes. So after an interrupted repack the new copy wins and
    the old pack empties, instead of both being repacked again and again."""
    held: dict[str, int] = {}
    for pack, blobs in view.entries.items():
        if pack in present:
            held[pack] = sum(e.length for k, e in blobs.items() if k in live)
    order = sorted(held, key=lambda p: (p in condemned, -held[p], p))
    out: dict[str, set[BlobKey]] = {p: set() for p in order}
    todo = set(live)
    for pack in order:
        mine = todo.intersection(view.entries[pack])
        out[pack] = mine
        todo -= mine
        if not todo:
            break
    return out


def live_bytes(view: IndexView, pack: str, blobs: set[BlobKey]) -> int:
    return sum(view.entries[pack][k].length for k in blobs)


__all__ = ["BlobKey", "IndexView", "assign", "live_blobs", "live_bytes", "read_index"]
