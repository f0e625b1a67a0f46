"""The policy over the snapshot history: what a client remembers, refuses and reports.

Why a module of its own: ``snapshots`` verifies what one listing shows (every
prev exists and is older); a repository that silently drops its newest
snapshots still passes that. So each client remembers the heads it saw, per
repository, under ``$XDG_STATE_HOME/repofs/<repository id>/heads.json``, and
``HeadsGuard`` refuses a listing in which one of them is gone: a rollback, the
one thing a listing refuses. Damage and gaps elsewhere are named by the listing
and cost only what they carry (repofs-format(5), DAMAGE); a gap is explained
only where an admin-signed removal record (``repofs.signed``, written by forget)
names the missing snapshot. Concurrent writers are no rollback: both heads stay,
and the next create joins them.

``analyse`` is for ``repofs check``: beyond what a listing names, it names
snapshots whose seq does not follow their prev, that are dated days before
their prev or in the future, that repeat another's place, and stale forks,
i.e. snapshots that branch off although much newer history existed that they
do not follow (an honest writer re-lists right before it commits, so its fork
can only be from about the same moment). What honest use produces it leaves
alone: concurrent creates, gaps as a reason for stale forks, joined forks.
"""

from __future__ import annotations

import bisect
import datetime
import json
import os
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from repofs.errors import Rollback
from repofs.model import Snapshot

FUTURE_SLACK_NS = 3600 * 10**9  # clocks of writers and checker may differ this much
STALE_SEQS = 2  # a fork this many seqs behind newer history is no race between writers
CREATE_SLACK_NS = 7 * 86400 * 10**9  # how long a create may run: see _dating


def state_dir(repo_id: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "repofs" / repo_id


def _when(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC).isoformat(timespec="seconds")


class HeadsRecord:
    """The heads one client last saw in one repository: id -> (seq, time)."""

    def __init__(self, repo_id: str) -> None:
        self.path = state_dir(repo_id) / "heads.json"

    def load(self) -> dict[str, tuple[int, int]]:
        try:
            raw = json.loads(self.path.read_text())
            return {str(k): (int(v[0]), int(v[1])) for k, v in raw["heads"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
            return {}  # a damaged record protects nothing, but must not stop a restore

    def save(self, seen: dict[str, tuple[int, int]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".heads.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"v": 1, "heads": {
            k: [seq, t] for k, (seq, t) in seen.items()}}, indent=1))
        tmp.replace(self.path)


class HeadsGuard:
    """``snapshots.ChainGuard`` for a client: refuse rollbacks, remember heads.

    Damage is not a rollback: a head this client saw whose object is still there but does
    not verify is named by the listing (repofs-format(5), DAMAGE) and stays in the record,
    so that its disappearance later is still caught. With ``accept_rollback`` a refusal
    becomes a warning and the record is reset to what the repository shows now, so the
    next run compares against that.
    """

    def __init__(self, repo_id: str, accept_rollback: bool = False,
                 warn: Callable[[str], None] = lambda _m: None) -> None:
        self.record = HeadsRecord(repo_id)
        self.accept = accept_rollback
        self.warn = warn
        self._damaged: dict[str, tuple[int, int]] = {}  # seen heads now present but damaged

    def rollbacks(self, snaps: Sequence[Snapshot],
                  removed: Collection[str] = frozenset()) -> list[Rollback]:
        """Heads this client saw that are gone; ``removed`` are explained (an admin's removal
        record, or an object still there but damaged)."""
        present = {s.id for s in snaps} | set(removed)
        return [Rollback("snapshot", sid, f"this client saw it as the newest (seq {seq}, "
                                          f"{_when(t)}) and it is gone: the repository was "
                                          "rolled back or the snapshot deleted "
                                          "(--accept-rollback goes on anyway)")
                for sid, (seq, t) in sorted(self.record.load().items()) if sid not in present]

    def verify(self, snaps: list[Snapshot], tips: list[Snapshot],
               quarantined: Collection[str] = frozenset(),
               removed: frozenset[str] = frozenset()) -> list[Snapshot]:
        problems = self.rollbacks(snaps, removed | set(quarantined))
        if problems and not self.accept:
            raise problems[0]
        for p in problems:
            self.warn(f"ACCEPTED ({len(problems)} problems, --accept-rollback): {p}")
        self._damaged = {k: v for k, v in self.record.load().items() if k in quarantined}
        self.remember(tips)
        return snaps

    def committed(self, snap: Snapshot) -> None:
        self.remember([snap])  # its prev were every head: it is the only one now

    def remember(self, tips: list[Snapshot]) -> None:
        seen = {**self._damaged, **{s.id: (s.head.seq, s.head.time_ns) for s in tips}}
        if set(self.record.load()) == set(seen):
            return
        try:
            self.record.save(seen)
        except OSError as e:
            self.warn(f"cannot record the snapshots seen in {self.record.path}: {e.strerror}")


@dataclass(frozen=True)
class Finding:
    """One thing ``analyse`` noticed; ``problem`` False means worth knowing, not wrong."""

    snapshot: str
    detail: str
    related: tuple[str, ...] = ()
    problem: bool = True
    code: str = ""  # seq, backdated, future, replay, stale, fork: what forget's trust rule keys on


def _ancestry(snaps: Sequence[Snapshot]) -> tuple[dict[str, int], list[int], int]:
    """Bit i stands for snaps[i] (sorted by seq); descendants of each, as integer bitsets;
    and the snapshots whose ancestry is unknown: one of their prev, or of their ancestors',
    is not there (a gap, an object that does not decode): they may descend from anything."""
    bit = {s.id: i for i, s in enumerate(snaps)}
    desc = [0] * len(snaps)
    for i in range(len(snaps) - 1, -1, -1):  # children have higher seq: they come later
        for p in snaps[i].head.prev:
            j = bit.get(p.hex())
            if j is not None and j < i:
                desc[j] |= desc[i] | (1 << i)
    unknown = 0
    for i, s in enumerate(snaps):
        if any(p.hex() not in bit for p in s.head.prev) and not unknown >> i & 1:
            unknown |= (1 << i) | desc[i]
    return bit, desc, unknown


def _dating(s: Snapshot, parents: Sequence[Snapshot], now_ns: int) -> list[Finding]:
    """A snapshot's time against its prev and the clock.

    What tells a backdated snapshot from a concurrent one: nothing in the record. A
    snapshot's time is when its create started; its prev is what was newest when it
    committed. Two creates at once, the first to start committing last, give a snapshot
    dated before its prev, legitimately, by up to the time the create ran. So only a
    snapshot dated more than ``CREATE_SLACK_NS`` before its prev is called backdated;
    forget counts the others at their prev's time (``counted_times``), so such a date
    can never take another period's place."""
    out = []
    late = [p for p in parents if p.head.time_ns > s.head.time_ns + CREATE_SLACK_NS]
    if late:
        out.append(Finding(s.id, f"backdated: dated {_when(s.head.time_ns)}, more than "
                                 f"{CREATE_SLACK_NS // (86400 * 10**9)} days before its prev "
                                 f"{late[0].id[:8]} ({_when(late[0].head.time_ns)})",
                           (late[0].id,), code="backdated"))
    if s.head.time_ns > now_ns + FUTURE_SLACK_NS:
        out.append(Finding(s.id, f"dated in the future ({_when(s.head.time_ns)})",
                           code="future"))
    return out


def analyse(snaps: Sequence[Snapshot], now_ns: int | None = None,
            ghosts: Sequence[Snapshot] = (), void: frozenset[str] = frozenset()
            ) -> list[Finding]:
    """Everything odd about a history that still lists (gaps and reordering are named
    by the listing already, ``snapshots.SnapshotLog.list``; ``repofs check`` reports
    those as well).

    ``ghosts`` are removed snapshots as their removal records keep them: they link the
    history across what forget removed, and are never reported themselves; those in
    ``void`` (removed by name, as planted) make no other snapshot a stale fork. A snapshot
    whose ancestry crosses a gap witnesses no stale fork either: it may well follow."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    ghost_ids = {g.id for g in ghosts}
    order = sorted([*snaps, *ghosts], key=lambda s: (s.head.seq, s.id))
    by_id = {s.id: s for s in order}
    out: list[Finding] = []
    places: dict[tuple[int, tuple[bytes, ...], int], str] = {}
    for s in order:
        parents = [by_id[p.hex()] for p in s.head.prev if p.hex() in by_id]
        want = max((p.head.seq for p in parents), default=-1) + 1
        if len(parents) == len(s.head.prev) and s.head.seq > want:
            out.append(Finding(s.id, f"seq {s.head.seq} does not follow its prev (which "
                                     f"make it {want}): it claims a place it did not have",
                               code="seq"))
        out += _dating(s, parents, now_ns)
        place = (s.head.seq, s.head.prev, s.head.time_ns)
        if place in places:
            out.append(Finding(s.id, f"replays the place and time of snapshot "
                                     f"{places[place][:8]}", (places[place],), code="replay"))
        places.setdefault(place, s.id)
    bit, desc, unknown = _ancestry(order)
    out += _stale(order, desc, unknown, void)
    out += _forks(order, bit, desc)
    return [f for f in out if f.snapshot not in ghost_ids]


def _stale(order: Sequence[Snapshot], desc: list[int], unknown: int,
           void: frozenset[str]) -> list[Finding]:
    """Snapshots that branch off although a snapshot two seqs newer existed that they do
    not follow (an honest writer lists right before it commits)."""
    seqs = [s.head.seq for s in order]
    witnesses = ((1 << len(order)) - 1) & ~unknown
    for i, s in enumerate(order):
        if s.id in void:
            witnesses &= ~(1 << i)
    out = []
    for i, s in enumerate(order):
        start = bisect.bisect_left(seqs, s.head.seq + STALE_SEQS)
        newer = witnesses & ~((1 << start) - 1)  # order is by seq: the newer are a suffix
        unrelated = newer & ~desc[i]
        if unrelated:
            t = order[unrelated.bit_length() - 1]
            out.append(Finding(s.id, f"stale fork: seq {s.head.seq}, although snapshot "
                                     f"{t.id[:8]} (seq {t.head.seq}) existed that it does "
                                     "not follow: written from an old view of the history "
                                     "(replayed or planted)", (t.id,), code="stale"))
    return out


def _forks(order: Sequence[Snapshot], bit: dict[str, int], desc: list[int]) -> list[Finding]:
    """Forks nothing has joined yet (concurrent writers; the next create joins them). A
    joined fork is history, not news: it is not mentioned again."""
    children: dict[str, list[str]] = {}
    for s in order:
        for p in s.head.prev:
            children.setdefault(p.hex(), []).append(s.id)
    out = []
    for parent, kids in children.items():
        if len(kids) < 2 or parent not in bit:
            continue
        common = -1
        for k in kids:
            common &= desc[bit[k]]
        if not common:
            out.append(Finding(parent, f"fork: {len(kids)} snapshots follow it ("
                                       f"{', '.join(k[:8] for k in kids)}): concurrent "
                                       "writers; the next create joins them",
                               tuple(kids), problem=False, code="fork"))
    return out


def counted_times(snaps: Sequence[Snapshot], ghosts: Sequence[Snapshot] = (),
                  ignore: Collection[str] = frozenset()) -> dict[str, int]:
    """The time forget counts each snapshot at: its own, or, if it is dated before a
    snapshot it follows (a concurrent create, ``_dating``), 1 ns before the latest of
    those: so a snapshot can never claim a period before the history it follows, nor
    outrank the snapshot it follows in that snapshot's own period. ``ignore``: snapshots
    whose time is not believed (untrusted, voided): they move nothing."""
    order = sorted([*snaps, *ghosts], key=lambda s: (s.head.seq, s.id))
    at: dict[str, int] = {}
    for s in order:
        t = s.head.time_ns
        for p in s.head.prev:
            if p.hex() in at and p.hex() not in ignore:
                t = max(t, at[p.hex()] - 1)
        at[s.id] = t
    return {s.id: at[s.id] for s in snaps}


__all__ = ["Finding", "HeadsGuard", "HeadsRecord", "analyse", "counted_times", "state_dir"]
