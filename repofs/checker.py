"""``repofs check``: prove a repository intact, or name every object that is not.

Why it reads in this order (the reverse of writing, repofs-format(5)): key
files and index segments first (their names must be the hash of their bytes),
then every snapshot and the history they form (``snapshots.chain_errors``,
``chain.analyse``, and the heads this client saw), then every tree reachable
from a snapshot, each chunk it names being indexed with the right type in a
pack that exists. With ``read_data``, every pack is read whole: its name is
re-hashed, its trailer opened, every blob decrypted and its keyed id checked,
and index entries that point into it where it holds no such blob are named.

A problem is reported once, with the snapshots it affects and the first path
it was met at; nothing stops at the first one. Trees are checked once each
(identical directories share a tree), so a check costs one pass over the
distinct trees, not over every snapshot's files.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from repofs import chain, crypto, signed, spec
from repofs.blobtable import Location
from repofs.envelope import HEADER_LEN, CannotRead
from repofs.errors import IntegrityError
from repofs.index import decode_segment
from repofs.model import DIR, FILE, Snapshot
from repofs.pack import BlobEntry, open_blob, read_trailer
from repofs.repository import Repository
from repofs.snapshots import chain_errors, heads

# blob id, blob type, offset in its pack, nonce, length, raw length: an index entry that
# differs from its pack's trailer in any of them is a lie, even at a real blob's offset
Place = tuple[bytes, int, int, int, int, int]
_MISSING_PACK = "missing, but an index segment lists blobs in it"


@dataclass
class Problem:
    """One damaged, missing or suspicious object, and what it affects."""

    kind: str
    object_id: str
    detail: str
    snapshots: set[str] = field(default_factory=set)
    path: str | None = None

    def line(self) -> str:
        where = f" (at {self.path})" if self.path else ""
        snaps = sorted(self.snapshots)
        affects = (f"; affects snapshot{'s' if len(snaps) > 1 else ''} "
                   f"{', '.join(s[:8] for s in snaps[:20])}"
                   f"{f' and {len(snaps) - 20} more' if len(snaps) > 20 else ''}"
                   if snaps else "")
        return f"{self.kind} {self.object_id}: {self.detail}{where}{affects}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.object_id, "detail": self.detail,
                "snapshots": sorted(self.snapshots), "path": self.path}


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def intact(self) -> bool:
        return not self.problems


class Checker:
    """One check of an opened repository (open it with ``index=False``: segments are read here)."""

    def __init__(self, repo: Repository, read_data: bool = False,
                 progress: Callable[[str], None] | None = None,
                 record: chain.HeadsGuard | None = None,
                 read_share: float = 1.0) -> None:
        self.repo = repo
        self.read_data = read_data
        self.read_share = read_share  # --read-data-subset: the share of packs read whole
        self._condemned: set[str] = set()  # packs a prune condemned: may be gone, not missing
        self._removals: signed.RecordSet[signed.Removal] = signed.RecordSet()
        self.progress = progress or (lambda _m: None)
        self.guard = record
        self.report = CheckReport()
        self._keyed: dict[tuple[str, str, str], int] = {}
        self._tree_memo: dict[bytes, frozenset[int]] = {}
        self._bad_places: set[tuple[str, int]] = set()  # (pack, offset) that failed --read-data
        self._packs: set[str] = set()

    def problem(self, kind: str, object_id: str, detail: str, path: bytes | None = None,
                snapshots: tuple[str, ...] = ()) -> int:
        """Record a problem once; the index of it, to attribute it to snapshots later."""
        key = (kind, object_id, detail)
        idx = self._keyed.get(key)
        if idx is None:
            idx = self._keyed[key] = len(self.report.problems)
            self.report.problems.append(Problem(kind, object_id, detail,
                                                path=os.fsdecode(path) if path else None))
        self.report.problems[idx].snapshots.update(snapshots)
        return idx

    def _from(self, e: IntegrityError, path: bytes | None = None,
              snapshots: tuple[str, ...] = ()) -> int:
        return self.problem(e.kind, e.object_id, e.detail, path, snapshots)

    def run(self) -> CheckReport:
        self._check_named(spec.NS_KEYS, "key file")
        self._load_index()
        self._packs = set(self.repo.store.list(spec.NS_DATA))
        self.report.counts["packs"] = len(self._packs)
        self._signed_records()
        pruned = 0
        for pack in self.repo.index.packs():
            if pack not in self._packs and pack in self._condemned:
                pruned += 1
            elif pack not in self._packs:
                self.problem("pack", pack, _MISSING_PACK)
        if pruned:
            self.report.notes.append(Problem("index", f"{pruned} packs", "deleted by prune "
                                             "and still listed by a segment the next prune "
                                             "deletes (harmless)"))
        if self.read_data:
            self._read_packs()
        snaps = self._snapshots()
        if not self.repo.can_read:
            self.report.notes.append(Problem("repository", self.repo.id[:8], "this key cannot "
                                             "read trees: only the history was checked"))
        else:
            for i, s in enumerate(snaps):
                self.progress(f"trees of snapshot {i + 1}/{len(snaps)}")
                assert s.body is not None
                for idx in self._tree(s.body.tree, b"/"):
                    self.report.problems[idx].snapshots.add(s.id)
        self.report.counts["trees"] = len(self._tree_memo)
        if self.guard is not None and self.report.intact:
            tips = heads(snaps)  # once: it walks every snapshot
            self.guard.remember([s for s in snaps if s.id in tips])
        return self.report

    # -- named objects -----------------------------------------------------------------------
    def _check_named(self, ns: str, kind: str) -> None:
        names = list(self.repo.store.list(ns))
        self.report.counts[f"{kind}s"] = len(names)
        for name in names:
            try:
                self.repo.get_verified(ns, name, kind)
            except IntegrityError as e:
                self._from(e)

    def _load_index(self) -> None:
        names = sorted(self.repo.store.list(spec.NS_INDEX))
        self.report.counts["index segments"] = len(names)
        for name in names:
            try:
                data = self.repo.get_verified(spec.NS_INDEX, name, "index segment")
                cipher = self.repo.open_cipher(data[:HEADER_LEN], spec.KIND_INDEX, name)
                for pack, entries in decode_segment(cipher, data):
                    self.repo.index.add_pack(pack, entries)
            except IntegrityError as e:
                self.problem("index segment", name, f"{e.detail} (the blobs it lists are "
                                                    "unknown to every reader)")

    def _signed_records(self) -> None:
        """Removal and condemn records: one that fails its signature is a plant (a writer
        cannot sign) or damage; readers ignore it, check names it."""
        removals = self.repo.snapshots.removals()
        condemned = signed.read_condemnations(self.repo.store, self.repo.keys)
        for name, e in sorted({**removals.bad, **condemned.bad}.items()):
            self.problem(e.kind, name, f"{e.detail} (ignored by every reader)")
        self._removals = removals
        self._condemned = {p for r in condemned.records for p in r.packs}
        self.report.counts["removal records"] = len(removals.records) + len(removals.bad)
        self.report.counts["condemn records"] = len(condemned.records) + len(condemned.bad)

    # -- history -----------------------------------------------------------------------------
    def _snapshots(self) -> list[Snapshot]:
        snaps: list[Snapshot] = []
        damaged: set[str] = set()
        removed = signed.removed_snapshots(self._removals)
        forgotten = 0
        for name in self.repo.store.list(spec.NS_SNAPSHOTS):
            if name in removed:  # forgotten: its data may be pruned already
                forgotten += 1
                continue
            try:
                snaps.append(self.repo.snapshots.read(name))
            except IntegrityError as e:
                damaged.add(name)
                self._from(e, snapshots=(name,))
        self.report.counts["snapshots"] = len(snaps) + len(damaged)
        if forgotten:
            self.report.notes.append(Problem("history", f"{forgotten} snapshots", "forgotten "
                                             "(removal records), awaiting prune"))
        referrers: dict[str, list[str]] = {}
        for s in snaps:
            for p in s.head.prev:
                referrers.setdefault(p.hex(), []).append(s.id)
        for err in chain_errors(snaps, removed):
            if err.object_id in damaged:
                self.problem("snapshot", err.object_id, "damaged (above), and referenced",
                             snapshots=tuple(referrers.get(err.object_id, ())))
            else:
                self._from(err, snapshots=(err.object_id, *referrers.get(err.object_id, ())))
        for f in chain.analyse(snaps, ghosts=signed.ghosts(self._removals),
                               void=signed.void(self._removals)):
            if f.problem:
                self.problem("snapshot", f.snapshot, f.detail, snapshots=(f.snapshot,))
            else:
                self.report.notes.append(Problem("snapshot", f.snapshot, f.detail))
        if len(heads(snaps)) > 1:
            self.report.notes.append(Problem("history", f"{len(heads(snaps))} heads",
                                             "concurrent writers; the next create joins them"))
        if self.guard is not None:
            for r in self.guard.rollbacks(snaps, removed):
                self._from(r)
        return [s for s in snaps if s.body is not None]

    # -- trees -------------------------------------------------------------------------------
    def _usable(self, blob_id: bytes, blob_type: int, path: bytes) -> int | None:
        """None if some indexed copy of the blob lies in a present pack (and passed
        --read-data); else the problem that says why not."""
        try:
            locs = self.repo.index.locations(blob_id, blob_type)
        except IntegrityError as e:
            return self._from(e, path)
        good = [loc for loc in locs if loc.pack in self._packs and not self._bad(loc)]
        if good:
            return None
        missing = [loc.pack for loc in locs if loc.pack not in self._packs]
        if missing:
            return self.problem("pack", missing[0], _MISSING_PACK, path)
        name = spec.BLOB_NAMES[blob_type]
        return self.problem(name, blob_id.hex(), "every indexed copy failed --read-data", path)

    def _bad(self, loc: Location) -> bool:
        return (loc.pack, loc.entry.offset) in self._bad_places

    def _tree(self, root: bytes, root_path: bytes) -> frozenset[int]:
        """Problems below a tree, each tree visited once; iterative, as trees nest deep."""
        if root in self._tree_memo:
            return self._tree_memo[root]
        frames: list[tuple[bytes, bytes, list[tuple[bytes, bytes]], set[int]]] = []

        def enter(tree: bytes, path: bytes) -> None:
            found: set[int] = set()
            children: list[tuple[bytes, bytes]] = []
            bad = self._usable(tree, spec.BLOB_TREE, path)
            if bad is not None:
                found.add(bad)
            elif len(frames) > spec.MAX_TREE_DEPTH:
                found.add(self.problem("tree", tree.hex(), "nested too deep", path))
            else:
                try:
                    entries = self.repo.load_tree(tree)
                except IntegrityError as e:
                    found.add(self._from(e, path))
                    entries = []
                for ent in entries:
                    child = path.rstrip(b"/") + b"/" + ent.name
                    if ent.type == FILE:
                        for part in ent.parts:
                            if part.chunk_id is not None:
                                bad = self._usable(part.chunk_id, spec.BLOB_DATA, child)
                                if bad is not None:
                                    found.add(bad)
                    elif ent.type == DIR and ent.subtree is not None:
                        children.append((ent.subtree, child))
            frames.append((tree, path, children, found))

        enter(root, root_path)
        while frames:
            tree, _path, children, found = frames[-1]
            if children:
                sub, sub_path = children.pop()
                if sub in self._tree_memo:
                    found |= self._tree_memo[sub]
                else:
                    enter(sub, sub_path)
                continue
            frames.pop()
            self._tree_memo[tree] = frozenset(found)
            if frames:
                frames[-1][3].update(found)
        return self._tree_memo[root]

    # -- --read-data -------------------------------------------------------------------------
    def _read_packs(self) -> None:
        indexed: dict[str, set[Place]] = {}
        for pack, e in self.repo.index.entries():
            indexed.setdefault(pack, set()).add(_place(e))
        chosen = sorted(self._packs)
        if self.read_share < 1.0:  # a fresh random share each run: over runs, every pack
            want = math.ceil(len(chosen) * self.read_share) if self.read_share > 0 else 0
            chosen = sorted(random.SystemRandom().sample(chosen, want))
            self.report.notes.append(Problem("repository", self.repo.id[:8], f"--read-data-"
                                             f"subset: read {want} of {len(self._packs)} "
                                             "packs, chosen at random"))
        for i, pack in enumerate(chosen):
            self.progress(f"reading pack {i + 1}/{len(chosen)}")
            try:
                listed, held = self._read_pack(pack)
            except CannotRead:
                self.report.notes.append(Problem("repository", self.repo.id[:8], "this key "
                                                 "cannot decrypt packs: --read-data skipped"))
                return
            except IntegrityError as e:
                self._from(e)
                self._bad_places.update((pack, p[2]) for p in indexed.get(pack, ()))
                continue
            for place in indexed.get(pack, set()) - held:
                blob_id, blob_type, offset = place[:3]
                self._bad_places.add((pack, offset))
                if place not in listed:  # else named as it failed
                    self.problem("index segment", f"entry {blob_id.hex()}",
                                 f"says pack {pack} holds a {spec.BLOB_NAMES[blob_type]} at "
                                 f"{offset}; the pack does not")

    def _read_pack(self, pack: str) -> tuple[set[Place], set[Place]]:
        """Read and verify one pack whole: (id, type, offset) of the blobs its trailer
        lists, and of those that verified."""
        data = self.repo.get_verified(spec.NS_DATA, pack, "pack")
        cipher = self.repo.open_cipher(data[:HEADER_LEN], spec.KIND_PACK, pack)
        listed: set[Place] = set()
        held: set[Place] = set()
        for e in read_trailer(cipher, data):
            listed.add(_place(e))
            name = spec.BLOB_NAMES[e.blob_type]
            try:
                plain = open_blob(cipher, e, data[e.offset:e.offset + e.length])
                if not crypto.same(self.repo.blob_id(plain, e.blob_type), e.blob_id):
                    raise IntegrityError(name, e.blob_id.hex(), "content does not match its "
                                                                f"id (in pack {pack})")
            except IntegrityError as err:
                self._from(err)
                continue
            held.add(_place(e))
        return listed, held


def _place(e: BlobEntry) -> Place:
    return (e.blob_id, e.blob_type, e.offset, e.nonce, e.length, e.raw_len)


__all__ = ["CheckReport", "Checker", "Problem"]
