"""Retention policies: which snapshots a policy keeps, and why (``repofs forget``).

The rules are restic's, per group of snapshots (by default: same host, same
paths), over the snapshots sorted newest first by (time, seq, id):

- ``last N``: the N newest;
- ``hourly/daily/weekly/monthly/yearly N``: the newest snapshot of each of the
  N newest hours, days, ISO weeks, months, years that have a snapshot;
- ``within D``: every snapshot dated at most D before the group's newest;
- ``tag T``: every snapshot carrying tag T.

A snapshot is kept if any rule keeps it. What this module adds is one input:
``untrusted``, the snapshots whose place or date in the history cannot be
believed (``forget.assess`` says which and why). They are kept and never
counted: they fill no slot, shift no window and are nobody's newest. Taking a
snapshot out of the counting can only ever keep more of the others (a slot it
would have filled goes to the next one), so a planted snapshot that is
recognised cannot make a policy remove a real one (see repofs-forget(1)).

Snapshots of an empty standard input (``create --stdin-name`` that read zero bytes,
tagged ``empty-stdin`` by the archiver, with zero bytes in their stats) are not
counted either, so a dump that failed every night for a week cannot push the last
good dumps out of ``--keep-daily``; no rule keeps them, so a policy removes them:
they hold nothing. Why a tag and not a body field: it needs no change of the format.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from repofs.model import Snapshot

EMPTY_STDIN_TAG = "empty-stdin"
_UNIT_S = {"h": 3600, "d": 86400, "w": 7 * 86400, "m": 30 * 86400, "y": 365 * 86400}
_DURATION = re.compile(r"\A(?:\d+[hdwmy])+\Z")
GROUP_FIELDS = ("host", "paths")


def parse_duration(text: str) -> int:
    """``36h``, ``7d``, ``2w``, ``1y6m`` (m = 30 days, y = 365 days) in nanoseconds."""
    text = text.strip().lower()
    if not _DURATION.match(text):
        raise ValueError(f"invalid duration {text!r} (use e.g. 36h, 7d, 2w, 6m, 1y6m)")
    seconds = sum(int(n) * _UNIT_S[u] for n, u in re.findall(r"(\d+)([hdwmy])", text))
    return seconds * 10**9


@dataclass(frozen=True)
class Policy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within_ns: int = 0
    tags: frozenset[str] = field(default_factory=frozenset)

    @property
    def empty(self) -> bool:
        return not (self.last or self.hourly or self.daily or self.weekly or self.monthly
                    or self.yearly or self.within_ns or self.tags)


Bucket = Callable[[datetime.datetime], str]
_BUCKETS: tuple[tuple[str, Bucket], ...] = (
    ("hourly", lambda d: d.strftime("%Y-%m-%dT%H")),
    ("daily", lambda d: d.strftime("%Y-%m-%d")),
    ("weekly", lambda d: "{:04d}-W{:02d}".format(*d.isocalendar()[:2])),
    ("monthly", lambda d: d.strftime("%Y-%m")),
    ("yearly", lambda d: d.strftime("%Y")),
)


@dataclass(frozen=True)
class Verdict:
    snapshot: Snapshot
    keep: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Group:
    """One group's snapshots, newest first, each with its verdict."""

    host: str | None
    paths: tuple[bytes, ...] | None
    verdicts: tuple[Verdict, ...]


def group_key(s: Snapshot, by: Sequence[str]) -> tuple[str | None, tuple[bytes, ...] | None]:
    b = s.body
    if b is None:
        return None, None
    return (b.host if "host" in by else None,
            tuple(sorted(b.paths)) if "paths" in by else None)


def is_empty_stdin(s: Snapshot) -> bool:
    """A snapshot of a standard input that held nothing: tagged so, and its stats agree
    (a tag alone, which any writer can set on a real backup, is not enough)."""
    b = s.body
    return b is not None and EMPTY_STDIN_TAG in b.tags and b.stats.get("bytes_total") == 0


def stdin_tags(tags: Sequence[str], empty: bool, warn: Callable[[str], None]) -> tuple[str, ...]:
    """The tags of a new snapshot; for one of an empty standard input (a pipe whose writer
    failed), ``EMPTY_STDIN_TAG`` too, and a warning: such a backup is never silent."""
    if not empty:
        return tuple(tags)
    warn(f"standard input was empty; the snapshot is tagged {EMPTY_STDIN_TAG} and forget's "
         "--keep rules never count it")
    return tuple(tags) if EMPTY_STDIN_TAG in tags else (*tags, EMPTY_STDIN_TAG)


def _newest_first(snaps: Sequence[Snapshot]) -> list[Snapshot]:
    return sorted(snaps, key=lambda s: (s.head.time_ns, s.head.seq, s.id), reverse=True)


def _keep_group(snaps: list[Snapshot], policy: Policy, untrusted: Mapping[str, str],
                tz: datetime.tzinfo | None) -> tuple[Verdict, ...]:
    reasons: dict[str, list[str]] = {s.id: [] for s in snaps}
    empty = {s.id for s in snaps if s.id not in untrusted and is_empty_stdin(s)}
    counted = [s for s in snaps
               if s.id not in untrusted and s.body is not None and s.id not in empty]
    for s in snaps:
        if s.body is None:
            reasons[s.id].append("cannot read it: kept")
        elif s.id in untrusted:
            reasons[s.id].append(f"untrusted, kept and not counted: {untrusted[s.id]}")
    for i, s in enumerate(counted[:policy.last]):
        reasons[s.id].append(f"last {i + 1}/{policy.last}")
    for rule, bucket in _BUCKETS:
        quota = getattr(policy, rule)
        seen: set[str] = set()
        for s in counted:
            if len(seen) >= quota:
                break
            when = datetime.datetime.fromtimestamp(s.head.time_ns / 1e9, tz)
            key = bucket(when)
            if key not in seen:
                seen.add(key)
                reasons[s.id].append(f"{rule} {key}")
    if policy.within_ns and counted:
        start = counted[0].head.time_ns - policy.within_ns
        for s in counted:
            if s.head.time_ns >= start:
                reasons[s.id].append("within the period before the newest")
    for s in counted:
        hit = sorted(policy.tags & set(s.body.tags if s.body else ()))
        if hit:
            reasons[s.id].append(f"tag {','.join(hit)}")
    return tuple(Verdict(s, True, tuple(reasons[s.id])) if reasons[s.id] else
                 Verdict(s, False, ("empty standard input, not counted",) if s.id in empty
                         else ()) for s in snaps)


def plan(snaps: Sequence[Snapshot], policy: Policy, untrusted: Mapping[str, str],
         group_by: Sequence[str] = GROUP_FIELDS,
         tz: datetime.tzinfo | None = None) -> list[Group]:
    """Every snapshot's verdict, by group; ``tz`` decides where days begin (local time)."""
    if policy.empty:
        raise ValueError("a policy without a rule would remove every snapshot")
    groups: dict[tuple[str | None, tuple[bytes, ...] | None], list[Snapshot]] = {}
    for s in _newest_first(snaps):
        groups.setdefault(group_key(s, group_by), []).append(s)
    out = []
    for (host, paths), members in sorted(groups.items(), key=lambda kv: (
            kv[0][0] or "", kv[0][1] or ())):
        out.append(Group(host, paths, _keep_group(members, policy, untrusted, tz)))
    return out


__all__ = ["EMPTY_STDIN_TAG", "GROUP_FIELDS", "Group", "Policy", "Verdict", "group_key",
           "is_empty_stdin", "parse_duration", "plan", "stdin_tags"]
