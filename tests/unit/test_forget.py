"""forget and removal records: admin-signed removals, the history across them, and the
trust rule that keeps planted snapshots from making a policy remove real ones."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from repofs import chain, crypto, forget, keys, retention, signed, spec
from repofs.chain import HeadsGuard
from repofs.checker import Checker
from repofs.errors import IntegrityError, NotPermitted, Rollback
from repofs.model import Snapshot, SnapshotHead
from repofs.repository import Repository
from tests.unit.adminkit import DAY, as_capability, backup, make_repo, plant, reopen

POLICY = retention.Policy(last=2, daily=3, weekly=2, monthly=2)


@pytest.fixture
def repo(shm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Repository:
    monkeypatch.setenv("XDG_STATE_HOME", str(shm_dir / "state"))
    return make_repo(shm_dir / "repo")


def history(repo: Repository, days: int = 40) -> list[Snapshot]:
    """A real host backing up once a day for ``days`` days, up to yesterday."""
    start = time.time_ns() - (days + 1) * DAY
    return [backup(repo, {"f": b"day %d" % i}, time_ns=start + i * DAY) for i in range(days)]


def kept_ids(plan: forget.ForgetPlan) -> set[str]:
    return {v.snapshot.id for g in plan.groups for v in g.verdicts if v.keep}


def test_forget_needs_an_admin_key(repo: Repository) -> None:
    history(repo, 3)
    for cap in (keys.CAP_FULL, keys.CAP_WRITE_ONLY):
        with pytest.raises(NotPermitted, match="this key cannot sign removal records"):
            forget.plan_policy(as_capability(repo, cap), POLICY)


def test_removed_snapshots_are_hidden_and_their_gap_accepted(repo: Repository) -> None:
    real = history(repo, 6)
    guard = HeadsGuard(repo.id)
    repo.snapshots.guard = guard
    assert len(repo.snapshots.list()) == 6  # the guard now remembers the newest as a head
    plan = forget.plan_ids(repo, [real[2].id, real[5].id])
    (name,) = forget.commit(repo, plan)
    for cap in keys.CAPABILITIES:  # every key verifies the record
        view = as_capability(repo, cap)
        view.snapshots.guard = HeadsGuard(repo.id)
        assert [s.id for s in view.snapshots.list()] == [s.id for s in real if s not in
                                                         (real[2], real[5])]
    (record,) = repo.snapshots.removals().records
    assert record.name == name and record.explicit
    assert record.snapshots[real[2].id] == real[2].head
    report = Checker(reopen(repo)).run()
    assert report.intact, [p.line() for p in report.problems]


def test_a_gap_without_a_valid_record_is_still_tampering(repo: Repository) -> None:
    real = history(repo, 3)
    other = make_repo(repo.store.root.parent / "other")
    assert other.keys.admin is not None
    forged = signed.sign_removal(other.keys.admin, repo.keys.repo_id,
                                 {real[1].id: real[1].head}, 1)
    repo.put_object(spec.NS_REMOVALS, forged)
    repo.put_object(spec.NS_REMOVALS, b"\x81\xa1v\x01")  # garbage a writer planted
    assert len(repo.snapshots.list()) == 3  # both ignored
    path = repo.store.path(spec.NS_SNAPSHOTS, real[1].id)
    path.unlink()
    again = reopen(repo)
    assert len(again.snapshots.list()) == 2  # the gap is named, the rest listed
    said = {d.object_id: d.detail for d in again.damage}
    assert "missing" in said[real[1].id] and len(said) == 3  # the gap, both records
    report = Checker(reopen(repo)).run()
    kinds = sorted(p.kind for p in report.problems)
    assert kinds.count("removal record") == 2 and "snapshot" in kinds


def test_a_client_that_saw_a_removed_head_accepts_the_record(
        repo: Repository, shm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = history(repo, 3)
    clients = {}
    for who in ("b", "c"):  # two clients that saw real[2] as the newest snapshot
        monkeypatch.setenv("XDG_STATE_HOME", str(shm_dir / who))
        clients[who] = HeadsGuard(repo.id)
        view = reopen(repo)
        view.snapshots.guard = clients[who]
        view.snapshots.list()
    forget.commit(repo, forget.plan_ids(repo, [real[2].id]))
    repo.store.path(spec.NS_SNAPSHOTS, real[2].id).unlink()  # as prune does
    view = reopen(repo)
    view.snapshots.guard = clients["b"]
    assert [s.id for s in view.snapshots.list()] == [real[0].id, real[1].id]
    for name in list(repo.store.list(spec.NS_REMOVALS)):  # without the record: a rollback
        repo.store.path(spec.NS_REMOVALS, name).unlink()
    view.snapshots.guard = clients["c"]
    with pytest.raises(Rollback):
        view.snapshots.list()


def test_a_record_signs_the_exact_bytes(repo: Repository) -> None:
    real = history(repo, 2)
    assert repo.keys.admin is not None
    data = signed.sign_removal(repo.keys.admin, repo.keys.repo_id, {real[0].id: real[0].head}, 5)
    decoded = signed.decode(data, crypto.object_name(data), signed.TYPE_REMOVAL, repo.keys)
    assert isinstance(decoded, signed.Removal) and set(decoded.snapshots) == {real[0].id}
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x20
        with pytest.raises(IntegrityError):
            signed.decode(bytes(bad), crypto.object_name(bytes(bad)), signed.TYPE_REMOVAL,
                          repo.keys)
    with pytest.raises(IntegrityError):  # a removal is not a condemn record
        signed.decode(data, crypto.object_name(data), signed.TYPE_CONDEMN, repo.keys)


def test_policy_forget_writes_one_record(repo: Repository) -> None:
    real = history(repo, 40)
    plan = forget.plan_policy(repo, POLICY)
    assert plan.remove and not plan.untrusted
    forget.commit(repo, plan)
    left = {s.id for s in reopen(repo).snapshots.list()}
    assert left == kept_ids(plan) and left < {s.id for s in real}
    again = forget.plan_policy(reopen(repo), POLICY)
    assert not again.untrusted  # the removed snapshots link the history as ghosts
    assert not again.remove


# -- planted snapshots ---------------------------------------------------------------------------
def _plants(repo: Repository, real: list[Snapshot], kind: str) -> list[str]:
    """Snapshots a compromised writer adds with a write-only key; their ids."""
    w = as_capability(repo, keys.CAP_WRITE_ONLY)
    head, now = real[-1], time.time_ns()
    tip = SnapshotHead(head.head.seq + 1, (bytes.fromhex(head.id),), 0)
    if kind == "future":
        heads = [SnapshotHead(tip.seq, tip.prev, now + (400 + i) * DAY) for i in range(5)]
    elif kind == "backdated":  # on top of the history, dated into its past months
        heads = [SnapshotHead(tip.seq, tip.prev, real[i].head.time_ns + 3600 * 10**9)
                 for i in range(0, 40, 8)]
    elif kind == "seq":
        heads = [SnapshotHead(10**6 + i, tip.prev, now - 3600 * 10**9) for i in range(3)]
    elif kind == "replay":  # another body in the place and time of real snapshots
        heads = [real[i].head for i in range(0, 40, 7)]
    elif kind == "stale":  # forks off old snapshots, dated just after them
        heads = [SnapshotHead(real[i].head.seq + 1, (bytes.fromhex(real[i].id),),
                              real[i].head.time_ns + 7200 * 10**9) for i in range(2, 36, 3)]
    elif kind == "garbage":
        names = []
        for i in range(3):
            data = os.urandom(200 + i)
            names.append(repo.put_object(spec.NS_SNAPSHOTS, data))
        return names
    else:  # "chain": a branch off an old snapshot that outruns the real history
        base, heads = real[10], []
        prev, seq, t = (bytes.fromhex(base.id),), base.head.seq + 1, base.head.time_ns
        ids = []
        for _ in range(60):
            t += 12 * 3600 * 10**9
            s = plant(w, {"f": b"planted"}, SnapshotHead(seq, prev, t))
            ids.append(s.id)
            prev, seq = (bytes.fromhex(s.id),), seq + 1
        return ids
    return [plant(w, {"f": b"planted %d" % i}, h).id for i, h in enumerate(heads)]


@pytest.mark.parametrize("kind", ["future", "backdated", "seq", "replay", "stale", "garbage",
                                  "chain"])
def test_planted_snapshots_never_make_a_policy_remove_a_real_one(repo: Repository,
                                                                 kind: str) -> None:
    real = history(repo, 40)
    repo.snapshots.guard = HeadsGuard(repo.id, accept_rollback=True)
    planted = set(_plants(repo, real, kind))
    # the real host keeps backing up on top of whatever it finds (it joins the plants)
    real.append(backup(repo, {"f": b"today"}))
    view = reopen(repo)
    view.snapshots.guard = HeadsGuard(repo.id, accept_rollback=True)
    plan = forget.plan_policy(view, POLICY)
    real_ids = {s.id for s in real}
    # what the policy keeps of the real snapshots when no plant exists at all
    expected_now = {v.snapshot.id for g in retention.plan(
        [s for s in view.snapshots.list() if s.id in real_ids], POLICY, {})
        for v in g.verdicts if v.keep}
    kept = kept_ids(plan)
    assert expected_now <= kept, "a planted snapshot made the policy remove a real one"
    if kind == "backdated":  # less than a create may run before the head: a concurrent
        # create as far as anyone can tell; counted at the head's time, it takes no slot
        head_time = real[-2].head.time_ns
        planted = {p for p in planted if view.snapshots.read(p).head.time_ns
                   < head_time - chain.CREATE_SLACK_NS}
    assert not (planted & set(plan.remove)), "a planted snapshot was counted"
    if kind in ("seq", "garbage"):  # recognised without touching the real ones
        assert kept & real_ids == expected_now
    forget.commit(view, plan)
    view = reopen(repo)
    view.snapshots.guard = HeadsGuard(repo.id, accept_rollback=True)
    assert kept & real_ids <= {s.id for s in view.snapshots.list()}


def test_forgetting_the_plants_by_id_ends_the_contest(repo: Repository) -> None:
    real = history(repo, 40)
    expected = kept_ids(forget.plan_policy(repo, POLICY))
    planted = _plants(repo, real, "chain")
    view = reopen(repo)
    contested = forget.plan_policy(view, POLICY)
    assert any("contested" in why for why in contested.untrusted.values())
    forget.commit(view, forget.plan_ids(view, planted))
    after = forget.plan_policy(reopen(repo), POLICY)
    assert not after.untrusted
    assert kept_ids(after) == expected


def test_the_planted_snapshots_of_the_man_page_example(repo: Repository) -> None:
    """repofs-forget(1), EXAMPLE: the same 12 real snapshots are kept with the two plants."""
    import datetime

    utc = datetime.UTC
    times = [datetime.datetime(2026, 9, 28, 1, tzinfo=utc) + datetime.timedelta(days=i)
             for i in range(57)] + [datetime.datetime(2026, 11, 23, 13, tzinfo=utc)]
    real = [backup(repo, {"f": b"%d" % i}, time_ns=int(t.timestamp()) * 10**9)
            for i, t in enumerate(times)]
    now = int(datetime.datetime(2026, 11, 23, 13, 5, tzinfo=utc).timestamp()) * 10**9
    policy = retention.Policy(last=2, daily=7, weekly=4, monthly=3)
    before = kept_ids(forget.plan_policy(repo, policy, now_ns=now, tz=utc))
    assert len(before) == 12
    w = as_capability(repo, keys.CAP_WRITE_ONLY)
    tip = (bytes.fromhex(real[-1].id),)
    for when in (datetime.datetime(2027, 1, 1, tzinfo=utc),
                 datetime.datetime(2026, 10, 31, 23, tzinfo=utc)):
        plant(w, {"f": b"x"}, SnapshotHead(real[-1].head.seq + 1, tip,
                                           int(when.timestamp()) * 10**9))
    plan = forget.plan_policy(reopen(repo), policy, now_ns=now, tz=utc)
    assert len(plan.untrusted) == 2
    assert kept_ids(plan) - set(plan.untrusted) == before


# -- objects the listing leaves out, forgotten by name ---------------------------------------------
def test_forgetting_an_object_that_does_not_decode(repo: Repository) -> None:
    """Garbage a writer stored under its own name, and a real snapshot damaged in the middle
    of the history: check names both; forget takes their names; then no reader or check
    names them again, the history around the damaged one is whole, and prune may delete."""
    real = history(repo, 4)
    junk = repo.put_object(spec.NS_SNAPSHOTS, b"\x00" * 15)
    path = repo.store.path(spec.NS_SNAPSHOTS, real[1].id)
    path.chmod(0o640)
    path.write_bytes(path.read_bytes()[:-1])
    before = Checker(reopen(repo)).run()
    assert {junk, real[1].id} <= {p.object_id for p in before.problems}
    view = reopen(repo)
    plan = forget.plan_ids(view, [junk, real[1].id[:10]])
    assert set(plan.remove) == {junk, real[1].id}
    assert signed.is_unknown(junk, plan.remove[junk])
    assert [v.reasons[0] for g in plan.groups for v in g.verdicts] == [
        "left out: truncated header", "left out: content does not match its name"]
    forget.commit(view, plan)
    again = reopen(repo)
    assert [s.id for s in again.snapshots.list()] == [real[0].id, real[2].id, real[3].id]
    assert not list(again.damage)
    (record,) = again.snapshots.removals().records
    assert set(record.snapshots) == {junk, real[1].id} and record.explicit
    assert signed.ghosts(again.snapshots.removals()) == []  # unknown heads link nothing
    after = Checker(reopen(repo)).run()
    assert after.intact, [p.line() for p in after.problems]
    plan = forget.plan_policy(reopen(repo), retention.Policy(last=1))
    assert not plan.untrusted  # the gap is explained: 0 is no stale fork


def test_a_left_out_object_is_named_by_full_id_or_unique_prefix(repo: Repository) -> None:
    history(repo, 2)
    junk = repo.put_object(spec.NS_SNAPSHOTS, b"planted")
    view = reopen(repo)
    with pytest.raises(IntegrityError, match=junk):  # restore etc.: what was asked is unusable
        view.snapshots.resolve(junk[:6])
    assert set(forget.plan_ids(view, [junk[:6]]).remove) == {junk}
