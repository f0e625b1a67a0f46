"""``repofs forget``: apply a retention policy and write one admin-signed removal record.

Why it never touches a snapshot object: snapshots are write-once, and a
removal is only believable when an admin key signed it (``repofs.signed``).
So forget writes one removal record naming what goes, with each removed
snapshot's head kept as a ghost; readers hide those snapshots at once and
``repofs prune`` later deletes their objects and the data only they used.

The trust rule (``assess``): a writer chooses its snapshot's time, seq and
prev. Before a policy counts anything, every snapshot the history shows to be
planted or misdated is set aside as untrusted: kept, never counted. Which:

1. what ``chain.analyse`` flags on its own: dated in the future, dated
   days before a snapshot it follows, a seq its prev do not give, a replayed
   place (a snapshot dated less before one it follows is a create that ran
   while that one was made: it is counted at that one's time,
   ``chain.counted_times``, so it cannot take an earlier period's place);
2. then, with those left out as witnesses (so they cannot make real snapshots
   look old) but kept as links (a real create may follow one), stale forks:
   snapshots that branch off an old view of the history;
3. and because a stale fork means someone wrote from an old view, everything
   dated from the point where that view branched off (the fork's parents
   included) is contested: kept and not counted until an admin forgets the
   planted snapshots by id.

The rest is indistinguishable from a backup made when it claims, and the
history only lets it claim the present (see repofs-forget(1), TRUST).
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from repofs import adminstore, chain, retention, signed, spec
from repofs.errors import NotPermitted, SnapshotNotFound
from repofs.model import Snapshot, SnapshotHead
from repofs.repository import Repository
from repofs.snapshots import Quarantined


@dataclass(frozen=True)
class ForgetPlan:
    """What a forget would do; ``remove`` maps each snapshot that goes to its head."""

    groups: list[retention.Group]
    remove: dict[str, SnapshotHead]
    untrusted: dict[str, str]
    explicit: bool


def _when(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC).isoformat(
        timespec="seconds")


def assess(snaps: Sequence[Snapshot], ghosts: Sequence[Snapshot], now_ns: int,
           void: frozenset[str] = frozenset()) -> dict[str, str]:
    """The untrusted snapshots (id -> why), by the three steps of the module docstring."""
    untrusted = {f.snapshot: f.detail for f in chain.analyse(snaps, now_ns, ghosts, void)
                 if f.problem and f.code != "stale"}
    rest = [s for s in snaps if s.id not in untrusted]
    # the flagged ones still link the history (a real create may follow one), as void ghosts
    links = [*ghosts, *(s for s in snaps if s.id in untrusted)]
    known = {s.id: s for s in [*rest, *links]}
    fork_points: list[tuple[int, str]] = []
    for f in chain.analyse(rest, now_ns, links, void | set(untrusted)):
        if not f.problem:
            continue
        untrusted.setdefault(f.snapshot, f.detail)
        if f.code == "stale":
            stale = known[f.snapshot]
            fork_points += [(known[p.hex()].head.time_ns, f.snapshot)
                            for p in stale.head.prev if p.hex() in known]
    if fork_points:
        start, culprit = min(fork_points)
        for s in snaps:
            if s.head.time_ns >= start:
                untrusted.setdefault(s.id, f"contested: the history forks at {_when(start)} "
                                           f"(stale fork {culprit[:8]}); forget the "
                                           "planted snapshots by id to resolve")
    return untrusted


def _admin(repo: Repository) -> None:
    if repo.keys.admin is None:
        raise NotPermitted(f"this key cannot sign removal records: it is a "
                           f"{repo.keys.capability} key, and only an admin key may forget")


def plan_policy(repo: Repository, policy: retention.Policy,
                group_by: Sequence[str] = retention.GROUP_FIELDS,
                hosts: Sequence[str] = (), now_ns: int | None = None,
                tz: datetime.tzinfo | None = None) -> ForgetPlan:
    """Decide with ``policy`` over every snapshot (of ``hosts``, if given)."""
    _admin(repo)
    now_ns = time.time_ns() if now_ns is None else now_ns
    snaps = repo.snapshots.list()
    removals = repo.snapshots.removals()
    ghosts, void = signed.ghosts(removals), signed.void(removals)
    untrusted = assess(snaps, ghosts, now_ns, void)
    if hosts:
        snaps = [s for s in snaps if s.body is not None and s.body.host in hosts]
    groups = _plan_counted(snaps, chain.counted_times(snaps, ghosts, void | set(untrusted)),
                           policy, untrusted, group_by, tz)
    remove = {v.snapshot.id: v.snapshot.head for g in groups for v in g.verdicts if not v.keep}
    return ForgetPlan(groups, remove, untrusted, explicit=False)


def _plan_counted(snaps: Sequence[Snapshot], at: dict[str, int], policy: retention.Policy,
                  untrusted: dict[str, str], group_by: Sequence[str],
                  tz: datetime.tzinfo | None) -> list[retention.Group]:
    """``retention.plan`` over the snapshots as counted at ``at`` (``chain.counted_times``);
    the verdicts name the snapshots as they are."""
    counted = [s if at[s.id] == s.head.time_ns else
               dataclasses.replace(s, head=dataclasses.replace(s.head, time_ns=at[s.id]))
               for s in snaps]
    real = {s.id: s for s in snaps}
    return [retention.Group(g.host, g.paths, tuple(
                retention.Verdict(real[v.snapshot.id], v.keep, v.reasons) for v in g.verdicts))
            for g in retention.plan(counted, policy, untrusted, group_by, tz)]


def plan_ids(repo: Repository, refs: Sequence[str]) -> ForgetPlan:
    """Remove exactly the snapshots named (full id, unique prefix or name), or objects in
    snapshots/ that the listing left out (named by full id or unique prefix, as repofs check
    names them): planted or damaged, they stop being reported and prune may delete them."""
    _admin(repo)
    log = repo.snapshots
    asked = {hits[0] for ref in refs for hits in [log.named(ref)] if len(hits) == 1}
    snaps = log.list(quiet=frozenset(asked))  # those it puts aside are no news to report
    remove: dict[str, SnapshotHead] = {}
    verdicts = []
    for ref in refs:
        bad = _left_out(log.quarantined, snaps, ref)
        if bad is not None:
            remove[bad.id] = (bad.snapshot.head if bad.snapshot is not None
                              else signed.unknown_head(bad.id))
            verdicts.append(retention.Verdict(
                bad.snapshot or Snapshot(bad.id, remove[bad.id], None), False,
                (f"left out: {bad.error.detail}",)))
            continue
        s = log.resolve(ref, snaps)
        remove[s.id] = s.head
        verdicts.append(retention.Verdict(s, False, ("named",)))
    if not remove:
        raise SnapshotNotFound("no snapshot named")
    return ForgetPlan([retention.Group(None, None, tuple(verdicts))], remove, {},
                      explicit=True)


def _left_out(quarantined: Mapping[str, Quarantined], snaps: Sequence[Snapshot],
              ref: str) -> Quarantined | None:
    """The object left out of the listing that ``ref`` names: its full id, or a prefix of at
    least 4 digits that names nothing else (else ``resolve`` says it is ambiguous)."""
    ref = ref.lower()
    if ref in quarantined:
        return quarantined[ref]
    if len(ref) < 4 or any(s.id.startswith(ref) for s in snaps):
        return None
    hits = [q for q in quarantined.values() if q.id.startswith(ref)]
    return hits[0] if len(hits) == 1 else None


def commit(repo: Repository, plan: ForgetPlan, now_ns: int | None = None) -> list[str]:
    """Write the removal record(s); their names (none if nothing goes)."""
    _admin(repo)
    assert repo.keys.admin is not None
    now_ns = time.time_ns() if now_ns is None else now_ns
    ids = sorted(plan.remove)
    names = []
    for i in range(0, len(ids), signed.MAX_REMOVED):
        part = {sid: plan.remove[sid] for sid in ids[i:i + signed.MAX_REMOVED]}
        data = signed.sign_removal(repo.keys.admin, repo.keys.repo_id, part, now_ns,
                                   plan.explicit)
        names.append(repo.put_object(spec.NS_REMOVALS, data))
    return names


def renew_locks(repo: Repository, store: object,
                progress: Callable[[str], None] | None = None) -> int:
    """s3:// with Object Lock, on ``store`` opened with the admin's credentials: renew the
    lock of every object but what a removal or condemn record names (a lock renewed on
    those would keep them forever), so nothing a kept snapshot needs can be deleted by
    anyone until the bucket's retention days after this run. Prune does the same;
    ``adminstore.renew_locks`` is the one place."""
    going = set(repo.snapshots.removed())
    for r in signed.read_condemnations(repo.store, repo.keys).records:
        going |= r.packs | r.segments
    return adminstore.renew_locks(store, going, progress)


__all__ = ["ForgetPlan", "assess", "commit", "plan_ids", "plan_policy", "renew_locks"]
