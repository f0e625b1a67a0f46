"""``repofs prune``: delete what no kept snapshot needs, safely next to running creates.

Why two phases and no lock (repofs-format(5), PRUNING): a create on another
host may, at any moment, reuse a blob that no snapshot references yet. A lock
would have to be something a writer can delete. Instead a run of prune

1. **sweeps**: deletes the packs and index segments that condemn records at
   least ``grace`` old name, unless a snapshot existing *now* still needs a
   blob whose only verified copy is in them (that pack is reprieved); deletes
   the objects of snapshots forget removed;
2. **marks**: copies the live blobs of mostly-empty packs into new packs,
   re-lists the live packs of index segments that also list dead ones, and
   writes one condemn record (signed with the admin key) naming the packs and
   segments it wants gone. A later run, after the grace period, sweeps them.

Writers meanwhile treat blobs only in condemned packs as absent, and read
the condemn records again right before they commit (``session``), so nothing
committed can come to depend on a pack that will be deleted. Every step
either only adds objects or deletes what nothing kept can reach, so an
interruption at any point leaves every kept snapshot restorable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from repofs import gc, signed, spec
from repofs.adminstore import DeletingStore, renew_locks
from repofs.blobtable import Location
from repofs.compression import Codec
from repofs.errors import IntegrityError, NeedsDirectAccess, NotPermitted
from repofs.model import Snapshot
from repofs.pack import BlobEntry
from repofs.repository import Repository
from repofs.session import WriteSession

DEFAULT_GRACE_NS = 24 * 3600 * 10**9
REPACK_BELOW = 0.5  # repack a pack when less than this share of its bytes is live


@dataclass
class PruneReport:
    deleted_snapshots: list[str] = field(default_factory=list)
    deleted_packs: list[str] = field(default_factory=list)
    deleted_segments: list[str] = field(default_factory=list)
    reprieved: list[str] = field(default_factory=list)
    condemned_packs: list[str] = field(default_factory=list)
    condemned_segments: list[str] = field(default_factory=list)
    repacked: list[str] = field(default_factory=list)
    bytes_deleted: int = 0
    bytes_condemned: int = 0
    condemn_record: str | None = None
    notes: list[str] = field(default_factory=list)


class Pruner:
    """One run of prune over a repository opened with an admin key on an ``AdminStore``."""

    def __init__(self, repo: Repository, grace_ns: int = DEFAULT_GRACE_NS,
                 now_ns: int | None = None, dry_run: bool = False,
                 progress: Callable[[str], None] | None = None) -> None:
        if repo.keys.admin is None:
            raise NotPermitted(f"this key cannot prune: it is a {repo.keys.capability} key, "
                               "and only an admin key may")
        if not callable(getattr(repo.store, "delete", None)):  # an AdminStore, AdminS3Store
            raise NeedsDirectAccess("prune needs direct access to the repository's files")
        self.repo = repo
        self.store: DeletingStore = repo.store  # type: ignore[assignment]
        self.grace_ns, self.dry_run = grace_ns, dry_run
        self.now_ns = time.time_ns() if now_ns is None else now_ns
        self.progress = progress or (lambda _m: None)
        self.report = PruneReport()
        self.locked = 0  # objects S3 Object Lock kept from being deleted
        self.going: set[str] = set()  # condemned or removed: their locks are not renewed

    def run(self) -> PruneReport:
        removed = self.repo.snapshots.removed()
        self.going |= removed
        kept = self._kept_snapshots(removed)
        holes = self._holes()
        if holes:
            self.report.notes.append(
                f"no data deleted or condemned: snapshot {holes[0]} "
                f"{'and ' + str(len(holes) - 1) + ' more ' if len(holes) > 1 else ''}cannot "
                "be read or is missing, so what data it needs is unknown; if it is lost for "
                "good, forget it by this name (repofs forget ID) and prune again")
            self._delete_forgotten(removed)
            return self.report
        self.progress("finding live data")
        live = gc.live_blobs(self.repo, kept)
        self._cycle(live, removed)
        if self.grace_ns == 0 and self.report.condemn_record and not self.dry_run:
            self._cycle(live, removed)  # no grace: what was just condemned goes at once
        if self.locked:
            self.report.notes.append(
                f"{self.locked} objects could not be deleted yet: their Object Lock has not "
                "expired (a later prune deletes them)")
        self._extend_locks()
        return self.report

    def _extend_locks(self) -> None:
        """s3:// with Object Lock: renew the lock of every object kept (all but what a
        condemn or removal record names: a lock renewed on those would keep them forever),
        so no kept snapshot can be deleted until DAYS after this run."""
        if self.dry_run:
            return
        going = self.going | set(self.report.condemned_packs) | \
            set(self.report.condemned_segments)
        count = renew_locks(self.store, going, self.progress)
        if count:
            self.report.notes.append(f"renewed the Object Lock of {count} objects")

    def _cycle(self, live: set[gc.BlobKey], removed: frozenset[str]) -> None:
        records = signed.read_condemnations(self.store, self.repo.keys, self.repo.damage)
        due = self.now_ns - self.grace_ns
        self.going |= {n for r in records.records for n in (*r.packs, *r.segments)}
        self._sweep(live, {p for r in records.records if r.time_ns <= due for p in r.packs},
                    {s for r in records.records if r.time_ns <= due for s in r.segments},
                    removed)
        self._mark(live, {p for r in records.records for p in r.packs},
                   {s for r in records.records for s in r.segments})

    def _delete(self, ns: str, name: str) -> bool:
        """Delete one object; False if S3 Object Lock still holds it (counted, and left for
        a later run: its condemn or removal record stays)."""
        if not self.dry_run:
            try:
                self.store.delete(ns, name)
            except PermissionError:
                if not hasattr(self.store, "extend_lock"):
                    raise  # a local immutable file: the admin must clear it first
                self.locked += 1
                return False
        return True

    # -- what is kept --------------------------------------------------------------------
    def _kept_snapshots(self, removed: frozenset[str]) -> list[Snapshot]:
        """Every snapshot not removed whose tree can be known: the listed ones, and those left
        out only for their place in the history (their data is kept until an admin forgets
        them). Objects that do not decode were named by the listing; ``_holes`` says which
        of them keep prune from deleting data (repofs-format(5), DAMAGE)."""
        log = self.repo.snapshots
        snaps = log.list()
        return [*snaps, *(q.snapshot for q in log.quarantined.values()
                          if q.snapshot is not None and q.id not in removed)]

    def _holes(self) -> list[str]:
        """Snapshots whose data prune cannot know: objects damaged since they were written
        (their bytes no longer hash to their name, or cannot be read), and gaps. An object
        stored as it is but not decodable was planted: it never named any data."""
        log = self.repo.snapshots
        return sorted({q.id for q in log.quarantined.values()
                       if q.snapshot is None and not q.as_stored} | set(log.gaps))

    # -- phase 1: sweep ------------------------------------------------------------------
    def _verified_elsewhere(self, key: gc.BlobKey, locs: list[Location],
                            going: set[str]) -> bool:
        for loc in locs:
            if loc.pack in going or not self.store.exists(spec.NS_DATA, loc.pack):
                continue
            try:
                self.repo.read_located(key[1], loc)
                return True
            except (IntegrityError, FileNotFoundError):
                continue
        return False

    def _sweep(self, live: set[gc.BlobKey], due_packs: set[str], due_segments: set[str],
               removed: frozenset[str]) -> None:
        present = set(self.store.list(spec.NS_DATA))
        going = due_packs & present
        self.repo.load_index()  # segments written since the open: more copies to verify
        view = gc.read_index(self.repo)
        for pack in sorted(going):
            for key in view.entries.get(pack, {}).keys() & live:
                if pack not in going:
                    break
                locs = self.repo.index.locations(key[1], key[0])
                if not self._verified_elsewhere(key, locs, going):
                    going.discard(pack)  # a snapshot made since needs it: keep it
                    self.report.reprieved.append(pack)
        for pack in sorted(going):
            self.progress(f"deleting pack {pack[:8]}")
            size = self.store.size(spec.NS_DATA, pack)
            if self._delete(spec.NS_DATA, pack):
                self.report.bytes_deleted += size
                self.report.deleted_packs.append(pack)
        left = present - going
        segs = {s for s in due_segments if s in view.segments}
        changed = True
        while changed:  # a segment goes only if every pack it lists that remains is
            changed = False  # listed by a segment that stays
            for s in sorted(segs):
                stays = set(view.segments) - segs
                if any(p in left and not view.listed_by(p) & stays
                       for p in view.segments[s]):
                    segs.discard(s)
                    changed = True
        for s in sorted(segs):
            if self._delete(spec.NS_INDEX, s):
                self.report.deleted_segments.append(s)
        self._delete_forgotten(removed)

    def _delete_forgotten(self, removed: frozenset[str]) -> None:
        for name in sorted(set(self.store.list(spec.NS_SNAPSHOTS)) & removed):
            if name not in self.report.deleted_snapshots and self._delete(spec.NS_SNAPSHOTS,
                                                                          name):
                self.report.deleted_snapshots.append(name)

    # -- phase 2: mark -------------------------------------------------------------------
    def _mark(self, live: set[gc.BlobKey], condemned: set[str], condemned_segs: set[str]) -> None:
        present = set(self.store.list(spec.NS_DATA))
        self.repo.load_index()
        view = gc.read_index(self.repo)
        keep = gc.assign(live, view, present, condemned)
        new_packs: set[str] = set()
        repack: dict[str, set[gc.BlobKey]] = {}
        for pack in sorted(present):
            mine = keep.get(pack, set())
            if pack in condemned:
                if mine:
                    repack[pack] = mine  # reprieved: move its live blobs out
                continue
            if self.store.mtime_ns(spec.NS_DATA, pack) > self.now_ns - self.grace_ns:
                continue  # young: a create may be about to commit a snapshot that uses it
            if pack not in view.entries:
                new_packs.add(pack)  # unindexed and old: left by a crashed create
                continue
            stored = sum(e.length for e in view.entries[pack].values())  # blobs, not framing
            if not mine:
                new_packs.add(pack)
            elif gc.live_bytes(view, pack, mine) < REPACK_BELOW * stored:
                repack[pack] = mine
                new_packs.add(pack)
        self._repack(repack, condemned | new_packs)
        dead = condemned | new_packs | (set(view.entries) - present)
        new_segs = {s for s, packs in view.segments.items()
                    if s not in condemned_segs and packs & dead}
        self._relist(view, new_segs, dead, present)
        for pack in new_packs:
            self.report.bytes_condemned += self.store.size(spec.NS_DATA, pack)
        self.report.condemned_packs += sorted(new_packs)
        self.report.condemned_segments += sorted(new_segs)
        if (new_packs or new_segs) and not self.dry_run:
            assert self.repo.keys.admin is not None
            data = signed.sign_condemn(self.repo.keys.admin, self.repo.keys.repo_id,
                                       new_packs, new_segs, self.now_ns)
            self.report.condemn_record = self.repo.put_object(spec.NS_CONDEMNED, data)

    def _repack(self, repack: dict[str, set[gc.BlobKey]], excluded: set[str]) -> None:
        """Copy live blobs out of the packs in ``repack`` (written before anything names those
        packs condemned, so a crash in between leaves two copies, never none)."""
        self.report.repacked += sorted(repack)
        if not repack or self.dry_run:
            return
        with WriteSession(self.repo, Codec()) as session:
            session.exclude_packs(excluded)
            for i, blobs in enumerate(repack[p] for p in sorted(repack)):
                self.progress(f"repacking {i + 1}/{len(repack)}")
                for blob_type, blob_id in sorted(blobs):
                    session.add(blob_type, self.repo.read_blob(blob_id, blob_type))
            session.flush()

    def _relist(self, view: gc.IndexView, segs: set[str], dead: set[str],
                present: set[str]) -> None:
        """New segments for the live packs the condemned segments list and no other does."""
        stays = set(view.segments) - segs
        rows: dict[str, list[BlobEntry]] = {}
        for s in sorted(segs):
            for pack, entries in view.from_segment[s].items():
                if pack in present and pack not in dead and not view.listed_by(pack) & stays:
                    rows.setdefault(pack, entries)
        batch = sorted(rows.items())
        for i in range(0, len(batch), 1024):
            if not self.dry_run:
                self.repo.write_index_segment(batch[i:i + 1024])


def prune(repo: Repository, grace_ns: int = DEFAULT_GRACE_NS, now_ns: int | None = None,
          dry_run: bool = False, progress: Callable[[str], None] | None = None) -> PruneReport:
    return Pruner(repo, grace_ns, now_ns, dry_run, progress).run()


__all__ = ["DEFAULT_GRACE_NS", "REPACK_BELOW", "PruneReport", "Pruner", "prune"]
