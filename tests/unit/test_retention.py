"""retention: the keep rules, the worked example of repofs-forget(1), and why setting
snapshots aside as untrusted can only ever keep more."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repofs import retention
from repofs.model import Snapshot, SnapshotBody, SnapshotHead

UTC = datetime.UTC
HOUR = 3600 * 10**9


def snap(i: int, when: datetime.datetime | int, host: str = "web1",
         paths: tuple[bytes, ...] = (b"/home",), tags: tuple[str, ...] = ()) -> Snapshot:
    ns = when if isinstance(when, int) else int(when.timestamp()) * 10**9
    body = SnapshotBody(b"t" * 32, paths, host, "u", tags, None, {}, {})
    return Snapshot(f"{i:064x}", SnapshotHead(i, (), ns), body)


def kept(groups: list[retention.Group]) -> set[str]:
    return {v.snapshot.id for g in groups for v in g.verdicts if v.keep}


def when(s: Snapshot) -> str:
    return datetime.datetime.fromtimestamp(s.head.time_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")


def test_the_worked_example_of_the_man_page() -> None:
    """repofs-forget(1), EXAMPLE: daily backups at 01:00 from Sep 28 to Nov 23 2026 and one
    more at 13:00 on Nov 23, with --keep-last 2 --keep-daily 7 --keep-weekly 4
    --keep-monthly 3 (times in UTC)."""
    times = [datetime.datetime(2026, 9, 28, 1, tzinfo=UTC) + datetime.timedelta(days=i)
             for i in range(57)] + [datetime.datetime(2026, 11, 23, 13, tzinfo=UTC)]
    snaps = [snap(i, t) for i, t in enumerate(sorted(times))]
    (group,) = retention.plan(snaps, retention.Policy(last=2, daily=7, weekly=4, monthly=3),
                              {}, tz=UTC)
    table = {when(v.snapshot): v.reasons for v in group.verdicts if v.keep}
    assert table == {
        "2026-11-23 13:00": ("last 1/2", "daily 2026-11-23", "weekly 2026-W48",
                             "monthly 2026-11"),
        "2026-11-23 01:00": ("last 2/2",),
        "2026-11-22 01:00": ("daily 2026-11-22", "weekly 2026-W47"),
        **{f"2026-11-{d} 01:00": (f"daily 2026-11-{d}",) for d in range(17, 22)},
        "2026-11-15 01:00": ("weekly 2026-W46",),
        "2026-11-08 01:00": ("weekly 2026-W45",),
        "2026-10-31 01:00": ("monthly 2026-10",),
        "2026-09-30 01:00": ("monthly 2026-09",),
    }
    assert sum(not v.keep for v in group.verdicts) == 46


def test_groups_are_per_host_and_paths() -> None:
    t = datetime.datetime(2026, 5, 1, tzinfo=UTC)
    snaps = [snap(0, t, "a"), snap(1, t, "b"), snap(2, t, "a", (b"/etc",)),
             snap(3, t + datetime.timedelta(hours=1), "a")]
    groups = retention.plan(snaps, retention.Policy(last=1), {}, tz=UTC)
    assert len(groups) == 3
    assert kept(groups) == {snaps[1].id, snaps[2].id, snaps[3].id}
    (one,) = retention.plan(snaps, retention.Policy(last=1), {}, group_by=(), tz=UTC)
    assert kept([one]) == {snaps[3].id}


def test_within_counts_from_the_newest_trusted_and_tags_keep() -> None:
    base = 1_700_000_000 * 10**9
    snaps = [snap(i, base + i * 10 * HOUR, tags=("keep",) if i == 0 else ()) for i in range(6)]
    policy = retention.Policy(within_ns=25 * HOUR, tags=frozenset({"keep"}))
    groups = retention.plan(snaps, policy, {})
    assert kept(groups) == {snaps[0].id, snaps[3].id, snaps[4].id, snaps[5].id}
    # the newest is dated absurdly far ahead and untrusted: the window follows the next one
    groups = retention.plan(snaps, policy, {snaps[5].id: "dated in the future"})
    assert kept(groups) == {s.id for s in snaps[0:1] + snaps[2:]}


def test_untrusted_snapshots_are_kept_and_not_counted() -> None:
    base = 1_700_000_000 * 10**9
    snaps = [snap(i, base + i * HOUR) for i in range(5)]
    groups = retention.plan(snaps, retention.Policy(last=2), {snaps[4].id: "planted"})
    (g,) = groups
    assert kept(groups) == {snaps[4].id, snaps[3].id, snaps[2].id}
    assert g.verdicts[0].reasons == ("untrusted, kept and not counted: planted",)


def test_a_policy_without_rules_is_refused() -> None:
    with pytest.raises(ValueError):
        retention.plan([snap(0, 10**18)], retention.Policy(), {})


@pytest.mark.parametrize(("text", "hours"), [("36h", 36), ("7d", 168), ("2w", 336),
                                             ("1y6m", 365 * 24 + 180 * 24), ("1D", 24)])
def test_durations(text: str, hours: int) -> None:
    assert retention.parse_duration(text) == hours * HOUR


@pytest.mark.parametrize("text", ["", "7", "d", "-1d", "1.5d", "7 days", "1d2"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        retention.parse_duration(text)


_policies = st.builds(retention.Policy, last=st.integers(0, 4), hourly=st.integers(0, 3),
                      daily=st.integers(0, 4), weekly=st.integers(0, 3),
                      monthly=st.integers(0, 3), yearly=st.integers(0, 2),
                      within_ns=st.sampled_from([0, 6 * HOUR, 50 * HOUR]),
                      tags=st.sampled_from([frozenset(), frozenset({"t"})])
                      ).filter(lambda p: not p.empty)


@settings(max_examples=150)
@given(st.lists(st.tuples(st.integers(0, 400 * 24), st.sampled_from(["a", "b"]),
                          st.booleans()), min_size=1, max_size=25),
       _policies, st.data())
def test_setting_snapshots_aside_only_ever_keeps_more(
        rows: list[tuple[int, str, bool]], policy: retention.Policy, data: st.DataObject) -> None:
    """The property the trust rule rests on: for any policy, marking more snapshots
    untrusted never removes a snapshot that would otherwise be kept."""
    base = 1_700_000_000 * 10**9
    snaps = [snap(i, base + h * HOUR, host, tags=("t",) if tagged else ())
             for i, (h, host, tagged) in enumerate(rows)]
    ids = [s.id for s in snaps]
    small = set(data.draw(st.lists(st.sampled_from(ids), max_size=5)))
    large = small | set(data.draw(st.lists(st.sampled_from(ids), max_size=5)))
    before = kept(retention.plan(snaps, policy, dict.fromkeys(small, "x"), tz=UTC))
    after = kept(retention.plan(snaps, policy, dict.fromkeys(large, "x"), tz=UTC))
    assert before <= after


def _stdin_snap(i: int, ns: int, size: int, tags: tuple[str, ...]) -> Snapshot:
    body = SnapshotBody(b"t" * 32, (b"/db.sql",), "web1", "u", tags, None, {},
                        {"files": 1, "bytes_total": size})
    return Snapshot(f"{i:064x}", SnapshotHead(i, (), ns), body)


def test_snapshots_of_an_empty_stdin_are_not_counted_and_go() -> None:
    """A dump that failed three nights running (pg_dump | repofs create --stdin-name)
    must not push the last good dumps out of --keep-daily 2."""
    day = 24 * HOUR
    base = 1_700_000_000 * 10**9
    empty = (retention.EMPTY_STDIN_TAG,)
    snaps = [_stdin_snap(0, base, 100, ()), _stdin_snap(1, base + day, 100, ()),
             *(_stdin_snap(i, base + i * day, 0, empty) for i in range(2, 5)),
             _stdin_snap(5, base + 5 * day, 100, empty)]  # a tag alone is not enough
    (g,) = retention.plan(snaps, retention.Policy(daily=2), {}, tz=UTC)
    assert kept([g]) == {snaps[1].id, snaps[5].id}
    gone = {v.snapshot.id: v.reasons for v in g.verdicts if not v.keep}
    assert gone[snaps[2].id] == ("empty standard input, not counted",)
    assert gone[snaps[0].id] == ()
    assert retention.is_empty_stdin(snaps[3]) and not retention.is_empty_stdin(snaps[5])


def test_stdin_tags_warn_and_mark_only_an_empty_stdin() -> None:
    said: list[str] = []
    assert retention.stdin_tags(("a",), False, said.append) == ("a",) and said == []
    assert retention.stdin_tags(("a",), True, said.append) == ("a", retention.EMPTY_STDIN_TAG)
    assert len(said) == 1 and "never count" in said[0]
