"""``repofs check``: prove a repository intact, or name every object that is not.

Why it reads in this order (the reverse of writing, repofs-format(5)): key
files and index segments first (their names must be the hash of their bytes),
then every snapshot and the history they form (``snapshots.chain_errors``,
``chain.analyse``, and the heads this client saw), then every tree reachable
from a snapshot, each chunk it names being indexed with the right type in a
pack that exists. With ``read_data``, every pack is read (``packcheck``): whole
if it matches its name, else blob by blob as restore reads it, so one flipped
bit costs only the blob it sits in; index entries that point into a pack where
it holds no such blob are named.

A problem is reported once, with the snapshots it affects and the first path
it was met at; nothing stops at the first one. Per snapshot, the report says
what a restore would lose (``CheckReport.lost``): the files whose blobs cannot
be read back or whose entries no file system can hold (``restorable``: the rule
restore applies), and the directories whose trees cannot. Trees are checked
once each (identical directories share a tree), so a check costs one pass over
the distinct trees, not over every snapshot's files.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from repofs import chain, keys, recovery, restorable, signed, spec
from repofs.blobtable import Location
from repofs.envelope import CannotRead
from repofs.errors import BadEntry, BadKeyFile, IntegrityError
from repofs.model import DIR, Entry, Snapshot
from repofs.packcheck import Place, check_pack, place
from repofs.repository import Repository
from repofs.snapshots import chain_errors, heads

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


@dataclass(frozen=True)
class Lost:
    """What a restore of one snapshot would lose: a file (a blob of it does not verify,
    or its entry is impossible), or a directory's contents (its tree does not verify);
    ``problems`` are indices into ``CheckReport.problems``."""

    path: str
    kind: str  # "file" or "dir"
    problems: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "type": self.kind, "problems": list(self.problems)}


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    lost: dict[str, list[Lost]] = field(default_factory=dict)  # snapshot id -> its losses
    lost_blobs: dict[tuple[str, str], int] = field(default_factory=dict)  # (type, id) -> problem

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
        # tree -> (problems below it, what a restore of it loses: relative path, kind, problems)
        self._tree_memo: dict[bytes, tuple[frozenset[int], tuple[_LostRel, ...]]] = {}
        self._bad_places: set[tuple[str, int]] = set()  # (pack, offset) that failed --read-data
        self._failures: dict[tuple[str, int], int] = {}  # (pack, offset) -> its problem
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
                found, lost = self._tree(s.body.tree, b"/")
                for idx in found:
                    self.report.problems[idx].snapshots.add(s.id)
                if lost:
                    self.report.lost[s.id] = [Lost(os.fsdecode(b"/" + rel), kind,
                                                   tuple(sorted(idxs)))
                                              for rel, kind, idxs in lost]
        self.report.counts["trees"] = len(self._tree_memo)
        if self.guard is not None and self.report.intact:
            tips = heads(snaps, signed.ghosts(self._removals))  # once: it walks every snapshot
            self.guard.remember([s for s in snaps if s.id in tips])
        return self.report

    # -- named objects -----------------------------------------------------------------------
    def _check_named(self, ns: str, kind: str) -> None:
        names = list(self.repo.store.list(ns))
        self.report.counts[f"{kind}s"] = len(names)
        for name in names:
            try:
                data = self.repo.get_verified(ns, name, kind)
                if ns == spec.NS_KEYS:  # stored under its hash, but no key file at all
                    keys.describe(data, name)
            except IntegrityError as e:
                self._from(e)
            except BadKeyFile as e:
                self.problem(kind, name, f"{str(e).removeprefix(f'{kind} {name} ')} "
                                         "(planted or damaged; skipped by every reader)")

    def _load_index(self) -> None:
        seen: set[str] = set()
        for seg in self.repo.segments():
            seen.add(seg.name)
            if seg.error is not None:
                self.problem("index segment", seg.name, f"{seg.error.detail} (skipped; readers "
                             "locate the blobs of the packs no other segment lists from the "
                             "packs themselves, and repofs repair lists them again)")
            for pack, entries in seg.packs:
                self.repo.index.add_pack(pack, entries)
        self.report.counts["index segments"] = len(seen)
        found = self.repo.recover_locations(report=False)
        for pack, e in sorted(found.bad.items()):
            self.problem(e.kind, pack, f"{e.detail} ({recovery.UNLOCATABLE})")
        if found.packs:
            self.report.notes.append(Problem("index", f"{len(found.packs)} packs", "listed by "
                                             "no index segment: left by an interrupted create, "
                                             "or listed by a segment lost or skipped; their "
                                             "blobs were located from the packs themselves "
                                             "(repofs repair lists them again)"))
        if found.sealed:
            self.report.notes.append(Problem("index", f"{len(found.sealed)} packs", "listed by "
                                             "no index segment, of format 1: this key cannot "
                                             "open their trailers (a full or admin key can, and "
                                             "repofs repair with it lists them again)"))

    def _signed_records(self) -> None:
        """Removal and condemn records: one that fails its signature is a plant (a writer
        cannot sign) or damage; readers ignore it, check names it."""
        removals = signed.read_removals(self.repo.store, self.repo.keys)  # named below
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
        tips = heads(snaps, signed.ghosts(self._removals))
        if len(tips) > 1:
            self.report.notes.append(Problem("history", f"{len(tips)} heads",
                                             "concurrent writers; the next create joins them"))
        if self.guard is not None:
            for r in self.guard.rollbacks(snaps, removed | damaged):
                self._from(r)
        return [s for s in snaps if s.body is not None]

    # -- trees -------------------------------------------------------------------------------
    def _usable(self, blob_id: bytes, blob_type: int, path: bytes) -> int | None:
        """None if some indexed copy of the blob lies in a present pack (and passed
        --read-data); else the problem that says why not."""
        bad = self._unusable(blob_id, blob_type, path)
        if bad is not None:
            self.report.lost_blobs.setdefault((spec.BLOB_NAMES[blob_type], blob_id.hex()), bad)
        return bad

    def _unusable(self, blob_id: bytes, blob_type: int, path: bytes) -> int | None:
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
        failed = self._failures.get((locs[0].pack, locs[0].entry.offset))
        if failed is not None:  # the first copy's own failure says best what is wrong
            if self.report.problems[failed].path is None and path:
                self.report.problems[failed].path = os.fsdecode(path)
            return failed
        return self.problem(name, blob_id.hex(), "every indexed copy failed --read-data", path)

    def _bad(self, loc: Location) -> bool:
        return (loc.pack, loc.entry.offset) in self._bad_places

    def _tree(self, root: bytes, root_path: bytes) -> tuple[frozenset[int], tuple[_LostRel, ...]]:
        """Problems below a tree, and what a restore of it would lose (paths relative to
        it); each tree visited once; iterative, as trees nest deep."""
        if root in self._tree_memo:
            return self._tree_memo[root]
        frames: list[_TreeFrame] = []

        def enter(tree: bytes, path: bytes, name: bytes) -> None:
            frame = _TreeFrame(tree, name)
            bad = self._usable(tree, spec.BLOB_TREE, path)
            if bad is None and len(frames) > spec.MAX_TREE_DEPTH:
                bad = self.problem("tree", tree.hex(), "nested too deep", path)
            entries: list[Entry] = []
            left_out: list[BadEntry] = []
            if bad is None:
                try:
                    entries = self.repo.load_tree(tree, left_out)
                except IntegrityError as e:
                    bad = self._from(e, path)
            for left in left_out:  # an entry that breaks a rule: a restore leaves it out
                idx = self._from(left, path.rstrip(b"/") + b"/" + left.entry)
                frame.found.add(idx)
                frame.lost.append((left.entry, "file", frozenset((idx,))))
            if bad is not None:
                frame.found.add(bad)
                frame.lost.append((b"", "dir", frozenset((bad,))))
            for ent in entries:
                child = path.rstrip(b"/") + b"/" + ent.name
                if ent.type == DIR and ent.subtree is not None:
                    frame.children.append((ent.subtree, child, ent.name))
                    continue
                bads = set()
                why = restorable.entry_problem(ent)
                if why is not None:
                    shown = ent.name.decode("utf-8", "backslashreplace")
                    bads.add(self.problem("tree", tree.hex(), f"entry {shown} {why}", child))
                for part in ent.parts if why is None else ():
                    if part.chunk_id is not None:
                        bad = self._usable(part.chunk_id, spec.BLOB_DATA, child)
                        if bad is not None:
                            bads.add(bad)
                if bads:
                    frame.found |= bads
                    frame.lost.append((ent.name, "file", frozenset(bads)))
            frames.append(frame)

        def merge(into: _TreeFrame, name: bytes,
                  done: tuple[frozenset[int], tuple[_LostRel, ...]]) -> None:
            into.found |= done[0]
            into.lost.extend((name + b"/" + rel if rel else name, kind, idxs)
                             for rel, kind, idxs in done[1])

        enter(root, root_path, b"")
        while frames:
            top = frames[-1]
            if top.children:
                sub, sub_path, name = top.children.pop()
                if sub in self._tree_memo:
                    merge(top, name, self._tree_memo[sub])
                else:
                    enter(sub, sub_path, name)
                continue
            frames.pop()
            done = self._tree_memo[top.tree] = (frozenset(top.found), tuple(top.lost))
            if frames:
                merge(frames[-1], top.name, done)
        return self._tree_memo[root]

    # -- --read-data -------------------------------------------------------------------------
    def _read_packs(self) -> None:
        indexed: dict[str, set[Place]] = {}
        for pack, e in self.repo.index.entries():
            indexed.setdefault(pack, set()).add(place(e))
        chosen = sorted(self._packs)
        if self.read_share < 1.0:  # a fresh random share each run: over runs, every pack
            want = math.ceil(len(chosen) * self.read_share) if self.read_share > 0 else 0
            chosen = sorted(random.SystemRandom().sample(chosen, want))
            self.report.notes.append(Problem("repository", self.repo.id[:8], f"--read-data-"
                                             f"subset: read {want} of {len(self._packs)} "
                                             "packs, chosen at random"))
        for i, pack in enumerate(chosen):
            self.progress(f"reading pack {i + 1}/{len(chosen)}")
            mine = indexed.get(pack, set())

            def failed(err: IntegrityError, where: Place | None, pack: str = pack) -> None:
                idx = self._from(err)
                if where is not None:
                    self._failures.setdefault((pack, where[2]), idx)

            try:
                verdict = check_pack(self.repo, pack, mine, failed)
            except CannotRead:
                self.report.notes.append(Problem("repository", self.repo.id[:8], "this key "
                                                 "cannot decrypt packs: --read-data skipped"))
                return
            except IntegrityError as e:
                idx = self._from(e)
                for p in mine:
                    self._bad_places.add((pack, p[2]))
                    self._failures.setdefault((pack, p[2]), idx)
                continue
            if verdict.degraded is not None:
                self.problem("pack", pack, f"{verdict.degraded}; read blob by blob: "
                                           f"{len(mine) - len(verdict.held)} of {len(mine)} "
                                           "indexed blobs lost")
            for p in mine - verdict.held:
                self._bad_places.add((pack, p[2]))
                if verdict.listed is not None and p not in verdict.listed:  # else named
                    self.problem("index segment", f"entry {p[0].hex()}",
                                 f"says pack {pack} holds a {spec.BLOB_NAMES[p[1]]} at "
                                 f"{p[2]}; the pack does not")


_LostRel = tuple[bytes, str, frozenset[int]]  # path relative to a tree, kind, problems


@dataclass
class _TreeFrame:
    """A tree being checked: the subtrees left, and what was found below it so far."""

    tree: bytes
    name: bytes  # its name in the parent tree
    children: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)
    found: set[int] = field(default_factory=set)
    lost: list[_LostRel] = field(default_factory=list)


__all__ = ["CheckReport", "Checker", "Lost", "Problem"]
