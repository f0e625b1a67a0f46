"""Attacks on the snapshot history, with the stolen passphrase, through repofs serve (and,
for deletions, raw storage access): each is refused by every command that lists snapshots
or named by ``repofs check``, and the earlier snapshots still restore byte for byte."""

from __future__ import annotations

import dataclasses
import os
import time

from repofs import spec
from repofs.envelope import HEADER_LEN
from repofs.model import SnapshotHead, decode_head

from .victim import Victim, body_for, put_snapshot


def now() -> int:
    return time.time_ns()


def heads_of(victim: Victim) -> tuple[list[str], str]:
    return victim.snaps, victim.snaps[-1]


def check(victim: Victim, expect: int) -> list[str]:
    r = victim.client.run("check", expect=expect)
    return r.text.splitlines()


def problem_lines(lines: list[str], snap: str) -> list[str]:
    return [ln for ln in lines if ln.startswith(f"snapshot {snap}")]


LEFT_OUT = "(left out; an admin may put it aside with repofs forget)"


def test_a_snapshot_claiming_an_old_seq(victim: Victim) -> None:
    """Planted on top of the newest snapshot with seq 0: left out of every listing and
    named once; it blocks nothing (repofs-format(5), DAMAGE)."""
    snaps, head = heads_of(victim)
    repo = victim.client.attacker()
    tree = repo.snapshots.read(head).body.tree  # type: ignore[union-attr]
    bad = put_snapshot(repo, SnapshotHead(0, (bytes.fromhex(head),), now()), body_for(tree))
    for cmd in (("snapshots",), ("create", victim.src)):
        r = victim.client.run(*cmd, expect=1)
        assert r.err_lines == [f"repofs: warning: snapshot {bad} is corrupt or tampered: seq "
                               f"does not follow its prev {LEFT_OUT}"], r
    assert bad not in {s["id"] for s in victim.client.run(
        "snapshots", "--json", expect=1).json()}  # type: ignore[union-attr]
    lines = problem_lines(check(victim, 2), bad)
    assert any("seq does not follow its prev" in ln for ln in lines), lines
    victim.restores_exactly(newest_only=True, expect=1)
    victim.unchanged()


def test_a_root_claiming_a_later_seq_and_a_skipped_seq(victim: Victim) -> None:
    snaps, head = heads_of(victim)
    repo = victim.client.attacker()
    tree = repo.snapshots.read(head).body.tree  # type: ignore[union-attr]
    root = put_snapshot(repo, SnapshotHead(7, (), now()), body_for(tree))
    skip = put_snapshot(repo, SnapshotHead(9, (bytes.fromhex(head),), now()), body_for(tree))
    lines = check(victim, 2)
    assert "seq 7 does not follow its prev (which make it 0)" in problem_lines(lines, root)[0]
    assert "seq 9 does not follow its prev (which make it 2)" in problem_lines(lines, skip)[0]
    victim.restores_exactly(newest_only=True)
    victim.unchanged()


def test_replaying_an_old_snapshot(victim: Victim) -> None:
    """The same bytes again are a no-op; its sealed body under a new head is named."""
    snaps, head = heads_of(victim)
    old = victim.snaps[0]
    data = (victim.restrict / spec.NS_SNAPSHOTS / old).read_bytes()
    repo = victim.client.attacker()
    assert repo.store.put(spec.NS_SNAPSHOTS, old, data) is False
    first = repo.snapshots.read(old)
    outer = repo.open_cipher(data[:HEADER_LEN], spec.KIND_SNAPSHOT, old)
    _, sealed = decode_head(outer.open(0, memoryview(data)[HEADER_LEN:], b"snapshot"), old)
    moved = dataclasses.replace(first.head, seq=2, prev=(bytes.fromhex(head),), time_ns=now())
    replay = put_snapshot(repo, moved, first.body, sealed=sealed)  # type: ignore[arg-type]
    r = victim.client.run("snapshots", expect=1)
    assert r.err_lines == [f"repofs: warning: snapshot {replay} is corrupt or tampered: body "
                           f"belongs to another snapshot (replayed) {LEFT_OUT}"], r
    assert "replayed" in problem_lines(check(victim, 2), replay)[0]
    victim.restores_exactly(newest_only=True, expect=1)
    victim.unchanged()


def test_forks_of_concurrent_writers_are_joined(victim: Victim) -> None:
    """Two snapshots on the same head (two hosts at once): legitimate, the next joins them."""
    snaps, head = heads_of(victim)
    repo = victim.client.attacker()
    tree = repo.snapshots.read(head).body.tree  # type: ignore[union-attr]
    a = put_snapshot(repo, SnapshotHead(2, (bytes.fromhex(head),), now()), body_for(tree, "a"))
    b = put_snapshot(repo, SnapshotHead(2, (bytes.fromhex(head),), now() + 1), body_for(tree, "b"))
    assert len(victim.client.snapshots()) == 4
    lines = check(victim, 0)
    assert any(ln.startswith(f"note: snapshot {head}: fork: 2 snapshots follow it") for ln in lines)
    joined = victim.client.create(victim.expected[1])
    assert joined["seq"] == 3
    top = [s for s in victim.client.snapshots() if s["id"] == joined["snapshot"]][0]
    assert sorted(top["prev"]) == sorted([a, b])
    victim.restores_exactly(newest_only=True)
    victim.unchanged()


def test_a_stale_fork_is_named(victim: Victim) -> None:
    """A snapshot branching off the first one although much newer ones exist: an old view
    (two writers racing differ by a seq at most; this one is two behind)."""
    snaps, head = heads_of(victim)
    repo = victim.client.attacker()
    tree = repo.snapshots.read(head).body.tree  # type: ignore[union-attr]
    mid = put_snapshot(repo, SnapshotHead(2, (bytes.fromhex(head),), now()), body_for(tree))
    top = put_snapshot(repo, SnapshotHead(3, (bytes.fromhex(mid),), now()), body_for(tree))
    stale = put_snapshot(repo, SnapshotHead(1, (bytes.fromhex(victim.snaps[0]),), now() + 1),
                         body_for(tree))
    assert len(victim.client.snapshots()) == 5  # listing: it is no gap and no reordering
    [line] = problem_lines(check(victim, 2), stale)
    assert "stale fork" in line and top[:8] in line
    victim.restores_exactly(newest_only=True)
    victim.unchanged()


def test_backdated_and_future_dated_snapshots_are_named(victim: Victim) -> None:
    snaps, head = heads_of(victim)
    repo = victim.client.attacker()
    tree = repo.snapshots.read(head).body.tree  # type: ignore[union-attr]
    back = put_snapshot(repo, SnapshotHead(2, (bytes.fromhex(head),), 10**18), body_for(tree))
    future = put_snapshot(repo, SnapshotHead(3, (bytes.fromhex(back),), now() + 10**17),
                          body_for(tree))
    lines = check(victim, 2)
    [backdated] = problem_lines(lines, back)
    assert "backdated" in backdated and head[:8] in backdated
    assert "dated in the future" in problem_lines(lines, future)[0]
    victim.restores_exactly(newest_only=True)
    victim.unchanged()


def test_deleting_a_snapshot_in_the_middle_is_a_gap(victim: Victim) -> None:
    """Raw storage access: the first snapshot is removed; its successor names it, in one
    warning, and everything else goes on (the lost snapshot costs only itself)."""
    victim.client.snapshots()
    os.unlink(victim.restrict / spec.NS_SNAPSHOTS / victim.snaps[0])
    for cmd in (("snapshots",), ("create", victim.src)):
        r = victim.client.run(*cmd, expect=1)
        assert r.err_lines == [f"repofs: warning: snapshot {victim.snaps[0]} is corrupt or "
                               f"tampered: missing, but snapshot {victim.snaps[1]} references "
                               "it (a gap in the history: the snapshots around it are "
                               "listed)"], r
    lines = check(victim, 2)
    assert [ln for ln in lines if not ln.startswith("note:")][:-1] == [
        f"snapshot {victim.snaps[0]}: missing, but snapshot {victim.snaps[1]} references it; "
        f"affects snapshots {min(victim.snaps[0], victim.snaps[1])[:8]}, "
        f"{max(victim.snaps[0], victim.snaps[1])[:8]}"], lines  # only the gap: no stale fork
    victim.snaps, victim.expected = victim.snaps[1:], victim.expected[1:]
    victim.restores_exactly(expect=1)


def test_rolling_back_the_newest_snapshot(victim: Victim) -> None:
    """Raw storage access: the head this client saw vanishes. Refused (exit 2) until the
    user accepts it, loudly; then the record follows the repository again."""
    victim.client.snapshots()  # this client has now seen the head
    newest = victim.snaps[1]
    os.rename(victim.restrict / spec.NS_SNAPSHOTS / newest, victim.base / "stolen")
    for cmd in (("snapshots",), ("restore", victim.snaps[0], "-t", victim.base / "t")):
        r = victim.client.run(*cmd, expect=2)
        assert len(r.err_lines) == 1 and r.err_lines[0].startswith(
            f"repofs: error: snapshot {newest} is corrupt or tampered: this client saw it as "
            "the newest (seq 1,"), r
        assert "rolled back" in r.err and "--accept-rollback" in r.err
    assert any(ln.startswith(f"snapshot {newest}") and "rolled back" in ln
               for ln in check(victim, 2))
    r = victim.client.run("snapshots", "--accept-rollback", "--json", expect=1)
    assert "ACCEPTED" in r.err and newest in r.err and [s["id"] for s in r.json()] == \
        [victim.snaps[0]]
    victim.client.snapshots()  # accepted once: the record follows the repository now
    other = type(victim.client)(victim.restrict, victim.base / "other-client",
                                victim.client.extra["REPOFS_SSH"])  # type: ignore[arg-type]
    assert len(other.snapshots()) == 1  # a client that never saw it has nothing to compare
    victim.snaps, victim.expected = victim.snaps[:1], victim.expected[:1]
    victim.restores_exactly()


def test_a_forked_view_hiding_this_clients_head(victim: Victim) -> None:
    """The server shows a fork without the head this client made: a rollback, refused."""
    victim.client.snapshots()
    os.rename(victim.restrict / spec.NS_SNAPSHOTS / victim.snaps[1], victim.base / "hidden")
    repo = victim.client.attacker()
    tree = repo.snapshots.read(victim.snaps[0]).body.tree  # type: ignore[union-attr]
    put_snapshot(repo, SnapshotHead(1, (bytes.fromhex(victim.snaps[0]),), now()), body_for(tree))
    r = victim.client.run("snapshots", expect=2)
    assert victim.snaps[1] in r.err and "rolled back" in r.err, r
