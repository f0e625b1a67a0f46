"""snapshots: the hash-linked history, its verification, and naming snapshots."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repofs import crypto, keys, spec
from repofs.envelope import HEADER_LEN
from repofs.errors import AmbiguousSnapshot, IntegrityError, NameTaken, SnapshotNotFound
from repofs.model import Snapshot, SnapshotBody, SnapshotHead, encode_body, encode_head
from repofs.repository import Repository, _encode_config
from repofs.snapshots import FUTURE_TOLERANCE_NS, heads, latest, verify_chain
from repofs.store import LocalStore

TREE = b"\x01" * 32


def make_repo(root: Path, master: keys.MasterKeys | None = None) -> Repository:
    repo_id = crypto.random_bytes(32) if master is None else master.repo_id
    master = master or keys.generate(repo_id)
    return Repository(LocalStore.create(root, _encode_config(repo_id)), master)


def body(name: str | None = None, host: str = "h") -> SnapshotBody:
    return SnapshotBody(tree=TREE, paths=(b"/src",), host=host, user="u", tags=("daily",),
                        name=name, hardlinks={}, stats={"files": 1})


def write_snapshot(repo: Repository, head: SnapshotHead, b: SnapshotBody | None = None,
                   sealed: bytes | None = None) -> str:
    """A snapshot object with any head: what a (possibly hostile) writer can produce."""
    if sealed is None:
        inner = repo.new_cipher(spec.KIND_SNAPSHOT, spec.MODE_SEALED)
        sealed = inner.header + inner.seal(0, encode_body(head, b or body()), b"snapshot body")
    outer = repo.new_cipher(spec.KIND_SNAPSHOT, spec.MODE_SHARED)
    return repo.put_object(spec.NS_SNAPSHOTS,
                           outer.header + outer.seal(0, encode_head(head, sealed), b"snapshot"))


def write_raw_head(repo: Repository, plain: bytes) -> str:
    outer = repo.new_cipher(spec.KIND_SNAPSHOT, spec.MODE_SHARED)
    return repo.put_object(spec.NS_SNAPSHOTS, outer.header + outer.seal(0, plain, b"snapshot"))


def remove(repo: Repository, name: str) -> None:
    os.unlink(repo.store.path(spec.NS_SNAPSHOTS, name))


@pytest.fixture(scope="module")
def history(shm_module_dir: Path):
    """One repository with a linear history a <- b <- c, c named 'release'."""
    repo = make_repo(shm_module_dir / "repo")
    a = repo.snapshots.commit(body(), 1000)
    b = repo.snapshots.commit(body(host="other"), 2000)
    c = repo.snapshots.commit(body(name="release"), 3000)
    return repo, a, b, c


@pytest.fixture
def repo(shm_dir: Path) -> Repository:
    return make_repo(shm_dir / "repo")


# -- committing and reading --------------------------------------------------------------------
def test_commit_links_the_chain(history) -> None:
    repo, a, b, c = history
    assert (a.head.seq, b.head.seq, c.head.seq) == (0, 1, 2)
    assert a.head.prev == ()
    assert b.head.prev == (bytes.fromhex(a.id),)
    assert c.head.prev == (bytes.fromhex(b.id),)
    assert [s.id for s in repo.snapshots.list()] == [a.id, b.id, c.id]
    assert heads(repo.snapshots.list()) == {c.id}


def test_read_round_trip(history) -> None:
    repo, a, b, c = history
    for s in (a, b, c):
        got = repo.snapshots.read(s.id)
        assert got == s
    assert repo.snapshots.read(c.id).body.name == "release"  # type: ignore[union-attr]


def test_snapshot_ids_are_object_names(history) -> None:
    repo, a, _, _ = history
    data = repo.store.get(spec.NS_SNAPSHOTS, a.id)
    assert crypto.object_name(data) == a.id
    assert data[5] == spec.KIND_SNAPSHOT and data[6] == spec.MODE_SHARED


def test_bodies_are_sealed_and_heads_are_shared(history) -> None:
    repo, a, _, _ = history
    data = repo.store.get(spec.NS_SNAPSHOTS, a.id)
    assert b"/src" not in data and TREE not in data and b"daily" not in data
    wo = Repository(repo.store, dataclasses.replace(repo.keys, reader=None,
                                                    capability=keys.CAP_WRITE_ONLY))
    snaps = wo.snapshots.list()
    assert [s.id for s in snaps] == [s.id for s in repo.snapshots.list()]
    assert all(s.body is None for s in snaps)
    assert [s.head for s in snaps] == [s.head for s in repo.snapshots.list()]


def test_write_only_key_can_commit(repo: Repository) -> None:
    first = repo.snapshots.commit(body(), 1)
    wo = Repository(repo.store, dataclasses.replace(repo.keys, reader=None,
                                                    capability=keys.CAP_WRITE_ONLY))
    second = wo.snapshots.commit(body(name="from-writer"), 2)
    assert second.head.prev == (bytes.fromhex(first.id),) and second.head.seq == 1
    assert repo.snapshots.read(second.id).body.name == "from-writer"  # type: ignore[union-attr]


def test_names_are_unique(repo: Repository) -> None:
    repo.snapshots.commit(body(name="nightly"), 1)
    with pytest.raises(NameTaken):
        repo.snapshots.commit(body(name="nightly"), 2)
    with pytest.raises(NameTaken):
        repo.snapshots.ensure_name_free("nightly")
    repo.snapshots.ensure_name_free("other")
    assert len(repo.snapshots.list()) == 1


def test_fork_and_join(repo: Repository) -> None:
    """Two writers that saw the same head fork the history; the next commit joins it."""
    base = repo.snapshots.commit(body(), 1)
    fork_head = SnapshotHead(seq=1, prev=(bytes.fromhex(base.id),), time_ns=2)
    x = write_snapshot(repo, fork_head, body(host="x"))
    y = write_snapshot(repo, dataclasses.replace(fork_head, time_ns=3), body(host="y"))
    assert heads(repo.snapshots.list()) == {x, y}
    join = repo.snapshots.commit(body(), 4)
    assert set(join.head.prev) == {bytes.fromhex(x), bytes.fromhex(y)}
    assert list(join.head.prev) == sorted(join.head.prev)
    assert join.head.seq == 2
    assert heads(repo.snapshots.list()) == {join.id}


# -- chain verification ----------------------------------------------------------------------------
def named(repo: Repository) -> dict[str, str]:
    """What the repository's damage log named: object id -> detail and consequence."""
    return {d.object_id: f"{d.detail} ({d.consequence})" for d in repo.damage}


def test_missing_prev_is_named_and_the_rest_listed(repo: Repository) -> None:
    a = repo.snapshots.commit(body(), 1)
    b = repo.snapshots.commit(body(), 2)
    c = repo.snapshots.commit(body(), 3)
    remove(repo, b.id)
    assert [s.id for s in repo.snapshots.list()] == [a.id, c.id]
    said = named(repo)
    assert list(said) == [b.id] and f"missing, but snapshot {c.id}" in said[b.id]
    assert "gap" in said[b.id]


def test_missing_first_snapshot_is_named(repo: Repository) -> None:
    a = repo.snapshots.commit(body(), 1)
    b = repo.snapshots.commit(body(), 2)
    remove(repo, a.id)
    assert [s.id for s in repo.snapshots.list()] == [b.id]
    assert "missing" in named(repo)[a.id]


def test_seq_not_following_prev_is_left_out(repo: Repository) -> None:
    a = repo.snapshots.commit(body(), 1)
    for seq in (0, a.head.seq):
        bad = write_snapshot(repo, SnapshotHead(seq=seq, prev=(bytes.fromhex(a.id),),
                                                time_ns=seq + 5))
        assert [s.id for s in repo.snapshots.list()] == [a.id]
        assert "seq does not follow" in named(repo)[bad]
        assert repo.snapshots.quarantined[bad].snapshot is not None
        with pytest.raises(IntegrityError, match="seq does not follow"):
            repo.snapshots.resolve(bad)
        remove(repo, bad)


def test_a_commit_does_not_follow_what_was_left_out(repo: Repository) -> None:
    """Garbage under its own name (what any writer can put) blocks nothing; the next commit
    follows the real head, and the garbage is named once."""
    a = repo.snapshots.commit(body(), 1)
    junk = repo.put_object(spec.NS_SNAPSHOTS, b"garbage garbage")
    b = repo.snapshots.commit(body(), 2)
    assert b.head.prev == (bytes.fromhex(a.id),) and b.head.seq == 1
    assert [s.id for s in repo.snapshots.list()] == [a.id, b.id]
    assert [d.object_id for d in repo.damage] == [junk]
    assert repo.snapshots.resolve("latest").id == b.id
    for ref in (junk, junk[:10]):
        with pytest.raises(IntegrityError, match=junk):
            repo.snapshots.resolve(ref)


def test_self_reference_is_detected() -> None:
    s = Snapshot("a" * 64, SnapshotHead(1, (bytes.fromhex("a" * 64),), 1), None)
    with pytest.raises(IntegrityError, match="seq does not follow"):
        verify_chain([s])


def fabricated(n: int, prev_of: dict[int, list[int]]) -> list[Snapshot]:
    ids = [crypto.object_name(b"%d" % i) for i in range(n)]
    return [Snapshot(ids[i], SnapshotHead(i, tuple(bytes.fromhex(ids[p]) for p in
                                                    prev_of.get(i, [])), i), None)
            for i in range(n)]


@st.composite
def histories(draw: st.DrawFn) -> tuple[int, dict[int, list[int]]]:
    n = draw(st.integers(1, 12))
    prev = {i: sorted(set(draw(st.lists(st.integers(0, i - 1), max_size=3)))) for i in
            range(1, n)}
    return n, prev


@given(histories())
def test_valid_histories_verify(h: tuple[int, dict[int, list[int]]]) -> None:
    snaps = fabricated(*h)
    verify_chain(snaps)
    referenced = {p.hex() for s in snaps for p in s.head.prev}
    assert heads(snaps) == {s.id for s in snaps} - referenced


@given(histories(), st.data())
def test_removing_any_referenced_snapshot_is_detected(h: tuple[int, dict[int, list[int]]],
                                                      data: st.DataObject) -> None:
    snaps = fabricated(*h)
    referenced = sorted({p.hex() for s in snaps for p in s.head.prev})
    if not referenced:
        return
    gone = data.draw(st.sampled_from(referenced))
    with pytest.raises(IntegrityError) as e:
        verify_chain([s for s in snaps if s.id != gone])
    assert e.value.object_id == gone


# -- tampered and hostile snapshot objects ----------------------------------------------------
def test_tampered_snapshot_file_is_named(repo: Repository) -> None:
    a = repo.snapshots.commit(body(), 1)
    path = repo.store.path(spec.NS_SNAPSHOTS, a.id)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.chmod(0o640)
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=f"snapshot {a.id}"):
        repo.snapshots.read(a.id)
    assert repo.snapshots.list() == []
    assert "content does not match its name" in named(repo)[a.id]


def test_replayed_body_under_a_new_head(repo: Repository) -> None:
    a = repo.snapshots.commit(body(name="original"), 1)
    data = repo.store.get(spec.NS_SNAPSHOTS, a.id)
    outer = repo.open_cipher(data[:HEADER_LEN], spec.KIND_SNAPSHOT, a.id)
    plain = outer.open(0, data[HEADER_LEN:], b"snapshot")
    sealed = spec.unpack(plain, "s", "s")["body"]
    replay = write_snapshot(repo, SnapshotHead(seq=1, prev=(bytes.fromhex(a.id),), time_ns=2),
                            sealed=sealed)
    with pytest.raises(IntegrityError, match="replayed") as e:
        repo.snapshots.read(replay)
    assert e.value.object_id == replay


@pytest.mark.parametrize("kind", [spec.KIND_INDEX, spec.KIND_PACK])
def test_other_objects_under_snapshots_are_refused(repo: Repository, kind: int) -> None:
    c = repo.new_cipher(kind, spec.MODE_SHARED)
    head = encode_head(SnapshotHead(0, (), 1), b"x" * 60)
    name = repo.put_object(spec.NS_SNAPSHOTS, c.header + c.seal(0, head, b"snapshot"))
    with pytest.raises(IntegrityError, match="object is a"):
        repo.snapshots.read(name)


def test_body_must_be_sealed_to_the_repository(repo: Repository) -> None:
    other = keys.generate(repo.keys.repo_id)
    stranger = Repository(repo.store, other)
    inner = stranger.new_cipher(spec.KIND_SNAPSHOT, spec.MODE_SEALED)
    head = SnapshotHead(0, (), 1)
    sealed = inner.header + inner.seal(0, encode_body(head, body()), b"snapshot body")
    name = write_snapshot(repo, head, sealed=sealed)
    with pytest.raises(IntegrityError, match="authentication failed"):
        repo.snapshots.read(name)


@given(st.binary(max_size=200))
def test_hostile_snapshot_objects(shm_factory, data: bytes) -> None:
    repo = _fuzz_repo(shm_factory)
    for name in (
        repo.put_object(spec.NS_SNAPSHOTS, data),  # anything under its own name
        write_raw_head(repo, data),  # authenticated garbage head
        write_snapshot(repo, SnapshotHead(0, (), 1), sealed=data),  # garbage sealed body
    ):
        with pytest.raises(IntegrityError, match=name):
            repo.snapshots.read(name)


@given(st.data())
def test_mutated_snapshot_objects(shm_factory, mutate, data: st.DataObject) -> None:
    repo = _fuzz_repo(shm_factory)
    good = repo.store.get(spec.NS_SNAPSHOTS, _FUZZ["good"])
    name = repo.put_object(spec.NS_SNAPSHOTS, data.draw(mutate(good)))
    with pytest.raises(IntegrityError, match=name):
        repo.snapshots.read(name)


_FUZZ: dict = {}


def _fuzz_repo(shm_factory) -> Repository:
    if "repo" not in _FUZZ:
        _FUZZ["repo"] = make_repo(shm_factory() / "repo")
        _FUZZ["good"] = _FUZZ["repo"].snapshots.commit(body(), 1).id
    return _FUZZ["repo"]


# -- resolving references -----------------------------------------------------------------------
def test_resolve_by_full_id_prefix_name_and_latest(history) -> None:
    repo, a, b, c = history
    log = repo.snapshots
    assert log.resolve(a.id) == a
    assert log.resolve(b.id[:4]) == b
    assert log.resolve(b.id[:10].upper()) == b
    assert log.resolve("release") == c
    assert log.resolve("latest") == c


def test_resolve_failures(history) -> None:
    repo, a, _, _ = history
    log = repo.snapshots
    with pytest.raises(SnapshotNotFound):
        log.resolve(a.id[:3])  # too short to be a prefix
    with pytest.raises(SnapshotNotFound):
        log.resolve("nope")
    with pytest.raises(SnapshotNotFound):
        log.resolve("f" * 65)


def test_resolve_in_an_empty_repository(repo: Repository) -> None:
    for ref in ("latest", "abcd", "name"):
        with pytest.raises(SnapshotNotFound, match="no snapshots"):
            repo.snapshots.resolve(ref)


def fake(i: str, seq: int, time_ns: int, name: str | None = None) -> Snapshot:
    return Snapshot(i, SnapshotHead(seq, (), time_ns), body(name=name))


def test_resolve_ambiguous_prefix(history) -> None:
    repo = history[0]
    snaps = [fake("abcd1" + "0" * 59, 0, 1), fake("abcd2" + "0" * 59, 1, 2),
             fake("ef01" + "0" * 60, 2, 3)]
    with pytest.raises(AmbiguousSnapshot, match="matches 2"):
        repo.snapshots.resolve("abcd", snaps)
    assert repo.snapshots.resolve("abcd2", snaps) is snaps[1]
    assert repo.snapshots.resolve("ef01", snaps) is snaps[2]


def test_latest_is_by_time_then_seq(history) -> None:
    repo = history[0]
    snaps = [fake("a" * 64, 5, 100), fake("b" * 64, 9, 50), fake("c" * 64, 6, 100)]
    assert repo.snapshots.resolve("latest", snaps) is snaps[2]
    tie = [fake("e" * 64, 6, 100), fake("d" * 64, 6, 100)]  # then id: whatever the order
    assert latest(tie) is latest(tie[::-1]) is tie[0]


def test_latest_leaves_out_the_future_unless_all_are() -> None:
    now = 10**18
    ahead = now + FUTURE_TOLERANCE_NS + 1
    snaps = [fake("a" * 64, 0, now - 5), fake("b" * 64, 1, ahead),
             fake("c" * 64, 2, now + FUTURE_TOLERANCE_NS)]
    assert latest(snaps, now) is snaps[2]
    assert latest(snaps[1:2], now) is snaps[1]
    assert latest([], now) is None


def test_a_name_never_wins_over_a_prefix(history) -> None:
    # a writer naming a snapshot after another's short id must not redirect that id
    repo = history[0]
    snaps = [fake("beef" + "0" * 60, 0, 1), fake("cafe" + "0" * 60, 1, 2, name="beef")]
    with pytest.raises(AmbiguousSnapshot):
        repo.snapshots.resolve("beef", snaps)
    assert repo.snapshots.resolve("cafe", snaps) is snaps[1]
    # a full id is exact, whatever a name says
    snaps.append(fake("f00d" + "0" * 60, 2, 3, name="beef" + "0" * 60))
    assert repo.snapshots.resolve("beef" + "0" * 60, snaps) is snaps[0]
