"""The root of a mount: every snapshot by id, by time, by host and by tag.

A layout is built whole from the snapshot list each time the list changes and
is never edited, so a lookup racing with a refresh sees the old layout or the
new one, never half of each. Names of snapshots stay stable as snapshots are
added: a snapshot keeps the directory name it was first shown under.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence

from repofs.model import Snapshot
from repofs.vfs.nodes import History, Link, SnapCtx, Spec, Stored, Virtual, safe_name

IDS, SNAPSHOTS, HOSTS, TAGS, HISTORY = b"ids", b"snapshots", b"hosts", b"tags", b"history"
LATEST = b"latest"


def local_time(time_ns: int, precise: bool = False) -> str:
    """ISO-8601 in local time: to the second, or to the microsecond to tell two apart."""
    sec, ns = divmod(time_ns, 1_000_000_000)
    t = datetime.datetime.fromtimestamp(sec).astimezone()
    if precise:
        t = t.replace(microsecond=ns // 1000)
        return t.isoformat(timespec="microseconds")
    return t.isoformat(timespec="seconds")


def contexts(snaps: Iterable[Snapshot], known: Mapping[str, SnapCtx]) -> list[SnapCtx]:
    """One context per readable snapshot, oldest first, each with a unique directory name.

    The name is the local time to the second, then ``_<name>`` for a named snapshot.
    When that name is taken, microseconds are added, then the short id. Contexts
    already known keep their names, so adding a snapshot never renames another.
    """
    readable = [s for s in snaps if s.body is not None]
    used = {known[s.id].dirname for s in readable if s.id in known}
    out = []
    for s in readable:
        ctx = known.get(s.id)
        if ctx is None:
            b = s.body
            assert b is not None
            suffix = b"_" + safe_name(b.name) if b.name is not None else b""
            candidates = [local_time(s.head.time_ns).encode() + suffix,
                          local_time(s.head.time_ns, precise=True).encode() + suffix]
            candidates.append(candidates[1] + b"_" + s.short_id.encode())
            name = next((c for c in candidates if c not in used), candidates[1] + b"_"
                        + s.id.encode())
            used.add(name)
            ctx = SnapCtx(id=s.id, time_ns=s.head.time_ns, dirname=name, tree=b.tree,
                          host=b.host, tags=b.tags, hardlinks=dict(b.hardlinks))
        out.append(ctx)
    return out


class Layout:
    """The directories above the snapshots' trees, for one list of snapshots."""

    def __init__(self, ctxs: Sequence[SnapCtx], generation: int = 0,
                 latest: str | None = None) -> None:
        """``latest``: the id ``snapshots.latest`` chose (the one rule for it); no link
        when it is None or not among ``ctxs``."""
        self.ctxs = tuple(ctxs)
        self.latest = latest
        self.generation = generation  # tells memos of an older layout apart
        self.by_id = {c.id: c for c in ctxs}
        self.time_ns = max((c.time_ns for c in ctxs), default=0)
        dirs: dict[tuple[bytes, ...], dict[bytes, Spec]] = {
            (): {IDS: Virtual((IDS,)), SNAPSHOTS: Virtual((SNAPSHOTS,)), HOSTS: Virtual((HOSTS,)),
                 TAGS: Virtual((TAGS,)), HISTORY: History(b"")},
            (IDS,): {}, (SNAPSHOTS,): {}, (HOSTS,): {}, (TAGS,): {},
        }
        for c in ctxs:
            dirs[(IDS,)][c.id.encode()] = Stored(c, c.root())
            dirs[(SNAPSHOTS,)][c.dirname] = Stored(c, c.root())
            groups = [(HOSTS, safe_name(c.host))] + [(TAGS, safe_name(t)) for t in c.tags]
            for top, name in groups:
                dirs[(top,)][name] = Virtual((top, name))
                dirs.setdefault((top, name), {})[c.dirname] = Stored(c, c.root())
        if latest is not None and latest in self.by_id:
            dirs[(SNAPSHOTS,)][LATEST] = Link(self.by_id[latest].dirname)
        self._names = {p: sorted(d) for p, d in dirs.items()}
        self._dirs = dirs

    def listing(self, path: tuple[bytes, ...]) -> list[tuple[bytes, Spec]]:
        d = self._dirs.get(path, {})
        return [(n, d[n]) for n in self._names.get(path, [])]

    def child(self, path: tuple[bytes, ...], name: bytes) -> Spec | None:
        return self._dirs.get(path, {}).get(name)
