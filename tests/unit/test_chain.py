"""chain: the heads a client remembers, rollbacks it refuses, and what analyse names."""

from __future__ import annotations

from pathlib import Path

import pytest

from repofs import crypto
from repofs.chain import HeadsGuard, HeadsRecord, analyse, counted_times
from repofs.errors import Rollback
from repofs.model import Snapshot, SnapshotHead
from repofs.snapshots import heads

HOUR = 3600 * 10**9
DAY = 24 * HOUR
T0 = 1_700_000_000 * 10**9


def snap(n: int, seq: int, prev: tuple[int, ...] = (), time_ns: int | None = None) -> Snapshot:
    return Snapshot(sid(n), SnapshotHead(seq, tuple(bytes.fromhex(sid(p)) for p in prev),
                                         T0 + seq * HOUR if time_ns is None else time_ns), None)


def sid(n: int) -> str:
    return crypto.object_name(b"%d" % n)


@pytest.fixture(autouse=True)
def state_home(shm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(shm_dir))
    return shm_dir


LINEAR = [snap(0, 0), snap(1, 1, (0,)), snap(2, 2, (1,))]


def test_a_clean_history_has_nothing_to_say() -> None:
    assert analyse(LINEAR, now_ns=T0 + 10 * HOUR) == []


def test_findings() -> None:
    now = T0 + 10 * HOUR
    found: dict[tuple[str, bool], str] = {}
    for f in analyse([
        *LINEAR,
        snap(3, 5, (2,)),  # skips seqs
        snap(4, 3, (), T0),  # a root that claims seq 3
        snap(5, 6, (3,), T0 - 8 * DAY),  # backdated, more than a create can run, before 3
        snap(6, 7, (5,), now + 2 * HOUR),  # in the future
        snap(7, 1, (0,), T0 + HOUR),  # a stale fork off 0 although 2 .. 7 exist
        snap(8, 1, (0,), T0 + HOUR),  # same place and time as 7
    ], now_ns=now):
        found[f.snapshot, f.problem] = found.get((f.snapshot, f.problem), "") + " | " + f.detail
    assert "seq 5 does not follow its prev (which make it 3)" in found[sid(3), True]
    assert "seq 3 does not follow its prev (which make it 0)" in found[sid(4), True]
    assert "backdated" in found[sid(5), True]
    assert "future" in found[sid(6), True]
    assert "stale fork" in found[sid(7), True]
    assert "replays the place and time" in found[sid(8), True]
    assert "fork: 3 snapshots follow it" in found[sid(0), False]


def test_concurrent_writers_are_no_problem() -> None:
    forked = [*LINEAR, snap(3, 2, (1,), T0 + 2 * HOUR + 1)]
    [fork] = analyse(forked, now_ns=T0 + 10 * HOUR)
    assert not fork.problem and fork.snapshot == sid(1) and "the next create joins" in fork.detail
    joined = [*forked, snap(4, 3, (2, 3))]
    assert analyse(joined, now_ns=T0 + 10 * HOUR) == []  # joined: history, not news
    later = [*joined, snap(5, 4, (4,)), snap(6, 5, (5,))]
    assert analyse(later, now_ns=T0 + 10 * HOUR) == []


def test_a_create_that_ran_while_another_committed_is_no_backdating() -> None:
    """Two creates at once: A starts first, B commits first, A commits on top of B. A is
    dated before its prev by the time it ran; only days of that are called backdated."""
    a_started = T0 + 2 * HOUR - 30 * 10**9
    b = snap(2, 2, (1,), T0 + 2 * HOUR)
    a = snap(3, 3, (2,), a_started)
    history = [*LINEAR[:2], b, a]
    assert analyse(history, now_ns=T0 + 10 * HOUR) == []
    long_run = [*LINEAR[:2], b, snap(3, 3, (2,), T0 + 2 * HOUR - 6 * DAY)]
    assert analyse(long_run, now_ns=T0 + 10 * HOUR) == []
    planted = [*LINEAR[:2], b, snap(3, 3, (2,), T0 + 2 * HOUR - 8 * DAY)]
    [f] = analyse(planted, now_ns=T0 + 10 * HOUR)
    assert f.code == "backdated" and f.snapshot == sid(3) and f.problem
    # forget counts it at its prev's time: no earlier period can be taken by such a date
    at = counted_times(history)
    assert at[sid(3)] == b.head.time_ns - 1 and at[sid(1)] == LINEAR[1].head.time_ns
    assert counted_times(history, ignore={sid(2)})[sid(3)] == a_started


def test_a_gap_makes_no_stale_fork() -> None:
    """0 <- 1 <- 2 <- 3 with 1 deleted: only the gap is wrong (the listing names it); 0 is
    no stale fork because 2 and 3 may well follow it through 1."""
    assert analyse([LINEAR[0], LINEAR[2], snap(3, 3, (2,))], now_ns=T0 + 10 * HOUR) == []
    # a real stale fork is still named next to a gap
    stale = snap(7, 1, (0,), T0 + HOUR + 7)
    found = analyse([LINEAR[0], LINEAR[1], snap(3, 3, (2,)),
                     snap(4, 2, (1,), T0 + 2 * HOUR + 5), snap(5, 3, (4,)), stale],
                    now_ns=T0 + 10 * HOUR)
    assert [(f.snapshot, f.code) for f in found if f.problem] == [(sid(7), "stale")]


def test_a_forgotten_middle_snapshot_leaves_one_history() -> None:
    """After forget removed 1 (its ghost kept): no fork, no stale 0, one head."""
    snaps = [LINEAR[0], LINEAR[2]]
    assert analyse(snaps, now_ns=T0 + 10 * HOUR, ghosts=[LINEAR[1]]) == []
    assert heads(snaps, [LINEAR[1]]) == {sid(2)}


def tips(snaps: list[Snapshot]) -> list[Snapshot]:
    return [s for s in snaps if s.id in heads(snaps)]


def test_the_guard_remembers_heads_and_refuses_a_rollback() -> None:
    warnings: list[str] = []
    guard = HeadsGuard("r" * 64, warn=warnings.append)
    assert guard.verify(list(LINEAR), tips(LINEAR)) == LINEAR
    assert set(HeadsRecord("r" * 64).load()) == {sid(2)}
    with pytest.raises(Rollback, match=f"snapshot {sid(2)} .*rolled back"):
        guard.verify(LINEAR[:2], tips(LINEAR[:2]))
    more = [*LINEAR, snap(3, 3, (2,))]
    guard.verify(more, tips(more))  # moving on is fine
    assert set(HeadsRecord("r" * 64).load()) == {sid(3)}
    assert guard.rollbacks(LINEAR) and not guard.rollbacks(LINEAR, frozenset({sid(3)}))
    assert warnings == []


def test_accepting_a_rollback_warns_and_resets_the_record() -> None:
    HeadsGuard("r" * 64).verify(list(LINEAR), tips(LINEAR))
    warnings: list[str] = []
    loud = HeadsGuard("r" * 64, accept_rollback=True, warn=warnings.append)
    assert loud.verify(LINEAR[:2], tips(LINEAR[:2])) == LINEAR[:2]
    assert len(warnings) == 1 and all("ACCEPTED" in w for w in warnings)
    assert set(HeadsRecord("r" * 64).load()) == {sid(1)}
    HeadsGuard("r" * 64).verify(LINEAR[:2], tips(LINEAR[:2]))  # no complaint any more


def test_a_damaged_head_is_no_rollback_and_stays_remembered() -> None:
    """A head this client saw whose object is there but does not verify is named by the
    listing (damage), not refused; it stays in the record, so deleting it later is caught."""
    guard = HeadsGuard("r" * 64)
    guard.verify(list(LINEAR), tips(LINEAR))
    rest = LINEAR[:2]
    guard.verify(rest, tips(rest), quarantined=frozenset({sid(2)}))
    assert set(HeadsRecord("r" * 64).load()) == {sid(1), sid(2)}
    guard.committed(snap(3, 2, (1,)))
    assert set(HeadsRecord("r" * 64).load()) == {sid(2), sid(3)}
    with pytest.raises(Rollback, match=f"snapshot {sid(2)} "):
        HeadsGuard("r" * 64).verify([*rest, snap(3, 2, (1,))], [snap(3, 2, (1,))])


def test_gaps_are_no_rollback() -> None:
    """A snapshot gone from the middle is a gap the listing names (repofs.snapshots), not a
    reason to refuse: the heads this client saw are all there."""
    guard = HeadsGuard("r" * 64)
    guard.verify(list(LINEAR), tips(LINEAR))
    gap = [LINEAR[0], LINEAR[2]]
    assert HeadsGuard("r" * 64).verify(gap, [LINEAR[2]]) == gap


def test_heads_follow_ghosts_across_a_forgotten_snapshot() -> None:
    """0 <- 1 <- 2 with 1 forgotten: one head (2), not two; with 2 forgotten: 1."""
    assert heads([LINEAR[0], LINEAR[2]], [LINEAR[1]]) == {sid(2)}
    assert heads([LINEAR[0], LINEAR[2]]) == {sid(0), sid(2)}
    assert heads(LINEAR[:2], [LINEAR[2]]) == {sid(1)}


def test_a_commit_is_the_only_head(state_home: Path) -> None:
    guard = HeadsGuard("r" * 64)
    guard.verify(list(LINEAR), tips(LINEAR))
    guard.committed(snap(3, 3, (2,)))
    assert set(HeadsRecord("r" * 64).load()) == {sid(3)}


@pytest.mark.parametrize("content", ["", "{", "[]", '{"heads": 5}', '{"heads": {"a": [1]}}'])
def test_a_damaged_record_is_a_fresh_start(state_home: Path, content: str) -> None:
    record = HeadsRecord("r" * 64)
    record.path.parent.mkdir(parents=True)
    record.path.write_text(content)
    assert record.load() == {}


def test_an_unwritable_state_dir_is_a_warning(state_home: Path) -> None:
    (state_home / "repofs").write_text("not a directory")
    warnings: list[str] = []
    HeadsGuard("r" * 64, warn=warnings.append).verify(list(LINEAR), tips(LINEAR))
    assert len(warnings) == 1 and "cannot record" in warnings[0]
