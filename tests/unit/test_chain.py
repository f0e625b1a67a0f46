"""chain: the heads a client remembers, rollbacks it refuses, and what analyse names."""

from __future__ import annotations

from pathlib import Path

import pytest

from repofs import crypto
from repofs.chain import HeadsGuard, HeadsRecord, analyse
from repofs.errors import Rollback
from repofs.model import Snapshot, SnapshotHead
from repofs.snapshots import heads

HOUR = 3600 * 10**9
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
        snap(5, 6, (3,), T0),  # backdated before 3
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
    forked = [*LINEAR, snap(3, 2, (1,), T0 + 2 * HOUR + 1), snap(4, 3, (2, 3))]
    assert [f.problem for f in analyse(forked, now_ns=T0 + 10 * HOUR)] == [False]


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
