"""The snapshot history: reading, verifying, naming and committing snapshots.

A snapshot object is a shared-mode head (seq, prev, time: every key can read
it, so writers can extend the chain) wrapping a sealed body (tree, paths,
host, tags, name: only the repository's private key opens it). The body
repeats the head's fields, so a body cannot be replayed under another head
(repofs-format(5), SNAPSHOTS). ``prev`` holds the ids of every head the writer
saw, like git parents: concurrent writers fork the history, the next writer
joins it, and a snapshot that is referenced but missing is detected.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from repofs import crypto, signed, spec
from repofs.damage import DamageLog
from repofs.envelope import HEADER_LEN, CannotRead, ObjectCipher
from repofs.errors import (
    AmbiguousSnapshot,
    IntegrityError,
    NameTaken,
    NotPermitted,
    SnapshotNotFound,
    Unreadable,
)
from repofs.keys import MasterKeys
from repofs.model import (
    Snapshot,
    SnapshotBody,
    SnapshotHead,
    decode_body,
    decode_head,
    encode_body,
    encode_head,
)
from repofs.store import WriterStore

FUTURE_TOLERANCE_NS = 3600 * 10**9  # clocks of backed-up hosts may run a little ahead
_FORGET_HINT = "; an admin may put it aside with repofs forget"
SEALED_FILTER = ("this key cannot read snapshots' host, tags and paths (a write-only key): "
                 "--host, --tag and --path cannot be used")


class _Objects(Protocol):
    store: WriterStore
    keys: MasterKeys
    damage: DamageLog

    @property
    def can_read(self) -> bool: ...

    def get_verified(self, namespace: str, name: str, kind: str) -> bytes: ...

    def put_object(self, namespace: str, data: bytes) -> str: ...

    def new_cipher(self, kind: int, mode: int) -> ObjectCipher: ...

    def open_cipher(self, header: bytes, kind: int, name: str,
                    mode: int | None = None) -> ObjectCipher: ...


class ChainGuard(Protocol):
    """A policy over the verified history (``repofs.chain.HeadsGuard``): it sees every
    listing (its snapshots, their ``tips``, the ids of objects left out as damaged and those
    a removal record names) and every commit, and decides what a rolled-back history means."""

    def verify(self, snaps: list[Snapshot], tips: list[Snapshot],
               quarantined: Collection[str] = frozenset(),
               removed: frozenset[str] = frozenset()) -> list[Snapshot]: ...

    def committed(self, snap: Snapshot) -> None: ...


@dataclass(frozen=True)
class Quarantined:
    """A snapshot object left out of every listing (repofs-format(5), DAMAGE): it does not
    verify or decode (``snapshot`` is None), or it decodes but claims a place in the history
    it cannot have (a seq not above its prev's). ``error`` says which. ``as_stored``: its
    bytes hash to its name, so it was stored in that form by a key holder (planted, or of
    another repository), not damaged after a real snapshot was written."""

    id: str
    error: IntegrityError
    snapshot: Snapshot | None = None
    as_stored: bool = False


def split_tags(values: Iterable[str]) -> tuple[str, ...]:
    """``--tag`` values as restic reads them: ``a,b`` is two tags (empty parts dropped,
    each tag once, in order). ``create`` records tags this way, so that ``--tag a,b`` of a
    filter finds them and a listing's comma-joined tags read back as they were given."""
    return tuple(dict.fromkeys(t for v in values for t in v.split(",") if t))


@dataclass(frozen=True)
class SnapshotFilter:
    """Which snapshots a command chooses among (``--host``, ``--tag``, ``--path``, as
    restic has them): the one rule for the listing, for ``latest`` and for checking an
    explicit reference. A snapshot matches when every kind given matches: its host is one
    of ``hosts``; it has every tag of at least one set in ``tags`` (``--tag a,b`` is one
    set: both; several ``--tag``: any); one of ``paths`` is exactly one of its paths
    (absolute, as ``create`` recorded them). Host, tags and paths are in the sealed body:
    a key that cannot open it (write-only) cannot filter, and is refused, never shown
    an unfiltered answer."""

    hosts: frozenset[str] = frozenset()
    tags: tuple[frozenset[str], ...] = ()
    paths: frozenset[bytes] = frozenset()

    @classmethod
    def of(cls, hosts: Iterable[str] = (), tags: Iterable[str] = (),
           paths: Iterable[bytes] = ()) -> SnapshotFilter:
        """From option values: each ``tags`` item is a comma-separated set (empty parts are
        dropped); ``paths`` must already be absolute."""
        sets = tuple(dict.fromkeys(frozenset(split_tags([v])) for v in tags))
        return cls(frozenset(hosts), tuple(s for s in sets if s), frozenset(paths))

    @property
    def empty(self) -> bool:
        return not (self.hosts or self.tags or self.paths)

    def matches(self, snap: Snapshot) -> bool:
        if self.empty:
            return True
        b = snap.body
        if b is None:
            raise NotPermitted(SEALED_FILTER)
        return ((not self.hosts or b.host in self.hosts)
                and (not self.tags or any(t <= set(b.tags) for t in self.tags))
                and (not self.paths or bool(self.paths & set(b.paths))))

    def select(self, snaps: Iterable[Snapshot]) -> list[Snapshot]:
        """The snapshots that match, in their order."""
        return [s for s in snaps if self.matches(s)]

    def __str__(self) -> str:
        parts = [f"--host {h}" for h in sorted(self.hosts)]
        parts += [f"--tag {','.join(sorted(t))}" for t in self.tags]
        parts += [f"--path {p.decode('utf-8', 'backslashreplace')}" for p in sorted(self.paths)]
        return " ".join(parts) or "(no filter)"


EVERY = SnapshotFilter()


def latest(snaps: Iterable[Snapshot], now_ns: int | None = None,
           where: SnapshotFilter = EVERY) -> Snapshot | None:
    """The one rule for ``latest`` (the CLI's and the mount's): the greatest (time, seq, id)
    among the snapshots ``where`` matches that are not dated in the future. A writer sets
    its own clock: a snapshot dated ahead would otherwise stay "latest" for ever; it is left
    out while it is in the future (beyond ``FUTURE_TOLERANCE_NS``), unless every matching
    snapshot is."""
    snaps = where.select(snaps)
    if not snaps:
        return None
    horizon = (time.time_ns() if now_ns is None else now_ns) + FUTURE_TOLERANCE_NS
    current = [s for s in snaps if s.head.time_ns <= horizon] or snaps
    return max(current, key=lambda s: (s.head.time_ns, s.head.seq, s.id))


class SnapshotLog:
    """All snapshots of a repository, verified as they are read."""

    def __init__(self, repo: _Objects) -> None:
        self._repo = repo
        self.guard: ChainGuard | None = None
        self.quarantined: dict[str, Quarantined] = {}  # of the last listing
        self.ghosts: list[Snapshot] = []  # removed snapshots' heads, of the last listing
        self.gaps: dict[str, IntegrityError] = {}  # referenced, gone, not removed

    def read(self, name: str) -> Snapshot:
        data = self._repo.get_verified(spec.NS_SNAPSHOTS, name, "snapshot")
        outer = self._repo.open_cipher(data[:HEADER_LEN], spec.KIND_SNAPSHOT, name,
                                       spec.MODE_SHARED)
        head, sealed = decode_head(outer.open(0, memoryview(data)[HEADER_LEN:], b"snapshot"), name)
        body = None
        if self._repo.can_read:
            inner = self._repo.open_cipher(sealed[:HEADER_LEN], spec.KIND_SNAPSHOT, name,
                                           spec.MODE_SEALED)
            plain = inner.open(0, memoryview(sealed)[HEADER_LEN:], b"snapshot body")
            body = decode_body(plain, name, head)
        return Snapshot(name, head, body)

    def removals(self) -> signed.RecordSet[signed.Removal]:
        """The removal records (forget), verified; invalid ones are set aside in ``bad`` and
        named once through the damage log (a writer may plant them; they remove nothing)."""
        return signed.read_removals(self._repo.store, self._repo.keys, self._repo.damage)

    def removed(self) -> frozenset[str]:
        """Snapshots named by a valid removal record: hidden from every listing, and
        accepted as missing from a prev (repofs-format(5), SIGNED RECORDS)."""
        return signed.removed_snapshots(self.removals())

    def list(self, quiet: frozenset[str] = frozenset()) -> list[Snapshot]:
        """Every snapshot, oldest first by (time, seq, id).

        Never stopped by someone else's damage (repofs-format(5), DAMAGE): a snapshot object
        that does not verify or decode, or that claims a seq its prev do not allow, is left
        out (``quarantined``) and named once through the repository's damage log; a snapshot
        that others reference but that is gone is named as a gap. Only the guard (the heads
        this client saw, ``repofs.chain``) may refuse a listing: a rollback. ``quiet``:
        objects the caller deals with itself (forget putting them aside): not reported.
        """
        removals = self.removals()
        removed = signed.removed_snapshots(removals)
        self.ghosts = signed.ghosts(removals)
        snaps: list[Snapshot] = []
        out: dict[str, Quarantined] = {}
        for n in self._repo.store.list(spec.NS_SNAPSHOTS):
            if n in removed:
                continue
            try:
                snaps.append(self.read(n))
            except IntegrityError as e:
                out[n] = Quarantined(n, e, as_stored=self._as_stored(n))
            except OSError as e:  # EIO: left out like damage, not called tampered
                out[n] = Quarantined(n, Unreadable("snapshot", n, e.strerror or str(e)))
        by_id = {s.id: s for s in snaps}
        for s in snaps:
            if any(p.hex() in by_id and by_id[p.hex()].head.seq >= s.head.seq
                   for p in s.head.prev):
                out[s.id] = Quarantined(s.id, IntegrityError(
                    "snapshot", s.id, "seq does not follow its prev"), s)
        snaps = [s for s in snaps if s.id not in out]
        self.quarantined = out
        self._report(snaps, out, removed, quiet)
        snaps.sort(key=lambda s: (s.head.time_ns, s.head.seq, s.id))
        if self.guard is not None:
            tips = heads(snaps, self.ghosts)
            return self.guard.verify(snaps, [s for s in snaps if s.id in tips], frozenset(out),
                                     removed)
        return snaps

    def _as_stored(self, name: str) -> bool:
        try:
            return crypto.same(crypto.object_name(self._repo.store.get(spec.NS_SNAPSHOTS, name))
                               .encode(), name.encode())
        except OSError:
            return False

    def _report(self, snaps: Sequence[Snapshot], out: dict[str, Quarantined],
                removed: frozenset[str], quiet: frozenset[str]) -> None:
        """One warning per object left out, and per gap: a snapshot that another one names
        as prev and that is neither here, nor removed by an admin, nor left out above."""
        referrers: dict[str, list[str]] = {}
        for s in snaps:
            for p in s.head.prev:
                referrers.setdefault(p.hex(), []).append(s.id)
        for sid in sorted(set(out) - quiet):
            by = referrers.get(sid)
            self._repo.damage.report(out[sid].error, (
                f"left out; snapshot {by[0][:8]} names it as prev: missing from the history"
                if by else "left out") + _FORGET_HINT)
        present = {s.id for s in snaps}
        self.gaps = {p: IntegrityError("snapshot", p, f"missing, but snapshot "
                                                      f"{referrers[p][0]} references it")
                     for p in sorted(referrers)
                     if p not in present and p not in removed and p not in out}
        for pid, gap in self.gaps.items():
            if pid not in quiet:
                self._repo.damage.report(gap, "a gap in the history: the snapshots around "
                                              "it are listed")

    def resolve(self, ref: str, snaps: Sequence[Snapshot] | None = None,
                where: SnapshotFilter = EVERY) -> Snapshot:
        """A snapshot by full id, unique id prefix, name, or ``latest``. A reference to an
        object left out as damaged raises its error (what was asked for is unusable), and
        the listing does not name it a second time as a warning.

        ``where``: ``latest`` is the newest snapshot it matches; any other reference is
        resolved among all snapshots (so a prefix means the same with or without a filter)
        and refused if what it names does not match (like restic: the filter was given
        for a reason, a mismatch is a mistake in a script)."""
        ref_l = ref.lower()
        if snaps is None:
            snaps = self.list(quiet=frozenset({*self.named(ref), ref_l}))
        if not where.empty and not self._repo.can_read:
            raise NotPermitted(SEALED_FILTER)
        snap = self._resolve(ref, ref_l, snaps, where)
        if not where.matches(snap):
            raise SnapshotNotFound(f"snapshot {snap.short_id} does not match {where}")
        return snap

    def select(self, where: SnapshotFilter = EVERY,
               snaps: Sequence[Snapshot] | None = None) -> builtins.list[Snapshot]:
        """Every snapshot ``where`` matches, oldest first (``list``, or ``snaps``, filtered);
        a filter with a key that cannot read bodies is refused even when nothing is listed."""
        if not where.empty and not self._repo.can_read:
            raise NotPermitted(SEALED_FILTER)
        return where.select(self.list() if snaps is None else snaps)

    def _resolve(self, ref: str, ref_l: str, snaps: Sequence[Snapshot],
                 where: SnapshotFilter) -> Snapshot:
        bad = self.quarantined.get(ref_l)
        if bad is not None:  # what the user asked for is itself unusable
            raise bad.error
        if ref_l in self.gaps:
            raise self.gaps[ref_l]
        if not snaps:
            raise SnapshotNotFound("the repository has no snapshots")
        if ref == "latest":
            newest = latest(snaps, where=where)
            if newest is None:
                raise SnapshotNotFound(f"no snapshot matches {where}")
            return newest
        exact = [s for s in snaps if s.id == ref_l]
        if exact:  # a full id means that snapshot, whatever any name says
            return exact[0]
        # A name never wins over an id prefix (or a second snapshot of that name): a writer
        # could name a snapshot after another's short id to redirect restores to it.
        named = [s for s in snaps if s.body is not None and s.body.name == ref]
        hits = [s for s in snaps if s.id.startswith(ref_l)] if len(ref_l) >= 4 else []
        found = {s.id: s for s in named + hits}
        left_out = [q for q in self.quarantined.values() if len(ref_l) >= 4
                    and q.id.startswith(ref_l)]
        if len(left_out) == 1 and not found:
            raise left_out[0].error
        if len(found) == 1 and not left_out:
            return next(iter(found.values()))
        if len(found) + len(left_out) > 1:
            raise AmbiguousSnapshot(f"{ref!r} matches {len(found) + len(left_out)} snapshots "
                                    "(by name or id prefix); give the full id")
        if not self._repo.can_read:  # names are in the sealed bodies
            raise NotPermitted(f"no snapshot has the id {ref!r}, and this key cannot read "
                               "snapshot names (a write-only key): give an id or 'latest'")
        raise SnapshotNotFound(f"no snapshot {ref!r}")

    def named(self, ref: str) -> tuple[str, ...]:
        """The objects in snapshots/ that ``ref`` names by full id or id prefix."""
        ref = ref.lower()
        names = set(self._repo.store.list(spec.NS_SNAPSHOTS))
        return (ref,) if ref in names else tuple(n for n in sorted(names) if len(ref) >= 4
                                                 and n.startswith(ref))

    def ensure_name_free(self, name: str, snaps: Sequence[Snapshot] | None = None) -> None:
        """Refuse a snapshot name that is taken (checked before and again at commit)."""
        snaps = self.list() if snaps is None else snaps
        if any(s.body and s.body.name == name for s in snaps):
            raise NameTaken(f"a snapshot named {name!r} already exists")

    def commit(self, body: SnapshotBody, time_ns: int) -> Snapshot:
        """Write a new snapshot on top of every current head: the commit point of create."""
        snaps = self.list()
        if body.name is not None:
            self.ensure_name_free(body.name, snaps)
        head = SnapshotHead(
            seq=max((s.head.seq for s in snaps), default=-1) + 1,
            prev=tuple(sorted(bytes.fromhex(h) for h in heads(snaps, self.ghosts))),
            time_ns=time_ns,
        )
        inner = self._repo.new_cipher(spec.KIND_SNAPSHOT, spec.MODE_SEALED)
        sealed = inner.header + inner.seal(0, encode_body(head, body), b"snapshot body")
        outer = self._repo.new_cipher(spec.KIND_SNAPSHOT, spec.MODE_SHARED)
        data = outer.header + outer.seal(0, encode_head(head, sealed), b"snapshot")
        name = self._repo.put_object(spec.NS_SNAPSHOTS, data)
        snap = Snapshot(name, head, body)
        if self.guard is not None:
            self.guard.committed(snap)
        return snap


def heads(snaps: Iterable[Snapshot], ghosts: Iterable[Snapshot] = ()) -> set[str]:
    """Snapshots no other snapshot follows: the tips of the history. ``ghosts`` (removed
    snapshots as their removal records keep them) link it across what forget removed, so
    forgetting a snapshot in the middle leaves one head, not two."""
    snaps = list(snaps)
    via = {g.id: g for g in ghosts}
    referenced: set[str] = set()
    todo = [p.hex() for s in snaps for p in s.head.prev]
    while todo:
        p = todo.pop()
        if p not in referenced:
            referenced.add(p)
            g = via.get(p)
            if g is not None:
                todo.extend(q.hex() for q in g.head.prev)
    return {s.id for s in snaps} - referenced


def chain_errors(snaps: Sequence[Snapshot],
                 removed: frozenset[str] = frozenset()) -> list[IntegrityError]:
    """Every prev must exist and be older in seq: else a snapshot was removed or replayed.
    The one accepted gap is a snapshot an admin-signed removal record names."""
    by_id = {s.id: s for s in snaps}
    errors = []
    for s in snaps:
        for p in s.head.prev:
            parent = by_id.get(p.hex())
            if parent is None and p.hex() in removed:
                continue
            if parent is None:
                errors.append(IntegrityError("snapshot", p.hex(),
                                             f"missing, but snapshot {s.id} references it"))
            elif parent.head.seq >= s.head.seq:
                errors.append(IntegrityError("snapshot", s.id, "seq does not follow its prev"))
    return errors


def verify_chain(snaps: Sequence[Snapshot], removed: frozenset[str] = frozenset()) -> None:
    """Raise the first chain error, if any."""
    errors = chain_errors(snaps, removed)
    if errors:
        raise errors[0]


__all__ = ["EVERY", "CannotRead", "ChainGuard", "Quarantined", "SnapshotFilter", "SnapshotLog",
           "chain_errors", "heads", "latest", "split_tags", "verify_chain"]
