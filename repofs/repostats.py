"""How big a repository is, and what each snapshot costs (``repofs stats``).

Two kinds of numbers, for two kinds of keys:

- From the index and the storage listing alone, which every key reads (a write-only
  key too, by design: it dedups against the index): blob counts and sizes before and
  after compression, packs and their bytes on disk, how many snapshots. A write-only
  key learns nothing more here than it already holds.
- From the snapshots' trees, which need a key that can read (full or admin): per
  snapshot the size a restore writes, and the data no other snapshot references (what
  forgetting it alone and pruning would free, before repacking).

Why trees are read once: the blobs below a tree depend only on its id, so each tree
is decoded once into the ids of its subtrees and chunks, and every snapshot's
reachable set is computed from those lists in memory. Damaged trees are reported
through ``damage`` (``treewalk``) and counted as holding nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from repofs import spec
from repofs.blobtable import BlobTable
from repofs.damage import DamageLog
from repofs.errors import IntegrityError
from repofs.model import DIR, FILE, Entry, Snapshot
from repofs.store import WriterStore
from repofs.treewalk import load, too_deep


class _Repo(Protocol):
    damage: DamageLog
    index: BlobTable
    store: WriterStore

    def load_tree(self, tree_id: bytes) -> list[Entry]: ...


@dataclass
class RepoStats:
    """What the index and the storage listing say (any key)."""

    snapshots: int = 0
    packs: int = 0
    pack_bytes: int = 0  # the packs' files: what the data occupies on disk
    index_segments: int = 0
    blobs: dict[str, int] = field(default_factory=dict)  # "chunk"/"tree" -> count
    raw_bytes: int = 0  # every distinct blob once, uncompressed: the deduplicated size
    stored_bytes: int = 0  # the same blobs compressed, encrypted and padded


@dataclass
class SnapshotStats:
    """What one snapshot holds (keys that can read)."""

    snapshot: Snapshot
    files: int = 0
    dirs: int = 0
    others: int = 0
    restore_bytes: int = 0  # the sum of its file sizes: what a restore writes
    blobs: int = 0  # distinct chunks and trees it references
    raw_bytes: int = 0  # those blobs once, uncompressed (the snapshot deduplicated)
    unique_blobs: int = 0  # referenced by no other snapshot
    unique_stored_bytes: int = 0  # their stored size: what forgetting it alone frees


def repository(repo: _Repo, snapshots: int) -> RepoStats:
    """Totals from the index (each blob counted once, at its first place) and listing."""
    st = RepoStats(snapshots=snapshots)
    seen: set[tuple[int, bytes]] = set()
    packs: set[str] = set()
    for pack, e in repo.index.entries():
        packs.add(pack)
        if (e.blob_type, e.blob_id) in seen:
            continue
        seen.add((e.blob_type, e.blob_id))
        name = spec.BLOB_NAMES.get(e.blob_type, "other")
        st.blobs[name] = st.blobs.get(name, 0) + 1
        st.raw_bytes += e.raw_len
        st.stored_bytes += e.length
    st.packs = len(packs)
    for pack in packs:
        try:
            st.pack_bytes += repo.store.size(spec.NS_DATA, pack)
        except FileNotFoundError:
            continue  # a pack the index names but storage lacks: check reports it
    st.index_segments = sum(1 for _ in repo.store.list(spec.NS_INDEX))
    return st


@dataclass(frozen=True)
class _Tree:
    subtrees: tuple[bytes, ...]
    chunks: tuple[bytes, ...]
    files: int
    dirs: int
    others: int
    file_bytes: int


class _Graph:
    """Every tree reachable from the snapshots, each decoded once into the ids below it."""

    def __init__(self, repo: _Repo) -> None:
        self.repo = repo
        self.trees: dict[bytes, _Tree | None] = {}
        self._totals: dict[bytes, tuple[int, int, int, int]] = {}

    def totals(self, root: bytes) -> tuple[int, int, int, int]:
        """(files, dirs, others, file bytes) below a tree, every path counted: a tree that
        appears at two paths (two empty directories share one) counts twice. Post-order
        over an explicit stack, each tree's totals remembered by its id."""
        self.reach(root)  # every tree below is read (or known damaged) now
        stack = [(root, False)]
        while stack:
            tid, expanded = stack.pop()
            if tid in self._totals:
                continue
            node = self.trees.get(tid)
            if node is None:
                self._totals[tid] = (0, 0, 0, 0)
                continue
            todo = [s for s in node.subtrees if s not in self._totals]
            if not expanded and todo:
                stack.append((tid, True))
                stack += [(s, False) for s in todo]
                continue
            f, d, o, b = node.files, node.dirs, node.others, node.file_bytes
            for sub in node.subtrees:
                sf, sd, so, sb = self._totals.get(sub, (0, 0, 0, 0))  # a cycle: counted 0
                f, d, o, b = f + sf, d + sd, o + so, b + sb
            self._totals[tid] = (f, d, o, b)
        return self._totals[root]

    def _read(self, tree_id: bytes, depth: int) -> _Tree | None:
        entries = None if too_deep(self.repo, tree_id, depth) else load(
            self.repo, tree_id, b"(tree " + tree_id.hex()[:8].encode() + b")")
        if entries is None:
            return None
        subs, chunks = [], []
        files = dirs = others = size = 0
        for e in entries:
            if e.type == DIR:
                dirs += 1
                if e.subtree is not None:
                    subs.append(e.subtree)
            elif e.type == FILE:
                files += 1
                size += e.size
                chunks += [p.chunk_id for p in e.parts if p.chunk_id is not None]
            else:
                others += 1
        return _Tree(tuple(subs), tuple(chunks), files, dirs, others, size)

    def reach(self, root: bytes) -> tuple[set[bytes], set[bytes]]:
        """The trees and the chunks a root tree reaches (each tree read once ever)."""
        trees: set[bytes] = set()
        chunks: set[bytes] = set()
        stack = [(root, 0)]
        while stack:
            tid, depth = stack.pop()
            if tid in trees:
                continue
            trees.add(tid)
            if tid not in self.trees:
                self.trees[tid] = self._read(tid, depth)
            t = self.trees[tid]
            if t is None:
                continue
            chunks.update(t.chunks)
            stack += [(s, depth + 1) for s in t.subtrees if s not in trees]
        return trees, chunks


def _size(repo: _Repo, blob_id: bytes, blob_type: int, stored: bool) -> int:
    try:
        e = repo.index.lookup(blob_id, blob_type).entry
    except IntegrityError:  # missing from the index: it costs nothing here (check names it)
        return 0
    return e.length if stored else e.raw_len


def per_snapshot(repo: _Repo, wanted: Sequence[Snapshot],
                 every: Iterable[Snapshot]) -> list[SnapshotStats]:
    """Stats of ``wanted``; uniqueness is judged against ``every`` readable snapshot."""
    graph = _Graph(repo)
    owners: Counter[tuple[int, bytes]] = Counter()
    readable = [s for s in every if s.body is not None]
    for s in readable:
        assert s.body is not None
        trees, chunks = graph.reach(s.body.tree)
        owners.update((spec.BLOB_TREE, t) for t in trees)
        owners.update((spec.BLOB_DATA, c) for c in chunks)
    out = []
    for s in wanted:
        st = SnapshotStats(s)
        out.append(st)
        if s.body is None:
            continue
        trees, chunks = graph.reach(s.body.tree)
        st.files, st.dirs, st.others, st.restore_bytes = graph.totals(s.body.tree)
        for blob_type, ids in ((spec.BLOB_TREE, trees), (spec.BLOB_DATA, chunks)):
            for b in ids:
                st.blobs += 1
                st.raw_bytes += _size(repo, b, blob_type, stored=False)
                if owners[(blob_type, b)] <= 1:
                    st.unique_blobs += 1
                    st.unique_stored_bytes += _size(repo, b, blob_type, stored=True)
    return out


__all__ = ["RepoStats", "SnapshotStats", "per_snapshot", "repository"]
