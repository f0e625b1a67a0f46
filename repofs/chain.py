"""The policy over the snapshot history: what a client remembers, refuses and reports.

Why a module of its own: ``snapshots`` verifies what one listing shows (every
prev exists and is older); a repository that silently drops its newest
snapshots still passes that. So each client remembers the heads it saw, per
repository, under ``$XDG_STATE_HOME/repofs/<repository id>/heads.json``, and
``HeadsGuard`` refuses a listing in which one of them is gone: a rollback.
A gap is accepted only where an admin-signed removal record (``repofs.signed``,
written by forget) names the missing snapshot; every other gap is tampering. Concurrent
writers are no rollback: both heads stay, and the next create joins them.

``analyse`` is for ``repofs check``: beyond what a listing refuses, it names
snapshots whose seq does not follow their prev, that are dated before their
prev or in the future, that repeat another's place, and stale forks, i.e.
snapshots that branch off although much newer history existed that they do
not follow (an honest writer re-lists right before it commits, so its fork
can only be from about the same moment).
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


def _ancestry(snaps: Sequence[Snapshot]) -> tuple[dict[str, int], list[int]]:
    """Bit i stands for snaps[i] (sorted by seq); descendants of each, as integer bitsets."""
    bit = {s.id: i for i, s in enumerate(snaps)}
    desc = [0] * len(snaps)
    for i in range(len(snaps) - 1, -1, -1):  # children have higher seq: they come later
        for p in snaps[i].head.prev:
            j = bit.get(p.hex())
            if j is not None and j < i:
                desc[j] |= desc[i] | (1 << i)
    return bit, desc


def analyse(snaps: Sequence[Snapshot], now_ns: int | None = None,
            ghosts: Sequence[Snapshot] = (), void: frozenset[str] = frozenset()
            ) -> list[Finding]:
    """Everything odd about a history that still lists (gaps and reordering are refused
    by ``snapshots.chain_errors`` already; ``repofs check`` reports those as well).

    ``ghosts`` are removed snapshots as their removal records keep them: they link the
    history across what forget removed, and are never reported themselves; those in
    ``void`` (removed by name, as planted) make no other snapshot a stale fork."""
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
        late = [p for p in parents if p.head.time_ns > s.head.time_ns]
        if late:
            out.append(Finding(s.id, f"backdated: dated {_when(s.head.time_ns)}, before its "
                                     f"prev {late[0].id[:8]} ({_when(late[0].head.time_ns)})",
                               (late[0].id,), code="backdated"))
        if s.head.time_ns > now_ns + FUTURE_SLACK_NS:
            out.append(Finding(s.id, f"dated in the future ({_when(s.head.time_ns)})",
                               code="future"))
        place = (s.head.seq, s.head.prev, s.head.time_ns)
        if place in places:
            out.append(Finding(s.id, f"replays the place and time of snapshot "
                                     f"{places[place][:8]}", (places[place],), code="replay"))
        places.setdefault(place, s.id)
    bit, desc = _ancestry(order)
    seqs = [s.head.seq for s in order]
    everything = (1 << len(order)) - 1
    for i, s in enumerate(order):
        if s.id in void:
            everything &= ~(1 << i)
    for i, s in enumerate(order):
        start = bisect.bisect_left(seqs, s.head.seq + STALE_SEQS)
        newer = everything & ~((1 << start) - 1)  # order is by seq: the newer are a suffix
        unrelated = newer & ~desc[i]
        if unrelated:
            t = order[unrelated.bit_length() - 1]
            out.append(Finding(s.id, f"stale fork: seq {s.head.seq}, although snapshot "
                                     f"{t.id[:8]} (seq {t.head.seq}) existed that it does "
                                     "not follow: written from an old view of the history "
                                     "(replayed or planted)", (t.id,), code="stale"))
    children: dict[str, list[str]] = {}
    for s in order:
        for p in s.head.prev:
            children.setdefault(p.hex(), []).append(s.id)
    for parent, kids in children.items():
        if len(kids) > 1 and parent in bit:
            out.append(Finding(parent, f"fork: {len(kids)} snapshots follow it ("
                                       f"{', '.join(k[:8] for k in kids)}): concurrent "
                                       "writers; the next create joins them",
                               tuple(kids), problem=False, code="fork"))
    return [f for f in out if f.snapshot not in ghost_ids]


__all__ = ["Finding", "HeadsGuard", "HeadsRecord", "analyse", "state_dir"]
